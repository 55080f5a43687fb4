"""`labsupport reset NOTEBOOK [EXERCISE]`: an exercise cell, or a whole notebook, back to the learner's
stub, with a copy of what it replaced; nothing else of the learner's work is touched."""
import copy
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from labsupport import LabError, build, course, notebook, reset
from labsupport.checks import Suite

ROOT = Path(__file__).resolve().parent.parent

MANIFEST = """course = "fastapi-advanced-patterns"
title = "Reset course"

[[notebook]]
number = "96"
slug = "resettable"
title = "Resettable"

[[notebook.exercise]]
id = "96-first"
app = "first_app"
title = "First"
services = []
budget = 20
antipattern = "x"

[[notebook.exercise]]
id = "96-second"
app = "second_app"
title = "Second"
services = []
budget = 20
antipattern = "x"
"""


for _exercise_id in ("96-first", "96-second"):
    Suite(_exercise_id).check(points=1, hint="Return 42.")(lambda ctx: None)


def _cell(source, role=None, exercise=None, markdown=False):
    cell = nbformat.v4.new_markdown_cell(source) if markdown else nbformat.v4.new_code_cell(source)
    if role:
        cell.metadata["labsupport"] = {"role": role, **({"exercise": exercise} if exercise else {})}
    return cell


def _exercise(app):
    return f"{app} = object()\n\n\ndef answer():\n    ### BEGIN SOLUTION\n    return 42\n    ### END SOLUTION\n"


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A course in tmp_path: its solution notebook, and the learner's notebook as the build makes it."""
    monkeypatch.setenv("LAB_PROGRESS_DIR", str(tmp_path / "record"))
    nb = nbformat.v4.new_notebook()
    nb.metadata["labsupport"] = {"course": notebook.COURSE, "notebook": "96-resettable"}
    nb.cells = [_cell("# Resettable", markdown=True), _cell("import labsupport as lab", "setup"),
                _cell(_exercise("first_app"), "exercise", "96-first"), _cell('lab.check("96-first")', "check", "96-first"),
                _cell("## Between", markdown=True),
                _cell(_exercise("second_app"), "exercise", "96-second"), _cell('lab.check("96-second")', "check", "96-second")]
    notebook.stamp(nb, {"96-first": 1, "96-second": 1})
    (tmp_path / "solutions").mkdir()
    (tmp_path / "notebooks").mkdir()
    nbformat.write(nb, tmp_path / "solutions" / "96_resettable.ipynb")
    learner = build.learner_version(nb)
    nbformat.write(learner, tmp_path / "notebooks" / "96_resettable.ipynb")
    with course.override(course.parse(MANIFEST, root=tmp_path)) as manifest:
        yield SimpleCourse(manifest.notebooks[0], learner, tmp_path)


class SimpleCourse:
    def __init__(self, entry, learner, root):
        self.entry, self.learner, self.root = entry, learner, root
        self.path = entry.learner_path

    def read(self):
        return nbformat.read(self.path, as_version=4)

    def write(self, nb):
        nbformat.write(nb, self.path)


def by_id(nb, cell_id):
    return next(c for c in nb.cells if c.get("id") == cell_id)


def worked_on(nb):
    """The learner's notebook after some work: both exercises attempted and run, a note added."""
    nb = copy.deepcopy(nb)
    for exercise in ("96-first", "96-second"):
        cell = by_id(nb, f"{exercise}-solution")
        cell.source = cell.source.replace("raise NotImplementedError()", f"return 'mine {exercise}'")
        cell.execution_count = 3
        by_id(nb, f"{exercise}-check").outputs = [nbformat.v4.new_output("stream", text="0/1 points\n")]
    nb.cells.insert(1, _cell("my own notes", markdown=True))
    return nb


def test_an_exercise_goes_back_to_its_stub_and_nothing_else_changes(tiny):
    mine = worked_on(tiny.learner)
    tiny.write(mine)
    before = tiny.path.read_bytes()
    done = reset.reset("96", "96-first")
    assert done.changed and done.backup.read_bytes() == before
    assert done.backup.parent == tiny.root / "record" / "backups"
    after = tiny.read()
    first = by_id(after, "96-first-solution")
    assert first.source == by_id(tiny.learner, "96-first-solution").source and "NotImplementedError" in first.source
    assert first.outputs == [] and first.execution_count is None
    assert by_id(after, "96-first-check").outputs == []
    assert "mine 96-second" in by_id(after, "96-second-solution").source, "the other exercise is untouched"
    assert by_id(after, "96-second-check").outputs, "its output too"
    assert after.cells[1].source == "my own notes"
    assert [c.get("id") for c in after.cells] == [c.get("id") for c in mine.cells]
    nbformat.validate(after)
    again = reset.reset("96", "96-first")
    assert not again.changed and again.backup is None and "nothing changed" in str(again)


def test_a_deleted_exercise_cell_comes_back_before_its_check(tiny):
    mine = worked_on(tiny.learner)
    mine.cells = [c for c in mine.cells if c.get("id") != "96-second-solution"]
    tiny.write(mine)
    reset.reset("96_resettable", "96-second")
    ids = [c.get("id") for c in tiny.read().cells]
    assert ids.index("96-second-solution") == ids.index("96-second-check") - 1


def test_a_copied_exercise_cell_leaves_one_stub(tiny):
    """JupyterLab's copy and paste keeps a cell's metadata under a new id: two cells claim the exercise."""
    mine = worked_on(tiny.learner)
    duplicate = copy.deepcopy(by_id(mine, "96-first-solution"))
    duplicate["id"] = "pasted-copy"
    mine.cells.insert(3, duplicate)
    tiny.write(mine)
    reset.reset("96", "96-first")
    claiming = [c for c in tiny.read().cells if notebook.exercise_of(c) == "96-first" and notebook.role(c) == "exercise"]
    assert [c.get("id") for c in claiming] == ["96-first-solution"]


def test_the_whole_notebook_goes_back_and_the_old_one_is_kept(tiny):
    tiny.write(worked_on(tiny.learner))
    before = tiny.path.read_bytes()
    done = reset.reset("96")
    assert done.changed and done.backup.read_bytes() == before and done.what == "the whole notebook"
    after = tiny.read()
    assert [c.source for c in after.cells] == [c.source for c in tiny.learner.cells]
    assert all(not c.get("outputs") for c in after.cells if c.cell_type == "code")
    assert not reset.reset("96").changed, "a second reset finds nothing to do"
    assert len(list(done.backup.parent.iterdir())) == 1


def test_a_missing_notebook_comes_back_whole(tiny):
    tiny.path.unlink()
    with pytest.raises(LabError, match="restores the whole notebook"):
        reset.reset("96", "96-first")
    done = reset.reset("96")
    assert done.changed and done.backup is None and tiny.path.exists()


@pytest.mark.parametrize("garbage", [b"{\"cells\": [", b"\x00\x01", b"[]"])
def test_a_corrupt_notebook_can_be_reset_whole_and_is_kept(tiny, garbage):
    tiny.path.write_bytes(garbage)
    with pytest.raises(LabError, match="not a readable notebook"):
        reset.reset("96", "96-first")
    done = reset.reset("96")
    assert done.backup.read_bytes() == garbage
    nbformat.validate(tiny.read())


def test_a_copy_elsewhere_is_reset_by_its_path(tiny, tmp_path):
    copy_path = tmp_path / "elsewhere" / "my attempt.ipynb"
    copy_path.parent.mkdir()
    nbformat.write(worked_on(tiny.learner), copy_path)
    shipped_before = tiny.path.read_bytes()
    done = reset.reset(str(copy_path), "96-first")
    assert done.path == copy_path and done.changed
    assert "NotImplementedError" in by_id(nbformat.read(copy_path, as_version=4), "96-first-solution").source
    assert tiny.path.read_bytes() == shipped_before


def test_what_cannot_be_reset_says_why(tiny, tmp_path):
    with pytest.raises(LabError, match="no exercise '96-third'; its exercises: 96-first, 96-second"):
        reset.reset("96", "96-third")
    with pytest.raises(LabError, match="no notebook"):
        reset.reset("42")
    with pytest.raises(LabError, match="source notebook"):
        reset.reset(str(tiny.entry.solution_path), "96-first")
    stranger = tmp_path / "stranger.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), stranger)
    with pytest.raises(LabError, match="not a notebook of this course"):
        reset.reset(str(stranger))


def test_every_exercise_of_the_course_has_a_stub_to_go_back_to():
    """For every notebook of the course: reset's stub is the exercise cell as the build stubs it, under
    the cell id the grader and lab.check know it by (notebooks/ itself may lag behind solutions/
    while someone edits it: test_build's drift test says so)."""
    for entry in course.load().notebooks:
        if not (entry.written and entry.exercises):
            continue
        shipped = reset.shipped(entry)
        for exercise in entry.exercises:
            stub = next(c for c in shipped.cells if reset._is_exercise(c, exercise.id))
            assert stub.get("id") == f"{exercise.id}-solution" and notebook.role(stub) == "exercise"
            assert "raise NotImplementedError()" in stub.source and notebook.BEGIN not in stub.source
            assert not stub.get("outputs") and stub.get("execution_count") is None


def test_the_command(tmp_path):
    """`labsupport reset` on a copy of a real notebook: the exercise's stub, the backup named."""
    entry = course.notebook("01")
    exercise = entry.exercises[0]
    target = tmp_path / entry.filename
    nb = nbformat.read(entry.learner_path, as_version=4)
    by_id(nb, f"{exercise.id}-solution").source = "welcome_app = None  # my attempt"
    nbformat.write(nb, target)
    env = {**os.environ, "LAB_PROGRESS_DIR": str(tmp_path / "record")}
    done = subprocess.run([sys.executable, "-m", "labsupport", "reset", str(target), exercise.id], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"reset {exercise.id} in {target}" in done.stdout and "Reload Notebook from Disk" in done.stdout
    backups = list((tmp_path / "record" / "backups").iterdir())
    assert len(backups) == 1 and "my attempt" in backups[0].read_text()
    assert by_id(nbformat.read(target, as_version=4), f"{exercise.id}-solution").source == \
        by_id(reset.shipped(entry), f"{exercise.id}-solution").source
    wrong = subprocess.run([sys.executable, "-m", "labsupport", "reset", "01", "01-nope"], env=env,
                           capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 2 and "no exercise '01-nope'" in wrong.stderr
