"""An exercise's program: the notebook's setup cells, as shipped, then the learner's exercise cell.

It is all an exercise's app is built from, wherever it runs: lab.check in the notebook's kernel,
the grader's sandbox, the tests. So they cannot disagree about what the learner's code is, and
a problem building it reads the same in all of them.
"""
from __future__ import annotations

import asyncio
import json
import re
import sys
import types
from functools import cache

from . import course, notebook
from .checks import ADDRESS
from .errors import LabError

Program = list[tuple[str, str]]  # (cell id, source), in order
EXERCISE_MODULE = "__lab_exercise__"  # the module an exercise's program runs as


class ProgramError(Exception):
    """The program did not give an app; the message says why, for the learner."""


@cache
def _cells(path: str, mtime: float) -> tuple[dict, ...]:
    with open(path, encoding="utf-8") as file:
        return tuple(json.load(file)["cells"])


def shipped_cells(nb: course.Notebook) -> list[dict]:
    """The notebook's cells, sources joined: from solutions/, the source of truth, or from notebooks/
    in a learner edition (which has no solutions/). Their setup cells are the same (the build)."""
    path = nb.solution_path if nb.solution_path.exists() else nb.learner_path
    if not path.exists():
        raise LabError(f"notebook {nb.filename} is not in notebooks/ or solutions/")
    return shipped_cells_of(path)


def shipped_cells_of(path) -> list[dict]:
    """The cells of the notebook file at `path`, each source as one string."""
    cells = []
    for cell in _cells(str(path), path.stat().st_mtime):
        source = cell.get("source", "")
        cells.append({**cell, "source": "".join(source) if isinstance(source, list) else source})
    return cells


def setup_cells(nb: course.Notebook) -> Program:
    return [(c.get("id"), c["source"]) for c in shipped_cells(nb) if notebook.role(c) == "setup"]


def stub_source(exercise: course.Exercise) -> str:
    """The learner's untouched exercise cell."""
    for cell in shipped_cells(exercise.notebook):
        if notebook.role(cell) == "exercise" and notebook.exercise_of(cell) == exercise.id:
            return notebook.stub_source(cell["source"]) if notebook.BEGIN in cell["source"] else cell["source"]
    raise LabError(f"{exercise.notebook.filename} has no exercise cell for {exercise.id}")


def build(exercise: course.Exercise, source: str, setup: Program | None = None) -> Program:
    """Every setup cell (the shipped ones unless `setup` is given), then `source` as the exercise cell."""
    cells = setup_cells(exercise.notebook) if setup is None else setup
    return [*cells, (f"{exercise.id}-solution", source)]


def strip_magics(source: str) -> str:
    """IPython's `%magic` and `!shell` lines become no-ops, so a cell that runs in a notebook also
    compiles as Python here (line numbers stay the same)."""
    lines = source.split("\n")
    return "\n".join("pass" if line.lstrip().startswith(("%", "!")) and not line.startswith((" ", "\t"))
                     else line for line in lines)


def load_app(program: Program, app_name: str, namespace: dict | None = None):
    """Run the program's cells in a fresh namespace and return the app it defines (ProgramError if none)."""
    from .serving import looks_like_asgi

    if namespace is None:
        # a module of its own, as a kernel runs cells in __main__: libraries that look a class's
        # module up in sys.modules (pydantic resolving a model's annotations) find it
        module = types.ModuleType(EXERCISE_MODULE)
        sys.modules[EXERCISE_MODULE] = module
        namespace = module.__dict__
    try:
        for cell_id, source in program:
            exec(compile(strip_magics(source), f"<cell {cell_id}>", "exec"), namespace)
    except SystemExit as stop:
        raise ProgramError(f"the exercise cell called sys.exit({'' if stop.code is None else stop.code!r})") from None
    except BaseException as error:
        raise ProgramError(f"the exercise cell raised {describe(error)}") from None
    app = namespace.get(app_name)
    if app is None:
        raise ProgramError(f"the exercise cell did not define `{app_name}`: only the setup cells and the "
                           "exercise cell make the app, so define everything it needs there")
    if not looks_like_asgi(app):
        raise ProgramError(f"`{app_name}` is a {type(app).__name__}, not an ASGI app such as FastAPI()")
    return app


def _cell_name(filename: str) -> str:
    """The cell that load_app compiled as `<cell ID>`."""
    return "the exercise cell" if filename.endswith("-solution>") else f"setup cell {filename[6:-1]}"


def where(tb) -> str:
    """' (line N of the exercise cell)' for the innermost frame in a notebook cell."""
    found = ""
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if name.startswith("<cell "):
            found = f" (line {tb.tb_lineno} of {_cell_name(name)})"
        tb = tb.tb_next
    return found


def describe(error: BaseException) -> str:
    """An exception as the learner reads it: type, message without addresses, and where in a cell."""
    if isinstance(error, SyntaxError) and str(error.filename).startswith("<cell "):
        return f"{type(error).__name__}: {error.msg} (line {error.lineno} of {_cell_name(error.filename)})"
    text = ADDRESS.sub("<address>", str(error)).strip()
    return (f"{type(error).__name__}: {text}" if text else type(error).__name__)[:300] + where(error.__traceback__)


def raised_by_the_app(record) -> bool:
    """Whether a log record carries an exception the app raised. A request cancelled by the server
    (uvicorn's graceful-shutdown timeout, a client gone) is the server's doing, not the app's: whether
    one is still running at that instant is timing, which must not change what a learner is told."""
    error = record.exc_info[1] if record.exc_info else None
    return error is not None and not isinstance(error, asyncio.CancelledError)


def describe_briefly(error: BaseException) -> str:
    """Type and place only: a message might quote a hidden check's input."""
    return type(error).__name__ + where(error.__traceback__)


def startup_failure(exceptions: list[BaseException], messages: list[str]) -> str:
    """Why the app's startup (its lifespan) failed: from what it raised, or from the traceback text
    that Starlette reports for a failed lifespan (uvicorn logs it as a plain message)."""
    if exceptions:
        return f"the app did not start: {describe(exceptions[0])}"
    for message in reversed(messages):
        lines = [line for line in message.strip().splitlines() if line.strip()]
        if len(lines) > 1 and lines[0].startswith("Traceback"):
            cells = re.findall(r'File "(<cell [^>]+>)", line (\d+)', message)
            where = f" (line {cells[-1][1]} of {_cell_name(cells[-1][0])})" if cells else ""
            text = ADDRESS.sub("<address>", lines[-1].strip())[:300]
            return f"the app did not start: {text}{where}"
    return "the app did not start: its startup failed without an exception"
