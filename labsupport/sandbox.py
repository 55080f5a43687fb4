"""Run a learner's exercise app in a process of its own, with limits, as an unprivileged user.

Importing the web stack takes about a second, so a grading run starts one *zygote* process that
imports it once (plus every module the course's notebooks import) and then forks a child per
exercise: starting a learner's app costs milliseconds, not a second.

The grader binds each app's listening socket itself and hands it to the child, so it always
knows which address it judges, whatever the learner's code does. A child, right after the fork:

- starts a session of its own (one process group to kill),
- sets resource limits: address space, processes, file size, CPU time, no core dumps,
- works in a private folder (cwd, HOME and TMPDIR) with only the LAB_* variables it is given,
- when the grader runs as root, becomes a uid of its own (one per parallel job, with no account
  and no groups): it can signal only its own processes and write only to its folder,

then runs the notebook's setup cells and the learner's exercise cell, and serves the app with
uvicorn on the socket. It reports on a pipe, one JSON line each: {"ready": true} once the app
serves, {"error": "..."} if it cannot, and {"app_error": "...", "app_error_brief": "..."} when
the app raises while answering. The grader reads those lines as claims about the learner's own exercise only: the
grade comes from the checks the grader runs over the wire.
"""
from __future__ import annotations

import ast
import json
import os
import pwd
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import isolation
from .errors import LabError

# Imported by the zygote before it forks, on top of what the notebooks' cells import.
PRELOAD = ("fastapi", "uvicorn", "httpx", "pydantic", "labsupport", "labsupport.program", "labsupport.services.redis", "fakeredis",
           "fakeredis._commands", "fakeredis.commands_mixins.server_mixin", "lupa",
           "uvicorn.protocols.http.h11_impl", "uvicorn.protocols.http.httptools_impl",
           "uvicorn.protocols.websockets.websockets_sansio_impl", "uvicorn.lifespan.on")
UID_BASE = 64000  # learners' code runs as a uid from here up, one per job slot (see _claim_uids)
ZYGOTE_START_TIMEOUT = 60.0


@dataclass(frozen=True)
class Limits:
    memory_mb: int = 1024      # address space of each process
    processes: int = 256       # processes and threads of one exercise (per uid when root)
    file_size_mb: int = 64     # largest file the code may write
    cpu_seconds: int = 600     # a backstop: the grader kills by wall time long before
    open_files: int = 1024     # files and sockets (each connection costs the grader's services too)


def imports_of(sources) -> list[str]:
    """Top-level module names that these cell sources import (to preload them in the zygote)."""
    names = set()
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
    return sorted(names)


# -- the grader's side ---------------------------------------------------------------------------


class App:
    """A learner's app, starting or serving in a sandboxed child process."""

    def __init__(self, pid: int, url: str, status_fd: int, workdir: Path, uid: int | None, on_kill):
        self.pid = pid
        self.url = url
        self.workdir = workdir
        self.uid = uid
        self._status = status_fd
        self._buffer = b""
        self._on_kill = on_kill
        self._app_errors: set[tuple[str, str]] = set()
        self.closed = False
        self.killed = False  # the grader stopped it (SIGTERM or SIGKILL)
        self.ended = False  # the status pipe closed: the process and all it started are gone
        self.ended_early = False  # ...before the grader stopped it: os._exit(), a crash, a limit

    def wait_ready(self, timeout: float, limit: str = "the time limit") -> str | None:
        """None once the app serves; otherwise why it does not (an error, an exit, `limit` ran out)."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self._messages(max(0.0, deadline - time.monotonic())):
                if message.get("ready") is True:
                    return None
                if isinstance(message.get("error"), str):
                    return message["error"]
            if self.ended:
                return ("the exercise's process ended before its app was ready "
                        "(os._exit(), a crash, or a limit)")
            if time.monotonic() >= deadline:
                return f"the app was not ready when {limit} ran out (an endless loop in the exercise cell?)"

    def app_errors(self, brief: bool = False) -> list[str]:
        """What the app reported raising so far (read without waiting), sorted, each once; `brief`:
        the exception's type and line only, not its message (which may quote a request's input)."""
        while not self.closed and not self.ended and self._messages(0.0):
            pass
        return sorted({short if brief else full for full, short in self._app_errors})

    def _messages(self, timeout: float) -> list[dict]:
        """The complete JSON lines that arrive within `timeout` (at least one read attempt)."""
        if self.ended:
            return []
        poller = select.poll()  # not select(): the grader may hold more than 1024 descriptors
        poller.register(self._status, select.POLLIN)
        if not poller.poll(timeout * 1000):
            return []
        chunk = os.read(self._status, 65536)
        if not chunk:
            self.ended = True
            self.ended_early = not self.killed
        self._buffer = (self._buffer + chunk)[-262144:]  # a flood of lines only costs its sender
        lines = self._buffer.split(b"\n")
        self._buffer = lines.pop()
        messages = []
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict):
                messages.append(message)
                full, short = message.get("app_error"), message.get("app_error_brief")
                if isinstance(full, str) and isinstance(short, str) and len(self._app_errors) < 100:
                    self._app_errors.add((full[:300], short[:300]))
        return messages

    def kill(self) -> None:
        """Kill the app's process group (safe from another thread, and more than once). What it
        started elsewhere dies with its slot (Sandbox.kill_slot) at the end of the exercise."""
        self.killed = True
        self._on_kill(self)

    def stop(self, grace: float = 5.0) -> None:
        """End the app as a deploy does: SIGTERM (uvicorn shuts down gracefully, the app's lifespan
        ends), then, after `grace` seconds, SIGKILL."""
        if self.closed:
            return
        self.killed = True
        try:
            os.killpg(self.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        deadline = time.monotonic() + grace
        while not self.ended and time.monotonic() < deadline:
            self._messages(max(0.0, deadline - time.monotonic()))
        self.close()

    def close(self, wait: float = 5.0) -> None:
        """Kill the app, wait (up to `wait` seconds) until its process is gone (its status pipe
        closes: its sockets are closed too), and close the pipe."""
        if self.closed:
            return
        self.kill()
        deadline = time.monotonic() + wait
        while not self.ended and time.monotonic() < deadline:
            self._messages(max(0.0, deadline - time.monotonic()))
        self.closed = True
        os.close(self._status)


class Sandbox:
    """Starts learners' apps in sandboxed processes. One per grading run; `slots` parallel jobs."""

    def __init__(self, slots: int = 1, limits: Limits = Limits(), preload: list[str] = (),
                 own_uids: bool | None = None, isolate: bool | None = None):
        """`own_uids`: run apps as uids of their own (the default when root, and only possible then).
        `isolate`: run apps in namespaces of their own (isolation.py); the default is to do so
        wherever this machine allows it. `not_isolated` then says why it does not."""
        self.limits = limits
        possible, why = isolation.available() if isolate is not False else (False, "isolation was turned off")
        if isolate and not possible:
            raise LabError(f"apps cannot be isolated here: {why}")
        self.isolated = possible
        self.not_isolated = "" if possible else why
        own_uids = os.geteuid() == 0 if own_uids is None else own_uids
        self._uid_locks: list[int] = []
        self.uids = self._claim_uids(slots) if own_uids else [None] * slots
        _remove_stale_roots()
        self._root = Path(tempfile.mkdtemp(prefix="labsupport-grade-"))
        self._root.chmod(0o711)  # children may enter their own folder, but not list the others
        (self._root / "owner.pid").write_text(str(os.getpid()))
        self._preload = [*PRELOAD, *preload]
        self._lock = threading.Lock()
        self._channel_lock = threading.Lock()
        self._count = 0
        self._live: set[App] = set()
        self._zygote: subprocess.Popen | None = None
        self._channel: socket.socket | None = None
        self._closed = False
        self._start_zygote()
        for uid in filter(None, self.uids):
            self._kill_uid(uid)  # leftovers of a grader that was itself killed

    # -- the zygote ----------------------------------------------------------------------------
    def _start_zygote(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        log = open(self._root / "zygote.log", "wb")
        env = {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8",
               "MALLOC_ARENA_MAX": "2"}  # few malloc arenas: threads do not eat the address space
        argv = [sys.executable, "-I", "-m", "labsupport.sandbox", str(theirs.fileno()), *self._preload]
        if self.isolated:
            argv = isolation.zygote_command(argv, self._root)
        self._zygote = subprocess.Popen(
            argv, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
            cwd=self._root, start_new_session=True,
        )
        theirs.close()
        log.close()
        ours.settimeout(ZYGOTE_START_TIMEOUT)
        try:
            hello = ours.recv(1024)
        except OSError:
            hello = b""
        if hello != b"ready":
            self._zygote.kill()
            detail = (self._root / "zygote.log").read_text(errors="replace").strip().splitlines()[-3:]
            raise LabError("the grader could not start its sandbox process: " + " / ".join(detail))
        ours.settimeout(10)
        self._channel = ours

    def _ask(self, request: dict, fds: list[int] = ()) -> dict:
        """Send the zygote one request (with file descriptors) and return its answer."""
        with self._channel_lock:
            if self._closed:
                raise LabError("the sandbox is closed (grading was stopped)")
            for attempt in (1, 2):
                try:
                    socket.send_fds(self._channel, [json.dumps(request).encode()], fds)
                    return json.loads(self._channel.recv(1024))
                except (OSError, ValueError):
                    if attempt == 2:
                        raise LabError("the grader's sandbox process stopped answering") from None
                    self._stop_zygote()  # it died (killed by a learner's code when not root?)
                    self._start_zygote()

    def _stop_zygote(self) -> None:
        if self._channel is not None:
            self._channel.close()
        if self._zygote is not None and self._zygote.poll() is None:
            self._zygote.kill()
            self._zygote.wait()

    # -- apps ------------------------------------------------------------------------------------
    def workdir(self, slot: int) -> Path:
        """A new private folder for an app of this slot (its cwd, HOME and TMPDIR)."""
        with self._lock:
            self._count += 1
            workdir = self._root / f"run-{self._count}"
        workdir.mkdir(mode=0o700)
        if self.uids[slot] is not None:
            os.chown(workdir, self.uids[slot], self.uids[slot])
        return workdir

    def start_app(self, slot: int, workdir: Path, program: list[tuple[str, str]], app_name: str,
                  env: dict[str, str], listener: socket.socket, relays: dict[int, str] | None = None,
                  services_dir: Path | None = None) -> App:
        """Fork a child that builds the app from `program` (cells as (id, source)) and serves it on
        `listener`. Isolated, the app's loopback port P leads to the Unix socket relays[P] (in
        `services_dir`, which it may see) and nowhere else."""
        what = {"program": program, "app_name": app_name, "relays": {str(p): path for p, path in (relays or {}).items()},
                "services_dir": str(services_dir) if services_dir else None}
        return self._fork(slot, workdir, what, env, listener)

    def start_service(self, slot: int, workdir: Path, kind: str, listener: socket.socket) -> App:
        """Fork a child that serves one of the exercise's services on `listener` ("redis": a
        fakeredis), with the app's limits and uid: what the app stores there counts against them."""
        return self._fork(slot, workdir, {"service": kind}, {}, listener)

    def _fork(self, slot: int, workdir: Path, what: dict, env: dict[str, str], listener: socket.socket) -> App:
        uid = self.uids[slot]
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        status_read, status_write = os.pipe()
        request = {
            **what, "workdir": str(workdir), "uid": uid, "isolate": self.isolated,
            "env": {**env, "HOME": str(workdir), "TMPDIR": "/tmp" if self.isolated else str(workdir),
                    "USER": "learner", "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"},
            "limits": vars(self.limits),
        }
        # the request travels in a memory file: a learner's cell may be larger than a socket message
        payload = os.memfd_create("lab-request")
        try:
            os.write(payload, json.dumps(request).encode())
            pid = int(self._ask({"fork": True}, [listener.fileno(), status_write, payload])["pid"])
        finally:
            os.close(status_write)
            os.close(payload)
        app = App(pid, url, status_read, workdir, uid, self._kill)
        with self._lock:
            self._live.add(app)
        return app

    def services_dir(self, workdir: Path) -> Path:
        """A folder beside `workdir` for the Unix sockets that lead to the exercise's services."""
        folder = workdir.with_name(workdir.name + "-services")
        folder.mkdir(mode=0o711)
        return folder

    def kill_slot(self, slot: int) -> None:
        """Kill every process a slot's exercise started (its apps, its services, what they started)."""
        if self.uids[slot] is not None:
            self._kill_uid(self.uids[slot])

    def remove_workdir(self, workdir: Path) -> None:
        shutil.rmtree(workdir, ignore_errors=True)

    def _kill(self, app: App) -> None:
        try:
            os.killpg(app.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        with self._lock:
            self._live.discard(app)

    def _kill_uid(self, uid: int) -> None:
        """Kill every process of `uid`: whatever a learner's code started, even in sessions of its
        own, runs as its slot's uid, and kill(-1) as that uid reaches all of it (and nothing else)."""
        self._ask({"kill_uid": uid})

    def close(self) -> None:
        """Kill every app still running (after an interruption, say) and the zygote."""
        with self._lock:
            live = list(self._live)
        for app in live:
            app.kill()
        for slot in range(len(self.uids)):
            self.kill_slot(slot)
        with self._channel_lock:
            self._closed = True
            self._stop_zygote()
        shutil.rmtree(self._root, ignore_errors=True)
        for fd in self._uid_locks:
            os.close(fd)  # releases the uid for other grading runs
        self._uid_locks.clear()

    def _claim_uids(self, count: int) -> list[int]:
        """`count` uids from UID_BASE up that belong to no account and to no other grading run on
        this machine (each run kills whatever runs as its uids, so it must have them to itself)."""
        import fcntl

        uids, uid = [], UID_BASE
        while len(uids) < count:
            try:
                pwd.getpwuid(uid)
            except KeyError:
                path = Path(tempfile.gettempdir(), f"labsupport-grader-uid-{uid}.lock")
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)  # another run has it
                else:
                    self._uid_locks.append(fd)
                    uids.append(uid)
            uid += 1
        return uids

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _remove_stale_roots() -> None:
    """The folders of grading runs whose grader was killed (kill -9 leaves no chance to clean up)."""
    for root in Path(tempfile.gettempdir()).glob("labsupport-grade-*"):
        try:
            owner = int((root / "owner.pid").read_text())
            os.kill(owner, 0)
        except ProcessLookupError:
            shutil.rmtree(root, ignore_errors=True)
        except (OSError, ValueError):
            pass  # another user's, or being made right now


# -- the zygote's side ---------------------------------------------------------------------------


def _reachable(path: str) -> bool:
    """Whether a user with no groups can read the folder `path` (the sandbox's uids are such users)."""
    path = os.path.realpath(path)
    if not os.stat(path).st_mode & stat.S_IROTH:
        return False
    while path != "/":
        if not os.stat(path).st_mode & stat.S_IXOTH:
            return False
        path = os.path.dirname(path)
    return True


def _open_hidden_import_dirs() -> dict[str, int]:
    """The import folders that the sandbox's uids cannot reach, opened now, as root.

    Python itself may live where other users cannot go (pyenv under /root, a venv in a home of
    mode 750); the child then reaches those folders through these descriptors (/proc/self/fd/N),
    and nothing else of what lies around them."""
    if os.geteuid() != 0:
        return {}
    return {path: os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            for path in dict.fromkeys(sys.path) if os.path.isdir(path) and not _reachable(path)}


def _reach_hidden_import_dirs(hidden: dict[str, int]) -> None:
    """Import from the descriptors of _open_hidden_import_dirs() instead of their paths."""
    import importlib

    def via_fd(path: str) -> str:
        for folder, fd in hidden.items():
            if path == folder or path.startswith(folder + "/"):
                return f"/proc/self/fd/{fd}" + path[len(folder):]
        return path

    sys.path[:] = [via_fd(p) for p in sys.path]
    for module in list(sys.modules.values()):
        paths = getattr(module, "__path__", None)
        paths = getattr(paths, "_path", paths)  # a namespace package keeps its list inside
        if isinstance(paths, list):
            paths[:] = [via_fd(p) for p in paths]
    sys.path_importer_cache.clear()
    importlib.invalidate_caches()


def _zygote(channel_fd: int, preload: list[str]) -> None:
    import ctypes  # noqa: F401  (for _die_with_parent, before the child loses the stdlib's folder)
    import gc
    import importlib

    channel = socket.socket(fileno=channel_fd)
    for name in preload:
        try:
            importlib.import_module(name)
        except Exception:  # a module the notebooks import but this machine lacks: the cell will say
            pass
    hidden = _open_hidden_import_dirs()
    gc.freeze()  # children's garbage collections then leave the zygote's pages shared
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children...
    import ctypes

    PR_SET_CHILD_SUBREAPER = 36  # ...and the orphans of their killed families, which come to us
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    channel.send(b"ready")
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(channel, 16 * 1024 * 1024, 3)
        except OSError:
            return
        if not message:
            return  # the grader is gone
        request = json.loads(message)
        if "kill_uid" in request:
            _kill_uid(request["kill_uid"])
            channel.send(b"{}")
            continue
        request = _read_payload(fds.pop())
        pid = os.fork()
        if pid == 0:
            code = 70
            try:
                channel.close()
                code = _child(request, fds, hidden)
            except BaseException as error:  # the sandbox's own failure, before any learner code ran
                _report_on(fds[1], {"error": f"the grader's sandbox failed: {type(error).__name__}: {error}"})
            finally:
                os._exit(code)
        for fd in fds:
            os.close(fd)
        channel.send(json.dumps({"pid": pid}).encode())


def _report_on(fd: int, message: dict) -> None:
    try:
        os.write(fd, (json.dumps(message) + "\n").encode())
    except OSError:
        pass


def _read_payload(fd: int) -> dict:
    with os.fdopen(fd, "rb") as payload:
        payload.seek(0)
        return json.loads(payload.read())


def _kill_uid(uid: int, patience: float = 10.0) -> None:
    """Kill every process of `uid`, and return once none is left (or after `patience` seconds):
    the uid's next exercise needs its whole process limit, and a fork bomb's processes forked
    during one sweep, or dead but not yet reaped, still count against it."""
    give_up = time.monotonic() + patience
    while True:
        _signal_all_as(uid)
        if _tasks_of(uid) == 0 or time.monotonic() > give_up:
            return
        time.sleep(0.01)


def _signal_all_as(uid: int) -> None:
    """SIGKILL every process of `uid`, from a child that becomes `uid`; return once it is done."""
    done_read, done_write = os.pipe()
    if os.fork() == 0:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)  # every process this uid may signal, except this one
        finally:
            os._exit(0)  # closes done_write: the zygote's read below returns
    os.close(done_write)
    os.read(done_read, 1)
    os.close(done_read)


def _child(request: dict, fds: list[int], hidden: dict[str, int]) -> int:
    """The sandboxed process: fds are the listening socket and the status pipe."""
    import random
    import resource

    os.setsid()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    keep = sorted({*fds, *hidden.values()})  # none of the zygote's other fds
    for low, high in zip([2, *keep], [*keep, resource.getrlimit(resource.RLIMIT_NOFILE)[0]]):
        os.closerange(low + 1, high)
    limits = request["limits"]
    mb = 1024 * 1024
    # RLIMIT_NPROC counts every task of the real uid: the child's own uid when root, otherwise the
    # grader's user, whose tasks so far must be added.
    processes = limits["processes"] + (0 if request["uid"] is not None else _tasks_of(os.getuid()))
    listen_fd, status_fd = fds
    if request.get("isolate"):
        _enter_isolation(request, fds)  # returns in the app's own process namespace
    for which, value in ((resource.RLIMIT_AS, limits["memory_mb"] * mb),
                         (resource.RLIMIT_NPROC, processes),
                         (resource.RLIMIT_FSIZE, limits["file_size_mb"] * mb),
                         (resource.RLIMIT_CPU, limits["cpu_seconds"]),
                         (resource.RLIMIT_NOFILE, limits["open_files"]),
                         (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(which, (value, value))
    os.chdir(request["workdir"])
    os.umask(0o077)
    if request["uid"] is not None:
        os.setgroups([])
        os.setgid(request["uid"])
        os.setuid(request["uid"])
        if not request.get("isolate"):
            _reach_hidden_import_dirs(hidden)
    _die_with_parent()
    if request.get("isolate"):
        isolation.no_new_privileges()
        if request.get("relays"):
            isolation.relay_ports_to_sockets({int(port): path for port, path in request["relays"].items()})
    os.environ.clear()
    os.environ.update(request["env"])
    tempfile.tempdir = None  # computed afresh from TMPDIR
    random.seed()  # not the zygote's sequence
    sys.argv = ["lab-exercise"]
    status = os.fdopen(status_fd, "w", buffering=1)
    if request.get("service") == "redis":
        from .services.redis import FakeRedisServer

        FakeRedisServer(socket.socket(fileno=listen_fd))
        status.write(json.dumps({"ready": True}) + "\n")
        threading.Event().wait()  # serves until the exercise's end kills it
    return _serve_exercise(request, socket.socket(fileno=listen_fd), status)


def _enter_isolation(request: dict, fds: list[int]) -> None:
    """Namespaces of the app's own (isolation.py), then a fork: this process stays behind to wait
    for the app (and to end with it), and the app goes on as the first process of its own process
    namespace, whose every process dies with it."""
    isolation.enter_namespaces()
    isolation.private_folders(request["workdir"], request.get("services_dir"))
    isolation.bring_loopback_up()
    app = os.fork()
    if app == 0:
        isolation.mount_proc()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        return
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a stop's SIGTERM is for the app, which gets it too
    _die_with_parent()
    for fd in fds:
        os.close(fd)  # only the app holds its socket and status pipe: its end is theirs
    _, status = os.waitpid(app, 0)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def _die_with_parent() -> None:
    """Ask Linux to kill this process when the zygote ends (it ends when the grader does)."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _tasks_of(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
            except OSError:
                pass
    return count


def _serve_exercise(request: dict, listener: socket.socket, status) -> int:
    import logging

    import uvicorn

    from . import program

    def say(**message) -> None:
        try:
            status.write(json.dumps(message) + "\n")
        except (OSError, ValueError):
            pass

    try:
        app = program.load_app([tuple(cell) for cell in request["program"]], request["app_name"])
    except program.ProgramError as why:
        say(error=str(why))
        return 0

    class Reporter(logging.Handler):
        """Every record logged with an exception, from any logger: what the app raised (the
        in-process host keeps the same records, so both report the same)."""

        exceptions: list[BaseException] = []
        messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.ERROR and len(Reporter.messages) < 100:
                Reporter.messages.append(record.getMessage())
            if program.raised_by_the_app(record):
                error = record.exc_info[1]
                if len(Reporter.exceptions) < 100:
                    Reporter.exceptions.append(error)
                say(app_error=program.describe(error), app_error_brief=program.describe_briefly(error))

    root = logging.getLogger()
    root.handlers = [Reporter()]
    root.setLevel(logging.WARNING)  # as in a kernel: the same records reach the handler here and there
    logging.getLogger("uvicorn").setLevel(logging.INFO)

    class Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets=sockets)
            if not self.should_exit:
                say(ready=True)

    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="auto",
                            ws="websockets-sansio", timeout_graceful_shutdown=0.5)
    server = Server(config)
    try:
        server.run(sockets=[listener])
    except BaseException:  # SystemExit from a failed startup, or the app's own exception
        pass
    if not server.started:
        say(error=program.startup_failure(Reporter.exceptions, Reporter.messages))
    return 0


if __name__ == "__main__":
    _zygote(int(sys.argv[1]), sys.argv[2:])
