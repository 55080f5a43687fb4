"""notebooks/NN_slug.ipynb from solutions/NN_slug.ipynb: stub the solution regions, re-execute.

`build()` writes the learner notebooks (and stamps ids and points into the sources);
`build(check=True)` writes nothing and lists what differs from a fresh build.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from . import notebook, suites

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"
NOTEBOOKS = ROOT / "notebooks"
EXECUTION_TIMEOUT = 120


def _points() -> dict[str, int]:
    return {exercise_id: suite.points for exercise_id, suite in suites.all_suites().items()}


def execute(nb, cwd: Path, allow_errors: bool = False):
    """Run every cell in a fresh kernel, as "Restart kernel and run all" does."""
    NotebookClient(
        nb, timeout=EXECUTION_TIMEOUT, kernel_name="python3", allow_errors=allow_errors,
        record_timing=False, resources={"metadata": {"path": str(cwd)}},
    ).execute()
    return nb


def learner_version(source_nb):
    """The learner's notebook, before execution: stubs in place of solutions, no outputs."""
    nb = copy.deepcopy(source_nb)
    for cell in nb.cells:
        if notebook.role(cell) == "exercise":
            cell.source = notebook.stub_source(cell.source)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def _comparable(nb) -> str:
    cells = [{k: cell.get(k) for k in ("cell_type", "id", "source", "metadata", "outputs")} for cell in nb.cells]
    return json.dumps({"labsupport": nb.metadata.get("labsupport"), "cells": cells}, sort_keys=True, indent=1)


def build(names: list[str] | None = None, check: bool = False) -> list[str]:
    """Build (or with check=True, compare) the learner notebooks. Returns the problems found."""
    points = _points()
    problems = []
    sources = sorted(SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))
    if names:
        sources = [s for s in sources if s.name in names or s.stem in names or s.name[:2] in names]
    for source_path in sources:
        source_nb = nbformat.read(source_path, as_version=4)
        notebook.validate(source_nb, points)
        stamped = copy.deepcopy(source_nb)
        notebook.stamp(stamped, points)
        if _comparable(stamped) != _comparable(source_nb):
            if check:
                problems.append(f"{source_path.relative_to(ROOT)}: ids or points are not stamped (run labsupport build)")
            else:
                nbformat.write(stamped, source_path)
        built = execute(learner_version(stamped), NOTEBOOKS)
        target = NOTEBOOKS / source_path.name
        if check:
            if not target.exists():
                problems.append(f"{target.relative_to(ROOT)} is missing")
            elif _comparable(nbformat.read(target, as_version=4)) != _comparable(built):
                problems.append(f"{target.relative_to(ROOT)} differs from what the build makes of {source_path.name}")
        else:
            NOTEBOOKS.mkdir(exist_ok=True)
            nbformat.write(built, target)
    return problems
