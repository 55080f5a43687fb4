"""nbgrader grades the workbook's notebooks as `labsupport grade` does, proven with nbgrader itself.

The assignment is generated from solutions/ with `nbgrader generate_assignment` (every notebook:
nbgrader accepts their cell metadata), a set of submissions of one notebook is made from the
released notebook, and `nbgrader autograde` runs them in kernels of its own, where lab.check runs
the hidden checks too and gives the cell the points earned (nbgrader's partial credit), or an
error when nothing was earned (nbgrader's zero). `labsupport grade` grades the very same files;
every submission's score must be the same in both.

Notebook 08 is the one autograded: one exercise with hidden checks, and it runs in seconds.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from labsupport import course, fixtures, suites
from labsupport.cli import main as cli_main

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
NBGRADER = shutil.which("nbgrader", path=str(BIN)) or shutil.which("nbgrader")

try:
    import nbgrader  # noqa: F401
    from nbgrader.api import Gradebook
except ImportError:  # CI installs it (pyproject's test extra); learners need not
    Gradebook = None

pytestmark = pytest.mark.skipif(Gradebook is None or NBGRADER is None,
                                reason="nbgrader is not installed (pip install nbgrader==0.9.6, "
                                       "as in requirements.lock)")

ASSIGNMENT = "workbook"
EXERCISE = "08-user-listing"
HIDDEN_ONLY_BUG = "row_value_keyset"  # a buggy fixture that fails hidden checks only


def _submissions(released: Path) -> dict[str, str]:
    """learner -> the exercise cell they submit (in the released notebook)."""
    exercise = course.exercise(EXERCISE)
    reference = fixtures.without_markers(fixtures.reference_cell(exercise))
    hidden_bug = fixtures.load(exercise.fixtures / "buggy" / f"{HIDDEN_ONLY_BUG}.py", exercise)
    assert hidden_bug.fails <= {c.name for c in suites.get(EXERCISE, hidden=True).checks if c.hidden}
    # the reference, logging a warning and printing to stderr while it answers: nbgrader gives no
    # credit to a grade cell with any output on stderr, `labsupport grade` ignores the app's stderr
    debugs = "import logging, sys\n\n" + reference.replace(
        "def order_of(sort: str) -> list[tuple[str, bool]]:\n",
        "def order_of(sort: str) -> list[tuple[str, bool]]:\n"
        "    logging.getLogger('users').warning('sorting by %s', sort)\n"
        "    print('sorting by', sort, file=sys.stderr)\n")
    assert debugs.count("getLogger") == 1
    return {"untouched": None, "hiddenbug": hidden_bug.source, "debugs": debugs}


def _grade_with_both(base: Path) -> dict:
    """Generate the assignment, autograde the submissions with nbgrader, grade the same files with
    `labsupport grade`; both tools' scores, and what they wrote."""
    home = base / "course"
    (home / "source" / ASSIGNMENT).mkdir(parents=True)
    written = [nb for nb in course.load().notebooks if nb.written]
    for nb in written:
        shutil.copy(nb.solution_path, home / "source" / ASSIGNMENT / nb.filename)
    (home / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        "c.CourseDirectory.course_id = 'workbook'\n"
        f"c.CourseDirectory.root = {str(home)!r}\n"
        "c.Execute.timeout = 300\n")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("NBGRADER")},
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # nbgrader runs alembic from there

    def run(*args):
        finished = subprocess.run([NBGRADER, *args], cwd=home, env=env, capture_output=True, text=True, timeout=900)
        assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]

    run("generate_assignment", ASSIGNMENT, "--create", "--force")
    notebook = course.exercise(EXERCISE).notebook
    released = home / "release" / ASSIGNMENT / notebook.filename
    missing = [nb.filename for nb in written if not (home / "release" / ASSIGNMENT / nb.filename).exists()]
    assert not missing, f"nbgrader released no {missing}"
    for_labsupport = base / "submissions"
    for_labsupport.mkdir()
    learners = _submissions(released)
    for learner, source in learners.items():
        nb = nbformat.read(released, as_version=4)
        if source is not None:
            next(c for c in nb.cells if c.get("id") == f"{EXERCISE}-solution").source = source
        folder = home / "submitted" / learner / ASSIGNMENT
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / notebook.filename)
        nbformat.write(nb, for_labsupport / f"{learner}.ipynb")
    began = time.monotonic()
    run("autograde", ASSIGNMENT, "--create", "--force")
    seconds = {"nbgrader": time.monotonic() - began}
    scores = {}
    with Gradebook(f"sqlite:///{home / 'gradebook.db'}", course_id="workbook") as gradebook:
        for learner in learners:
            graded = gradebook.find_submission_notebook(notebook.filename[:-6], ASSIGNMENT, learner)
            scores[learner] = (graded.score, graded.max_score)
    out = base / "results"
    began = time.monotonic()
    assert cli_main(["grade", str(for_labsupport), "--out", str(out), "--jobs", "2"]) == 0
    seconds["labsupport"] = time.monotonic() - began
    document = json.loads((out / "grades.json").read_text())
    return {"nbgrader": scores, "released": released, "document": document, "seconds": seconds,
            "labsupport": {s["submission"][:-6]: (s["earned"], s["possible"]) for s in document["submissions"]},
            "autograded": {learner: home / "autograded" / learner / ASSIGNMENT / notebook.filename
                           for learner in learners}}


def _check_cell_text(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.get("id") == f"{EXERCISE}-check")
    return "".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in cell.outputs)


@pytest.mark.timeout(900)  # nbgrader runs the whole notebook for each submission, one at a time
def test_nbgrader_grades_every_submission_as_labsupport_grade_does(tmp_path):
    """One test, so that the expensive part (nbgrader runs whole notebooks) runs once whatever
    the test workers; each finding is collected, then all are reported."""
    both = _grade_with_both(tmp_path)
    print(f"{len(both['nbgrader'])} submissions of {EXERCISE}: nbgrader autograde {both['seconds']['nbgrader']:.0f} s, "
          f"labsupport grade --jobs 2 {both['seconds']['labsupport']:.0f} s")  # for the README (pytest -s)
    suite = suites.get(EXERCISE, hidden=True)
    problems = []

    # nbgrader's released notebook has the learner notebook's exercise cell: `labsupport grade` sees
    # an untouched nbgrader release as not attempted, like an untouched notebooks/ one
    learner_path = course.exercise(EXERCISE).notebook.learner_path
    cell = lambda nb: next(c for c in nb.cells if c.get("id") == f"{EXERCISE}-solution").source  # noqa: E731
    if cell(nbformat.read(both["released"], as_version=4)) != cell(nbformat.read(learner_path, as_version=4)):
        problems.append("nbgrader's stub of the exercise cell is not the learner notebook's")

    # the same score in both tools: zero, partial from hidden checks, full (from an app writing to stderr)
    expected = {"untouched": 0, "debugs": suite.points}
    for learner, theirs in both["nbgrader"].items():
        ours = both["labsupport"][learner]
        if learner in expected and ours != (expected[learner], suite.points):
            problems.append(f"{learner}: labsupport grade gave {ours[0]}/{ours[1]}, expected {expected[learner]}")
        if learner == "hiddenbug" and not suite.visible_points <= ours[0] < suite.points:
            problems.append(f"{learner}: labsupport grade gave {ours[0]}/{ours[1]}: it should lose hidden points only")
        if theirs != ours:
            problems.append(f"{learner}: nbgrader {theirs[0]}/{theirs[1]}, labsupport grade {ours[0]}/{ours[1]}")

    # the autograded check cell: the results printed, then the points as the cell's value, and a
    # hidden check by its description only (nbgrader's feedback shows the cell to the learner)
    text = _check_cell_text(both["autograded"]["hiddenbug"])
    earned = both["labsupport"]["hiddenbug"][0]
    if f"- {earned}/{suite.points} points" not in text or not text.endswith(f"{float(earned)}"):
        problems.append(f"the autograded check cell does not show {earned} points as its value:\n{text}")
    graded = next(s for s in both["document"]["submissions"] if s["submission"] == "hiddenbug.ipynb")
    failed = [c for e in graded["exercises"] for c in e["checks"] if c["hidden"] and c["status"] == "failed"]
    hidden = [c for c in suite.checks if c.hidden]
    if not failed or not all(c.description in text for c in hidden):
        problems.append(f"the autograded check cell does not name every hidden check:\n{text}")
    if any(c["message"] in text for c in failed) or any(c.hint and c.hint in text for c in hidden):
        problems.append(f"the autograded check cell shows a hidden check's message or hint:\n{text}")
    assert not problems, "\n".join(problems)
