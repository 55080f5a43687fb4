"""The one way an exercise is run: lab.check, the grader, the tests and `grade --url` all come here.

    results = run(exercise, source, InProcessHost())      # lab.check, tests
    results = run(exercise, source, SandboxHost(...))     # the grader (see grading.py)
    results = run(exercise, None, RemoteHost(url))        # an app deployed anywhere

A run: start the exercise's services (course.toml), build the program (the shipped setup cells,
then `source` as the exercise cell), start the app on a listening socket the run keeps (so that a
restarted app answers at the same address), prepare, then each check under its own deadline and
within the exercise's budget, with the services reset between checks; then stop the app, close
the services and return one Results. A check that runs out of time fails, and the app is
restarted for the next one.
"""
from __future__ import annotations

import contextvars
import socket
import time
from dataclasses import dataclass

from . import course, program, suites
from .checks import FAILED, NOT_RUN, CheckResult, Context, NotRunHere, Results, run_check
from .errors import LabError
from .serving import Server, listening_socket
from .services import ServiceSet, run_settings

START_TIMEOUT = 10.0  # seconds an app may take to start (imports, lifespan)
LATE_END = 0.1  # seconds to wait, after a failed check, for news that the app's process ended


class Instance:
    """One running copy of the exercise's app."""

    url: str

    def alive(self, wait: float = 0.0) -> bool: return True  # wait: for news of an end that may lag
    def stop(self) -> None: ...
    def kill(self) -> None: self.stop()
    def app_errors(self, brief: bool) -> list[str]: ...
    def notes(self) -> list[str]: return []


# -- where the app runs ---------------------------------------------------------------------------


class InProcessHost:
    """The app in a thread of this process (lab.check in a notebook, the tests): quick to start,
    and what the app raises is kept on its server. Its settings are the run's (a context variable),
    so the app talks to the run's services, not to the kernel's."""

    def services(self, exercise: course.Exercise) -> ServiceSet:
        return ServiceSet(exercise.run_services)

    def start(self, prog: program.Program, app_name: str, services: ServiceSet, sock: socket.socket,
              timeout: float = START_TIMEOUT, limit: str = "") -> Instance:
        with run_settings(services):
            app = program.load_app(prog, app_name)
            context = contextvars.copy_context()
        server = Server(app, name=f"check-{app_name}", graceful_timeout=0.5, sock=sock, context=context)
        try:
            server._start()
        except LabError:
            failure = program.startup_failure(server.exceptions, server.error_messages)
            server.stop()
            raise program.ProgramError(failure) from None
        return _ThreadInstance(server)


class _ThreadInstance(Instance):
    def __init__(self, server: Server):
        self.server = server
        self.url = server.url

    def alive(self, wait: float = 0.0) -> bool:
        return self.server.running

    def stop(self) -> None:
        self.server.stop(timeout=2.0)

    def kill(self) -> None:
        self.server.stop(timeout=0.2)  # a thread cannot be killed: what is stuck is reported in notes()

    def app_errors(self, brief: bool) -> list[str]:
        describe = program.describe_briefly if brief else program.describe
        return sorted({describe(error) for error in self.server.exceptions})

    def notes(self) -> list[str]:
        thread = self.server._thread
        if thread is not None and thread.is_alive():
            return ["the app's server did not stop (a request handler that never returns?)"]
        return []


class RemoteHost:
    """An app deployed anywhere: nothing to start, and no lab services to look into."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def services(self, exercise: course.Exercise) -> None:
        return None

    def start(self, prog, app_name, services, sock, timeout=START_TIMEOUT, limit="") -> Instance:
        instance = Instance()
        instance.url = self.url
        instance.stop = lambda: None
        instance.app_errors = lambda brief: []
        return instance


# -- what a check may do to the app ---------------------------------------------------------------


class AppControl:
    """The app under check, for a check (`ctx.app`): its address, a restart, more instances.

    The app's port stays the same across restarts; only the running instance listens on it, so a
    dead app refuses connections at once instead of leaving checks waiting. Meanwhile a socket
    bound to the port (not listening) keeps it the run's: no outgoing connection can take it as its
    own port while the app restarts."""

    def __init__(self, host, prog: program.Program, app_name: str, services, deadline: float, budget: str):
        self._host, self._program, self._app_name, self._services = host, prog, app_name, services
        self._deadline, self._budget = deadline, budget
        self._remote = isinstance(host, RemoteHost)
        self._placeholder = None if self._remote else listening_socket(reuse_port=True)
        self._port = None if self._remote else self._placeholder.getsockname()[1]
        self.url = host.url if self._remote else f"http://127.0.0.1:{self._port}"
        self.instance: Instance | None = None
        self.restarts = 0
        self._extra: list[Instance] = []
        self._retired: list[Instance] = []

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[4:]

    def _start_limit(self) -> tuple[float, str]:
        left = self._deadline - time.monotonic()
        if left < START_TIMEOUT:
            return max(left, 0.1), self._budget
        return START_TIMEOUT, f"the start-up limit ({START_TIMEOUT:g} s)"

    def start(self) -> None:
        sock = None if self._remote else _listen(self._port)
        try:
            self.instance = self._host.start(self._program, self._app_name, self._services, sock, *self._start_limit())
        finally:
            if sock is not None:
                sock.close()  # the instance holds its own copy

    def restart(self) -> None:
        """Stop the app (as a deploy or a crash would) and start it again from the same program,
        at the same address."""
        from .checks import NotRunHere

        if self._remote:
            raise NotRunHere("restarts the app, which only a lab run can do")
        self.stop_instance()
        self.restarts += 1
        self.start()

    def alive(self, wait: float = 0.0) -> bool:
        return self.instance is not None and self.instance.alive(wait)

    def stop_instance(self, kill: bool = False) -> None:
        """Stop the running instance (gracefully, as a deploy does; at once with `kill`)."""
        if self.instance is not None:
            self.instance.kill() if kill else self.instance.stop()
            self._retired.append(self.instance)
            self.instance = None

    def more_instances(self, count: int) -> list[str]:
        """Start `count` more copies of the app (each its own process in the grader, its own
        namespace here), sharing the run's services; returns their base URLs."""
        from .checks import NotRunHere

        if self._remote:
            raise NotRunHere("starts several instances of the app, which only a lab run can do")
        urls = []
        for _ in range(count):
            sock = _listen()
            try:
                instance = self._host.start(self._program, self._app_name, self._services, sock, *self._start_limit())
            finally:
                sock.close()
            self._extra.append(instance)
            urls.append(instance.url)
        return urls

    def all_instances(self) -> list[Instance]:
        return [*self._retired, *self._extra, *([self.instance] if self.instance else [])]

    def close(self) -> None:
        self.stop_instance()
        for instance in self._extra:
            instance.stop()
        self._retired += self._extra
        self._extra = []
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None


def _listen(port: int = 0) -> socket.socket:
    """A listening loopback socket, on `port` (again, after a restart) or a free one."""
    for attempt in range(100):
        try:
            sock = listening_socket(port, reuse_port=True)
        except OSError:  # the old instance's process is still ending
            time.sleep(0.02)
            continue
        sock.listen(128)
        return sock
    raise LabError(f"port {port} stayed busy: the app could not be started again on it")


# -- a run ----------------------------------------------------------------------------------------


@dataclass
class Options:
    include_hidden: bool = False
    budget: float | None = None  # seconds for the whole run; default the exercise's (course.toml)
    budget_name: str | None = None  # what set the budget, for the messages ("the submission's time limit (300 s)")


def run(exercise: course.Exercise | str, source: str | None, host, options: Options = Options(),
        setup: program.Program | None = None) -> Results:
    """Run `exercise`'s checks against the app its program makes (see the module's docstring)."""
    exercise = course.exercise(exercise) if isinstance(exercise, str) else exercise
    suite = suites.get(exercise.id, hidden=options.include_hidden)
    checks = [c for c in suite.checks if options.include_hidden or not c.hidden]
    budget = options.budget or exercise.budget
    started = time.monotonic()
    deadline = started + budget
    prog = program.build(exercise, source or "", setup) if not isinstance(host, RemoteHost) else []
    services = host.services(exercise)
    budget_text = options.budget_name or f"the exercise's time budget ({budget:g} s)"
    control = AppControl(host, prog, exercise.app, services, deadline, budget_text)
    notes: list[str] = []
    rows: list[CheckResult] = []
    try:
        cache: dict = {}
        prepare = Context(None, services, cache)
        for hook in suite.prepare_hooks:
            try:
                hook(prepare)
            except NotRunHere:  # a deployed app: its checks that need the services say so one by one
                pass
        try:
            control.start()
        except program.ProgramError as why:
            results = _all(suite, checks, FAILED, str(why))
            results.started = False
            return results
        for check in checks:
            left = deadline - time.monotonic()
            if left <= 0:
                rows.append(_row(check, FAILED, f"not run: {budget_text} ran out"))
                continue
            timeout = min(check.timeout, left)
            if services is not None:
                services.reset()
            ctx = Context(control, services, cache)
            try:
                # an earlier check timed out, or the app's process died (after a failed check, a moment
                # for the news of its end to arrive: a busy machine delays it)
                if not control.alive(wait=LATE_END if rows and rows[-1].status == FAILED else 0.0):
                    if control.instance is not None:
                        notes.append("the app stopped answering or ended during the checks; it was started "
                                     "again for the next check")
                    control.stop_instance()
                    control.start()
                for hook in suite.before_each_hooks:
                    hook(ctx)
                status, message, timed_out = run_check(check, ctx, timeout)
            except NotRunHere as why:
                status, message, timed_out = NOT_RUN, f"not run against a deployed app: it {why}", False
            except program.ProgramError as why:
                status, message, timed_out = FAILED, f"the app could not be restarted: {why}", False
            finally:
                ctx.close()
            if timed_out and timeout < check.timeout:
                message = f"not finished when {budget_text} ran out"
            rows.append(_row(check, status, message))
            if timed_out:  # whatever held the check, a fresh app for the next one
                control.stop_instance(kill=True)
        control.close()
        brief = any(c.hidden for c in checks)  # a message might quote a hidden check's input
        errors = sorted({e for i in control.all_instances() for e in i.app_errors(brief)})[:5]
        notes += [n for i in control.all_instances() for n in i.notes()]
        failed = any(row.status == FAILED for row in rows)  # a passing app's errors were provoked by the checks
        return Results(exercise.id, exercise.title, rows, sorted(set(notes)), errors if failed else [])
    finally:
        control.close()
        if services is not None:
            services.close()


def _row(check, status: str, message: str) -> CheckResult:
    passed = status == "passed"
    return CheckResult(check.name, check.description, check.points, check.points if passed else 0, status,
                       message, "" if passed or status == NOT_RUN else check.hint, check.hidden)


def _all(suite, checks, status: str, message: str) -> Results:
    return Results(suite.exercise_id, suite.title, [_row(c, status, message) for c in checks])


def all_failed(exercise: course.Exercise, message: str, include_hidden: bool = False) -> Results:
    """Every check failed for one reason (the cell is missing, not attempted, out of time)."""
    suite = suites.get(exercise.id, hidden=include_hidden)
    checks = [c for c in suite.checks if include_hidden or not c.hidden]
    return _all(suite, checks, FAILED, message)
