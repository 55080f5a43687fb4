"""Fixtures that prove a check suite: exercise cells written as patches to the reference solution.

    tests/fixtures/<exercise id>/buggy/<name>.py     a realistic wrong solution: it must lose
                                                     exactly the checks its first line names
    tests/fixtures/<exercise id>/accepted/<name>.py  a correct solution written differently:
                                                     it must earn every point

A fixture opens with comment lines: a buggy one's first line is `# fails: check_a, check_b`, and
the lines after it say what the bug is. Then come directives, applied to the reference exercise
cell (from solutions/): SOLUTION directives first, then the solution markers are dropped, then
REPLACE/WITH and CELL in order:

    ### SOLUTION 2        the body of the 2nd solution region becomes the lines that follow,
                          written at column 0 (they are indented as the region is)
    ### REPLACE           the lines that follow, up to ### WITH, occur exactly once in the cell...
    ### WITH              ...and become the lines that follow
    ### CELL              the whole cell becomes the lines that follow
"""
from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

from . import course, notebook, program
from .errors import LabError

_DIRECTIVE = re.compile(r"^### (SOLUTION (\d+)|REPLACE|WITH|CELL)\s*$")
_REGION = re.compile(rf"^([ \t]*){re.escape(notebook.BEGIN)}[^\n]*\n(.*?)^[ \t]*{re.escape(notebook.END)}[^\n]*\n?",
                     re.M | re.S)


@dataclass(frozen=True)
class Fixture:
    exercise: course.Exercise
    kind: str               # "buggy" or "accepted"
    name: str
    path: Path
    fails: frozenset[str]   # the checks a buggy fixture must fail (empty for an accepted one)
    why: str
    source: str             # the exercise cell it makes

    @property
    def id(self) -> str:
        return f"{self.exercise.id}/{self.kind}/{self.name}"


def reference_cell(exercise: course.Exercise) -> str:
    """The reference exercise cell, solution markers included."""
    for cell in program.shipped_cells_of(exercise.notebook.solution_path):
        if notebook.role(cell) == "exercise" and notebook.exercise_of(cell) == exercise.id:
            return cell["source"]
    raise LabError(f"solutions/{exercise.notebook.filename} has no exercise cell for {exercise.id}")


def without_markers(source: str) -> str:
    return "".join(line for line in source.splitlines(keepends=True)
                   if line.strip() not in (notebook.BEGIN, notebook.END))


def apply(reference: str, text: str, where: str = "fixture") -> str:
    """The exercise cell that the directives in `text` make from `reference`."""
    blocks: list[tuple[str, int | None, list[str]]] = []
    for line in text.splitlines():
        match = _DIRECTIVE.match(line)
        if match:
            blocks.append((match[1].split()[0], int(match[2]) if match[2] else None, []))
        elif blocks:
            blocks[-1][2].append(line)
        elif line.strip() and not line.startswith("#"):
            raise LabError(f"{where}: code before the first ### directive")
    if not blocks:
        raise LabError(f"{where}: no ### SOLUTION, ### REPLACE or ### CELL directive")
    source = reference
    for kind, number, lines in blocks:  # solution regions first: they need the markers
        if kind == "SOLUTION":
            regions = list(_REGION.finditer(source))
            if not 1 <= number <= len(regions):
                raise LabError(f"{where}: the cell has {len(regions)} solution region(s), not {number}")
            region = regions[number - 1]
            body = textwrap.dedent("\n".join(lines).strip("\n"))
            new_body = textwrap.indent(body, region[1], lambda l: l.strip() != "") + "\n"
            source = source[:region.start(2)] + new_body + source[region.end(2):]
    source = without_markers(source)
    pending_replace: str | None = None
    for kind, number, lines in blocks:
        body = "\n".join(lines).strip("\n")
        if kind == "CELL":
            source = body + "\n"
        elif kind == "REPLACE":
            pending_replace = body
        elif kind == "WITH":
            if pending_replace is None:
                raise LabError(f"{where}: ### WITH without ### REPLACE before it")
            count = source.count(pending_replace)
            if count != 1:
                raise LabError(f"{where}: the text to replace occurs {count} times in the cell, not once:\n"
                               f"{pending_replace}")
            source = source.replace(pending_replace, body)
            pending_replace = None
    if pending_replace is not None:
        raise LabError(f"{where}: ### REPLACE without ### WITH")
    return source


def load(path: Path, exercise: course.Exercise | None = None) -> Fixture:
    kind = path.parent.name
    if kind not in ("buggy", "accepted"):
        raise LabError(f"{path}: a fixture lives in a buggy/ or accepted/ folder")
    exercise = exercise or course.exercise(path.parent.parent.name)
    text = path.read_text(encoding="utf-8")
    comments = []
    for line in text.splitlines():
        if not line.startswith("#") or _DIRECTIVE.match(line):
            break
        comments.append(line[1:].strip())
    fails: frozenset[str] = frozenset()
    if kind == "buggy":
        if not comments or not comments[0].startswith("fails:"):
            raise LabError(f"{path}: a buggy fixture starts with `# fails: check_name, ...`")
        fails = frozenset(name.strip() for name in comments[0][len("fails:"):].split(",") if name.strip())
        comments = comments[1:]
    why = " ".join(comments).strip()
    if not why:
        raise LabError(f"{path}: say in a comment what this fixture does differently")
    return Fixture(exercise, kind, path.stem, path, fails, why, apply(reference_cell(exercise), text, str(path)))


def of(exercise: course.Exercise) -> list[Fixture]:
    """Every fixture of an exercise, buggy ones first, by name."""
    found = []
    for kind in ("buggy", "accepted"):
        for path in sorted((exercise.fixtures / kind).glob("*.py")):
            found.append(load(path, exercise))
    return found
