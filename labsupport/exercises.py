"""The check cell's one call: lab.check("01-welcome-email").

lab.check judges exactly what the grader judges: the notebook's setup cells as shipped, then the
exercise cell as it was last run in this kernel, rebuilt in a fresh namespace and served on its
own port, against services of the run's own. Names defined in other cells are not part of it.

Which source is "the exercise cell as last run": IPython tells each cell's id when the front end
sends it (JupyterLab does); then it is the cell with the exercise's id. Without ids (nbclient,
a plain console) it is the last run cell that assigns the exercise's app variable.
"""
from __future__ import annotations

import ast
import contextlib
import io
import os
import re

from . import course, program, progress, runner
from .checks import Results

_by_id: dict[str, str] = {}
_history: list[str] = []
_saw_ids = False


def _record(info) -> None:
    global _saw_ids
    cell_id = getattr(info, "cell_id", None)
    source = getattr(info, "raw_cell", "") or ""
    if cell_id:
        _saw_ids = True
        _by_id[cell_id] = source
    _history.append(source)
    del _history[:-200]


def install() -> None:
    """Record every cell this IPython kernel runs (called when labsupport is imported)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or getattr(shell, "_labsupport_recording", False):
        return
    shell.events.register("pre_run_cell", _record)
    shell._labsupport_recording = True


def _assigns(source: str, name: str) -> bool:
    try:
        tree = ast.parse(program.strip_magics(source))
    except SyntaxError:  # it still is the learner's latest attempt: its error will be reported
        return re.search(rf"^{re.escape(name)}\s*(:[^=\n]*)?=", source, re.M) is not None
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return True
    return False


def exercise_source(exercise: course.Exercise) -> str | None:
    """The exercise cell as last run in this kernel, or None if it was not run."""
    cell_id = f"{exercise.id}-solution"
    if _saw_ids:
        return _by_id.get(cell_id)
    for source in reversed(_history):
        if "lab.check(" not in source and _assigns(source, exercise.app):
            return source
    return None


class NotEarned(Exception):
    """Raised under nbgrader's autograder when an exercise earns nothing: nbgrader counts a check
    cell as zero only when it ends in an error."""


def check(exercise_id: str, source: str | None = None):
    """Run the exercise's visible checks against the app its cell makes, and show the results.

    `source`: judge this code as the exercise cell instead of the one last run. Never raises for
    a broken app: every problem is a failed check, with the reason.

    Under nbgrader (NBGRADER_EXECUTION set) the hidden checks run too, and the cell's value is
    what nbgrader reads as the points: the number earned, or an error when nothing was earned."""
    exercise = course.exercise(exercise_id)
    grading = os.environ.get("NBGRADER_EXECUTION") in ("autograde", "validate")
    if source is None:
        source = exercise_source(exercise)
    if source is None:
        results = runner.all_failed(exercise, f"run the exercise cell above first (the cell that defines "
                                              f"`{exercise.app}`); only that cell and the setup cells are checked",
                                    include_hidden=grading)
    elif grading:  # nbgrader scores a check cell with anything on stderr as zero: the app's own output goes
        with contextlib.redirect_stderr(io.StringIO()):
            results = runner.run(exercise, source, runner.InProcessHost(), runner.Options(include_hidden=True))
    else:
        results = runner.run(exercise, source, runner.InProcessHost())
        progress.record_quietly(results, interactive=_saw_ids)  # the learner's record (never raises)
    if not grading:
        return results
    print(repr(results))
    if results.earned == 0:
        raise NotEarned(f"{exercise_id}: 0/{results.possible} points")
    return float(results.earned)
