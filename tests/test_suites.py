"""Every check suite is proven both ways, through the one runner, in both of its hosts at once:

- the reference solution earns every point, the learner's stub none;
- each buggy fixture (tests/fixtures/<exercise>/buggy/) fails exactly the checks it names, and the
  notebook's own anti-pattern (course.toml) is among them;
- each accepted fixture (tests/fixtures/<exercise>/accepted/), a correct solution written
  differently, earns every point;
- lab.check's way (the app in this process) and the grader's (the app in the sandbox) give the
  same verdict on every check of every one of them.
"""
from __future__ import annotations

import re
import threading

import pytest

from labsupport import course, fixtures, program, runner, suites
from labsupport.grading import SandboxHost
from labsupport.sandbox import Sandbox

WRITTEN = [e for e in course.load().exercises if e.notebook.written]
PATHS = [(e, path) for e in WRITTEN for kind in ("buggy", "accepted") for path in sorted((e.fixtures / kind).glob("*.py"))]
BUGGY_AT_LEAST, ACCEPTED_AT_LEAST = 5, 2


def _id(item) -> str:
    exercise, path = item
    return f"{exercise.id}/{path.parent.name}/{path.stem}"


@pytest.fixture(scope="session")
def sandbox():
    with Sandbox(slots=1) as box:  # a test runs one exercise in it at a time
        yield box


def judge_both(exercise: course.Exercise, source: str, sandbox: Sandbox):
    """(in-process results, sandboxed results) of one exercise cell, run at the same time."""
    found: dict[str, object] = {}

    def in_process():
        found["notebook"] = runner.run(exercise, source, runner.InProcessHost(), runner.Options(include_hidden=True))

    def sandboxed():
        with SandboxHost(sandbox, 0) as host:
            found["grader"] = runner.run(exercise, source, host, runner.Options(include_hidden=True))

    threads = [threading.Thread(target=f) for f in (in_process, sandboxed)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(found) == {"notebook", "grader"}, "a run raised instead of returning results"
    notebook, grader = found["notebook"], found["grader"]
    assert _comparable(notebook) == _comparable(grader), (
        f"lab.check and the grader disagree:\n--- in the notebook\n{notebook!r}\n--- in the grader\n{grader!r}")
    return notebook


def _comparable(results):
    """Each check's verdict and message (measured numbers aside) and what the app raised."""
    return ([(name, status, re.sub(r"\d+(\.\d+)?", "#", message)) for name, status, message in results.verdicts()],
            results.app_errors)


@pytest.mark.parametrize("exercise", WRITTEN, ids=lambda e: e.id)
def test_reference_solution_earns_every_point(exercise, sandbox):
    source = fixtures.without_markers(fixtures.reference_cell(exercise))
    results = judge_both(exercise, source, sandbox)
    assert results.earned == suites.get(exercise.id, hidden=True).points, repr(results)


@pytest.mark.parametrize("exercise", WRITTEN, ids=lambda e: e.id)
def test_stub_earns_nothing(exercise, sandbox):
    results = judge_both(exercise, program.stub_source(exercise), sandbox)
    assert results.earned == 0, repr(results)


@pytest.mark.parametrize("item", PATHS, ids=_id)
def test_fixture(item, sandbox):
    fixture = fixtures.load(item[1], item[0])
    results = judge_both(fixture.exercise, fixture.source, sandbox)
    failed = {c.name for c in results.checks if not c.passed}
    if fixture.kind == "accepted":
        assert not failed, f"a correct solution ({fixture.why}) lost points:\n{results!r}"
    else:
        assert failed == fixture.fails, f"{fixture.why}\nexpected to fail exactly {sorted(fixture.fails)}:\n{results!r}"


@pytest.mark.parametrize("exercise", WRITTEN, ids=lambda e: e.id)
def test_every_exercise_is_proven_by_enough_fixtures(exercise):
    mine = fixtures.of(exercise)
    buggy = {f.name for f in mine if f.kind == "buggy"}
    accepted = [f for f in mine if f.kind == "accepted"]
    assert len(buggy) >= BUGGY_AT_LEAST, f"{exercise.id}: {len(buggy)} buggy fixtures, want {BUGGY_AT_LEAST}"
    assert len(accepted) >= ACCEPTED_AT_LEAST, f"{exercise.id}: {len(accepted)} accepted fixtures"
    assert exercise.antipattern in buggy, f"{exercise.id}: the anti-pattern fixture {exercise.antipattern} is missing"


@pytest.mark.parametrize("item", [i for i in PATHS if i[1].parent.name == "buggy"], ids=_id)
def test_buggy_fixtures_name_checks_that_exist(item):
    fixture = fixtures.load(item[1], item[0])
    names = {c.name for c in suites.get(fixture.exercise.id, hidden=True).checks}
    assert fixture.fails and fixture.fails <= names, f"unknown checks: {sorted(fixture.fails - names)}"
