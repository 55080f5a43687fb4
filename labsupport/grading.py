"""Grading for instructors: `labsupport grade SUBMISSIONS_DIR --out RESULTS_DIR`.

Every file under SUBMISSIONS_DIR (hidden files and folders aside) is a submission. A notebook is
recognised by its metadata (labsupport.course and labsupport.notebook), never by its file name,
and each exercise by its cell id (`ID-solution`; the cell's labsupport metadata if the id was
lost), so renamed files and added, moved or cleared cells still grade.

An exercise's app is rebuilt from the PRISTINE setup cells (from solutions/) and the learner's
exercise cell, in a sandboxed process with limits (see sandbox.py); its check suite, hidden checks
included, runs here in the grader's process, over the wire. Each exercise gets services of its
own: the grader's mailbox, a Redis (served in the app's process, behind the grader's fault proxy)
and a SQLite file in the app's folder (with a lock as its fault point). Setup and check cells the
learner edited are reported, never run.

RESULTS_DIR gets grades.csv (submission, one column per exercise id, total), grades.json (every
check's outcome and message) and feedback/<submission>.md, for the learner: what passed, what
failed and why, hints; hidden checks appear by their one-line description, never by their code.
Nothing in them depends on ports, pids or timings.

`labsupport grade --url BASE_URL --exercise ID` runs an exercise's checks against an app deployed
anywhere.
"""
from __future__ import annotations

import copy
import csv
import io
import json
import os
import queue
import re
import shutil
import signal
import socket
import sqlite3
import stat
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from . import notebook, suites as suite_registry
from .checks import Context, Suite, check_client
from .errors import LabError
from .faults import FaultProxy, Faults, SQLiteLock
from .sandbox import Limits, Sandbox, imports_of
from .services import Mailbox

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"
MAX_SUBMISSION_BYTES = 50 * 1024 * 1024


# -- the pristine notebooks ----------------------------------------------------------------------


@dataclass
class Pristine:
    """A notebook of the course as the instructor wrote it, and its exercises."""

    notebook_id: str
    nb: dict
    exercises: list[str]             # in notebook order
    suites: dict[str, Suite]
    stubs: dict[str, str]            # exercise id -> the learner's untouched exercise cell
    setup: list[tuple[str, str]]     # (cell id, source), in order
    checks: dict[str, tuple[str, str]]  # exercise id -> its check cell (id, source)


def load_catalogue(solutions_dir: Path = SOLUTIONS, suites: dict[str, Suite] | None = None) -> dict[str, Pristine]:
    """Every notebook in solutions_dir that has exercises, by notebook id."""
    suites = suite_registry.all_suites() if suites is None else suites
    catalogue = {}
    for path in sorted(Path(solutions_dir).glob("*.ipynb")):
        try:
            nb = _as_notebook(json.loads(path.read_bytes()))
        except (ValueError, Rejected) as error:
            raise LabError(f"{path}: not a readable notebook ({error})") from None
        notebook_id = notebook.notebook_id(nb)
        if not notebook_id:
            continue
        exercises, stubs, checks = [], {}, {}
        for cell in nb["cells"]:
            kind, exercise = notebook.role(cell), notebook.exercise_of(cell)
            if kind in ("exercise", "check") and exercise not in suites:
                raise LabError(f"{path.name}: no check suite for exercise {exercise!r}")
            if kind == "exercise":
                exercises.append(exercise)
                stubs[exercise] = notebook.stub_source(cell["source"])
            elif kind == "check":
                checks[exercise] = (cell.get("id"), cell["source"])
                declared = cell.get("metadata", {}).get("nbgrader", {}).get("points")
                if declared is not None and declared != suites[exercise].points:
                    raise LabError(f"{path.name}: the check cell of {exercise} declares {declared} points, "
                                   f"its suite {suites[exercise].points}; run `labsupport build`")
        if exercises:
            setup = [(c.get("id"), c["source"]) for c in nb["cells"] if notebook.role(c) == "setup"]
            catalogue[notebook_id] = Pristine(notebook_id, nb, exercises, {e: suites[e] for e in exercises},
                                              stubs, setup, checks)
    return catalogue


# -- reading a submission ------------------------------------------------------------------------


class Rejected(Exception):
    """A submission that cannot be graded, with the line the report shows."""


def _as_notebook(data) -> dict:
    """Notebook JSON with every cell's source as one string (nbformat allows a list of lines).

    Grading reads the JSON itself: all it needs is cells, ids, metadata and sources, and importing
    nbformat (and the JSON Schema validators it pulls in) costs seconds."""
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list) or "nbformat" not in data:
        raise Rejected("not a notebook (JSON, but not a Jupyter notebook)")
    if not isinstance(data.get("metadata"), dict):
        data["metadata"] = {}
    cells = []
    for cell in data["cells"]:
        if isinstance(cell, dict):
            source = cell.get("source", "")
            cell["source"] = "".join(map(str, source)) if isinstance(source, list) else str(source)
            if not isinstance(cell.get("metadata"), dict):
                cell["metadata"] = {}
            cells.append(cell)
    data["cells"] = cells
    return data


def read_notebook(path: Path) -> dict:
    """The submission as a notebook, or Rejected with a clear reason."""
    info = path.stat()
    if info.st_size > MAX_SUBMISSION_BYTES:
        raise Rejected(f"too large to be a notebook ({info.st_size // (1024 * 1024)} MB)")
    raw = path.read_bytes()
    if not raw.strip():
        raise Rejected("empty file")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        if path.suffix != ".ipynb":
            raise Rejected("not a notebook (not Jupyter notebook JSON)") from None
        where = f" at line {error.lineno}" if isinstance(error, json.JSONDecodeError) else ""
        raise Rejected(f"corrupt notebook: not valid JSON{where}") from None
    return _as_notebook(data)


def _normal(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


def _first_line(source: str) -> str:
    line = next((l.strip() for l in source.splitlines() if l.strip()), "")
    return line if len(line) <= 60 else line[:57] + "..."


def find_exercise(nb: dict, exercise_id: str) -> str | None:
    """The learner's exercise cell: by its stable id, else by its metadata (if the id was lost)."""
    cells = [c for c in nb["cells"] if c.get("cell_type") == "code"]
    for matches in (
        lambda c: c.get("id") == f"{exercise_id}-solution",
        lambda c: notebook.role(c) == "exercise" and notebook.exercise_of(c) == exercise_id,
        lambda c: c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == f"{exercise_id}-solution",
    ):
        found = [c for c in cells if matches(c)]
        if found:
            return found[0]["source"]
    return None


def tampering(nb: dict, pristine: Pristine) -> list[str]:
    """Notes on setup and check cells the learner edited or deleted (their originals are used)."""
    by_id = {c.get("id"): c for c in nb["cells"] if c.get("id")}
    originals = [(f"setup cell {n} (`{_first_line(src)}`)", cell_id, src)
                 for n, (cell_id, src) in enumerate(pristine.setup, 1)]
    originals += [(f"the check cell of {e}", *pristine.checks[e]) for e in pristine.exercises]
    if not any(cell_id in by_id for _, cell_id, _ in originals):
        return ["the notebook's cell ids were lost, so its setup and check cells could not be compared; "
                "the original ones were used"]
    notes = []
    for label, cell_id, source in originals:
        if cell_id not in by_id:
            notes.append(f"{label} was deleted; the original was used")
        elif _normal(by_id[cell_id]["source"]) != _normal(source):
            notes.append(f"{label} was edited; the original was used")
    return notes


# -- results -------------------------------------------------------------------------------------


def _check_row(check, passed: bool, message: str) -> dict:
    return {"name": check.name, "description": check.description, "hidden": check.hidden,
            "points": check.points, "earned": check.points if passed else 0, "passed": passed,
            "message": message, "hint": "" if passed else check.hint}


def _exercise_result(suite: Suite, status: str, checks: list[dict], notes: list[str] = ()) -> dict:
    return {"exercise": suite.exercise_id, "title": suite.title, "status": status,
            "earned": sum(c["earned"] for c in checks), "possible": suite.points,
            "notes": list(notes), "checks": checks}


def _all_failed(suite: Suite, status: str, reason: str) -> dict:
    return _exercise_result(suite, status, [_check_row(c, False, reason) for c in suite.checks])


@dataclass
class Grader:
    """Grades submissions: one sandbox, services per exercise, `jobs` submissions at a time."""

    catalogue: dict[str, Pristine]
    sandbox: Sandbox
    exercise_timeout: float = 90.0
    submission_timeout: float = 300.0
    timings: list[dict] = field(default_factory=list)

    def grade_file(self, path: Path, name: str, slot: int) -> dict:
        result = {"submission": name, "notebook": None, "status": "graded", "problem": "",
                  "notes": [], "earned": 0, "possible": 0, "exercises": []}
        try:
            nb = read_notebook(path)
            meta = nb["metadata"].get("labsupport")
            meta = meta if isinstance(meta, dict) else {}
            if meta.get("course") != notebook.COURSE:
                raise Rejected(f"a notebook of another course ({meta['course']!r})" if meta.get("course")
                               else "not a notebook of this course (no labsupport metadata)")
            notebook_id = meta.get("notebook")
            result["notebook"] = notebook_id
            if notebook_id not in self.catalogue:
                raise Rejected(f"notebook {notebook_id!r} has no exercises to grade")
        except Rejected as why:
            return {**result, "status": "not graded", "problem": str(why)}
        except OSError as error:
            return {**result, "status": "not graded", "problem": f"could not be read ({error.strerror})"}
        pristine = self.catalogue[notebook_id]
        result["notes"] = tampering(nb, pristine)
        deadline = time.monotonic() + self.submission_timeout
        for exercise_id in pristine.exercises:
            suite = pristine.suites[exercise_id]
            source = find_exercise(nb, exercise_id)
            left = deadline - time.monotonic()
            if source is None:
                outcome = _all_failed(suite, "missing", "the exercise cell is missing from the notebook")
            elif _normal(source) == _normal(pristine.stubs[exercise_id]):
                outcome = _all_failed(suite, "not attempted", "not attempted: the exercise cell is unchanged "
                                                              "(only the exercise cell is graded)")
            elif left <= 0:
                outcome = _all_failed(suite, "time limit", f"not graded: the submission's time limit "
                                                           f"({self.submission_timeout:g} s) ran out")
            else:
                program = [*pristine.setup, (f"{exercise_id}-solution", source)]
                if left < self.exercise_timeout:
                    budget, limit = left, f"the submission's time limit ({self.submission_timeout:g} s)"
                else:
                    budget, limit = self.exercise_timeout, f"the exercise's time limit ({self.exercise_timeout:g} s)"
                outcome = self.run_exercise(suite, program, slot, budget, limit, name)
            result["exercises"].append(outcome)
        result["earned"] = sum(e["earned"] for e in result["exercises"])
        result["possible"] = sum(e["possible"] for e in result["exercises"])
        return result

    def run_exercise(self, suite: Suite, program, slot: int, budget: float, limit: str, name: str = "") -> dict:
        """Start the learner's app in the sandbox and judge it over the wire within `budget` seconds
        (`limit` names the limit that sets the budget, for the feedback).

        The exercise gets services of its own, which no other job sees: a mailbox, a Redis behind a
        fault proxy (a fakeredis in the app's own process, so that its data counts against the app's
        memory limit, not the grader's), and a SQLite file in its folder with a lock as its fault point."""

        started = time.monotonic()
        deadline = started + budget
        timing = {"submission": name, "exercise": suite.exercise_id, "each": {}}
        cleanup = ExitStack()  # closed in reverse: client, app, fault points, Redis's socket, mailbox
        try:
            mailbox = _GradersMailbox()
            cleanup.callback(mailbox.close)
            redis = cleanup.enter_context(_listener())  # the child serves the app's fakeredis on it
            workdir = self.sandbox.workdir(slot)
            database = workdir / "lab.db"
            redis_url = "redis://127.0.0.1:{}/0".format(redis.getsockname()[1])
            faults = Faults(FaultProxy(redis_url), _LockOnLearnersFile(str(database)))
            cleanup.callback(faults.redis.close)
            cleanup.callback(faults.database.close)
            env = {"LAB_SMTP_URL": mailbox.url, "LAB_REDIS_URL": faults.redis.url,
                   "LAB_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
                   "LAB_TIME_SCALE": os.environ.get("LAB_TIME_SCALE", "0.01")}
            app = self.sandbox.start_app(slot, workdir, program, suite.app_name, env, redis_listener=redis)
            cleanup.callback(app.close)
            redis.close()  # the child's copy is the one that serves
            client = cleanup.enter_context(check_client(app.url))

            problem = app.wait_ready(budget, limit)
            timing["start"] = time.monotonic() - started
            if problem:
                return _all_failed(suite, "did not start", problem)
            timer = threading.Timer(deadline - time.monotonic(), app.kill)  # a hung app is killed,
            timer.daemon = True                                              # so pending checks fail fast
            timer.start()
            cleanup.callback(timer.cancel)
            ctx = Context(url=app.url, client=client, mailbox=mailbox, extras={"faults": faults})
            out_of_time = f"stopped: {limit} ran out (an endless loop, or an app that does not answer?)"
            rows = []
            for check in suite.checks:
                if time.monotonic() >= deadline:
                    rows.append(_check_row(check, False, out_of_time))
                    continue
                one = copy.copy(suite)  # Suite.run on one check: its setup, messages and verdicts
                one.checks = [check]
                began = time.monotonic()
                verdict = one.run(ctx, include_hidden=True).checks[0]
                timing["each"][check.name] = time.monotonic() - began
                timed_out = not verdict.passed and time.monotonic() >= deadline
                rows.append(_check_row(check, verdict.passed, out_of_time if timed_out else verdict.message))
            timing["checks"] = time.monotonic() - started - timing["start"]
            # with hidden checks, an exception's message might quote a hidden input: type and line only
            brief = any(check.hidden for check in suite.checks)
            notes = [f"the app raised {error}" for error in app.app_errors(brief)][:5]
            if app.ended and time.monotonic() < deadline:
                notes.append("the app's process ended while it was being checked (os._exit(), a crash, or a limit)")
            return _exercise_result(suite, "graded", rows, notes)
        finally:
            began = time.monotonic()
            cleanup.close()
            timing["cleanup"] = time.monotonic() - began
            self.timings.append(timing)


class _GradersMailbox(Mailbox):
    """The grader's mailbox for one exercise: it takes small messages and keeps a bounded number
    of them, so that no app can fill the grader's memory by mail."""

    data_size_limit = 1024 * 1024
    max_messages = 200

    def _received(self, message) -> None:
        with self._cond:
            full = len(self.messages) >= self.max_messages
        if not full:
            super()._received(message)


def _listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


class _LockOnLearnersFile(SQLiteLock):
    """The database's fault point in the grader: a lock on the SQLite file in the learner's folder.

    The grader may run as root and the folder is the learner's, so the file is opened once without
    following links and never created, and SQLite locks that very file (through /proc/self/fd)."""

    _fd: int | None = None

    def _take(self) -> None:
        if self._conn is None:
            fd = os.open(self.path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise LabError("the app's database is not a plain file")
            self._fd = fd
            self._conn = sqlite3.connect(f"file:/proc/self/fd/{fd}?mode=rw", uri=True, timeout=5,
                                         isolation_level=None, check_same_thread=False)
            self._conn.execute("BEGIN EXCLUSIVE")

    def _release(self) -> None:
        super()._release()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# -- a grading run -------------------------------------------------------------------------------


@dataclass
class Report:
    results: list[dict]
    exercises: list[dict]       # {"exercise", "notebook", "title", "points"} of every column
    out_dir: Path
    elapsed: float
    timings: list[dict]


def find_submissions(submissions_dir: Path, out_dir: Path | None = None) -> list[tuple[str, Path]]:
    """(name, path) of every regular file under the folder, skipping hidden ones and RESULTS_DIR."""
    found = []
    skip = out_dir.resolve() if out_dir is not None else None
    for folder, dirs, files in os.walk(submissions_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and Path(folder, d).resolve() != skip)
        for filename in files:
            path = Path(folder, filename)
            if filename.startswith(".") or not stat.S_ISREG(path.stat().st_mode):
                continue
            found.append((path.relative_to(submissions_dir).as_posix(), path))
    return sorted(found)


def grade(submissions_dir, out_dir, jobs: int = 1, exercise_timeout: float = 90.0,
          submission_timeout: float = 300.0, limits: Limits = Limits(),
          solutions_dir: Path = SOLUTIONS, suites: dict[str, Suite] | None = None,
          progress=None) -> Report:
    """Grade every submission in submissions_dir and write the results to out_dir."""
    began = time.monotonic()
    submissions_dir, out_dir = Path(submissions_dir), Path(out_dir)
    if not submissions_dir.is_dir():
        raise LabError(f"{submissions_dir} is not a folder of submissions")
    if jobs < 1 or exercise_timeout <= 0 or submission_timeout <= 0:
        raise LabError("--jobs must be at least 1, and the time limits more than 0 seconds")
    if out_dir.exists() and not out_dir.is_dir():
        raise LabError(f"{out_dir} exists and is not a folder")
    if out_dir.resolve() == submissions_dir.resolve():
        raise LabError("the results need a folder of their own, not the submissions folder")
    catalogue = load_catalogue(solutions_dir, suites)
    if not catalogue:
        raise LabError(f"no notebook with exercises in {solutions_dir}")
    submissions = find_submissions(submissions_dir, out_dir)
    if not submissions:
        raise LabError(f"no submissions in {submissions_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    preload = imports_of(c["source"] for p in catalogue.values() for c in p.nb["cells"]
                         if notebook.role(c) in ("setup", "exercise"))
    slots: queue.Queue[int] = queue.Queue()
    for slot in range(jobs):
        slots.put(slot)
    done, lock = [0], threading.Lock()

    with Sandbox(slots=jobs, limits=limits, preload=preload) as sandbox:
        grader = Grader(catalogue, sandbox, exercise_timeout, submission_timeout)

        stopping = threading.Event()  # set when grading is interrupted: no more work, no more reports

        def grade_one(item: tuple[str, Path]) -> dict | None:
            slot = slots.get()
            try:
                if stopping.is_set():
                    return None
                result = grader.grade_file(item[1], item[0], slot)
            except Exception as error:  # a fault of the grader's, not the learner's: report it, go on
                if stopping.is_set():
                    return None
                result = {"submission": item[0], "notebook": None, "status": "not graded",
                          "problem": f"{type(error).__name__}: {error}",
                          "notes": [], "earned": 0, "possible": 0, "exercises": [], "grader_error": True}
            finally:
                slots.put(slot)
            with lock:
                done[0] += 1
                if progress and not stopping.is_set():
                    progress(done[0], len(submissions), result)
            return result

        pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="grade")
        try:
            results = list(pool.map(grade_one, submissions))
        finally:  # on Ctrl-C: grade nothing more; leaving the sandbox kills the apps still running
            stopping.set()
            pool.shutdown(wait=False, cancel_futures=True)

    seen = {r["notebook"] for r in results if r["status"] == "graded"}
    exercises = [{"exercise": e, "notebook": p.notebook_id, "title": p.suites[e].title, "points": p.suites[e].points}
                 for p in catalogue.values() if p.notebook_id in seen for e in p.exercises]
    report = Report(results, exercises, out_dir, time.monotonic() - began, grader.timings)
    write_results(report)
    return report


# -- writing the results -------------------------------------------------------------------------


def write_results(report: Report) -> None:
    out = report.out_dir
    columns = [e["exercise"] for e in report.exercises]
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["submission", *columns, "total"])
    for result in report.results:
        earned = {e["exercise"]: e["earned"] for e in result["exercises"]}
        writer.writerow([result["submission"], *(earned.get(c, "") for c in columns), result["earned"]])
    _write(out / "grades.csv", table.getvalue())
    document = {"course": notebook.COURSE, "exercises": report.exercises, "submissions": report.results}
    _write(out / "grades.json", json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    feedback_dir = out / "feedback"
    shutil.rmtree(feedback_dir, ignore_errors=True)  # no stale feedback from an earlier run
    for result in report.results:
        path = feedback_dir / f"{result['submission']}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, feedback(result))


def _write(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def feedback(result: dict) -> str:
    """The learner's report: what passed, what failed and why, hints (never any check's code)."""
    lines = [f"# Feedback on {result['submission']}", ""]
    if result.get("grader_error"):
        lines += [f"The grader failed on this submission ({result['problem']}); this is not your mistake."]
        return "\n".join(lines) + "\n"
    if result["status"] != "graded":
        lines += [f"This submission could not be graded: {result['problem']}.", "",
                  "Submit the notebook file (.ipynb) you worked in, saved from JupyterLab."]
        return "\n".join(lines) + "\n"
    lines += [f"Notebook: {result['notebook']}", f"Total: {result['earned']}/{result['possible']} points", ""]
    if result["notes"]:
        lines += ["Notes:", *(f"- {note}" for note in result["notes"]), ""]
    for exercise in result["exercises"]:
        lines += [f"## {exercise['exercise']}: {exercise['title']} ({exercise['earned']}/{exercise['possible']} points)", ""]
        lines += [f"- {note}" for note in exercise["notes"]] + ([""] if exercise["notes"] else [])
        for check in exercise["checks"]:
            mark = "PASS" if check["passed"] else "FAIL"
            hidden = " (hidden check)" if check["hidden"] else ""
            lines.append(f"- [{mark}] {check['description']}{hidden}: {check['earned']}/{check['points']}")
            if not check["passed"]:
                lines.append(f"  - why: {check['message']}")
                if check["hint"]:
                    lines.append(f"  - hint: {check['hint']}")
        lines.append("")
    return "\n".join(lines)


def summary(report: Report) -> str:
    graded = [r for r in report.results if r["status"] == "graded"]
    rejected = [r for r in report.results if r["status"] != "graded"]
    lines = [f"Graded {len(graded)} of {len(report.results)} submissions in {report.elapsed:.1f} s."]
    for notebook_id in sorted({r["notebook"] for r in graded}):
        totals = [r["earned"] for r in graded if r["notebook"] == notebook_id]
        possible = next(r["possible"] for r in graded if r["notebook"] == notebook_id)
        full = sum(t == possible for t in totals)
        lines.append(f"  {notebook_id}: {len(totals)} submissions, mean {sum(totals) / len(totals):.1f}/{possible}, "
                     f"{full} with full points")
    edited = [r for r in graded if r["notes"]]
    if edited:
        lines.append(f"  {len(edited)} submission(s) with edited or deleted cells (see their feedback)")
    if rejected:
        lines.append("Not graded:")
        lines += [f"  {r['submission']}: {_why(r)}" for r in rejected]
    lines.append(f"Results: {report.out_dir / 'grades.csv'}, grades.json, feedback/")
    return "\n".join(lines)


def _why(result: dict) -> str:
    return f"the grader failed ({result['problem']})" if result.get("grader_error") else result["problem"]


def _progress(done: int, total: int, result: dict) -> None:
    width = len(str(total))
    if result["status"] == "graded":
        outcome = f"{result['earned']}/{result['possible']}"
    else:
        outcome = f"not graded: {_why(result)}"
    print(f"[{done:>{width}}/{total}] {result['submission']}: {outcome}", file=sys.stderr, flush=True)


# -- one exercise against an app deployed anywhere -----------------------------------------------


def check_remote(url: str, exercise_id: str):
    """Run every check of an exercise (hidden ones too) against the app at `url`."""
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", url or ""):
        raise LabError(f"--url must be an http:// or https:// base URL, not {url!r}")
    suite = suite_registry.get(exercise_id)
    with check_client(url.rstrip("/")) as client:
        return suite.run(Context(url=url.rstrip("/"), client=client, mailbox=None), include_hidden=True)


def cli(args) -> int:
    """`labsupport grade`: see the module's docstring."""
    if args.url or args.exercise:
        if not (args.url and args.exercise) or args.submissions:
            raise LabError("use either SUBMISSIONS_DIR --out RESULTS_DIR, or --url BASE_URL --exercise ID")
        results = check_remote(args.url, args.exercise)
        print(repr(results))
        if any("mailbox" in c.message or "fault injection is off" in c.message for c in results.checks):
            print("(checks that read the lab's mailbox or inject faults into its services can only judge "
                  "an app that the grader starts from a notebook)")
        return 0
    if not args.submissions or not args.out:
        raise LabError("usage: labsupport grade SUBMISSIONS_DIR --out RESULTS_DIR [--jobs N]")
    # a polite kill cleans up as Ctrl-C does: the apps still running die, temporary folders go
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    report = grade(args.submissions, args.out, jobs=args.jobs, exercise_timeout=args.exercise_timeout,
                   submission_timeout=args.submission_timeout, limits=Limits(memory_mb=args.memory),
                   progress=_progress)
    print(summary(report))
    could_not = all(r.get("grader_error") for r in report.results)
    return 1 if could_not else 0  # non-zero only when the grader could grade nothing at all
