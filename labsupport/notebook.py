"""Notebook conventions: cell roles, ids and points in metadata, solution regions and their stubs.

Roles live in cell metadata under "labsupport" and are mirrored into nbgrader's schema (version 3),
so the notebooks also open in nbgrader's tools:

| role     | labsupport metadata                              | nbgrader                      |
|----------|--------------------------------------------------|-------------------------------|
| setup    | {"role": "setup"}                                | locked                        |
| exercise | {"role": "exercise", "exercise": ID}             | solution, id ID-solution      |
| check    | {"role": "check", "exercise": ID, points, hints} | grade, locked, points, ID-check |

An exercise cell holds one or more regions between "### BEGIN SOLUTION" and "### END SOLUTION";
the learner's notebook gets "# YOUR CODE HERE" and `raise NotImplementedError()` in their place.
"""
from __future__ import annotations

import re

from .errors import LabError

COURSE = "fastapi-advanced-patterns"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
ROLES = ("setup", "exercise", "check")
_REGION = re.compile(rf"^([ \t]*){re.escape(BEGIN)}[^\n]*\n.*?^[ \t]*{re.escape(END)}[^\n]*(\n|$)", re.M | re.S)


def stub_source(source: str) -> str:
    """The learner's version of an exercise cell."""
    if BEGIN not in source:
        raise LabError("an exercise cell has no '### BEGIN SOLUTION' region")
    stubbed = _REGION.sub(lambda m: f"{m[1]}# YOUR CODE HERE\n{m[1]}raise NotImplementedError(){m[2]}", source)
    if BEGIN in stubbed or END in stubbed:
        raise LabError("unbalanced '### BEGIN SOLUTION' / '### END SOLUTION' markers")
    return stubbed


def role(cell) -> str | None:
    return cell.get("metadata", {}).get("labsupport", {}).get("role")


def exercise_of(cell) -> str | None:
    return cell.get("metadata", {}).get("labsupport", {}).get("exercise")


def notebook_id(nb) -> str | None:
    meta = nb.get("metadata", {}).get("labsupport", {})
    return meta.get("notebook") if meta.get("course") == COURSE else None


def validate(nb, points: dict[str, int]) -> None:
    """Raise LabError on a malformed source notebook. `points` maps exercise id to its suite's points."""
    if not notebook_id(nb):
        raise LabError(f"notebook metadata needs labsupport.course={COURSE!r} and labsupport.notebook")
    exercises, checks, ids = set(), set(), set()
    for index, cell in enumerate(nb.cells):
        if cell.get("id") in ids:
            raise LabError(f"cell {index}: duplicate cell id {cell.get('id')!r}")
        ids.add(cell.get("id"))
        kind, exercise = role(cell), exercise_of(cell)
        if kind is None:
            continue
        if kind not in ROLES:
            raise LabError(f"cell {index}: unknown role {kind!r}")
        if kind in ("exercise", "check"):
            if exercise not in points:
                raise LabError(f"cell {index}: no check suite for exercise {exercise!r}")
            target = exercises if kind == "exercise" else checks
            if exercise in target:
                raise LabError(f"cell {index}: a second {kind} cell for {exercise!r}")
            target.add(exercise)
        if kind == "exercise":
            stub_source(cell.source)
        if kind == "check" and f'check("{exercise}")' not in cell.source:
            raise LabError(f'cell {index}: the check cell of {exercise!r} must call lab.check("{exercise}")')
    if exercises != checks:
        raise LabError(f"exercises without a check cell, or the reverse: {sorted(exercises ^ checks)}")


def stamp(nb, points: dict[str, int], hints: dict[str, list[str]] | None = None) -> None:
    """Give every role cell its stable id and nbgrader metadata; a check cell also gets its
    exercise's points and hints (from the suite, the one place they are written)."""
    for cell in nb.cells:
        kind, exercise = role(cell), exercise_of(cell)
        if kind is None:
            cell.metadata.pop("nbgrader", None)
            continue
        if kind == "setup":
            grade_id = cell.get("id")
            nbgrader = {"grade": False, "solution": False, "locked": True}
        elif kind == "exercise":
            grade_id = cell["id"] = f"{exercise}-solution"
            nbgrader = {"grade": False, "solution": True, "locked": False}
        else:
            grade_id = cell["id"] = f"{exercise}-check"
            nbgrader = {"grade": True, "solution": False, "locked": True, "points": points[exercise]}
            cell.metadata["labsupport"]["points"] = points[exercise]
            if hints is not None:
                cell.metadata["labsupport"]["hints"] = hints.get(exercise, [])
        cell.metadata["nbgrader"] = {**nbgrader, "grade_id": grade_id, "schema_version": 3}
