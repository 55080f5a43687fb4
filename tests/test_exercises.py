"""lab.check never raises for a broken app: every problem is a failed check with a reason."""
import pytest
from fastapi import FastAPI

import labsupport as lab
from labsupport.suites import nb01_background_tasks as nb01

EXERCISE = "01-welcome-email"


def test_an_undefined_app_fails_every_check_with_the_reason():
    results = lab.check(EXERCISE)  # this module defines no welcome_app
    assert results.earned == 0 and len(results.checks) == len(nb01.welcome.checks)
    assert all("`welcome_app` is not defined" in c.message for c in results.checks)


def test_something_that_is_not_an_app_fails_with_the_reason():
    results = lab.check(EXERCISE, app=print)
    assert results.earned == 0
    assert all("needs an ASGI app" in c.message for c in results.checks)


def test_an_exception_in_the_app_is_a_failed_check_and_is_named():
    welcome_app = FastAPI()

    @welcome_app.post("/users", status_code=201)
    def create_user():
        raise KeyError("smtp_host")

    results = lab.check(EXERCISE, welcome_app)
    assert results.earned == 0
    assert "POST /users answered 500, expected 201" in repr(results)
    assert results.app_errors == ["KeyError: 'smtp_host'"]
    assert "your app raised: KeyError: 'smtp_host'" in repr(results)


def test_results_render_as_text_html_and_data():
    results = lab.check(EXERCISE, app=print)
    bundle = results._repr_mimebundle_()
    assert bundle["text/plain"].startswith(f"{EXERCISE}: ")
    assert "<table>" in bundle["text/html"] and "&#10008; fail" in bundle["text/html"]
    assert bundle["application/vnd.labsupport.results+json"]["possible"] == nb01.welcome.points


def test_an_unknown_exercise_is_a_clear_error():
    with pytest.raises(lab.LabError, match="no exercise '01-nope'"):
        lab.check("01-nope")
