"""notebooks/NN_slug.ipynb from solutions/NN_slug.ipynb: stub the solution regions, re-execute.

`build()` re-executes each source notebook (stamping cell ids and points into it) and writes the
learner notebook made from it; `build(check=True)` writes nothing and lists what differs.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from . import course, notebook, suites

EXECUTION_TIMEOUT = 120
# a cell that shows a running server (a link, a frame): its output names a port that is gone once the
# notebook is saved, so the build stores none (nbval must ignore the cell's output too)
LIVE_VIEW = "lab-live"


def execute(nb, cwd: Path, allow_errors: bool = False):
    """Run every cell in a fresh kernel, as "Restart kernel and run all" does."""
    NotebookClient(
        nb, timeout=EXECUTION_TIMEOUT, kernel_name="python3", allow_errors=allow_errors,
        record_timing=False, resources={"metadata": {"path": str(cwd)}},
        extra_arguments=["--IPKernelApp.log_level=ERROR"],  # not the kernel's TCP notice on every run
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


def _comparable(nb, outputs: bool = True) -> str:
    keys = ("cell_type", "id", "source", "metadata") + (("outputs",) if outputs else ())
    cells = [{k: cell.get(k) for k in keys} for cell in nb.cells]
    for cell in cells:
        if "nbval-ignore-output" in cell["metadata"].get("tags", []):
            cell.pop("outputs", None)  # nbval ignores them on purpose (measured timings)
        elif cell.get("outputs"):
            cell["outputs"] = _joined_streams(cell["outputs"])
    return json.dumps({"labsupport": nb.metadata.get("labsupport"), "cells": cells}, sort_keys=True, indent=1)


def _joined_streams(outputs: list) -> list:
    """Consecutive prints to one stream as one output: the kernel may split them either way."""
    joined = []
    for output in outputs:
        previous = joined[-1] if joined else None
        if (output.get("output_type") == "stream" and previous and previous.get("output_type") == "stream"
                and previous.get("name") == output.get("name")):
            joined[-1] = {**previous, "text": previous["text"] + output["text"]}
        else:
            joined.append(dict(output))
    return joined


def build(names: list[str] | None = None, check: bool = False, outputs: bool = True) -> list[str]:
    """Re-execute each written notebook of course.toml and build its learner notebook, or with
    check=True write nothing and return what differs. With outputs=False (check only) nothing is
    executed and only sources, ids and metadata are compared: nbval checks the outputs. Returns
    the problems found."""
    all_suites = suites.all_suites(hidden=True)
    points = {exercise_id: suite.points for exercise_id, suite in all_suites.items()}
    hints = {exercise_id: [c.hint for c in suite.checks if c.hint and not c.hidden]
             for exercise_id, suite in all_suites.items()}
    problems = []
    written = [nb for nb in course.load().notebooks if nb.written]
    if names:
        chosen = [nb for nb in written if {nb.number, nb.id, nb.slug, nb.filename, nb.filename[:-6]} & set(names)]
        if not chosen:
            problems.append(f"no written notebook matches {' '.join(names)}")
        written = chosen
    for nb_entry in written:
        source_path = nb_entry.solution_path
        source_nb = nbformat.read(source_path, as_version=4)
        notebook.validate(source_nb, points)
        if notebook.notebook_id(source_nb) != nb_entry.id:
            problems.append(f"{source_path.name}: its metadata says notebook {notebook.notebook_id(source_nb)!r}, "
                            f"course.toml {nb_entry.id!r}")
            continue
        in_cells = {notebook.exercise_of(c) for c in source_nb.cells if notebook.role(c) == "exercise"}
        in_manifest = {e.id for e in nb_entry.exercises}
        if in_cells != in_manifest:
            problems.append(f"{source_path.name}: exercises {sorted(in_cells)} in the notebook, "
                            f"{sorted(in_manifest)} in course.toml")
            continue
        solution = copy.deepcopy(source_nb)
        notebook.stamp(solution, points, hints)
        learner = learner_version(solution)
        if outputs or not check:
            for nb, cwd in ((solution, source_path.parent), (learner, nb_entry.learner_path.parent)):
                execute(nb, cwd)
                for cell in nb.cells:
                    if LIVE_VIEW in cell.metadata.get("tags", []):
                        cell.outputs = []
        for built, target in ((solution, source_path), (learner, nb_entry.learner_path)):
            name = target.relative_to(nb_entry.root)
            if not check:
                target.parent.mkdir(exist_ok=True)
                nbformat.write(built, target)
            elif not target.exists():
                problems.append(f"{name} is missing")
            elif _comparable(nbformat.read(target, as_version=4), outputs) != _comparable(built, outputs):
                problems.append(f"{name} differs from a fresh build (ids, points, stubs or outputs)")
    return problems
