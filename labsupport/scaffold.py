"""What course.toml makes: the README's table of notebooks, and a new notebook's first files.

`labsupport new NN slug` writes, for a notebook whose entry (with its exercises) is in course.toml:
solutions/NN_slug.ipynb (title, setup, each exercise with its check cell, recap), the suite module
labsupport/suites/nbNN_slug.py, and for each exercise an anti-pattern fixture and an accepted one.
They work as written (a tiny /hello exercise), so the proofs pass from the first minute; replace
them with the notebook's own. Then `labsupport build NN` makes notebooks/NN_slug.ipynb.
"""
from __future__ import annotations

import re
from pathlib import Path

from . import course, notebook
from .errors import LabError

README = course.ROOT / "README.md"
_BEGIN, _END = "<!-- notebooks: made by `labsupport readme` from course.toml -->", "<!-- notebooks end -->"


def readme_table() -> str:
    from . import suites

    lines = ["| # | section | notebook | exercises (points) |", "|---|---|---|---|"]
    for nb in course.load().notebooks:
        if not nb.written:
            lines.append(f"| {nb.number} | {nb.title} | not written yet | |")
            continue
        exercises = "; ".join(f"{e.title} ({suites.get(e.id, hidden=True).points})" for e in nb.exercises)
        link = f"[notebooks/{nb.filename}](notebooks/{nb.filename})"
        lines.append(f"| {nb.number} | {nb.title} | {link} | {exercises} |")
    return "\n".join(lines)


def update_readme(write: bool) -> bool:
    """Whether the README's table differed from course.toml; with `write`, it no longer does."""
    text = README.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(_BEGIN) + r"\n(.*?\n)?" + re.escape(_END), re.S)
    if not pattern.search(text):
        raise LabError(f"README.md has no table markers ({_BEGIN} ... {_END})")
    fresh = pattern.sub(lambda _: f"{_BEGIN}\n{readme_table()}\n{_END}", text)
    if write and fresh != text:
        README.write_text(fresh, encoding="utf-8")
    return fresh != text


# -- a new notebook ------------------------------------------------------------------------------

_SETUP = '''from fastapi import FastAPI

import labsupport as lab
'''

_EXERCISE = '''{app} = FastAPI()


@{app}.get("/hello")
async def hello(name: str) -> dict:
    ### BEGIN SOLUTION
    return {{"message": f"Hello, {{name}}!"}}
    ### END SOLUTION
'''

_SUITE_HEAD = '''"""Checks for notebook {number}, {title}."""
from __future__ import annotations

from ..checks import Context, Suite, expect
'''

_SUITE = '''

{var} = Suite("{id}")


@{var}.check(points=1, hint="Answer {{'message': f'Hello, {{name}}!'}}.")
def greets_by_name(ctx: Context) -> None:
    "GET /hello?name=Ada answers Hello, Ada!"
    response = ctx.client.get("/hello", params={{"name": "Ada"}})
    expect(response.status_code == 200, f"GET /hello answered {{response.status_code}}, expected 200")
    expect(response.json() == {{"message": "Hello, Ada!"}}, f"GET /hello answered {{response.text[:100]!r}}")
'''

_BUGGY = '''# fails: greets_by_name
# The greeting forgets the name.
### SOLUTION 1
return {"message": "Hello!"}
'''

_ACCEPTED = '''# A plain function instead of a coroutine: FastAPI runs it in its thread pool.
### REPLACE
async def hello(name: str) -> dict:
### WITH
def hello(name: str) -> dict:
'''


def new_notebook(number: str, slug: str) -> list[Path]:
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook as blank

    nb = course.notebook(number)
    if nb.slug != slug:
        raise LabError(f"course.toml names notebook {number} {nb.slug!r}, not {slug!r}")
    if not nb.exercises:
        raise LabError(f"add notebook {number}'s exercises to course.toml first (id, app, title, services, "
                       "budget, antipattern)")
    suite_path = nb.root / "labsupport" / "suites" / f"nb{nb.number}_{nb.slug}.py"
    paths = [nb.solution_path, suite_path]
    for exercise in nb.exercises:
        paths += [exercise.fixtures / "buggy" / f"{exercise.antipattern}.py",
                  exercise.fixtures / "accepted" / "sync_handler.py"]
    existing = [p for p in paths if p.exists()]
    if existing:
        raise LabError("these files exist already: " + ", ".join(str(p.relative_to(nb.root)) for p in existing))

    def role(cell, kind, exercise=None):
        cell.metadata["labsupport"] = {"role": kind, **({"exercise": exercise} if exercise else {})}
        return cell

    cells = [new_markdown_cell(f"# {nb.number} · {nb.title}\n\nWhat this notebook teaches, and why it matters."),
             new_markdown_cell("## Setup"), role(new_code_cell(_SETUP), "setup")]
    for index, exercise in enumerate(nb.exercises, 1):
        cells += [new_markdown_cell(f"## Exercise {index}: {exercise.title}"),
                  new_markdown_cell("What to build, the rules the checks hold it to, and their time budget."),
                  role(new_code_cell(_EXERCISE.format(app=exercise.app)), "exercise", exercise.id),
                  role(new_code_cell(f'lab.check("{exercise.id}")'), "check", exercise.id)]
    cells.append(new_markdown_cell("## Recap"))
    document = blank(cells=cells)
    document.metadata["labsupport"] = {"course": notebook.COURSE, "notebook": nb.id}
    document.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.solution_path.parent.mkdir(exist_ok=True)
    nbformat.write(document, nb.solution_path)
    suite = _SUITE_HEAD.format(number=nb.number, title=nb.title.split(":")[0].lower())
    for exercise in nb.exercises:
        suite += _SUITE.format(var=exercise.id[3:].replace("-", "_"), id=exercise.id)
    suite_path.parent.mkdir(parents=True, exist_ok=True)
    suite_path.write_text(suite, encoding="utf-8")
    for exercise in nb.exercises:
        for kind, name, text in (("buggy", exercise.antipattern, _BUGGY), ("accepted", "sync_handler", _ACCEPTED)):
            path = exercise.fixtures / kind / f"{name}.py"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    return paths
