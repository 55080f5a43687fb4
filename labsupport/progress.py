"""Where a learner stands across the course: every check result kept locally, shown as a table.

    lab.progress_table()             the table of every notebook and exercise (in a notebook)
    labsupport progress              the same table in a terminal
    lab.hint("01-welcome-email")     the next hint of each check that failed in the last run

Each `lab.check` run in JupyterLab (or any front end that says which cell it runs) and each
`labsupport check` writes its results to a small JSON record, `.labsupport/progress.json` at the
repository's root (a folder git ignores by a `.gitignore` of its own), or where `LAB_PROGRESS_DIR`
points. Nothing leaves the machine. Runs that are not a learner's are not recorded: the build and
nbval (no front end, or pytest running), nbgrader's autograder, the solution notebooks, and any
run with `LAB_PROGRESS=off`.

Both read the course manifest, so a new notebook appears by itself. A missing record is a fresh
start; an unreadable one is kept beside the new one (progress.json.corrupt) and never stops a check.
"""
from __future__ import annotations

import contextlib
import html
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import course

VERSION = 1
FILENAME = "progress.json"
BAR_WIDTH = 30
_OFF = ("0", "off", "no", "false")
_AUTOMATED = ("PYTEST_CURRENT_TEST", "NBGRADER_EXECUTION")  # set while pytest (nbval) or nbgrader runs

_last_results: dict[str, object] = {}  # exercise id -> the Results of its last check in this process
_memory_hints: dict[str, dict[str, int]] = {}  # hint rungs when the record cannot be written


# -- where the record lives -----------------------------------------------------------------------


def directory() -> Path:
    """The record's folder: LAB_PROGRESS_DIR, else .labsupport/ at the repository's root when it is
    writable, else the user's data folder."""
    chosen = os.environ.get("LAB_PROGRESS_DIR")
    if chosen:
        return Path(chosen).expanduser()
    if os.access(course.ROOT, os.W_OK):
        return course.ROOT / ".labsupport"
    data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data / "labsupport" / course.load().id


def record_path() -> Path:
    return directory() / FILENAME


# -- reading and writing, never failing a check ---------------------------------------------------


@dataclass
class Record:
    exercises: dict[str, dict] = field(default_factory=dict)
    problem: str = ""  # why the stored record could not be read, if it could not


def _valid_entry(entry: object) -> dict | None:
    """An exercise's entry with the types we rely on, or None."""
    if not isinstance(entry, dict):
        return None
    numbers = ("earned", "possible", "best", "attempts")
    if not all(isinstance(entry.get(k), int) and not isinstance(entry.get(k), bool) for k in numbers):
        return None
    if not isinstance(entry.get("last_attempt"), str):
        return None
    checks = entry.get("checks") if isinstance(entry.get("checks"), dict) else {}
    hints = entry.get("hints") if isinstance(entry.get("hints"), dict) else {}
    return {**{k: entry[k] for k in numbers}, "last_attempt": entry["last_attempt"],
            "checks": {str(k): v for k, v in checks.items() if isinstance(v, str)},
            "hints": {str(k): v for k, v in hints.items() if isinstance(v, int) and not isinstance(v, bool)}}


def load(path: Path | None = None) -> Record:
    """The record, or an empty one (with `problem` saying why) when it is missing or unreadable."""
    path = path or record_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Record()
    except (OSError, ValueError) as error:  # ValueError: bad JSON or bad UTF-8
        return Record(problem=f"the progress record could not be read ({type(error).__name__})")
    if not isinstance(data, dict) or not isinstance(data.get("exercises"), dict):
        return Record(problem="the progress record is not one this workbook wrote")
    exercises = {}
    for exercise_id, entry in data["exercises"].items():
        valid = _valid_entry(entry)
        if valid is not None:
            exercises[str(exercise_id)] = valid
    return Record(exercises)


@contextlib.contextmanager
def _locked(folder: Path):
    """One writer at a time (several kernels may check at once); advisory, where the OS has it."""
    try:
        import fcntl
    except ImportError:  # Windows: the atomic replace below still keeps the file whole
        yield
        return
    with open(folder / "progress.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _prepare(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    ignore = folder / ".gitignore"
    if folder.resolve().parent == course.ROOT.resolve() and not ignore.exists():
        ignore.write_text("# the workbook's local record of a learner's checks: never committed\n*\n",
                          encoding="utf-8")


def update(change, path: Path | None = None) -> Record:
    """Read the record, let `change(record)` edit it, write it back atomically. An unreadable record
    is kept as progress.json.corrupt first. Raises OSError when the folder is not writable."""
    path = path or record_path()
    _prepare(path.parent)
    with _locked(path.parent):
        record = load(path)
        if record.problem and path.exists():
            os.replace(path, path.with_name(path.name + ".corrupt"))
        change(record)
        data = {"version": VERSION, "course": course.load().id, "exercises": record.exercises}
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=".progress-",
                                         suffix=".tmp", delete=False) as tmp:
            json.dump(data, tmp, indent=1, sort_keys=True)
        os.replace(tmp.name, path)
    return record


# -- recording a check ----------------------------------------------------------------------------


def _in_solutions(path: str | os.PathLike) -> bool:
    try:
        return Path(path).resolve().is_relative_to((course.ROOT / "solutions").resolve())
    except (OSError, ValueError):
        return False


def recording_wanted(interactive: bool, notebook_path: str | None = None) -> bool:
    """Whether a check run is a learner's: not switched off, not a test or grading run, from a front
    end a learner uses, and not on a solution notebook."""
    if os.environ.get("LAB_PROGRESS", "").strip().lower() in _OFF:
        return False
    if any(os.environ.get(name) for name in _AUTOMATED):
        return False
    session = os.environ.get("JPY_SESSION_NAME")  # the notebook a Jupyter server started this kernel for
    if not (interactive or session):
        return False
    where = notebook_path or session or os.getcwd()
    return not _in_solutions(where if notebook_path or session else Path(where) / "x.ipynb")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def record(results) -> None:
    """Keep one check run's results (a checks.Results). Raises OSError when it cannot be written."""
    _last_results[results.exercise_id] = results

    def change(rec: Record) -> None:
        old = rec.exercises.get(results.exercise_id, {})
        rec.exercises[results.exercise_id] = {
            "earned": results.earned, "possible": results.possible,
            "best": max(results.earned, old.get("best", 0)), "attempts": old.get("attempts", 0) + 1,
            "last_attempt": _now(),
            "checks": {c.name: c.status for c in results.checks if not c.hidden},
            "hints": old.get("hints", {}),
        }

    update(change)


def record_quietly(results, interactive: bool, notebook_path: str | None = None) -> None:
    """record(), when the run is a learner's; never raises (a check's verdict matters more)."""
    try:
        _last_results[results.exercise_id] = results
        if recording_wanted(interactive, notebook_path):
            record(results)
    except Exception as error:  # a full disk, a read-only folder, a broken record: say so, go on
        print(f"(progress not recorded: {type(error).__name__})", file=sys.stderr)


# -- the table ------------------------------------------------------------------------------------


@dataclass
class Row:
    exercise: course.Exercise
    possible: int | None           # visible points of its suite now (None: the suite did not load)
    entry: dict | None             # the record's entry, None when not attempted

    @property
    def earned(self) -> int:
        return 0 if self.entry is None else self.entry["earned"]

    @property
    def status(self) -> str:
        if self.entry is None:
            return "not attempted"
        return "done" if self.entry["earned"] >= self.entry["possible"] > 0 else "in progress"

    @property
    def points(self) -> str:
        if self.entry is None:
            return f"-/{'?' if self.possible is None else self.possible}"
        return f"{self.entry['earned']}/{self.entry['possible']}"

    @property
    def last_attempt(self) -> str:
        if self.entry is None:
            return "-"
        try:
            when = datetime.fromisoformat(self.entry["last_attempt"]).astimezone()
        except ValueError:
            return "?"
        return when.strftime("%Y-%m-%d %H:%M")


def _visible_points(exercise: course.Exercise) -> int | None:
    from . import suites

    try:
        return suites.get(exercise.id).visible_points
    except Exception:  # a suite being edited must not hide the rest of the table
        return None


class Progress:
    """The course's progress table; shows itself as HTML in a notebook and as text elsewhere."""

    def __init__(self, rec: Record | None = None, where: Path | None = None):
        self.record = load() if rec is None else rec
        self.where = where or record_path()
        self.notebooks = [(nb, [Row(e, _visible_points(e), self.record.exercises.get(e.id)) for e in nb.exercises])
                          for nb in course.load().notebooks if nb.exercises]
        self.rows = [row for _, rows in self.notebooks for row in rows]

    @property
    def possible(self) -> int:
        return sum(row.possible or 0 for row in self.rows)

    @property
    def earned(self) -> int:
        return sum(min(row.earned, row.possible) if row.possible is not None else row.earned for row in self.rows)

    @property
    def done(self) -> int:
        return sum(row.status == "done" for row in self.rows)

    def bar(self) -> str:
        filled = round(BAR_WIDTH * self.earned / self.possible) if self.possible else 0
        return "[" + "#" * filled + "-" * (BAR_WIDTH - filled) + "]"

    def summary(self) -> str:
        percent = round(100 * self.earned / self.possible) if self.possible else 0
        return (f"{self.earned} of {self.possible} points ({percent} %), {self.done} of {len(self.rows)} "
                f"exercises done")

    def notes(self) -> list[str]:
        notes = []
        if self.record.problem:
            notes.append(f"{self.record.problem}: showing a fresh start; the next check keeps the old file "
                         f"as {FILENAME}.corrupt and starts a new record")
        if any(row.possible is None for row in self.rows):
            notes.append("some check suites could not be loaded: their points show as ?")
        return notes

    def __repr__(self) -> str:
        lines = [f"{course.load().title}: {self.summary()}", self.bar(), "",
                 f"    {'exercise':<24} {'points':>6}  {'last attempt':<16}  status"]
        for nb, rows in self.notebooks:
            written = "" if nb.written else "  (not written yet)"
            lines.append(f"{nb.number}  {nb.title}{written}")
            for row in rows:
                lines.append(f"    {row.exercise.id:<24} {row.points:>6}  {row.last_attempt:<16}  {row.status}")
        lines += ["", *[f"note: {note}" for note in self.notes()]]
        return "\n".join(lines).rstrip()

    def _repr_html_(self) -> str:
        colors = {"done": "#1a7f37", "in progress": "#9a6700", "not attempted": "#6e7781"}
        body = []
        for nb, rows in self.notebooks:
            name = html.escape(f"{nb.number} · {nb.title}")
            link = f"<a href='{html.escape(nb.filename)}'>{name}</a>" if nb.written else f"{name} (not written yet)"
            body.append(f"<tr><td colspan='4' style='text-align:left'><b>{link}</b></td></tr>")
            for row in rows:
                body.append(
                    f"<tr><td style='text-align:left'>{html.escape(row.exercise.title)}</td>"
                    f"<td>{html.escape(row.points)}</td><td>{html.escape(row.last_attempt)}</td>"
                    f"<td style='color:{colors[row.status]};font-weight:bold'>{row.status}</td></tr>")
        percent = 100 * self.earned / self.possible if self.possible else 0
        bar = (f"<div style='width:300px;height:12px;border:1px solid #888;display:inline-block'>"
               f"<div style='width:{percent:.1f}%;height:100%;background:#1a7f37'></div></div>")
        notes = "".join(f"<p><i>{html.escape(n)}</i></p>" for n in self.notes())
        return (f"<div class='lab-progress'><p><b>{html.escape(course.load().title)}</b>: "
                f"{html.escape(self.summary())} {bar}</p>{notes}"
                "<table><thead><tr><th style='text-align:left'>exercise</th><th>points</th>"
                f"<th>last attempt</th><th>status</th></tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def progress() -> Progress:
    """The course's progress table from the record (lab.progress_table() in a notebook)."""
    return Progress()


# -- hints as a ladder ----------------------------------------------------------------------------


@dataclass
class HintStep:
    description: str
    rung: int
    of: int
    text: str


class Hints:
    """What lab.hint() shows: for each failed check, its next hint."""

    def __init__(self, exercise_id: str, steps: list[HintStep], note: str = ""):
        self.exercise_id, self.steps, self.note = exercise_id, steps, note

    def __repr__(self) -> str:
        lines = [f"{self.exercise_id}: hints"] + ([f"  {self.note}"] if self.note else [])
        for step in self.steps:
            last = "" if step.rung < step.of else " (its last hint)"
            lines.append(f"  {step.description}\n    hint {step.rung} of {step.of}{last}: {step.text}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        items = "".join(
            f"<li>{html.escape(s.description)}<br><i>hint {s.rung} of {s.of}"
            f"{'' if s.rung < s.of else ' (its last hint)'}: {html.escape(s.text)}</i></li>" for s in self.steps)
        note = f"<p>{html.escape(self.note)}</p>" if self.note else ""
        return f"<div><b>{html.escape(self.exercise_id)}: hints</b>{note}<ul>{items}</ul></div>"


def _failed_checks(exercise_id: str, entry: dict | None) -> list[str] | None:
    """Names of the visible checks that failed in the exercise's last run (this kernel's, else the
    record's); None when it never ran."""
    results = _last_results.get(exercise_id)
    if results is not None:
        return [c.name for c in results.checks if c.status == "failed" and not c.hidden]
    if entry is not None:
        return [name for name, status in entry["checks"].items() if status == "failed"]
    return None


def hint(exercise_id: str, check: str | None = None) -> Hints:
    """The next hint of each check that failed in the exercise's last run (or of the check named
    `check`, by function name). The first hint comes with the failure; each call climbs one rung."""
    from . import suites

    exercise = course.exercise(exercise_id)
    suite = suites.get(exercise.id)
    visible = [c for c in suite.checks if not c.hidden and c.hints]
    rec = load()
    entry = rec.exercises.get(exercise.id)
    if check is not None:
        chosen = [c for c in visible if c.name == check]
        if not chosen:
            names = ", ".join(c.name for c in visible) or "none"
            return Hints(exercise.id, [], f"no check named {check!r} has hints; checks with hints: {names}")
    else:
        failed = _failed_checks(exercise.id, entry)
        if failed is None:
            return Hints(exercise.id, [], f'run lab.check("{exercise.id}") first: hints follow the checks '
                                          "that failed")
        chosen = [c for c in visible if c.name in failed]
        if not chosen:
            return Hints(exercise.id, [], "no check failed in the last run: no hint needed")
    rungs = dict((entry or {}).get("hints", {}))
    rungs.update(_memory_hints.get(exercise.id, {}))
    steps = []
    for c in chosen:
        rung = min(max(rungs.get(c.name, 1), 1) + 1, len(c.hints))
        rungs[c.name] = rung
        steps.append(HintStep(c.description, rung, len(c.hints), c.hints[rung - 1]))
    _memory_hints[exercise.id] = rungs

    def change(r: Record) -> None:
        if exercise.id in r.exercises:
            r.exercises[exercise.id]["hints"] = {**r.exercises[exercise.id]["hints"], **rungs}

    with contextlib.suppress(Exception):
        if entry is not None and recording_wanted(interactive=True):
            update(change)
    return Hints(exercise.id, steps)
