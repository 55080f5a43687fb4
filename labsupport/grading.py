"""Grading for instructors: `labsupport grade SUBMISSIONS_DIR --out RESULTS_DIR`.

Every file under SUBMISSIONS_DIR (hidden files and folders aside) is a submission. A notebook is
recognised by its metadata (labsupport.course and labsupport.notebook), never by its file name,
and each exercise by its cell id (`ID-solution`; the cell's labsupport metadata if the id was
lost), so renamed files and added, moved or cleared cells still grade.

An exercise is run by runner.run, as lab.check runs it: the notebook's setup cells as shipped,
then the learner's exercise cell; here the app runs in a sandboxed process with limits (see
sandbox.py), and its check suite, hidden checks included, runs in the grader's process, over the
wire. Each exercise gets services of its own (GraderServices): the grader's mailbox, a Redis in a
sandboxed process of the exercise's own, a SQLite file in the app's folder (with a lock as its
fault point), fault proxies. Setup and check cells the learner edited are reported, never run.

RESULTS_DIR gets grades.csv (submission, one column per exercise id, total), grades.json (every
check's outcome and message) and feedback/<submission>.md, for the learner: what passed, what
failed and why, hints; hidden checks appear by their one-line description, never by their code.
Nothing in them depends on ports, pids or timings.

`labsupport grade --url BASE_URL --exercise ID` runs an exercise's checks against an app deployed
anywhere.
"""
from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import sqlite3
import stat
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from . import course, isolation, notebook, program, runner, suites as suite_registry
from .checks import NOT_RUN, Results, check_client
from .errors import LabError
from .faults import FaultProxy, Faults, SQLiteLock
from .report import _progress, _why, _write, feedback, summary, write_results  # noqa: F401 (the report layer)
from .sandbox import Limits, Sandbox, imports_of
from .services import Mailbox, RedisService, ServiceSet

MAX_SUBMISSION_BYTES = 50 * 1024 * 1024
NOT_ISOLATED = """WARNING: learners' apps are NOT isolated on this machine ({why}).
They still run as uids of their own (when the grader is root) with limits on memory, processes,
files and time, but they can read every world-readable file (the repository, its solutions and
hidden checks included), reach every network port of this machine and beyond, and leave files
in /tmp. Grade where Linux namespaces are allowed: see the README, "Grading in a container"."""


# -- the pristine notebooks ----------------------------------------------------------------------


@dataclass
class Pristine:
    """A notebook of the course as shipped, and its exercises."""

    notebook: course.Notebook
    stubs: dict[str, str]            # exercise id -> the learner's untouched exercise cell
    setup: list[tuple[str, str]]     # (cell id, source), in order
    checks: dict[str, tuple[str, str]]  # exercise id -> its check cell (id, source)

    @property
    def notebook_id(self) -> str:
        return self.notebook.id

    @property
    def exercises(self) -> list[str]:
        return [e.id for e in self.notebook.exercises]


def load_catalogue() -> dict[str, Pristine]:
    """Every written notebook of the course that has exercises, by notebook id."""
    catalogue = {}
    for nb in course.load().notebooks:
        if not nb.exercises or not nb.written:
            continue
        cells = program.shipped_cells(nb)
        checks = {}
        for cell in cells:
            if notebook.role(cell) == "check":
                exercise = notebook.exercise_of(cell)
                checks[exercise] = (cell.get("id"), cell["source"])
                declared = cell.get("metadata", {}).get("nbgrader", {}).get("points")
                points = suite_registry.get(exercise, hidden=True).points
                if declared is not None and declared != points:
                    raise LabError(f"{nb.filename}: the check cell of {exercise} declares {declared} points, "
                                   f"its suite {points}; run `labsupport build`")
        catalogue[nb.id] = Pristine(nb, {e.id: program.stub_source(e) for e in nb.exercises},
                                    program.setup_cells(nb), checks)
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
    """The submission as a notebook, or Rejected with a clear reason. A link is never followed: a
    learner's link could lead anywhere the grader may read (the solutions, say)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        if os.path.islink(path):
            raise Rejected("a link, not a file (links are not followed)") from None
        raise
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Rejected("not a regular file")
        if info.st_size > MAX_SUBMISSION_BYTES:
            raise Rejected(f"too large to be a notebook ({info.st_size // (1024 * 1024)} MB)")
        raw = file.read(MAX_SUBMISSION_BYTES + 1)
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


def _exercise_result(results: Results, status: str) -> dict:
    return {**results.to_dict(), "status": status}


def _all_failed(exercise: course.Exercise, status: str, reason: str) -> dict:
    return _exercise_result(runner.all_failed(exercise, reason, include_hidden=True), status)


@dataclass
class Grader:
    """Grades submissions: one sandbox, services per exercise, `jobs` submissions at a time."""

    catalogue: dict[str, Pristine]
    sandbox: Sandbox
    exercise_timeout: float | None = None  # None: each exercise's budget from course.toml
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
        for exercise in pristine.notebook.exercises:
            source = find_exercise(nb, exercise.id)
            left = deadline - time.monotonic()
            if source is None:
                outcome = _all_failed(exercise, "missing", "the exercise cell is missing from the notebook")
            elif _normal(source) == _normal(pristine.stubs[exercise.id]):
                outcome = _all_failed(exercise, "not attempted", "not attempted: the exercise cell is unchanged "
                                                                 "(only the exercise cell is graded)")
            elif left <= 0:
                outcome = _all_failed(exercise, "time limit", f"not graded: the submission's time limit "
                                                              f"({self.submission_timeout:g} s) ran out")
            else:
                budget, budget_name = self.exercise_timeout or exercise.budget, None
                if left < budget:
                    budget, budget_name = left, f"the submission's time limit ({self.submission_timeout:g} s)"
                outcome = self.run_exercise(exercise, source, pristine.setup, slot, budget, budget_name, name)
            result["exercises"].append(outcome)
        result["earned"] = sum(e["earned"] for e in result["exercises"])
        result["possible"] = sum(e["possible"] for e in result["exercises"])
        return result

    def run_exercise(self, exercise: course.Exercise, source: str, setup, slot: int, budget: float,
                     budget_name: str, name: str = "") -> dict:
        """Run the exercise in the sandbox, as runner.run runs every exercise, within `budget` seconds."""
        started = time.monotonic()
        options = runner.Options(include_hidden=True, budget=budget, budget_name=budget_name)
        with SandboxHost(self.sandbox, slot) as host:
            results = runner.run(exercise, source, host, options, setup)
        self.timings.append({"submission": name, "exercise": exercise.id, "seconds": time.monotonic() - started})
        return _exercise_result(results, "graded" if results.started else "did not start")


# -- the sandbox as a runner host ----------------------------------------------------------------


class SandboxHost:
    """runner's host for the grader: each app instance a sandboxed process (sandbox.py), the
    exercise's services the grader's own (GraderServices), reached from the app's network only
    through relays to them. Used with `with`: at the end, every process of the exercise is killed
    and its folders removed."""

    def __init__(self, sandbox: Sandbox, slot: int):
        self.sandbox, self.slot = sandbox, slot
        self.workdir = sandbox.workdir(slot)
        self.services_dir = sandbox.services_dir(self.workdir)
        self._sockets: isolation.ServiceSockets | None = None

    def services(self, exercise: course.Exercise) -> "GraderServices":
        services = GraderServices(exercise.run_services, self)
        if self.sandbox.isolated:
            ports = sorted({int(port) for value in services.environment().values()
                            for port in re.findall(r"127\.0\.0\.1:(\d+)", value)})
            self._sockets = isolation.ServiceSockets(self.services_dir, ports, self.sandbox.uids[self.slot])
        return services

    def start(self, prog, app_name: str, services: "GraderServices", sock: socket.socket,
              timeout: float = runner.START_TIMEOUT, limit: str = "its start-up limit") -> runner.Instance:
        relays = self._sockets.paths if self._sockets else None
        app = self.sandbox.start_app(self.slot, self.workdir, prog, app_name, services.environment(), sock,
                                     relays, self.services_dir)
        problem = app.wait_ready(timeout, limit)
        if problem:
            app.close()
            raise program.ProgramError(problem)
        return _SandboxedInstance(app)

    def __enter__(self) -> "SandboxHost":
        return self

    def __exit__(self, *exc) -> None:
        self.sandbox.kill_slot(self.slot)
        if self._sockets is not None:
            self._sockets.close()
        self.sandbox.remove_workdir(self.workdir)
        self.sandbox.remove_workdir(self.services_dir)


class _SandboxedInstance(runner.Instance):
    def __init__(self, app):
        self.app = app
        self.url = app.url

    def alive(self, wait: float = 0.0) -> bool:
        self.app.app_errors()  # reads what is waiting on the status pipe, and notices its end
        deadline = time.monotonic() + wait
        while not self.app.ended and not self.app.closed and time.monotonic() < deadline:
            self.app._messages(deadline - time.monotonic())
        return not self.app.ended

    def stop(self) -> None:
        self.app.stop()  # SIGTERM, then SIGKILL; reads what it reported until it is gone

    def kill(self) -> None:
        self.app.close()  # SIGKILL

    def app_errors(self, brief: bool) -> list[str]:
        return self.app.app_errors(brief)

    def notes(self) -> list[str]:
        if self.app.ended_early:
            return ["the app's process ended while it was being checked (os._exit(), a crash, or a limit)"]
        return []


class GraderServices(ServiceSet):
    """An exercise's services in the grader: nothing of the machine's own (no LAB_* from the
    environment), a mailbox that keeps a bounded number of small messages, a Redis in a sandboxed
    process of the exercise's own (its data counts against the exercise's limits), the SQLite
    file in the app's folder with a lock that never follows the learner's links."""

    def __init__(self, names, host: SandboxHost):
        self._host = host
        super().__init__(names, real=False)

    @property
    def directory(self) -> Path:
        return self._host.workdir

    def _start_mail(self):
        box = _GradersMailbox()
        self._closers.append(box.close)
        return box

    def _start_redis(self):
        listener = _listener()
        url = "redis://127.0.0.1:{}/0".format(listener.getsockname()[1])
        try:
            server = self._host.sandbox.start_service(self._host.slot, self._host.workdir, "redis", listener)
        finally:
            listener.close()  # the service's process holds it: when it dies, connections are refused
        problem = server.wait_ready(10.0, "its start-up limit (10 s)")
        self._closers.append(server.close)
        if problem:
            raise LabError(f"the exercise's Redis did not start: {problem}")
        return RedisService(url)

    def _start_faults(self):
        redis = database = None
        if "redis" in self.names:
            redis = FaultProxy(self.redis.url)
            self._closers.append(redis.close)
        if "database" in self.names:
            database = _LockOnLearnersFile(self.database.sqlite_path)
            self._closers.append(database.close)
        return Faults(redis, database)


class _GradersMailbox(Mailbox):
    """The grader's mailbox for one exercise: it takes small messages and keeps a bounded number
    of them, so that no app can fill the grader's memory by mail."""

    data_size_limit = 1024 * 1024
    max_messages = 200



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
    """(name, path) of every file and link under the folder, skipping hidden ones and RESULTS_DIR.
    Folders are entered only when they are not links; a linked file is listed and reported, not
    followed (read_notebook)."""
    found = []
    skip = out_dir.resolve() if out_dir is not None else None
    for folder, dirs, files in os.walk(submissions_dir):  # does not follow links to folders
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and Path(folder, d).resolve() != skip)
        for filename in files:
            path = Path(folder, filename)
            try:
                mode = path.lstat().st_mode
            except OSError:
                continue
            if filename.startswith(".") or not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                continue
            found.append((path.relative_to(submissions_dir).as_posix(), path))
    return sorted(found)


def grade(submissions_dir, out_dir, jobs: int = 1, exercise_timeout: float | None = None,
          submission_timeout: float = 300.0, limits: Limits = Limits(), progress=None) -> Report:
    """Grade every submission in submissions_dir and write the results to out_dir."""
    began = time.monotonic()
    submissions_dir, out_dir = Path(submissions_dir), Path(out_dir)
    if not submissions_dir.is_dir():
        raise LabError(f"{submissions_dir} is not a folder of submissions")
    if jobs < 1 or (exercise_timeout is not None and exercise_timeout <= 0) or submission_timeout <= 0:
        raise LabError("--jobs must be at least 1, and the time limits more than 0 seconds")
    if out_dir.exists() and not out_dir.is_dir():
        raise LabError(f"{out_dir} exists and is not a folder")
    if out_dir.resolve() == submissions_dir.resolve():
        raise LabError("the results need a folder of their own, not the submissions folder")
    catalogue = load_catalogue()
    if not catalogue:
        raise LabError("the course has no written notebook with exercises")
    submissions = find_submissions(submissions_dir, out_dir)
    if not submissions:
        raise LabError(f"no submissions in {submissions_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    preload = imports_of([*(src for p in catalogue.values() for _, src in p.setup),
                          *(src for p in catalogue.values() for src in p.stubs.values())])
    slots: queue.Queue[int] = queue.Queue()
    for slot in range(jobs):
        slots.put(slot)
    done, lock = [0], threading.Lock()

    with Sandbox(slots=jobs, limits=limits, preload=preload) as sandbox:
        if not sandbox.isolated:
            print(NOT_ISOLATED.format(why=sandbox.not_isolated), file=sys.stderr, flush=True)
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
    exercises = [{"exercise": e.id, "notebook": p.notebook_id, "title": e.title,
                  "points": suite_registry.get(e.id, hidden=True).points}
                 for p in catalogue.values() if p.notebook_id in seen for e in p.notebook.exercises]
    report = Report(results, exercises, out_dir, time.monotonic() - began, grader.timings)
    write_results(report)
    return report


# -- one exercise against an app deployed anywhere -----------------------------------------------


def check_remote(url: str, exercise_id: str) -> Results:
    """Run every check of an exercise (hidden ones too) against the app at `url`. Checks that need
    the lab's services are reported as not run; an app that cannot be reached is a LabError."""
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", url or ""):
        raise LabError(f"--url must be an http:// or https:// base URL, not {url!r}")
    exercise = course.exercise(exercise_id)
    try:
        with check_client(url.rstrip("/"), timeout=5) as client:
            client.get("/")
    except httpx.HTTPError as error:
        raise LabError(f"could not reach the app at {url} ({type(error).__name__}): is it running?") from None
    return runner.run(exercise, None, runner.RemoteHost(url), runner.Options(include_hidden=True))


def cli(args) -> int:
    """`labsupport grade`: see the module's docstring."""
    if args.url or args.exercise:
        if not (args.url and args.exercise) or args.submissions:
            raise LabError("use either SUBMISSIONS_DIR --out RESULTS_DIR, or --url BASE_URL --exercise ID")
        results = check_remote(args.url, args.exercise)
        print(repr(results))
        skipped = [c for c in results.checks if c.status == NOT_RUN]
        if skipped:
            print(f"({len(skipped)} check(s) not run: they look into the lab's own services, which only a "
                  "notebook or the grader can start; their points are left out of the total)")
        return 0 if results.passed else 1
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
