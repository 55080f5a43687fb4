"""lab.check judges what the grader judges (the setup cells and the exercise cell as last run), and
never raises for a broken app: every problem is a failed check with a reason."""
from types import SimpleNamespace

import pytest

import labsupport as lab
from labsupport import course, exercises, fixtures
from labsupport.suites import nb01_background_tasks as nb01

EXERCISE = "01-welcome-email"
REFERENCE = fixtures.without_markers(fixtures.reference_cell(course.exercise(EXERCISE)))


@pytest.fixture(autouse=True)
def _no_recorded_cells(monkeypatch):
    """Each test starts from a kernel that has run no cell."""
    monkeypatch.setattr(exercises, "_by_id", {})
    monkeypatch.setattr(exercises, "_history", [])
    monkeypatch.setattr(exercises, "_saw_ids", False)


def ran(source: str, cell_id: str | None = None) -> None:
    """As if the kernel had run a cell (IPython's pre_run_cell event)."""
    exercises._record(SimpleNamespace(raw_cell=source, cell_id=cell_id))


def test_an_exercise_cell_not_run_fails_every_check_with_the_reason():
    results = lab.check(EXERCISE)
    assert results.earned == 0 and len(results.checks) == len([c for c in nb01.welcome.checks if not c.hidden])
    assert all("run the exercise cell above first" in c.message for c in results.checks)


def test_the_last_run_cell_that_assigns_the_app_is_judged():
    ran("welcome_app = None  # an early attempt")
    ran(REFERENCE)
    ran("x = 1")
    ran(f'lab.check("{EXERCISE}")')
    results = lab.check(EXERCISE)
    assert results.earned == results.possible == nb01.welcome.visible_points, repr(results)


def test_with_cell_ids_only_the_exercise_cell_counts():
    ran(REFERENCE, cell_id="some-other-cell")  # the app, but written in another cell
    ran("x = 1", cell_id=f"{EXERCISE}-solution")
    results = lab.check(EXERCISE)
    assert results.earned == 0
    assert all("did not define `welcome_app`" in c.message for c in results.checks)


def test_names_from_other_cells_are_not_part_of_the_program():
    ran("def greeting(name):\n    return f'Welcome, {name}!'\n")  # a helper in a cell of its own
    ran(REFERENCE.replace('f"Welcome, {user.name}!"', "greeting(user.name)"))
    results = lab.check(EXERCISE)
    assert results.earned < results.possible
    assert "NameError: name 'greeting' is not defined" in repr(results)


def test_something_that_is_not_an_app_fails_with_the_reason():
    results = lab.check(EXERCISE, source="welcome_app = print\n")
    assert results.earned == 0
    assert all("`welcome_app` is a builtin_function_or_method, not an ASGI app" in c.message for c in results.checks)


def test_an_exception_in_the_app_is_a_failed_check_and_is_named():
    source = '''welcome_app = FastAPI()


@welcome_app.post("/users", status_code=201)
def create_user():
    raise KeyError("smtp_host")
'''
    results = lab.check(EXERCISE, source=source)
    assert results.earned == 0
    assert "POST /users answered 500, expected 201" in repr(results)
    assert results.app_errors == ["KeyError: 'smtp_host' (line 6 of the exercise cell)"]
    assert "your app raised: KeyError: 'smtp_host' (line 6 of the exercise cell)" in repr(results)


def test_a_syntax_error_names_its_line():
    results = lab.check(EXERCISE, source="welcome_app = FastAPI(\n")
    assert "SyntaxError" in results.checks[0].message and "of the exercise cell" in results.checks[0].message


def test_results_render_as_text_html_and_data():
    results = lab.check(EXERCISE, source="welcome_app = print\n")
    bundle = results._repr_mimebundle_()
    assert bundle["text/plain"].startswith(f"{EXERCISE}: ")
    assert "<table>" in bundle["text/html"] and "&#10008; fail" in bundle["text/html"]
    assert bundle["application/vnd.labsupport.results+json"]["possible"] == nb01.welcome.visible_points


def test_an_unknown_exercise_is_a_clear_error():
    with pytest.raises(lab.LabError, match="no exercise '01-nope'"):
        lab.check("01-nope")
