"""Every check suite is proven: it passes on the reference solution, fails on the learner's stub,
and fails on each known-buggy implementation in tests/buggy/<exercise id>/*.py.

A buggy implementation is the source of an exercise cell, as a learner might write it; its first
line names the checks it must fail: `# fails: check_name, other_check`.
"""
from pathlib import Path

import nbformat
import pytest

from labsupport import notebook, suites
from labsupport.checks import Context, check_client
from labsupport.notebook import exercise_program, run_program
from labsupport.serving import serve
from labsupport import services

ROOT = Path(__file__).resolve().parent.parent
BUGGY = Path(__file__).resolve().parent / "buggy"


def notebook_with(exercise_id: str, folder: str):
    for path in sorted((ROOT / folder).glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        if any(notebook.exercise_of(c) == exercise_id for c in nb.cells):
            return nb
    raise LookupError(f"no notebook in {folder}/ has exercise {exercise_id}")


def judge(exercise_id: str, folder: str, exercise_source: str | None = None):
    suite = suites.get(exercise_id)
    namespace = run_program(exercise_program(notebook_with(exercise_id, folder), exercise_id, exercise_source))
    server = serve(namespace[suite.app_name], name=f"suite-{exercise_id}")
    try:
        with check_client(server.url) as client:
            return suite.run(Context(url=server.url, client=client, mailbox=services.mailbox()), include_hidden=True)
    finally:
        server.stop()


EXERCISES = sorted(suites.all_suites())
BUGS = sorted(BUGGY.glob("*/*.py"))


@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_reference_solution_earns_every_point(exercise_id):
    results = judge(exercise_id, "solutions")
    assert results.passed, repr(results)


@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_stub_earns_nothing(exercise_id):
    results = judge(exercise_id, "notebooks")
    assert results.earned == 0, repr(results)


@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_at_least_three_known_bugs_are_caught(exercise_id):
    assert len(list((BUGGY / exercise_id).glob("*.py"))) >= 3


@pytest.mark.parametrize("bug", BUGS, ids=[f"{b.parent.name}/{b.stem}" for b in BUGS])
def test_known_bug_fails_the_checks_it_names(bug):
    source = bug.read_text()
    first = source.splitlines()[0]
    assert first.startswith("# fails:"), f"{bug.name} must start with '# fails: check_name, ...'"
    expected = {name.strip() for name in first.removeprefix("# fails:").split(",")}
    results = judge(bug.parent.name, "solutions", source)
    failed = {c.name for c in results.checks if not c.passed}
    assert expected <= failed, repr(results)
