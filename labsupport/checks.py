"""Check suites: each exercise's checks, judged over the wire, with points, messages and hints.

A suite module (labsupport/suites/nbNN_*.py) declares one Suite per exercise:

    welcome = Suite("01-welcome-email", app_name="welcome_app", title="Welcome email off the request path")

    @welcome.check(points=1, hint="Return the response first; send the email from a background task.")
    def answers_before_the_email_is_sent(ctx):
        "POST /users answers while the mail server is still busy"
        ...
        expect(response.status_code == 201, f"POST /users answered {response.status_code}, expected 201")

A check passes when it returns; it fails with its message when expect() fails, and with a
plain description when the app misbehaves in any other way (an error status, no answer, bad JSON).
"""
from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import httpx

RESULTS_MIME = "application/vnd.labsupport.results+json"


class CheckFailed(AssertionError):
    """A check's verdict, with the message the learner sees."""


def expect(condition: object, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


MAX_ANSWER_BYTES = 16 * 1024 * 1024


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


def check_client(base_url: str) -> httpx.Client:
    """The client checks talk through: a new connection per request, so that one broken answer
    cannot spoil the next check's request; answers larger than MAX_ANSWER_BYTES fail the check."""
    transport = _CappedTransport(limits=httpx.Limits(max_keepalive_connections=0))
    return httpx.Client(base_url=base_url, timeout=10.0, transport=transport)


@dataclass
class Context:
    """What a check may use: the app's base URL and client, and the lab's services."""

    url: str
    client: httpx.Client
    mailbox: object | None = None
    extras: dict = field(default_factory=dict)


@dataclass
class Check:
    name: str
    description: str
    points: int
    hint: str
    func: Callable[[Context], None]
    hidden: bool = False


@dataclass
class CheckResult:
    name: str
    description: str
    points: int
    earned: int
    passed: bool
    message: str
    hint: str


_ADDRESS = re.compile(r"(https?|wss?|redis|smtp)://127\.0\.0\.1:\d+|127\.0\.0\.1:\d+|0x[0-9a-f]{6,}")


def _describe(exc: BaseException) -> str:
    """A deterministic sentence for an unexpected failure (no ports, no addresses)."""
    if isinstance(exc, httpx.TimeoutException):
        return "the app did not answer in time"
    if isinstance(exc, httpx.ConnectError):
        return "could not connect to the app (is it running?)"
    if isinstance(exc, (httpx.ReadError, httpx.RemoteProtocolError)):
        return "the app closed the connection without a complete answer"
    if isinstance(exc, json.JSONDecodeError):
        return "the app's answer was not valid JSON"
    text = _ADDRESS.sub("<app>", str(exc)).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def summarize_errors(tracebacks: list[str], limit: int = 3) -> list[str]:
    """The distinct exception lines of an app's logged tracebacks, without addresses."""
    lines = []
    for text in tracebacks:
        last = text.strip().splitlines()[-1] if text.strip() else ""
        last = _ADDRESS.sub("<app>", last)[:200]
        if last and ("Error" in last or "Exception" in last) and last not in lines:
            lines.append(last)
    return sorted(lines)[:limit]


class Suite:
    def __init__(self, exercise_id: str, app_name: str, title: str):
        self.exercise_id = exercise_id
        self.app_name = app_name
        self.title = title
        self.checks: list[Check] = []
        self.before_each: Callable[[Context], None] | None = None

    @property
    def points(self) -> int:
        return sum(c.points for c in self.checks)

    def check(self, points: int = 1, hint: str = "", hidden: bool = False):
        def register(func: Callable[[Context], None]) -> Callable[[Context], None]:
            description = (func.__doc__ or func.__name__.replace("_", " ")).strip().splitlines()[0]
            self.checks.append(Check(func.__name__, description, points, hint, func, hidden))
            return func

        return register

    def setup(self, func: Callable[[Context], None]) -> Callable[[Context], None]:
        """Run `func(ctx)` before each check (reset the mailbox, say)."""
        self.before_each = func
        return func

    def run(self, ctx: Context, include_hidden: bool = False) -> "Results":
        results = []
        for check in self.checks:
            if check.hidden and not include_hidden:
                continue
            try:
                if self.before_each:
                    self.before_each(ctx)
                check.func(ctx)
            except CheckFailed as failure:
                passed, message = False, str(failure)
            except Exception as exc:  # the learner's app misbehaved: that is a failed check
                passed, message = False, _describe(exc)
            else:
                passed, message = True, "passed"
            results.append(CheckResult(
                check.name, check.description, check.points, check.points if passed else 0,
                passed, message, "" if passed else check.hint,
            ))
        return Results(self.exercise_id, self.title, results)

    def fail_all(self, reason: str) -> "Results":
        """Every check failed for one reason (the app could not be started, say)."""
        return Results(self.exercise_id, self.title, [
            CheckResult(c.name, c.description, c.points, 0, False, reason, c.hint)
            for c in self.checks if not c.hidden
        ])


@dataclass
class Results:
    exercise_id: str
    title: str
    checks: list[CheckResult]
    app_errors: list[str] = field(default_factory=list)  # what the app raised while checked

    @property
    def earned(self) -> int:
        return sum(c.earned for c in self.checks)

    @property
    def possible(self) -> int:
        return sum(c.points for c in self.checks)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict:
        return {"exercise": self.exercise_id, "title": self.title, "earned": self.earned,
                "possible": self.possible, "checks": [asdict(c) for c in self.checks],
                "app_errors": self.app_errors}

    def __repr__(self) -> str:
        lines = [f"{self.exercise_id}: {self.title} - {self.earned}/{self.possible} points"]
        for c in self.checks:
            mark = "PASS" if c.passed else "FAIL"
            lines.append(f"  [{mark}] {c.description} ({c.earned}/{c.points})")
            if not c.passed:
                lines.append(f"         {c.message}")
                if c.hint:
                    lines.append(f"         hint: {c.hint}")
        if self.app_errors:
            lines.append("  your app raised: " + "; ".join(self.app_errors))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = []
        for c in self.checks:
            color = "#1a7f37" if c.passed else "#cf222e"
            detail = "" if c.passed else html.escape(c.message) + (
                f"<br><i>hint: {html.escape(c.hint)}</i>" if c.hint else "")
            rows.append(
                f"<tr><td style='color:{color};font-weight:bold'>{'&#10004; pass' if c.passed else '&#10008; fail'}</td>"
                f"<td style='text-align:left'>{html.escape(c.description)}</td>"
                f"<td>{c.earned}/{c.points}</td><td style='text-align:left'>{detail}</td></tr>"
            )
        return (
            f"<div><b>{html.escape(self.exercise_id)}: {html.escape(self.title)}</b> - "
            f"{self.earned}/{self.possible} points"
            "<table><thead><tr><th></th><th>check</th><th>points</th><th>why</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
            + (f"<p>your app raised: <code>{html.escape('; '.join(self.app_errors))}</code></p>" if self.app_errors else "")
            + "</div>"
        )

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/plain": repr(self), "text/html": self._repr_html_(), RESULTS_MIME: self.to_dict()}
