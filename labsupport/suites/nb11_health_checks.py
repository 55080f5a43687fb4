"""Checks for notebook 11, health checks and readiness probes."""
from __future__ import annotations

import re
import threading
import time

import httpx

from .. import faults
from ..checks import Context, Suite, expect, check_client

PROBE_TIMEOUT = 1.0  # seconds an orchestrator waits for a probe (Kubernetes' default timeoutSeconds)
PATIENCE = PROBE_TIMEOUT + 0.5  # how long a check waits before it calls a probe unanswered
STATUSES = {"ok", "error", "timeout"}


def _faults(ctx: Context) -> faults.Faults:
    """The fault points in front of the app's services: the grader's, or this process's."""
    return ctx.extras.get("faults") or faults.current()


def _get(ctx: Context, path: str, timeout: float = PATIENCE) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    try:
        response = ctx.client.get(path, timeout=timeout)
    except httpx.TimeoutException:
        expect(False, f"GET {path} gave no answer within {timeout:g} s: an orchestrator gives up after "
                      f"{PROBE_TIMEOUT:g} s and counts a failure")
    return response, time.monotonic() - start


def _shown(value: object) -> str:
    """A check's value for a message: the status words as they are, anything else unquoted (it may
    hold an address or a port, which would make the message differ from run to run)."""
    return repr(value) if value in STATUSES or value is None else "a message instead of a status word"


def _checks_of(response: httpx.Response, path: str = "/health/ready") -> dict:
    body = response.json()
    checks = body.get("checks") if isinstance(body, dict) else None
    expect(isinstance(checks, dict), f"the answer of GET {path} should hold a 'checks' object, "
                                     "one entry per dependency")
    return checks


# -- exercise 1: a readiness probe that answers in time and tells no secrets ---------------------

readiness = Suite("11-readiness", app_name="ready_app",
                  title="Readiness that answers in time and tells no secrets")


@readiness.setup
def _everything_up(ctx: Context) -> None:
    _faults(ctx).restore()


def _not_ready_because(ctx: Context, response: httpx.Response, failing: str, healthy: str, fault: str) -> None:
    expect(response.status_code == 503, f"with {fault}, GET /health/ready answered {response.status_code}, "
                                        "expected 503")
    checks = _checks_of(response)
    expect(failing in checks and checks[failing] != "ok",
           f"with {fault}, checks.{failing} was {_shown(checks.get(failing))}, expected a failure")
    expect(checks.get(healthy) == "ok",
           f"with {fault}, checks.{healthy} was {_shown(checks.get(healthy))}, expected 'ok': it did not fail")


@readiness.check(points=1, hint="Answer 200 with {'status': 'ready', 'checks': {'database': 'ok', 'redis': 'ok'}}.")
def ready_when_healthy(ctx: Context) -> None:
    "with every dependency up, GET /health/ready answers 200 and each check 'ok'"
    response, _ = _get(ctx, "/health/ready")
    expect(response.status_code == 200, f"GET /health/ready answered {response.status_code}, expected 200")
    checks = _checks_of(response)
    for name in ("database", "redis"):
        expect(checks.get(name) == "ok", f"checks.{name} was {_shown(checks.get(name))}, expected 'ok'")
    expect(response.json().get("status") == "ready", "the answer's status should be 'ready'")


@readiness.check(points=1, hint="Liveness answers for the process only: return 200 without touching "
                                "the database or Redis.")
def liveness_ignores_dependencies(ctx: Context) -> None:
    "GET /health/live answers 200 while Redis is down and the database hangs"
    points = _faults(ctx)
    with points.redis.refuse(), points.database.hang():
        response, _ = _get(ctx, "/health/live")
    expect(response.status_code == 200,
           f"with Redis down and the database hanging, GET /health/live answered {response.status_code}: "
           "an orchestrator would now restart every instance at once")


@readiness.check(points=2, hint="Catch each check's exception, answer 503 when any check is not 'ok', "
                                "and report each dependency under its own name.")
def names_the_failing_check(ctx: Context) -> None:
    "Redis refuses: 503, checks.redis fails and checks.database stays 'ok'"
    with _faults(ctx).redis.refuse():
        response, _ = _get(ctx, "/health/ready")
    _not_ready_because(ctx, response, "redis", "database", "Redis down")


@readiness.check(points=2, hint="Give each check its own timeout (CHECK_TIMEOUT): asyncio.wait((task,), "
                                "timeout=...) returns at the deadline; report 'timeout'.")
def answers_in_time_when_redis_hangs(ctx: Context) -> None:
    "Redis hangs: the probe still answers 503 within 1 s"
    with _faults(ctx).redis.hang():
        response, took = _get(ctx, "/health/ready")
    expect(took < PROBE_TIMEOUT, f"with Redis hanging, the probe took {took:.1f} s, longer than the "
                                 f"orchestrator's {PROBE_TIMEOUT:g} s")
    _not_ready_because(ctx, response, "redis", "database", "Redis hanging")


@readiness.check(points=2, hint="asyncio.wait_for waits for the cancelled query to clean up, which needs the "
                                "stuck database too: wait with asyncio.wait((task,), timeout=...) and cancel "
                                "the task without awaiting it.")
def answers_in_time_when_the_database_hangs(ctx: Context) -> None:
    "the database hangs: the probe still answers 503 within 1 s"
    with _faults(ctx).database.hang():
        response, took = _get(ctx, "/health/ready")
    expect(took < PROBE_TIMEOUT, f"with the database hanging, the probe took {took:.1f} s, longer than "
                                 f"the orchestrator's {PROBE_TIMEOUT:g} s")
    _not_ready_because(ctx, response, "database", "redis", "the database hanging")


@readiness.check(points=1, hint="Start every check at once with asyncio.gather, so that the slowest "
                                "check, not the sum of all, sets the probe's time.")
def checks_run_concurrently(ctx: Context) -> None:
    "both dependencies hang: the probe takes as long as one timeout, not two"
    points = _faults(ctx)
    with points.redis.hang():
        _, one = _get(ctx, "/health/ready")
    with points.redis.hang(), points.database.hang():
        response, both = _get(ctx, "/health/ready")
    expect(response.status_code == 503, f"with both dependencies hanging, GET /health/ready answered "
                                        f"{response.status_code}, expected 503")
    # sequential checks take two timeouts; concurrent ones about one
    expect(both < 1.5 * one + 0.05, f"one hanging dependency took {one:.2f} s and two took {both:.2f} s: "
                                    "the checks wait for each other")


_INTERNALS = [  # what a probe's answer must not tell a stranger
    ("an IP address", re.compile(r"\b\d{1,3}(\.\d{1,3}){3}\b|localhost")),
    ("a port number", re.compile(r":\d{2,5}\b")),
    ("an error message", re.compile(r"errno|error \d|exception|traceback|refused|reset by peer|timed? ?out "
                                    r"(reading|connecting)|locked|connect call failed", re.I)),
    ("a driver or SQL", re.compile(r"sqlalchemy|sqlite|asyncpg|psycopg|redis\.|select ", re.I)),
]


@readiness.check(points=2, hint="Put a fixed word ('ok', 'error', 'timeout') in the answer and the "
                                "exception in the log: log.warning(...) keeps the details for you.")
def reveals_no_internals(ctx: Context) -> None:
    "failing checks report only 'error' or 'timeout': no addresses, drivers or exception text"
    points = _faults(ctx)
    with points.redis.refuse(), points.database.hang():
        response, _ = _get(ctx, "/health/ready")
    checks = _checks_of(response)
    odd = {name: value for name, value in checks.items() if value not in STATUSES}
    expect(not odd, f"each check should be one of {sorted(STATUSES)}; the answer held {len(odd)} other "
                    "value(s), which tell anyone who asks about your infrastructure")
    for what, pattern in _INTERNALS:
        expect(not pattern.search(response.text), f"with Redis down, the answer of GET /health/ready "
                                                   f"contains {what}")


# -- exercise 2: draining on shutdown -------------------------------------------------------------

draining = Suite("11-draining", app_name="drain_app", title="Drain on shutdown: stop taking traffic, finish the work")

WAIT = 5.0  # seconds a check waits for a request it started; only a failure waits this long


class _Call(threading.Thread):
    """One request in a thread of its own: its answer, or its failure, and when it ended."""

    def __init__(self, url: str, method: str, path: str):
        super().__init__(daemon=True)
        self.method, self.path = method, path
        self.client = check_client(url)  # made here: making a client takes a while on a busy machine
        self.status: int | None = None
        self.body: object = None
        self.failure = ""
        self.ended = 0.0

    def run(self) -> None:
        try:
            response = self.client.request(self.method, self.path, timeout=WAIT)
            self.status = response.status_code
            try:
                self.body = response.json()
            except ValueError:
                self.body = None
        except httpx.HTTPError as error:
            self.failure = type(error).__name__
        finally:
            self.ended = time.monotonic()
            self.client.close()

    def finish(self) -> "_Call":
        self.join(WAIT + 1)
        return self

    def outcome(self) -> str:
        return f"answered {self.status}" if self.status is not None else f"failed ({self.failure or 'no answer'})"


def _drain_experiment(ctx: Context) -> dict:
    """Once per app (draining cannot be undone): a request in flight, then the drain hook, then
    probes and a new request while the drain waits. Every check reads its part of the result."""
    if "drain" in ctx.extras:
        return ctx.extras["drain"]
    before, hook, newcomer = (_Call(ctx.url, method, path) for method, path in
                              (("GET", "/work"), ("POST", "/admin/drain"), ("GET", "/work")))
    before.start()
    time.sleep(0.05)  # let it reach the app (if it arrives later, it is still a request to finish)
    hook.start()
    ready = None
    deadline = time.monotonic() + WAIT
    while hook.is_alive() and time.monotonic() < deadline:  # readiness, while the drain waits
        ready = ctx.client.get("/health/ready", timeout=WAIT).status_code
        if ready == 503:
            break
        time.sleep(0.01)
    during = {"ready": ready, "live": ctx.client.get("/health/live", timeout=WAIT).status_code}
    newcomer.start()
    result = {"before": before.finish(), "hook": hook.finish(), "newcomer": newcomer.finish(), **during}
    result["ready_after"] = ctx.client.get("/health/ready", timeout=WAIT).status_code
    if result["ready"] is None:  # the hook answered before the first probe: judge by the state after
        result["ready"] = result["ready_after"]
    ctx.extras["drain"] = result
    return result


@draining.check(points=1, hint="Before any drain, /health/ready and /health/live answer 200.")
def ready_before_draining(ctx: Context) -> None:
    "before the drain, GET /health/ready and GET /health/live answer 200"
    expect("drain" not in ctx.extras, "the drain already ran: run the checks in order")
    for path in ("/health/ready", "/health/live"):
        status = ctx.client.get(path).status_code
        expect(status == 200, f"GET {path} answered {status}, expected 200")


@draining.check(points=2, hint="Set a 'draining' flag in the drain hook first thing, and answer 503 "
                               "from /health/ready while it is set.")
def readiness_fails_once_draining(ctx: Context) -> None:
    "once the drain hook is called, GET /health/ready answers 503, and keeps doing so"
    result = _drain_experiment(ctx)
    expect(result["ready"] == 503, f"while the drain was under way, GET /health/ready answered "
                                   f"{result['ready']}, expected 503: the load balancer keeps sending traffic")
    expect(result["ready_after"] == 503, f"after the drain, GET /health/ready answered "
                                         f"{result['ready_after']}, expected 503")


@draining.check(points=1, hint="Liveness must not look at the draining flag: a failing liveness probe "
                               "makes the orchestrator kill the process, in-flight work and all.")
def liveness_holds_while_draining(ctx: Context) -> None:
    "while draining, GET /health/live still answers 200"
    result = _drain_experiment(ctx)
    expect(result["live"] == 200, f"while draining, GET /health/live answered {result['live']}, expected 200")


@draining.check(points=2, hint="Don't turn requests away while draining: only readiness changes; "
                               "count requests in the middleware and let them finish.")
def in_flight_request_completes(ctx: Context) -> None:
    "a request that was in flight when the drain began completes with 200"
    before = _drain_experiment(ctx)["before"]
    expect(before.status == 200 and before.body == {"done": True},
           f"GET /work, started before the drain, {before.outcome()}; expected 200 with {{'done': true}}")


@draining.check(points=1, hint="Load balancers take a moment to notice an unready instance: keep "
                               "serving what still arrives while draining.")
def serves_requests_arriving_while_draining(ctx: Context) -> None:
    "a request that arrives during the drain is still served"
    newcomer = _drain_experiment(ctx)["newcomer"]
    expect(newcomer.status == 200, f"GET /work, sent while the drain was waiting, {newcomer.outcome()}; "
                                   "expected 200")


@draining.check(points=2, hint="After setting the flag, wait (with a limit) until the in-flight count is "
                               "zero, for example on an asyncio.Event the middleware sets.")
def drain_waits_for_in_flight_requests(ctx: Context) -> None:
    "the drain hook answers 200 only after the requests in flight have finished"
    result = _drain_experiment(ctx)
    hook, before = result["hook"], result["before"]
    expect(hook.status == 200, f"POST /admin/drain {hook.outcome()}, expected 200")
    expect(before.ended and hook.ended >= before.ended,
           "POST /admin/drain answered while GET /work was still running: the orchestrator would stop "
           "the process with that request in flight")
