"""`labsupport release OUT_DIR`: the learner edition, a copy of the workbook without the answers.

A learner who clones the repository gets solutions/, every check suite and the hidden checks:
right for self-study, wrong for a graded class. The edition is what an instructor hands out
instead (as nbgrader's release_assignment and otter's assign make one):

    README.md          for learners: the two commands, the notebooks, checking, submitting
    workbook.py        the same two commands: `python3 workbook.py lab`, `python3 workbook.py test`
    pyproject.toml, requirements.lock, environment.yml, course.toml, .gitignore   as in the workbook
    pytest.ini         the edition's tests (it takes precedence over pyproject's settings)
    notebooks/         the learner notebooks, as `labsupport build` made them
    pristine/          the same before they were run (stubs, no outputs): what `labsupport reset` restores
    labsupport/        the package, visible checks included (hidden checks live in hidden/, not here)
    tests/             the lab's own tests (serving, services, faults) and test_your_exercises.py,
                       which checks each exercise the learner has attempted, as lab.check does

and nothing of solutions/, hidden/ or tests/fixtures/. The grader keeps reading the hidden checks
from the instructor's checkout. Before it writes anything the release makes sure notebooks/ is
what the build makes from solutions/ (setup, exercise and check cells: `drift`), and before it
finishes it scans the edition (`leaks`): no
solution marker in any notebook, no exercise cell but its stub, no solution region's code and no
hidden check's source in any file. Code of a solution region that a notebook's teaching cells show
verbatim is not a leak of the release's making; it is reported as a note (`teaching_overlaps`).
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
from pathlib import Path

import nbformat

from . import course, notebook, reset, suites
from .errors import LabError

MARKER = ".labsupport-edition"
COPIED = ("workbook.py", "pyproject.toml", "requirements.lock", "environment.yml", "course.toml", ".gitignore")
KIT_TESTS = ("conftest.py", "test_serving.py", "test_services.py", "test_faults.py")

PYTEST_INI = """\
# The learner edition's tests (this file takes precedence over pyproject.toml's pytest settings):
# the lab's own tests, and your exercises as saved in notebooks/ (tests/test_your_exercises.py).
[pytest]
testpaths = tests
addopts = -p no:cacheprovider
timeout = 300
"""

TEST_YOUR_EXERCISES = '''\
"""Your exercises, judged by their visible checks: `python3 workbook.py test` runs this file.

Each exercise cell is read from its notebook in notebooks/ as last saved. One that is still as the
notebook came (stubs.json) is skipped as not attempted; any other must pass every visible check,
the same checks its `lab.check(...)` cell runs. Your instructor's grading may add hidden checks.

    python3 workbook.py test tests/test_your_exercises.py -k 05-    # one notebook's exercises
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from labsupport import course, runner
from labsupport.grading import Rejected, find_exercise, read_notebook

STUBS = json.loads((Path(__file__).parent / "stubs.json").read_text(encoding="utf-8"))
EXERCISES = [e for e in course.load().exercises if e.notebook.learner_path.exists()]


def _normal(source: str) -> str:
    return "\\n".join(line.rstrip() for line in source.strip().splitlines())


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda e: e.id)
def test_exercise(exercise):
    path = exercise.notebook.learner_path
    try:
        source = find_exercise(read_notebook(path), exercise.id)
    except (Rejected, OSError) as error:
        pytest.fail(f"notebooks/{path.name} cannot be read: {error}")
    if source is None:
        pytest.fail(f"notebooks/{path.name} has no exercise cell for {exercise.id} "
                    f"(its cell id is {exercise.id}-solution)")
    if _normal(source) == _normal(STUBS.get(exercise.id, "")):
        pytest.skip(f"{exercise.id} not attempted yet: its cell is as the notebook came")
    results = runner.run(exercise, source, runner.InProcessHost())
    assert results.passed, "\\n" + repr(results)
'''


def _readme() -> str:
    visible = {}
    rows = []
    for nb in course.load().notebooks:
        if not nb.learner_path.exists():
            continue
        exercises = []
        for exercise in nb.exercises:
            visible[exercise.id] = suites.get(exercise.id).visible_points
            exercises.append(f"{exercise.title} ({visible[exercise.id]})")
        rows.append(f"| {nb.number} | {nb.title} | [notebooks/{nb.filename}](notebooks/{nb.filename}) | "
                    f"{'; '.join(exercises) or 'no exercises'} |")
    table = "\n".join(["| # | section | notebook | exercises (points of their visible checks) |",
                       "|---|---|---|---|", *rows])
    return f"""# {course.load().title}: the workbook (learner edition)

Runnable Jupyter notebooks, one per section of the course module: each with live experiments
against a real server running inside the notebook, and exercises whose checks talk to your app
over HTTP. Redis, a database and a mail server run embedded, so nothing besides Python needs
installing.

## Quick start

```
python3 workbook.py lab
python3 workbook.py test
```

The first command installs the locked packages into `.venv/` (the first time takes a few minutes)
and opens JupyterLab on `notebooks/`. The second installs what is missing the same way, then runs
the tests of this edition: the lab's own tests (does the lab work on this machine?) and your
exercises as saved in `notebooks/` (see below). Both need only Python 3.11 or newer and access to
PyPI.

## The notebooks

{table}

## Working on an exercise

Run a notebook from the top (*Run > Restart Kernel and Run All Cells* works at any time). An
**Exercise** cell has `# YOUR CODE HERE` where your code goes; only that cell and the notebook's
setup cells make your app, so define everything it needs there. The cell after it,
`lab.check("...")`, starts your app, checks it over HTTP and shows each check as passed or failed,
with the reason and a hint. An app that crashes, hangs or answers 500 just fails checks.

From a terminal, `.venv/bin/labsupport check notebooks/NN_slug.ipynb` judges a saved notebook's
exercise cells the same way, and `python3 workbook.py test` does it for every exercise you have
attempted (an exercise cell still as the notebook came is skipped, not failed):

```
python3 workbook.py test tests/test_your_exercises.py -k 05-
```

## Grading

Your instructor grades the notebook file you submit (`notebooks/NN_slug.ipynb`, saved from
JupyterLab) with the checks you see here plus hidden ones, which this edition does not contain:
they probe the same rules with inputs you have not seen. Only your exercise cells are graded;
setup and check cells are taken as shipped, so edits to them change nothing.

## Real servers instead of the embedded ones

| variable | default (embedded) | example |
|---|---|---|
| `LAB_REDIS_URL` | fakeredis with Lua, over TCP | `redis://127.0.0.1:6379/15` |
| `LAB_DATABASE_URL` | SQLite through aiosqlite in a temporary file | `postgresql://postgres@127.0.0.1:5432/test` |
| `LAB_SMTP_URL` | an in-process inbox the notebooks read | `smtp://127.0.0.1:1025` (checks that read the inbox fail) |

Set them before starting JupyterLab: `LAB_REDIS_URL=redis://127.0.0.1:6379/15 python3 workbook.py lab`.
Delays run on a lab time scale: `lab.seconds(60)` is 0.6 s by default; set `LAB_TIME_SCALE`
(between 0 and 1) to slow everything down.
"""


# -- what must not be in an edition --------------------------------------------------------------


def _normal(text: str) -> str:
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def _file_texts(edition: Path):
    """(relative path, cell id or None, text) of everything in the edition, notebooks cell by cell."""
    for path in sorted(p for p in edition.rglob("*") if p.is_file() and ".venv" not in p.parts):
        relative = path.relative_to(edition).as_posix()
        raw = path.read_bytes().decode("utf-8", "replace")
        if path.suffix == ".ipynb":
            try:
                cells = json.loads(raw)["cells"]
            except (ValueError, KeyError, TypeError):
                yield relative, None, raw
                continue
            for cell in cells:
                source = cell.get("source", "")
                source = "".join(source) if isinstance(source, list) else str(source)
                outputs = json.dumps(cell.get("outputs", []), ensure_ascii=False)
                yield relative, cell, source + "\n" + outputs
        else:
            yield relative, None, raw


def secrets(root: Path | None = None) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(exercise id, code of a solution region) from solutions/, and (hidden check, its source)."""
    from . import fixtures

    regions, hidden = [], []
    for exercise in course.load().exercises:
        if exercise.notebook.written:
            for match in fixtures._REGION.finditer(fixtures.reference_cell(exercise)):
                regions.append((exercise.id, _normal(match.group(2))))
    for exercise_id, suite in suites.all_suites(hidden=True).items():
        for check in suite.checks:
            if check.hidden:
                hidden.append((f"{exercise_id}/{check.name}", _normal(inspect.getsource(check.func))))
    return regions, hidden


def leaks(edition: Path) -> tuple[list[str], list[str]]:
    """(leaks, notes) of an edition. A leak: a path of solutions/, hidden/ or tests/fixtures/; a
    solution marker in a notebook; an exercise cell that is not its stub; a solution region's code
    outside the notebooks' teaching cells; a hidden check's source anywhere. A note: a teaching
    cell that shows a solution region's code verbatim."""
    edition = Path(edition)
    found, notes = [], []
    for forbidden in ("solutions", "hidden", "tests/fixtures"):
        if (edition / forbidden).exists():
            found.append(f"{forbidden}/ is in the edition")
    regions, hidden = secrets()
    stubs_file = edition / "tests" / "stubs.json"
    stubs = json.loads(stubs_file.read_text(encoding="utf-8")) if stubs_file.exists() else {}
    for relative, cell, text in _file_texts(edition):
        normal = _normal(text)
        where = f"{relative} (cell {cell.get('id')})" if cell else relative
        if cell is not None:
            source = cell.get("source", "")
            source = "".join(source) if isinstance(source, list) else str(source)
            if notebook.BEGIN in source or notebook.END in source:
                found.append(f"{where}: a solution marker")
            stub = stubs.get(notebook.exercise_of(cell), "")
            if notebook.role(cell) == "exercise" and _normal(source) != _normal(stub):
                found.append(f"{where}: an exercise cell that is not its stub")
        for exercise_id, body in regions:
            if body and body in normal:
                if cell is not None and notebook.role(cell) != "exercise":
                    notes.append(f"{where} shows the code of a solution region of {exercise_id} verbatim")
                else:
                    found.append(f"{where}: the code of a solution region of {exercise_id}")
        for name, body in hidden:
            if body in normal:
                found.append(f"{where}: the source of the hidden check {name}")
    return sorted(set(found)), sorted(set(notes))


# -- making one ----------------------------------------------------------------------------------


def drift() -> list[str]:
    """What would make the edition's checks differ from the grader's: a written notebook without
    its learner notebook, or setup, exercise or check cells in notebooks/ other than the ones the
    build makes from solutions/ (setup and check cells as they are, exercise cells as stubs)."""
    from . import program

    problems = []
    for nb in course.load().notebooks:
        if not nb.written:
            continue
        if not nb.learner_path.exists():
            problems.append(f"notebooks/{nb.filename} is missing")
            continue
        shipped = program.shipped_cells_of(nb.solution_path)
        learner = {c.get("id"): c for c in program.shipped_cells_of(nb.learner_path)}
        for cell in shipped:
            kind = notebook.role(cell)
            if kind is None:
                continue
            expected = notebook.stub_source(cell["source"]) if kind == "exercise" else cell["source"]
            theirs = learner.get(cell.get("id"))
            if theirs is None or notebook.role(theirs) != kind or _normal(theirs["source"]) != _normal(expected):
                problems.append(f"notebooks/{nb.filename}: its {kind} cell {cell.get('id')} differs from solutions/")
    return problems


def _stubs() -> dict[str, str]:
    from . import program

    return {e.id: program.stub_source(e) for e in course.load().exercises if e.notebook.learner_path.exists()}


def _check_target(out: Path, root: Path) -> None:
    if out == root or root.is_relative_to(out):
        raise LabError(f"{out} holds the workbook itself: name a new folder for the edition")
    for inside in ("labsupport", "notebooks", "solutions", "hidden", "tests"):
        if out.is_relative_to(root / inside):
            raise LabError(f"{out} is inside the workbook's {inside}/: name a folder elsewhere")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise LabError(f"{out} is a link or a file: name a new folder for the edition")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise LabError(f"{out} is not empty and holds no learner edition: name a new or empty folder")


def release(out_dir) -> tuple[Path, list[str]]:
    """Write the learner edition into out_dir (a new or empty folder, or an earlier edition, which
    is replaced). Returns the folder and notes for the instructor; LabError if it cannot."""
    root = course.ROOT
    out = Path(os.path.abspath(out_dir))
    _check_target(out, root)
    problems = drift()
    if problems:
        raise LabError("notebooks/ is not what `labsupport build` makes from solutions/; run it first:\n  "
                       + "\n  ".join(problems))
    staging = out.with_name(f".{out.name}.partial")
    if staging.is_symlink() or staging.is_file():
        staging.unlink()
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        _write_edition(staging, root)
        found, notes = leaks(staging)
        if found:
            raise LabError("the edition would give answers away; nothing was released:\n  " + "\n  ".join(found))
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out, notes


def _write_edition(edition: Path, root: Path) -> None:
    for name in COPIED:
        if (root / name).exists():
            shutil.copy2(root / name, edition / name)
    (edition / "README.md").write_text(_readme(), encoding="utf-8")
    (edition / "pytest.ini").write_text(PYTEST_INI, encoding="utf-8")
    shutil.copytree(root / "labsupport", edition / "labsupport",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    (edition / "notebooks").mkdir()
    (edition / "pristine").mkdir()
    for nb in course.load().notebooks:
        if nb.learner_path.exists():
            shutil.copy2(nb.learner_path, edition / "notebooks" / nb.filename)
            nbformat.write(reset.shipped(nb), edition / "pristine" / nb.filename)  # what `labsupport reset` restores
    (edition / "tests").mkdir()
    for name in KIT_TESTS:
        shutil.copy2(root / "tests" / name, edition / "tests" / name)
    (edition / "tests" / "test_your_exercises.py").write_text(TEST_YOUR_EXERCISES, encoding="utf-8")
    (edition / "tests" / "stubs.json").write_text(json.dumps(_stubs(), indent=1, ensure_ascii=False) + "\n",
                                                   encoding="utf-8")
    digest = hashlib.sha256()
    for path in sorted(p for p in edition.rglob("*") if p.is_file()):
        digest.update(path.relative_to(edition).as_posix().encode() + b"\0" + path.read_bytes())
    (edition / MARKER).write_text(f"learner edition of {notebook.COURSE}, content sha256 {digest.hexdigest()}\n",
                                  encoding="utf-8")


def cli(args) -> int:
    out, notes = release(args.out_dir)
    print(f"wrote the learner edition to {out}: notebooks, the labsupport package without hidden checks, "
          "tests, README.md; nothing of solutions/ or hidden/")
    for note in notes:
        print(f"note: {note}")
    return 0
