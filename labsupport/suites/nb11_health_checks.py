"""Checks for notebook 11, health checks and readiness probes."""
from __future__ import annotations

import re
import threading
import time

import httpx

from ..checks import Context, Suite, check_client, expect
from ..services import seconds

# as the notebook's setup cell defines them (tests/test_nb11_constants.py holds the two together)
PROBE_PERIOD = seconds(5)  # the readiness probe's period (periodSeconds: 5)
PROBE_TIMEOUT = 1.0        # seconds an orchestrator waits for a probe (Kubernetes' default timeoutSeconds)
CHECK_TIMEOUT = 0.3        # one dependency check's limit, well inside PROBE_TIMEOUT
PATIENCE = PROBE_TIMEOUT + 0.5  # how long a check waits before it calls a probe unanswered
MAX_STALENESS = PROBE_PERIOD    # a cached readiness answer must be younger than one probe period
STATUSES = {"ok", "error", "timeout"}


def _get(ctx: Context, path: str, timeout: float = PATIENCE) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    try:
        response = ctx.client.get(path, timeout=timeout)
    except httpx.TimeoutException:
        expect(False, f"GET {path} gave no answer within {timeout:g} s: an orchestrator gives up after "
                      f"{PROBE_TIMEOUT:g} s and counts a failure")
    return response, time.monotonic() - start


def _fresh(ctx: Context, path: str = "/health/ready") -> tuple[httpx.Response, float]:
    """A probe once any cached answer from before a change of faults has expired."""
    time.sleep(MAX_STALENESS)
    return _get(ctx, path)


def _fresh_unless_slow(ctx: Context, *healthy: str) -> tuple[httpx.Response, float]:
    """A fresh probe. A healthy dependency's check that came back 'timeout' (a busy machine can slow
    it past CHECK_TIMEOUT) is asked again, twice at most: an app whose check fails a healthy
    dependency, or blames it for a hanging one, does so every time."""
    for attempt in range(3):
        response, took = _fresh(ctx)
        try:
            checks = response.json()["checks"]
            healthy_timed_out = any(checks[name] == "timeout" for name in healthy)
        except (ValueError, KeyError, TypeError):
            healthy_timed_out = False
        if not healthy_timed_out or attempt == 2:
            return response, took


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

readiness = Suite("11-readiness")


def _not_ready_because(ctx: Context, response: httpx.Response, failing: str, healthy: str, fault: str) -> None:
    expect(response.status_code == 503, f"with {fault}, GET /health/ready answered {response.status_code}, "
                                        "expected 503")
    checks = _checks_of(response)
    expect(failing in checks and checks[failing] != "ok",
           f"with {fault}, checks.{failing} was {_shown(checks.get(failing))}, expected a failure")
    expect(checks.get(healthy) == "ok",
           f"with {fault}, checks.{healthy} was {_shown(checks.get(healthy))}, expected 'ok': it did not fail")


@readiness.check(points=1, hint=["Answer 200 with {'status': 'ready', 'checks': {'database': 'ok', 'redis': 'ok'}}.",
                                 "Run run_check for each name in DEPENDENCIES, collect {'database': ..., 'redis': ...}, and when every value is exactly 'ok' return {'status': 'ready', 'checks': checks} with status 200."])
def ready_when_healthy(ctx: Context) -> None:
    "with every dependency up, GET /health/ready answers 200 and each check 'ok'"
    response, _ = _fresh_unless_slow(ctx, "database", "redis")
    expect(response.status_code == 200, f"GET /health/ready answered {response.status_code}, expected 200")
    checks = _checks_of(response)
    for name in ("database", "redis"):
        expect(checks.get(name) == "ok", f"checks.{name} was {_shown(checks.get(name))}, expected 'ok'")
    expect(response.json().get("status") == "ready", "the answer's status should be 'ready'")


@readiness.check(points=1, hint=["Liveness answers for the process only: return 200 without touching "
                                "the database or Redis.",
                                 "GET /health/live must not call run_check, database_answers or redis_answers: return a constant dict such as {'status': 'alive'}, which FastAPI answers with 200."])
def liveness_ignores_dependencies(ctx: Context) -> None:
    "GET /health/live answers 200 while Redis is down and the database hangs"
    points = ctx.faults
    with points.redis.refuse(), points.database.hang():
        response, _ = _get(ctx, "/health/live")
    expect(response.status_code == 200,
           f"with Redis down and the database hanging, GET /health/live answered {response.status_code}: "
           "an orchestrator would now restart every instance at once")


@readiness.check(points=2, hint=["Catch each check's exception, answer 503 when any check is not 'ok', "
                                "and report each dependency under its own name.",
                                 "In run_check, when the check's task raised, return 'error' (not re-raise); in /health/ready return JSONResponse({'status': 'not ready', 'checks': checks}, status_code=503) if any value is not 'ok'."])
def names_the_failing_check(ctx: Context) -> None:
    "Redis refuses: 503, checks.redis fails and checks.database stays 'ok'"
    with ctx.faults.redis.refuse():
        response, _ = _fresh(ctx)
    _not_ready_because(ctx, response, "redis", "database", "Redis down")


@readiness.check(points=2, hint=["Give each check its own timeout (CHECK_TIMEOUT): asyncio.wait((task,), "
                                "timeout=...) returns at the deadline; report 'timeout'.",
                                 "Wrap the check in asyncio.create_task and await asyncio.wait({task}, timeout=CHECK_TIMEOUT); if done is empty, task.cancel() and return 'timeout' instead of awaiting the ping."])
def answers_in_time_when_redis_hangs(ctx: Context) -> None:
    "Redis hangs: the probe still answers 503 within 1 s"
    with ctx.faults.redis.hang():
        response, took = _fresh_unless_slow(ctx, "database")
    expect(took < PROBE_TIMEOUT, f"with Redis hanging, the probe took {took:.1f} s, longer than the "
                                 f"orchestrator's {PROBE_TIMEOUT:g} s")
    _not_ready_because(ctx, response, "redis", "database", "Redis hanging")


@readiness.check(points=2, hint=["asyncio.wait_for waits for the cancelled query to clean up, which needs the "
                                "stuck database too: wait with asyncio.wait((task,), timeout=...) and cancel "
                                "the task without awaiting it.",
                                 "Don't await the cancelled task or use asyncio.wait_for: after asyncio.wait times out, call task.cancel(), keep a reference (a set plus add_done_callback) and return 'timeout' at once."])
def answers_in_time_when_the_database_hangs(ctx: Context) -> None:
    "the database hangs: the probe still answers 503 within 1 s"
    with ctx.faults.database.hang():
        response, took = _fresh_unless_slow(ctx, "redis")
    expect(took < PROBE_TIMEOUT, f"with the database hanging, the probe took {took:.1f} s, longer than "
                                 f"the orchestrator's {PROBE_TIMEOUT:g} s")
    _not_ready_because(ctx, response, "database", "redis", "the database hanging")


@readiness.check(points=1, hint=["Start every check at once with asyncio.gather, so that the slowest "
                                "check, not the sum of all, sets the probe's time.",
                                 "Don't await run_check for database then redis in a loop; await asyncio.gather(*(run_check(name, request.app) for name in DEPENDENCIES)) so both timeouts run side by side."])
def checks_run_concurrently(ctx: Context) -> None:
    "both dependencies hang: the probe takes as long as one timeout, not two"
    points = ctx.faults
    ones, boths = [], []
    for _ in range(2):  # the faster of two runs: a busy machine only ever adds time
        with points.redis.hang():
            ones.append(_fresh(ctx)[1])
        with points.redis.hang(), points.database.hang():
            response, took = _fresh(ctx)
            boths.append(took)
        expect(response.status_code == 503, f"with both dependencies hanging, GET /health/ready answered "
                                            f"{response.status_code}, expected 503")
    one, both = min(ones), min(boths)
    # sequential checks take two timeouts; concurrent ones about one
    expect(both < one + CHECK_TIMEOUT / 2, f"one hanging dependency took {one:.2f} s and two took {both:.2f} s: "
                                           "the checks wait for each other")


_INTERNALS = [  # what a probe's answer must not tell a stranger
    ("an IP address", re.compile(r"\b\d{1,3}(\.\d{1,3}){3}\b|\blocalhost\b")),
    ("a host and port", re.compile(r"\b[a-z][\w.-]*[a-z][\w.-]*:\d{2,5}\b", re.I)),  # not T12:00 of a time
    ("an error message", re.compile(r"errno|error \d|exception|traceback|refused|reset by peer|timed? ?out "
                                    r"(reading|connecting)|locked|connect call failed", re.I)),
    ("a driver or SQL", re.compile(r"sqlalchemy|sqlite|asyncpg|psycopg|redis\.|select |lab11_", re.I)),
]


def _services_in(ctx: Context, text: str) -> str | None:
    """What of the run's own Redis and database addresses the text names (None: nothing)."""
    ports = {ctx.faults.redis.address.rsplit(":", 1)[1], ctx.redis.url.rsplit(":", 1)[1].split("/")[0]}
    if ctx.faults.database is not None and hasattr(ctx.faults.database, "address"):
        ports.add(ctx.faults.database.address.rsplit(":", 1)[1])
    if any(re.search(rf"(?<![\d]){port}(?![\d])", text) for port in ports):
        return "the port of a dependency"
    path = ctx.database.sqlite_path
    if path and (path in text or "lab.db" in text):
        return "the database's file"
    return None


@readiness.check(points=2, hint=["Put a fixed word ('ok', 'error', 'timeout') in the answer and the "
                                "exception in the log: log.warning(...) keeps the details for you.",
                                 "Each value in checks must be exactly 'ok', 'error' or 'timeout': never str(exc), repr(exc) or the URL; pass the exception to log.warning(...) and keep it out of the JSON."])
def reveals_no_internals(ctx: Context) -> None:
    "failing checks report only 'error' or 'timeout': no addresses, drivers or exception text"
    with ctx.faults.redis.refuse():  # refused, not hung: the answer comes, whatever the app's timeouts
        response, _ = _fresh(ctx)
    checks = _checks_of(response)
    odd = {name: value for name, value in checks.items() if value not in STATUSES}
    expect(not odd, f"each check should be one of {sorted(STATUSES)}; the answer held {len(odd)} other "
                    "value(s), which tell anyone who asks about your infrastructure")
    leaked = _services_in(ctx, response.text)
    expect(leaked is None, f"with Redis down, the answer of GET /health/ready contains {leaked}")
    for what, pattern in _INTERNALS:
        expect(not pattern.search(response.text), f"with Redis down, the answer of GET /health/ready "
                                                   f"contains {what}")


# -- exercise 2: draining on shutdown -------------------------------------------------------------

draining = Suite("11-draining")

WORK_SECONDS = seconds(20)    # GET /work and GET /export take this long by default
DRAIN_DELAY = seconds(20)     # the hook keeps serving this long before it may answer (preStop delay)
DRAIN_TIMEOUT = seconds(120)  # then it waits at most this long for the requests in flight
IN_FLIGHT = 0.45 * DRAIN_TIMEOUT  # a request in flight during the experiment: well past DRAIN_DELAY
# the streaming response in flight outlasts it by far, so a count that lets go of a stream when its
# response starts lets the hook answer while the stream still sends; still well inside DRAIN_TIMEOUT
# (and short enough that a fixed sleep of DRAIN_DELAY + DRAIN_TIMEOUT answers well past PROMPT after it)
STREAM_IN_FLIGHT = 0.65 * DRAIN_TIMEOUT
SETUP_SLACK = 0.15  # seconds: the hook is sent at most this long after the request in flight began
                                 # (a hook that only waits DRAIN_DELAY answers long before they end)
PROMPT = 0.5                  # "at once", in real seconds: room for a busy machine, none for a fixed wait
WAIT = 5.0  # seconds a check waits for a request it started; only a failure waits this long
OUTSIDE = "203.0.113.7"  # a client on the internet (a documentation address), as a proxy reports it


class _Call(threading.Thread):
    """One request in a thread of its own: its answer, or its failure, and when it ended."""

    def __init__(self, url: str, method: str, path: str, headers: dict | None = None):
        super().__init__(daemon=True)
        self.method, self.path, self.headers = method, path, headers or {}
        self.client = check_client(url)  # made here: making a client takes a while on a busy machine
        self.status: int | None = None
        self.body: object = None
        self.text = ""
        self.failure = ""
        self.began = self.ended = 0.0
        self.sent = threading.Event()  # the whole request is on its way to the app
        self.sent_at = float("inf")

    def _trace(self, event: str, info: dict) -> None:
        if event.endswith("send_request_body.complete"):
            self.sent_at = time.monotonic()
            self.sent.set()

    def run(self) -> None:
        self.began = time.monotonic()
        try:
            response = self.client.request(self.method, self.path, timeout=WAIT, headers=self.headers,
                                           extensions={"trace": self._trace})
            self.status, self.text = response.status_code, response.text
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

    def took(self) -> float:
        return self.ended - self.began

    def outcome(self) -> str:
        return f"answered {self.status}" if self.status is not None else f"failed ({self.failure or 'no answer'})"


def _in_flight(ctx: Context, path: str) -> _Call:
    """A request started in the background; returns once it was sent and the app had a moment to
    take it in (requests sent after it then reach the app after it, on a busy machine too)."""
    return _started(_Call(ctx.url, "GET", path))


def _started(call: _Call) -> _Call:
    call.start()
    call.sent.wait(WAIT)
    time.sleep(0.05)
    return call


def _drain(ctx: Context, headers: dict | None = None) -> _Call:
    return _Call(ctx.url, "POST", "/admin/drain", headers)


@draining.experiment
def _drain_experiment(ctx: Context) -> dict:
    """Once per app (draining cannot be undone): a request and a streaming response in flight, then
    the drain hook, then probes and a new request while the drain waits. Every check reads its part.
    The hook must be on its way soon after the request in flight began, or the timings tell nothing
    (a machine busy enough to hold the hook back makes any drain look as if it waited): then the app
    is restarted, fresh, and the experiment made again."""
    for attempt in range(3):
        result = _drain_once(ctx)
        if result["hook"].sent_at - result["before"].began <= SETUP_SLACK or attempt == 2:
            return result
        ctx.app.restart()


def _drain_once(ctx: Context) -> dict:
    # every client made before the clock runs: making one takes a while on a busy machine
    before, stream = _Call(ctx.url, "GET", f"/work?seconds={IN_FLIGHT:.3f}"), \
        _Call(ctx.url, "GET", f"/export?seconds={STREAM_IN_FLIGHT:.3f}")
    hook, newcomer = _drain(ctx), _Call(ctx.url, "GET", "/work")
    _started(before)
    _started(stream)
    hook.start()
    ready = None
    deadline = time.monotonic() + WAIT
    while hook.is_alive() and time.monotonic() < deadline:  # readiness, while the drain waits
        ready = ctx.client.get("/health/ready", timeout=WAIT).status_code
        if ready == 503:
            break
        time.sleep(0.05)  # gently: back-to-back probes would keep a request in flight all the time
    during = {"ready": ready, "live": ctx.client.get("/health/live", timeout=WAIT).status_code}
    newcomer.start()
    result = {"before": before.finish(), "stream": stream.finish(), "hook": hook.finish(),
              "newcomer": newcomer.finish(), **during}
    result["ready_after"] = ctx.client.get("/health/ready", timeout=WAIT).status_code
    if result["ready"] != 503:  # the hook answered before a probe saw it draining: judge by the state after
        result["ready"] = result["ready_after"]
    return result


@draining.check(points=1, hint=["Before any drain, /health/ready and /health/live answer 200.",
                                "Readiness answers 200 with {'status': 'ready'} while state.draining is False, and liveness returns a plain dict; make sure the CountInFlight middleware always awaits self.app(scope, receive, send)."])
def ready_before_draining(ctx: Context) -> None:
    "before the drain, GET /health/ready and GET /health/live answer 200"
    for path in ("/health/ready", "/health/live"):
        status = ctx.client.get(path).status_code
        expect(status == 200, f"GET {path} answered {status}, expected 200")


@draining.check(points=1, hint=["Anyone who can call the hook can take the instance out of service: accept it "
                               "only from the loopback address, and never through a proxy (X-Forwarded-For).",
                                "from_the_pod_itself must be False when an X-Forwarded-For or Forwarded header is present, even if request.client.host is 127.0.0.1; only then check that the host is 127.0.0.1 or ::1."])
def drain_refuses_requests_from_outside(ctx: Context) -> None:
    "POST /admin/drain through a proxy (X-Forwarded-For) gets 403, and the app stays ready"
    hook = _drain(ctx, {"X-Forwarded-For": OUTSIDE})
    hook.start()
    hook.finish()
    expect(hook.status == 403, f"POST /admin/drain from {OUTSIDE}, through a proxy, {hook.outcome()}; expected 403: "
                               "only the pod's own preStop hook may drain it")
    status = ctx.client.get("/health/ready").status_code
    expect(status == 200, f"after a refused drain, GET /health/ready answered {status}, expected 200: the refused "
                          "call still took the instance out of service")


@draining.check(points=2, hint=["Set a 'draining' flag in the drain hook first thing, and answer 503 "
                               "from /health/ready while it is set.",
                                "Set state.draining = True as the hook's first statement (before any sleep), and in /health/ready return JSONResponse(..., status_code=503) whenever request.app.state.lifecycle.draining is true."])
def readiness_fails_once_draining(ctx: Context) -> None:
    "once the drain hook is called, GET /health/ready answers 503, and keeps doing so"
    result = _drain_experiment(ctx)
    expect(result["ready"] == 503, f"while the drain was under way, GET /health/ready answered "
                                   f"{result['ready']}, expected 503: the load balancer keeps sending traffic")
    expect(result["ready_after"] == 503, f"after the drain, GET /health/ready answered "
                                         f"{result['ready_after']}, expected 503")


@draining.check(points=1, hint=["Liveness must not look at the draining flag: a failing liveness probe "
                               "makes the orchestrator kill the process, in-flight work and all.",
                                "GET /health/live returns {'status': 'alive'} unconditionally: remove any test of state.draining from it; only /health/ready answers 503 while draining."])
def liveness_holds_while_draining(ctx: Context) -> None:
    "while draining, GET /health/live still answers 200"
    result = _drain_experiment(ctx)
    expect(result["live"] == 200, f"while draining, GET /health/live answered {result['live']}, expected 200")


@draining.check(points=2, hint=["Don't turn requests away while draining: only readiness changes; "
                               "count requests in the middleware and let them finish.",
                                "Neither the middleware nor the hook may cancel or reject requests: CountInFlight only counts around await self.app(...), and the hook just waits; never return 503 from ordinary routes while draining."])
def in_flight_request_completes(ctx: Context) -> None:
    "a request that was in flight when the drain began completes with 200"
    before = _drain_experiment(ctx)["before"]
    expect(before.status == 200 and before.body == {"done": True},
           f"GET /work, started before the drain, {before.outcome()}; expected 200 with {{'done': true}}")


@draining.check(points=1, hint=["Load balancers take a moment to notice an unready instance: keep "
                               "serving what still arrives while draining.",
                                "Don't make CountInFlight (or any route) answer 503 when state.draining is set; new requests are still counted and passed to self.app like any other."])
def serves_requests_arriving_while_draining(ctx: Context) -> None:
    "a request that arrives during the drain is still served"
    newcomer = _drain_experiment(ctx)["newcomer"]
    expect(newcomer.status == 200, f"GET /work, sent while the drain was waiting, {newcomer.outcome()}; "
                                   "expected 200")


@draining.check(points=2, hint=["After DRAIN_DELAY, wait (with a limit) until the in-flight count is zero, "
                               "for example on an asyncio.Event the middleware sets.",
                                "Increment state.in_flight and clear state.idle before await self.app(...), decrement after; after asyncio.sleep(DRAIN_DELAY) the hook must await state.idle.wait(), not return right away."])
def drain_waits_for_in_flight_requests(ctx: Context) -> None:
    "the drain hook answers 200 only after the requests in flight have finished"
    result = _drain_experiment(ctx)
    hook, before = result["hook"], result["before"]
    expect(hook.status == 200, f"POST /admin/drain {hook.outcome()}, expected 200")
    # the two answers come within a few milliseconds of each other, read by two threads in either order
    expect(before.ended and hook.ended >= before.ended - 0.1,
           "POST /admin/drain answered while GET /work was still running: the orchestrator would stop "
           "the process with that request in flight")


@draining.check(points=2, hint=["@app.middleware('http') lets go of a request when its response starts; a pure "
                               "ASGI middleware's `await self.app(scope, receive, send)` returns after the last byte.",
                                "Count in CountInFlight.__call__ (the pure ASGI class), around await self.app(scope, receive, send): it returns only after the last body chunk, unlike call_next in @app.middleware('http')."])
def drain_waits_for_a_streaming_response(ctx: Context) -> None:
    "a streaming response in flight is counted until its last byte: the hook answers after it"
    result = _drain_experiment(ctx)
    hook, stream = result["hook"], result["stream"]
    expect(stream.status == 200 and stream.text.count("\n") == 10,
           f"GET /export, started before the drain, {stream.outcome()} with {stream.text.count(chr(10))} of its "
           "10 lines; expected all of them")
    expect(hook.status == 200, f"POST /admin/drain {hook.outcome()}, expected 200")
    expect(hook.ended >= stream.ended - 0.1,
           "POST /admin/drain answered while GET /export was still streaming its body: the request was no longer "
           "counted once its response had started")


@draining.check(points=1, hint=["Wake the drain when the count reaches zero (an asyncio.Event), rather "
                               "than checking now and then: the orchestrator waits for your answer.",
                                "Replace any polling loop or fixed sleep after DRAIN_DELAY with await state.idle.wait(), and call state.idle.set() in the middleware when in_flight drops to 0."])
def drain_answers_once_the_work_is_done(ctx: Context) -> None:
    "the drain hook answers as soon as the last request in flight has finished"
    result = _drain_experiment(ctx)
    hook, before, stream = result["hook"], result["before"], result["stream"]
    expect(hook.status == 200 and before.ended, f"POST /admin/drain {hook.outcome()}, expected 200")
    late = hook.ended - max(before.ended, stream.ended)
    expect(late < PROMPT, f"POST /admin/drain answered {late:.2f} s after the last request in flight ended, "
                          f"more than {PROMPT:g} s: a fixed wait, or a slow poll, holds up the shutdown")


def _drain_beside_a_probe(ctx: Context) -> tuple[_Call, _Call]:
    """POST /admin/drain and GET /health/live sent at the same moment: on a busy machine both are
    slowed alike, so how much later the drain answers is what it waited."""
    hook, probe = _drain(ctx), _Call(ctx.url, "GET", "/health/live")
    hook.start()
    probe.start()
    return hook.finish(), probe.finish()


@draining.experiment
def _idle_drain(ctx: Context) -> tuple[_Call, _Call]:
    """Once: a fresh app with nothing in flight, drained beside a liveness probe."""
    ctx.app.restart()  # a fresh app: the drain of the experiment above cannot be undone
    return _drain_beside_a_probe(ctx)


@draining.check(points=2, hint=["Nothing in flight does not mean nothing on its way: the load balancers send "
                               "until the endpoint's removal reaches them. Keep serving for DRAIN_DELAY first.",
                                "Always await asyncio.sleep(DRAIN_DELAY) in the hook after setting draining, even when in_flight is already 0; only then wait for idle."])
def idle_drain_keeps_serving_until_the_endpoint_is_gone(ctx: Context) -> None:
    "with nothing in flight, the drain hook still keeps serving for DRAIN_DELAY before it answers"
    hook, probe = _idle_drain(ctx)
    expect(hook.status == 200, f"POST /admin/drain with nothing in flight {hook.outcome()}, expected 200")
    expect(hook.took() >= 0.9 * DRAIN_DELAY,
           f"with nothing in flight, POST /admin/drain answered after {hook.took():.2f} s, before DRAIN_DELAY "
           f"({DRAIN_DELAY:g} s): SIGTERM would follow while the load balancers still send, and uvicorn "
           "would refuse their connections")


@draining.check(points=1, hint=["With nothing in flight there is nothing to wait for after DRAIN_DELAY: wait on "
                               "the in-flight count, never a fixed time.",
                                "Keep state.idle set while nothing is in flight (Lifecycle starts it set; set it again at 0) so that await state.idle.wait() after DRAIN_DELAY returns at once; do not sleep DRAIN_TIMEOUT too."])
def idle_drain_answers_once_the_delay_is_over(ctx: Context) -> None:
    "with nothing in flight, the drain hook answers 200 once DRAIN_DELAY is over"
    hook, probe = _idle_drain(ctx)
    expect(hook.status == 200, f"POST /admin/drain with nothing in flight {hook.outcome()}, expected 200")
    late = hook.ended - probe.ended - DRAIN_DELAY
    expect(late < PROMPT, f"with nothing in flight, POST /admin/drain answered {late:.2f} s after DRAIN_DELAY "
                          f"had passed (timed against a liveness probe sent with it), more than {PROMPT:g} s: "
                          "it waited for nothing")


@draining.check(points=1, hint=["Decrement the count in a `finally:`, so a request that raises is not "
                               "counted as in flight for ever.",
                                "Put state.in_flight -= 1 and the idle.set() at zero in the finally: of a try around await self.app(scope, receive, send); a RuntimeError from GET /fail skips code placed after the await."])
def a_failed_request_is_not_left_counted(ctx: Context) -> None:
    "after a request that failed with 500, an idle drain still answers 200 once DRAIN_DELAY is over"
    ctx.app.restart()
    failed = ctx.client.get("/fail").status_code
    expect(failed == 500, f"GET /fail answered {failed}, expected 500 (the cell's endpoint that raises)")
    hook, probe = _drain_beside_a_probe(ctx)
    expect(hook.status == 200, f"after GET /fail raised, POST /admin/drain {hook.outcome()}, expected 200: "
                               "the failed request is still counted as in flight")
    late = hook.ended - probe.ended - DRAIN_DELAY
    expect(late < PROMPT, f"after GET /fail raised, POST /admin/drain answered {late:.2f} s after DRAIN_DELAY had "
                          f"passed, more than {PROMPT:g} s: the failed request was counted as in flight")


@draining.check(points=1, hint=["Wait with a limit, asyncio.wait_for(state.idle.wait(), DRAIN_TIMEOUT), "
                               "and answer 504 when it runs out.",
                                "Wrap the idle wait: try await asyncio.wait_for(state.idle.wait(), DRAIN_TIMEOUT) except asyncio.TimeoutError: return JSONResponse(..., status_code=504), not 200 and not an unbounded wait."])
def drain_gives_up_after_its_timeout(ctx: Context) -> None:
    "a request that outlasts DRAIN_TIMEOUT: the drain hook answers 504 when DRAIN_TIMEOUT runs out"
    ctx.app.restart()
    long_work = _in_flight(ctx, f"/work?seconds={3 * DRAIN_TIMEOUT:.3f}")
    hook = _drain(ctx)
    hook.start()
    hook.finish()
    still_running = long_work.is_alive()
    expect(hook.status == 504, f"with a request running three times DRAIN_TIMEOUT, POST /admin/drain "
                               f"{hook.outcome()}, expected 504 once DRAIN_TIMEOUT ran out")
    expect(hook.took() >= 0.8 * DRAIN_TIMEOUT, f"POST /admin/drain answered 504 after {hook.took():.2f} s, "
                                               f"before DRAIN_TIMEOUT ({DRAIN_TIMEOUT:g} s) had run out")
    expect(still_running, "POST /admin/drain answered 504 only after the long request had ended: it did not "
                          "give up at DRAIN_TIMEOUT")
