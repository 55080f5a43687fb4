"""Check suites: each exercise's checks, judged over the wire, with points, messages and hints.

A suite module (labsupport/suites/nbNN_slug.py) declares one Suite per exercise of course.toml,
which gives the exercise's app name, title, services and time budget:

    welcome = Suite("01-welcome-email")

    @welcome.check(points=1, hint="Return the response first; send the email from a background task.")
    def answers_before_the_email_is_sent(ctx):
        "POST /users answers while the mail server is still busy"
        with ctx.mail.held():
            response = ctx.client.post("/users", json={...}, timeout=3)
        expect(response.status_code == 201, f"POST /users answered {response.status_code}, expected 201")

A check passes when it returns; it fails with its message when expect() fails, with a plain
description when the app misbehaves in any other way (an error status, no answer, bad JSON), and
at its deadline (`timeout`, default DEFAULT_TIMEOUT seconds) when it has no verdict by then.
Checks may be `async def`. Between checks the run's services are reset (inbox emptied, faults
cleared). What the suite may use is in Context; how a suite runs is in runner.py.

    @welcome.prepare            def seed(ctx): ...     # once, before the app starts
    @welcome.before_each        def fresh(ctx): ...    # before every check
    @welcome.experiment         def drain(ctx): ...    # run once, its result (or failure) shared
"""
from __future__ import annotations

import contextlib
import html
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import httpx

from . import course
from .errors import LabError

RESULTS_MIME = "application/vnd.labsupport.results+json"
DEFAULT_TIMEOUT = 10.0
MAX_ANSWER_BYTES = 16 * 1024 * 1024


class CheckFailed(AssertionError):
    """A check's verdict, with the message the learner sees."""


class NotRunHere(Exception):
    """A check needs what this run cannot give (the lab's services, when checking a deployed app)."""


def expect(condition: object, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


# -- the client checks talk through ---------------------------------------------------------------


class _CappedStream(httpx.SyncByteStream):
    """A response body that fails the check once it passes MAX_ANSWER_BYTES: httpx keeps whole
    bodies in memory, and an app that answers without end must not exhaust the checker's."""

    def __init__(self, stream: httpx.SyncByteStream):
        self._stream = stream

    def __iter__(self):
        size = 0
        for chunk in self._stream:
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise CheckFailed(f"the app's answer was larger than {MAX_ANSWER_BYTES // 2**20} MB")
            yield chunk

    def close(self) -> None:
        self._stream.close()


class _CappedTransport(httpx.HTTPTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        response.stream = _CappedStream(response.stream)
        return response


def check_client(base_url: str, timeout: float = 10.0) -> httpx.Client:
    """A client for checks: a new connection per request, so that one broken answer cannot spoil
    the next check's request; answers larger than MAX_ANSWER_BYTES fail the check."""
    transport = _CappedTransport(limits=httpx.Limits(max_keepalive_connections=0))
    return httpx.Client(base_url=base_url, timeout=timeout, transport=transport)


# -- what a check may use -------------------------------------------------------------------------


class Context:
    """What a check sees: the app (url, client, restart), the run's services, its deadline.

    Services (ctx.mail, ctx.redis, ctx.database, ctx.faults, ctx.openai, ctx.s3, ctx.webhooks) are
    those the exercise names in course.toml; against a deployed app there are none, and a check
    that touches one is reported as not run there."""

    def __init__(self, app, services, cache: dict | None = None):
        self.app = app                 # runner.AppControl (url, ws_url, restart(), more_instances())
        self.services = services       # services.ServiceSet, or None for a deployed app
        self._cache = {} if cache is None else cache
        self._clients: list[httpx.Client] = []
        self.deadline = time.monotonic() + DEFAULT_TIMEOUT
        self.client = self.http_client() if app is not None else None

    @property
    def url(self) -> str:
        return self.app.url

    @property
    def ws_url(self) -> str:
        return self.app.ws_url

    def remaining(self) -> float:
        """Seconds left before this check's deadline."""
        return max(0.0, self.deadline - time.monotonic())

    def _service(self, name: str, what: str):
        if self.services is None:
            raise NotRunHere(f"needs {what}, which only a lab run has")
        if name not in self.services.names:
            raise LabError(f"the suite uses {name!r}, which course.toml does not list for this exercise")
        return getattr(self.services, name)

    mail = property(lambda self: self._service("mail", "the lab's mail server"))
    redis = property(lambda self: self._service("redis", "the lab's Redis"))
    database = property(lambda self: self._service("database", "the lab's database"))
    faults = property(lambda self: self._service("faults", "the lab's fault points"))
    openai = property(lambda self: self._service("openai", "the lab's OpenAI server"))
    s3 = property(lambda self: self._service("s3", "the lab's S3"))
    webhooks = property(lambda self: self._service("webhooks", "the lab's webhook receiver"))

    # -- clients ----------------------------------------------------------------------------
    def http_client(self, base_url: str | None = None, timeout: float = 10.0) -> httpx.Client:
        """A new capped client (on another instance's URL, say), closed after the check."""
        client = check_client(base_url or self.url, timeout)
        self._clients.append(client)
        return client

    def async_client(self, timeout: float = 10.0, **kwargs) -> httpx.AsyncClient:
        """An httpx.AsyncClient on the app, for `async def` checks (use it with `async with`)."""
        return httpx.AsyncClient(base_url=self.url, timeout=timeout, **kwargs)

    def websocket(self, path: str, **kwargs):
        """A synchronous WebSocket connection to the app (websockets.sync.client); use `with`."""
        import websockets.sync.client

        kwargs.setdefault("open_timeout", min(5.0, max(0.1, self.remaining())))
        kwargs.setdefault("close_timeout", 1.0)
        kwargs.setdefault("max_size", 1024 * 1024)
        return websockets.sync.client.connect(self.ws_url + path, **kwargs)

    @contextlib.contextmanager
    def sse(self, path: str, method: str = "GET", timeout: float = 5.0, **kwargs) -> Iterator:
        """Server-sent events from the app, as an iterator of httpx_sse.ServerSentEvent."""
        import httpx_sse

        with check_client(self.url, timeout) as client:
            with httpx_sse.connect_sse(client, method, path, **kwargs) as source:
                yield source

    def wait_until(self, condition: Callable[[], object], what: str, timeout: float | None = None) -> None:
        """Poll until `condition()` holds; otherwise fail with "… did not happen within N s"."""
        limit = self.remaining() if timeout is None else min(timeout, self.remaining())
        deadline = time.monotonic() + limit
        while not condition():
            expect(time.monotonic() < deadline, f"{what} did not happen within {limit:.1f} s")
            time.sleep(0.01)

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()


# -- suites ---------------------------------------------------------------------------------------


@dataclass
class Check:
    """One check. `hint` is what a failure shows; `hints` is the whole ladder, `hint` first: a
    suite may give `hint=[...]`, and lab.hint(exercise id) then climbs it one rung per call."""
    name: str
    description: str
    points: int
    hint: str
    func: Callable[[Context], object]
    hidden: bool = False
    timeout: float = DEFAULT_TIMEOUT
    hints: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        ladder = tuple(self.hint) if isinstance(self.hint, (list, tuple)) else ((self.hint,) if self.hint else ())
        ladder = ladder or tuple(self.hints)
        if not all(isinstance(step, str) and step for step in ladder):
            raise LabError(f"check {self.name}: each hint must be a non-empty string")
        self.hints = ladder
        self.hint = ladder[0] if ladder else ""


class _Pending:
    """An experiment another check started, still running or abandoned at its deadline."""


class Experiment:
    """A measurement several checks share: it runs once per run, and each check that asks for it
    gets its result, or fails with the failure it had."""

    def __init__(self, func: Callable[[Context], object]):
        self.func = func
        self.__doc__ = func.__doc__
        self.__name__ = func.__name__

    def __call__(self, ctx: Context):
        key = ("experiment", self.func)
        cached = ctx._cache.get(key)
        if cached is None:
            ctx._cache[key] = _Pending()
            try:
                ctx._cache[key] = ("value", self.func(ctx))
            except BaseException as error:  # shared by every check that uses it, passed or not
                ctx._cache[key] = ("error", error)
            cached = ctx._cache[key]
        if isinstance(cached, _Pending):
            raise CheckFailed(f"the shared experiment ({self.__name__}) did not finish within an earlier "
                              "check's deadline")
        kind, value = cached
        if kind == "error":
            raise value
        return value


_registry: dict[str, "Suite"] = {}


class Suite:
    def __init__(self, exercise_id: str):
        self.exercise_id = exercise_id
        self.checks: list[Check] = []
        self.prepare_hooks: list[Callable[[Context], None]] = []
        self.before_each_hooks: list[Callable[[Context], None]] = []
        _registry[exercise_id] = self

    @property
    def exercise(self) -> course.Exercise:
        return course.exercise(self.exercise_id)

    def __repr__(self) -> str:
        return f"<Suite {self.exercise_id}: {len(self.checks)} checks, {self.points} points>"

    @property
    def app_name(self) -> str:
        return self.exercise.app

    @property
    def title(self) -> str:
        return self.exercise.title

    @property
    def points(self) -> int:
        return sum(c.points for c in self.checks)

    @property
    def visible_points(self) -> int:
        return sum(c.points for c in self.checks if not c.hidden)

    def check(self, points: int = 1, hint: str | list[str] = "", hidden: bool = False,
              timeout: float = DEFAULT_TIMEOUT, description: str | None = None):
        """Register a check; its description (one line) is `description`, else its docstring's first line.
        `hint`: one hint, or a list of them from gentle to explicit (a ladder: the first is shown on
        failure, each `lab.hint(exercise id)` shows the next)."""
        def register(func: Callable[[Context], object]) -> Callable[[Context], object]:
            if any(c.name == func.__name__ for c in self.checks):
                raise LabError(f"{self.exercise_id} has two checks named {func.__name__}")
            text = description or func.__doc__ or func.__name__.replace("_", " ")
            description_line = text.strip().splitlines()[0]
            self.checks.append(Check(func.__name__, description_line, points, hint, func, hidden, timeout))
            return func

        return register

    def prepare(self, func: Callable[[Context], None]) -> Callable[[Context], None]:
        """Run `func(ctx)` once, with the services up, before the app starts."""
        self.prepare_hooks.append(func)
        return func

    def before_each(self, func: Callable[[Context], None]) -> Callable[[Context], None]:
        """Run `func(ctx)` before each check (after the services were reset)."""
        self.before_each_hooks.append(func)
        return func

    @staticmethod
    def experiment(func: Callable[[Context], object]) -> Experiment:
        return Experiment(func)


# -- results --------------------------------------------------------------------------------------

PASSED, FAILED, NOT_RUN = "passed", "failed", "not run"


@dataclass
class CheckResult:
    name: str
    description: str
    points: int
    earned: int
    status: str        # passed, failed, or not run (a check that needs the lab's services, remotely)
    message: str
    hint: str
    hidden: bool = False

    @property
    def passed(self) -> bool:
        return self.status == PASSED


@dataclass
class Results:
    exercise_id: str
    title: str
    checks: list[CheckResult]
    notes: list[str] = field(default_factory=list)       # about the run: the program, the app's process
    app_errors: list[str] = field(default_factory=list)  # what the app raised while checked
    started: bool = True                                 # False: the program gave no app, no check ran

    def __post_init__(self) -> None:
        # Failed visible checks whose suite gives more than one hint: the results say how to get more.
        suite = _registry.get(self.exercise_id)
        ladders = {c.name: len(c.hints) for c in suite.checks} if suite is not None else {}
        self.more_hints = any(c.status == FAILED and not c.hidden and ladders.get(c.name, 0) > 1
                              for c in self.checks)

    @property
    def earned(self) -> int:
        return sum(c.earned for c in self.checks)

    @property
    def possible(self) -> int:
        return sum(c.points for c in self.checks if c.status != NOT_RUN)

    @property
    def passed(self) -> bool:
        return all(c.status != FAILED for c in self.checks)

    def verdicts(self) -> list[tuple[str, str, str]]:
        """(check, status, message) of every check: what two runs must agree on. A hidden check's
        message is never shown to anyone (feedback gives its description only), so only its status
        counts: a failure under concurrency may be found by one stream or another."""
        return [(c.name, c.status, "" if c.hidden else c.message) for c in self.checks]

    def to_dict(self) -> dict:
        return {"exercise": self.exercise_id, "title": self.title, "earned": self.earned,
                "possible": self.possible, "checks": [asdict(c) for c in self.checks],
                "notes": self.notes, "app_errors": self.app_errors, "started": self.started}

    @classmethod
    def from_dict(cls, data: dict) -> "Results":
        return cls(data["exercise"], data["title"], [CheckResult(**c) for c in data["checks"]],
                   data.get("notes", []), data.get("app_errors", []), data.get("started", True))

    def __repr__(self) -> str:
        lines = [f"{self.exercise_id}: {self.title} - {self.earned}/{self.possible} points"]
        lines += [f"  note: {note}" for note in self.notes]
        for c in self.checks:
            mark = {PASSED: "PASS", FAILED: "FAIL", NOT_RUN: "SKIP"}[c.status]
            lines.append(f"  [{mark}] {c.description}{' (hidden check)' if c.hidden else ''} ({c.earned}/{c.points})")
            if c.status != PASSED and not c.hidden:  # a hidden check shows its description only
                lines.append(f"         {c.message}")
                if c.hint:
                    lines.append(f"         hint: {c.hint}")
        if self.more_hints:
            lines.append(f"  more hints: {self._more_hints_call()} shows the next hint of each failed check")
        if self.app_errors:
            lines.append("  your app raised: " + "; ".join(self.app_errors))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = []
        for c in self.checks:
            color, label = {PASSED: ("#1a7f37", "&#10004; pass"), FAILED: ("#cf222e", "&#10008; fail"),
                            NOT_RUN: ("#6e7781", "&#8212; not run")}[c.status]
            detail = "" if c.passed or c.hidden else html.escape(c.message) + (
                f"<br><i>hint: {html.escape(c.hint)}</i>" if c.hint else "")
            rows.append(
                f"<tr><td style='color:{color};font-weight:bold'>{label}</td>"
                f"<td style='text-align:left'>{html.escape(c.description)}</td>"
                f"<td>{c.earned}/{c.points}</td><td style='text-align:left'>{detail}</td></tr>"
            )
        notes = "".join(f"<p>{html.escape(note)}</p>" for note in self.notes)
        more = (f"<p><i>more hints: <code>{html.escape(self._more_hints_call())}</code> shows the next hint of "
                "each failed check</i></p>") if self.more_hints else ""
        return (
            f"<div><b>{html.escape(self.exercise_id)}: {html.escape(self.title)}</b> - "
            f"{self.earned}/{self.possible} points{notes}"
            "<table><thead><tr><th></th><th>check</th><th>points</th><th>why</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>" + more
            + (f"<p>your app raised: <code>{html.escape('; '.join(self.app_errors))}</code></p>" if self.app_errors else "")
            + "</div>"
        )

    def _more_hints_call(self) -> str:
        return f'lab.hint("{self.exercise_id}")'

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/plain": repr(self), "text/html": self._repr_html_(), RESULTS_MIME: self.to_dict()}


# -- describing what went wrong, the same way wherever the app ran --------------------------------

ADDRESS = re.compile(r"(https?|wss?|redis|smtp|postgresql(\+\w+)?)://[^\s'\"/]*127\.0\.0\.1:\d+\S*"
                     r"|127\.0\.0\.1:\d+|localhost:\d+|0x[0-9a-f]{6,}")


def describe_failure(exc: BaseException) -> str:
    """A deterministic sentence for an unexpected failure in a check (no ports, no addresses)."""
    if isinstance(exc, httpx.TimeoutException):
        return "the app did not answer in time"
    if isinstance(exc, httpx.ConnectError):
        return "could not connect to the app (is it running?)"
    if isinstance(exc, (httpx.ReadError, httpx.RemoteProtocolError)):
        return "the app closed the connection without a complete answer"
    if isinstance(exc, json.JSONDecodeError):
        return "the app's answer was not valid JSON"
    text = ADDRESS.sub("<address>", str(exc)).strip()[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def run_check(check: Check, ctx: Context, timeout: float) -> tuple[str, str, bool]:
    """(status, message, timed_out): the check run in a thread of its own under its deadline."""
    import asyncio
    import inspect

    outcome: list[tuple[str, str]] = []
    ctx.deadline = time.monotonic() + timeout

    def body() -> None:
        try:
            if inspect.iscoroutinefunction(check.func):
                asyncio.run(asyncio.wait_for(check.func(ctx), timeout))
            else:
                check.func(ctx)
        except CheckFailed as failure:
            outcome.append((FAILED, str(failure)))
        except NotRunHere as why:
            outcome.append((NOT_RUN, f"not run against a deployed app: it {why}"))
        except LabError:
            raise  # a mistake in the suite, not in the learner's app
        except BaseException as exc:  # the learner's app misbehaved: that is a failed check
            outcome.append((FAILED, describe_failure(exc)))
        else:
            outcome.append((PASSED, "passed"))

    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            body()
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=guarded, name=f"check-{check.name}", daemon=True)
    thread.start()
    thread.join(timeout + 0.25)  # a little slack for the check's own timeout message
    if errors:
        raise errors[0]
    if thread.is_alive() or not outcome:
        return FAILED, (f"no verdict within this check's {timeout:g} s: the app kept it waiting "
                        "(no answer, or an answer that never ends)"), True
    status, message = outcome[0]
    return status, message, False
