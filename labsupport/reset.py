"""A way back: `labsupport reset NOTEBOOK [EXERCISE]` puts an exercise cell (or a whole notebook) back
to the learner's stub, keeping a copy of what it replaces.

    labsupport reset 01 01-welcome-email     that exercise's cell as shipped (stub, no output), and
                                             its check cell's output cleared
    labsupport reset 01                      the whole notebook as shipped (stubs, no outputs)

NOTEBOOK is a number, a slug or a file name of course.toml (the notebook in notebooks/), or the path
of a copy of a course notebook anywhere. The stubs come from the source notebooks in solutions/, as
the build makes them. The file replaced is first copied to .labsupport/backups/ beside the progress
record (see progress.py). A notebook open in JupyterLab keeps its old cells in the browser until
File > Reload Notebook from Disk; saving before that writes them back.
"""
from __future__ import annotations

import copy
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import nbformat

from . import course, notebook, progress
from .errors import LabError


@dataclass
class Reset:
    path: Path                 # the notebook written
    backup: Path | None        # the copy of what it replaced (None: nothing was there, or no change)
    what: str                  # "01-welcome-email" or "the whole notebook"
    changed: bool

    def __str__(self) -> str:
        if not self.changed:
            return f"{self.what} in {self.path} is already as shipped: nothing changed"
        kept = f"; what it replaced is in {self.backup}" if self.backup else ""
        return (f"reset {self.what} in {self.path} to the learner's stub{kept}. If the notebook is open in "
                "JupyterLab, use File > Reload Notebook from Disk before you save it.")


def backups_directory() -> Path:
    return progress.directory() / "backups"


def _target(name: str) -> tuple[course.Notebook, Path]:
    """The course notebook and the file to reset, from a number/slug/file name or a path."""
    candidate = Path(name).expanduser()
    if candidate.suffix == ".ipynb" and candidate.is_file():
        try:
            nb_id = notebook.notebook_id(nbformat.read(candidate, as_version=4))
        except Exception:  # unreadable: still resettable as a whole if its name is a course notebook's
            nb_id = None
        entry = course.notebook_by_id(nb_id) if nb_id else None
        if entry is None:
            try:
                entry = course.notebook(candidate.name)
            except LabError:
                raise LabError(f"{candidate} is not a notebook of this course") from None
        path = candidate
    else:
        entry = course.notebook(name)
        path = entry.learner_path
    if path.resolve().parent == entry.solution_path.resolve().parent:
        raise LabError(f"{path} is a source notebook (solutions/): reset restores learners' notebooks only")
    return entry, path


def shipped(entry: course.Notebook):
    """The learner's notebook as the build makes it, before it is run: stubs, no outputs."""
    from .build import learner_version

    from . import suites

    if not entry.solution_path.exists():
        if entry.pristine_path.exists():  # a learner edition: the release kept the notebook as shipped
            return nbformat.read(entry.pristine_path, as_version=4)
        raise LabError(f"{entry.solution_path.relative_to(entry.root)} is missing: the stubs are made from it")
    source = nbformat.read(entry.solution_path, as_version=4)
    points, hints = {}, {}
    stamped = {notebook.exercise_of(c): c.metadata["labsupport"] for c in source.cells if notebook.role(c) == "check"}
    for exercise in entry.exercises:  # ids, points and hints stamped as the build stamps them
        try:
            suite = suites.get(exercise.id, hidden=True)
            points[exercise.id] = suite.points
            hints[exercise.id] = [c.hint for c in suite.checks if c.hint and not c.hidden]
        except Exception:  # a suite that does not load: what the last build stamped
            points[exercise.id] = stamped.get(exercise.id, {}).get("points", 0)
            hints[exercise.id] = stamped.get(exercise.id, {}).get("hints", [])
    notebook.stamp(source, points, hints)
    return learner_version(source)


def _is_exercise(cell, exercise_id: str) -> bool:
    return cell.get("id") == f"{exercise_id}-solution" or (
        notebook.role(cell) == "exercise" and notebook.exercise_of(cell) == exercise_id)


def _is_check(cell, exercise_id: str) -> bool:
    return cell.get("id") == f"{exercise_id}-check" or (
        notebook.role(cell) == "check" and notebook.exercise_of(cell) == exercise_id)


def _reset_exercise(nb, pristine, exercise_id: str) -> bool:
    """Put the exercise's stub cell into `nb`; whether anything changed."""
    stub = next(cell for cell in pristine.cells if _is_exercise(cell, exercise_id))
    changed = False
    found = [i for i, cell in enumerate(nb.cells) if _is_exercise(cell, exercise_id)]
    if found:
        for index in found[1:]:  # a duplicated exercise cell: only one may stay, or lab.check is ambiguous
            nb.cells[index] = None
        cell = nb.cells[found[0]]
        if cell.get("source") != stub.source or cell.get("outputs") or cell.get("execution_count") is not None:
            changed = True
        nb.cells[found[0]] = copy.deepcopy(stub)
        changed = changed or len(found) > 1
        nb.cells = [cell for cell in nb.cells if cell is not None]
    else:  # deleted by the learner: back before its check cell, or where the shipped notebook has it
        check_at = next((i for i, cell in enumerate(nb.cells) if _is_check(cell, exercise_id)), None)
        if check_at is None:
            position = pristine.cells.index(stub)
            before = {cell.get("id") for cell in pristine.cells[:position]}
            check_at = max((i + 1 for i, cell in enumerate(nb.cells) if cell.get("id") in before), default=len(nb.cells))
        nb.cells.insert(check_at, copy.deepcopy(stub))
        changed = True
    for cell in nb.cells:
        if _is_check(cell, exercise_id) and (cell.get("outputs") or cell.get("execution_count") is not None):
            cell.outputs, cell.execution_count = [], None
            changed = True
    return changed


def _backup(path: Path) -> Path:
    folder = backups_directory()
    progress._prepare(folder.parent)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        target = folder / f"{path.stem}.{stamp}{'' if n == 0 else f'-{n}'}{path.suffix}"
        if not target.exists():
            shutil.copy2(path, target)
            return target
    raise LabError(f"too many backups of {path.name} this second")


def _text(nb) -> str:
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def _write(nb, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=f".{path.stem}-",
                                     suffix=".tmp", delete=False) as tmp:
        tmp.write(_text(nb))
    if path.exists():
        mode = path.stat().st_mode & 0o777
    else:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.chmod(tmp.name, mode)
    os.replace(tmp.name, path)


def reset(name: str, exercise_id: str | None = None) -> Reset:
    """Reset an exercise of a notebook (or, without `exercise_id`, the whole notebook) to its stub."""
    entry, path = _target(name)
    if exercise_id is not None and exercise_id not in {e.id for e in entry.exercises}:
        known = ", ".join(e.id for e in entry.exercises) or "none"
        raise LabError(f"notebook {entry.number} has no exercise {exercise_id!r}; its exercises: {known}")
    pristine = shipped(entry)
    if exercise_id is None:
        if path.exists() and path.read_bytes() == _text(pristine).encode("utf-8"):
            return Reset(path, None, "the whole notebook", False)
        backup = _backup(path) if path.exists() else None
        _write(pristine, path)
        return Reset(path, backup, "the whole notebook", True)
    if not path.exists():
        raise LabError(f"{path} is missing: `labsupport reset {entry.number}` restores the whole notebook")
    try:
        nb = nbformat.read(path, as_version=4)
        nb.cells  # noqa: B018 - a notebook without cells is not one we can edit
    except Exception:
        raise LabError(f"{path} is not a readable notebook: `labsupport reset {entry.number}` restores the "
                       "whole notebook (keeping a copy of this one)") from None
    if not _reset_exercise(nb, pristine, exercise_id):
        return Reset(path, None, exercise_id, False)
    backup = _backup(path)
    _write(nb, path)
    return Reset(path, backup, exercise_id, True)
