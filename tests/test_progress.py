"""The learner's progress record: what lab.check and `labsupport check` keep, the table that shows
it (`labsupport progress`, lab.progress_table()), hints as a ladder (lab.hint), and that a missing,
corrupt or unwritable record never breaks a check."""
import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import labsupport as lab
from labsupport import course, exercises, fixtures, program, progress
from labsupport.checks import FAILED, PASSED, RESULTS_MIME, CheckResult, Results, Suite, expect

ROOT = Path(__file__).resolve().parent.parent

# A tiny course of its own: one notebook whose suite has a ladder of hints, one with a single hint.
TINY = """course = "fastapi-advanced-patterns"
title = "Tiny course"

[[notebook]]
number = "00"
slug = "start_here"
title = "Start here"

[[notebook]]
number = "97"
slug = "ladder"
title = "Ladders"

[[notebook.exercise]]
id = "97-greet"
app = "greet_app"
title = "Greet by name"
services = []
budget = 20
antipattern = "forgets_the_name"

[[notebook.exercise]]
id = "97-count"
app = "count_app"
title = "Count"
services = []
budget = 20
antipattern = "none"
"""

greet = Suite("97-greet")
LADDER = ["Answer JSON with a `message` field.", "The message is f'Hello, {name}!'.",
          "return {'message': f'Hello, {name}!'}"]


@greet.check(points=2, hint=LADDER)
def greets_by_name(ctx):
    "GET /greet?name=Ada answers Hello, Ada!"
    expect(ctx.client.get("/greet", params={"name": "Ada"}).json() == {"message": "Hello, Ada!"}, "wrong greeting")


@greet.check(points=1, hint=["Answer 200.", "Declare the route with @greet_app.get."])
def answers_200(ctx):
    "GET /greet answers 200"
    expect(ctx.client.get("/greet", params={"name": "Ada"}).status_code == 200, "not 200")


@greet.check(points=1, hint="Only one hint here.")
def single_hint(ctx):
    "a check with a single hint"
    expect(False, "always fails")


count = Suite("97-count")


@count.check(points=3, hint="Count.")
def counts(ctx):
    "counts"
    expect(False, "does not count")


@pytest.fixture
def record_dir(tmp_path, monkeypatch):
    """A record of the test's own, recording switched on as in a learner's JupyterLab."""
    folder = tmp_path / "record"
    monkeypatch.setenv("LAB_PROGRESS_DIR", str(folder))
    # pytest sets PYTEST_CURRENT_TEST around every test, which turns recording off (nbval's kernels
    # inherit it): the tests of recording stand for a learner's kernel, so another name marks tests
    monkeypatch.setattr(progress, "_AUTOMATED", ("LAB_TEST_AUTOMATED", "NBGRADER_EXECUTION"))
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.delenv("LAB_PROGRESS", raising=False)
    monkeypatch.setenv("JPY_SESSION_NAME", str(ROOT / "notebooks" / "97_ladder.ipynb"))
    monkeypatch.setattr(progress, "_last_results", {})
    monkeypatch.setattr(progress, "_memory_hints", {})
    return folder


@pytest.fixture
def tiny():
    with course.override(course.parse(TINY)) as manifest:
        yield manifest


def results_of(exercise_id: str, passed: set[str], suite: Suite = greet) -> Results:
    rows = [CheckResult(c.name, c.description, c.points, c.points if c.name in passed else 0,
                        PASSED if c.name in passed else FAILED, "passed" if c.name in passed else "it failed",
                        "" if c.name in passed else c.hint) for c in suite.checks]
    return Results(exercise_id, course.exercise(exercise_id).title, rows)


# -- the table ----------------------------------------------------------------------------------


def test_a_fresh_checkout_shows_every_exercise_of_the_manifest_as_not_attempted(record_dir):
    assert not record_dir.exists()
    table = lab.progress_table()
    ids = [row.exercise.id for row in table.rows]
    assert ids == [e.id for e in course.load().exercises]
    assert all(row.status == "not attempted" and row.entry is None for row in table.rows)
    assert table.earned == 0 and table.possible > 0 and table.notes() == []
    text = repr(table)
    assert "0 of" in text and "[" + "-" * progress.BAR_WIDTH + "]" in text
    for nb in course.load().notebooks:
        assert (f"{nb.number}  {nb.title}" in text) is bool(nb.exercises)
    assert not record_dir.exists(), "showing the table wrote nothing"


def test_new_notebooks_appear_by_themselves(record_dir, tiny):
    table = lab.progress_table()
    assert [row.exercise.id for row in table.rows] == ["97-greet", "97-count"]
    assert table.possible == greet.visible_points + count.visible_points == 7
    html = table._repr_html_()
    assert "97 · Ladders" in html and "Greet by name" in html and "Start here" not in html, "no exercises, no rows"


def test_a_check_run_is_recorded_and_shown(record_dir, tiny):
    progress.record(results_of("97-greet", {"answers_200"}))
    progress.record(results_of("97-greet", {"answers_200", "greets_by_name"}))
    progress.record(results_of("97-greet", {"answers_200"}))  # a later, worse attempt
    entry = progress.load().exercises["97-greet"]
    assert (entry["earned"], entry["possible"], entry["best"], entry["attempts"]) == (1, 4, 3, 3)
    assert entry["checks"] == {"greets_by_name": "failed", "answers_200": "passed", "single_hint": "failed"}
    table = lab.progress_table()
    row = next(r for r in table.rows if r.exercise.id == "97-greet")
    assert (row.points, row.status) == ("1/4", "in progress") and row.last_attempt[:2] == "20"
    assert table.earned == 1 and table.possible == 7
    assert (record_dir / ".gitignore").exists() is False  # only .labsupport/ at the root gets one
    progress.record(results_of("97-count", {"counts"}, count))
    assert next(r for r in lab.progress_table().rows if r.exercise.id == "97-count").status == "done"


def test_the_folder_at_the_repository_root_ignores_itself(tmp_path, monkeypatch):
    monkeypatch.setattr(course, "ROOT", tmp_path)
    monkeypatch.delenv("LAB_PROGRESS_DIR", raising=False)
    assert progress.directory() == tmp_path / ".labsupport"
    progress._prepare(progress.directory())
    assert (tmp_path / ".labsupport" / ".gitignore").read_text().splitlines()[-1] == "*"
    git = subprocess.run(["git", "init", "-q", str(tmp_path)], capture_output=True)
    if git.returncode == 0:
        (tmp_path / ".labsupport" / "progress.json").write_text("{}")
        status = subprocess.run(["git", "-C", str(tmp_path), "status", "--porcelain", "--untracked-files=all"],
                                capture_output=True, text=True).stdout
        assert ".labsupport" not in status


@pytest.mark.parametrize("content, kept", [
    (b"{not json", True), (b"\xff\xfe\x00garbage", True), (b"[1, 2, 3]", True), (b'{"exercises": 7}', True),
    (b"", True),
    (b'{"exercises": {"97-greet": {"earned": "three", "possible": 4}}}', False),  # a bad entry is dropped
])
def test_a_corrupt_record_never_crashes_and_is_kept_aside(record_dir, tiny, content, kept, capsys):
    record_dir.mkdir(parents=True)
    (record_dir / "progress.json").write_bytes(content)
    table = lab.progress_table()
    assert all(row.status == "not attempted" for row in table.rows)
    assert repr(table) and table._repr_html_()
    progress.record_quietly(results_of("97-greet", {"answers_200"}), interactive=True)
    assert capsys.readouterr().err == ""
    assert progress.load().exercises["97-greet"]["earned"] == 1 and not progress.load().problem
    corrupt = record_dir / "progress.json.corrupt"
    assert corrupt.exists() is kept and (not kept or corrupt.read_bytes() == content)


def test_the_note_names_an_unreadable_record(record_dir, tiny):
    record_dir.mkdir(parents=True)
    (record_dir / "progress.json").write_text("{oops")
    notes = lab.progress_table().notes()
    assert len(notes) == 1 and "could not be read" in notes[0] and "progress.json.corrupt" in notes[0]


def test_an_unwritable_record_never_fails_a_check(record_dir, tiny, capsys):
    record_dir.parent.mkdir(exist_ok=True)
    record_dir.write_text("a file where the folder should be")
    progress.record_quietly(results_of("97-greet", set()), interactive=True)
    assert "progress not recorded" in capsys.readouterr().err
    assert all(row.status == "not attempted" for row in lab.progress_table().rows)


@pytest.mark.parametrize("env, interactive, recorded", [
    ({}, True, True),                                            # JupyterLab: cell ids and a session
    ({"JPY_SESSION_NAME": None}, True, True),                    # a front end that sends cell ids
    ({"JPY_SESSION_NAME": None}, False, False),                  # nbclient (the build), a console
    ({"LAB_TEST_AUTOMATED": "x"}, True, False),                  # nbval and the tests (see record_dir)
    ({"NBGRADER_EXECUTION": "autograde"}, True, False),          # nbgrader's autograder
    ({"LAB_PROGRESS": "off"}, True, False),                      # switched off
    ({"JPY_SESSION_NAME": str(ROOT / "solutions" / "01_background_tasks.ipynb")}, True, False),
])
def test_only_a_learners_runs_are_recorded(record_dir, tiny, monkeypatch, env, interactive, recorded):
    for name, value in env.items():
        monkeypatch.delenv(name, raising=False) if value is None else monkeypatch.setenv(name, value)
    progress.record_quietly(results_of("97-greet", set()), interactive=interactive)
    assert ("97-greet" in progress.load().exercises) is recorded


def test_nothing_is_recorded_while_pytest_runs(monkeypatch):
    """nbval's kernels inherit PYTEST_CURRENT_TEST: the stubs it runs never reach a learner's record."""
    monkeypatch.setenv("JPY_SESSION_NAME", str(ROOT / "notebooks" / "01_background_tasks.ipynb"))
    assert os.environ.get("PYTEST_CURRENT_TEST")
    assert not progress.recording_wanted(interactive=True)


def test_lab_check_records_what_it_showed(record_dir, monkeypatch):
    """End to end: a cell run from JupyterLab (it sends cell ids), then its check cell."""
    monkeypatch.setattr(exercises, "_by_id", {})
    monkeypatch.setattr(exercises, "_history", [])
    monkeypatch.setattr(exercises, "_saw_ids", False)
    exercise = course.exercise("01-welcome-email")
    exercises._record(SimpleNamespace(raw_cell=program.stub_source(exercise), cell_id=f"{exercise.id}-solution"))
    results = lab.check(exercise.id)
    entry = progress.load().exercises[exercise.id]
    assert (entry["earned"], entry["possible"], entry["attempts"]) == (results.earned, results.possible, 1)
    assert entry["checks"] == {c.name: c.status for c in results.checks}


def test_labsupport_check_records_and_progress_prints_it(record_dir, tmp_path):
    exercise = course.exercise("01-welcome-email")
    learner = tmp_path / exercise.notebook.filename
    learner.write_bytes(exercise.notebook.learner_path.read_bytes())
    env = {**os.environ, "LAB_PROGRESS_DIR": str(record_dir)}
    env.pop("JPY_SESSION_NAME")
    env.pop("PYTEST_CURRENT_TEST", None)
    check = subprocess.run([sys.executable, "-m", "labsupport", "check", str(learner)], env=env,
                           capture_output=True, text=True, timeout=240)
    assert "total: 0/" in check.stdout, check.stdout + check.stderr
    recorded = progress.load().exercises
    assert set(recorded) == {e.id for e in exercise.notebook.exercises}
    shown = subprocess.run([sys.executable, "-m", "labsupport", "progress"], env=env, capture_output=True,
                           text=True, timeout=60)
    assert shown.returncode == 0 and str(record_dir / "progress.json") in shown.stdout
    line = next(line for line in shown.stdout.splitlines() if exercise.id in line)
    assert f"0/{recorded[exercise.id]['possible']}" in line and "in progress" in line


def test_the_cli_prints_a_fresh_table_without_a_record(record_dir):
    env = {**os.environ, "LAB_PROGRESS_DIR": str(record_dir)}
    shown = subprocess.run([sys.executable, "-m", "labsupport", "progress"], env=env, capture_output=True,
                           text=True, timeout=60)
    assert shown.returncode == 0 and shown.stderr == ""
    assert shown.stdout.count("not attempted") == len(course.load().exercises)


def _record_one(folder: str, exercise_id: str) -> None:
    os.environ["LAB_PROGRESS_DIR"] = folder
    with course.override(course.parse(TINY)):
        suite = greet if exercise_id == "97-greet" else count
        for _ in range(5):
            progress.record(results_of(exercise_id, set(), suite))


def test_kernels_checking_at_once_lose_nothing(record_dir):
    context = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
    workers = [context.Process(target=_record_one, args=(str(record_dir), e)) for e in ["97-greet", "97-count"] * 3]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    with course.override(course.parse(TINY)):
        recorded = progress.load().exercises
    assert recorded["97-greet"]["attempts"] == 15 and recorded["97-count"]["attempts"] == 15
    assert not list(record_dir.glob("*.tmp"))


# -- hints as a ladder ----------------------------------------------------------------------------


def test_a_hint_list_is_a_ladder_and_a_single_hint_is_unchanged():
    check = next(c for c in greet.checks if c.name == "greets_by_name")
    assert check.hint == LADDER[0] and check.hints == tuple(LADDER)
    single = next(c for c in greet.checks if c.name == "single_hint")
    assert single.hint == "Only one hint here." and single.hints == ("Only one hint here.",)
    with pytest.raises(lab.LabError, match="non-empty"):
        Suite("97-bad").check(hint=["fine", ""])(lambda ctx: None)


def test_results_offer_more_hints_only_when_a_failed_check_has_them(tiny):
    failing = results_of("97-greet", set())
    assert failing.more_hints
    assert 'more hints: lab.hint("97-greet")' in repr(failing)
    assert "lab.hint(&quot;97-greet&quot;)" in failing._repr_html_()
    assert [c.hint for c in failing.checks] == [LADDER[0], "Answer 200.", "Only one hint here."]
    only_single = results_of("97-greet", {"greets_by_name", "answers_200"})
    assert not only_single.more_hints and "more hints" not in repr(only_single)
    assert not results_of("97-count", set(), count).more_hints


def test_the_stored_outputs_of_existing_suites_do_not_change():
    """The MIME bundle keeps its keys: notebooks built before ladders existed compare equal."""
    from labsupport import suites

    exercise = course.exercise("01-welcome-email")
    rows = [CheckResult(c.name, c.description, c.points, 0, FAILED, "m", c.hint)
            for c in suites.get(exercise.id).checks]
    results = Results(exercise.id, exercise.title, rows)
    bundle = results._repr_mimebundle_()
    assert set(bundle[RESULTS_MIME]) == {"exercise", "title", "earned", "possible", "checks", "notes",
                                         "app_errors", "started"}
    assert set(bundle[RESULTS_MIME]["checks"][0]) == {"name", "description", "points", "earned", "status",
                                                       "message", "hint", "hidden"}
    assert Results.from_dict(json.loads(json.dumps(bundle[RESULTS_MIME]))).verdicts() == results.verdicts()


def test_lab_hint_climbs_one_rung_per_call_and_remembers(record_dir, tiny):
    none_yet = lab.hint("97-greet")
    assert none_yet.steps == [] and 'run lab.check("97-greet") first' in repr(none_yet)
    progress.record(results_of("97-greet", {"answers_200"}))  # greets_by_name and single_hint failed
    first = lab.hint("97-greet")
    assert [(s.description, s.rung, s.of, s.text) for s in first.steps] == [
        ("GET /greet?name=Ada answers Hello, Ada!", 2, 3, LADDER[1]),
        ("a check with a single hint", 1, 1, "Only one hint here."),
    ]
    second = lab.hint("97-greet")
    assert second.steps[0].rung == 3 and "its last hint" in repr(second)
    assert lab.hint("97-greet").steps[0].rung == 3, "the top rung stays"
    assert progress.load().exercises["97-greet"]["hints"]["greets_by_name"] == 3
    progress._memory_hints.clear()
    progress._last_results.clear()  # a new kernel: the record still knows
    assert lab.hint("97-greet").steps[0].rung == 3
    named = lab.hint("97-greet", check="answers_200")
    assert [(s.rung, s.text) for s in named.steps] == [(2, "Declare the route with @greet_app.get.")]
    assert "no check named" in repr(lab.hint("97-greet", check="nope"))


def test_lab_hint_after_everything_passed(record_dir, tiny):
    progress.record(results_of("97-greet", {"answers_200", "greets_by_name", "single_hint"}))
    assert "no hint needed" in repr(lab.hint("97-greet"))


def test_lab_hint_needs_no_record(record_dir, tiny, monkeypatch):
    """The kernel's last results suffice when nothing can be recorded (a read-only checkout)."""
    monkeypatch.setenv("LAB_PROGRESS", "off")
    progress.record_quietly(results_of("97-greet", {"answers_200"}), interactive=True)
    assert not (record_dir / "progress.json").exists()
    assert [s.rung for s in lab.hint("97-greet").steps] == [2, 1]
    assert [s.rung for s in lab.hint("97-greet").steps] == [3, 1]
