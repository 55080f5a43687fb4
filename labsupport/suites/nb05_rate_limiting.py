"""Checks for notebook 05, rate limiting across instances.

The exercise's limits (the exercise cell's constants): GET /search 5 per user in any 1 s, GET
/reports 3 per user in any 60 s. Each check uses users of its own, so that no check sees another's
counters (the run's Redis keeps them between checks).
"""
from __future__ import annotations

import math
import socket
import time
from urllib.parse import urlsplit

import httpx

from ..checks import Context, Suite, expect

SEARCH_LIMIT, SEARCH_WINDOW = 5, 1.0
REPORTS_LIMIT, REPORTS_WINDOW = 3, 60.0
ADMITTED, REFUSED = 200, 429


def auth(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {user}"}


def get(ctx: Context, path: str, user: str, client: httpx.Client | None = None) -> httpx.Response:
    return (client or ctx.client).get(path, headers=auth(user))


def statuses(ctx: Context, path: str, user: str, count: int) -> list[int]:
    return [get(ctx, path, user).status_code for _ in range(count)]


def use_up_reports(ctx: Context, user: str) -> None:
    """The user's GET /reports budget, used up: three 200s, then a 429."""
    seen = statuses(ctx, "/reports", user, REPORTS_LIMIT + 1)
    expect(seen == [ADMITTED] * REPORTS_LIMIT + [REFUSED],
           f"GET /reports {REPORTS_LIMIT + 1} times as one new user answered {seen}, expected "
           f"{[ADMITTED] * REPORTS_LIMIT + [REFUSED]}")


def simultaneous(ctx: Context, urls: list[str], path: str, user: str, count: int) -> list[int]:
    """`count` requests from one user that reach the app at the same moment, spread round-robin
    over `urls`: every connection is opened first, then every request is written at once, so the
    app has them all in hand before it answers any (an HTTP client library would send them as its
    connections happen to open). Their status codes, in order."""
    return [status for status, _ in simultaneous_answers(ctx, urls, path, user, count)]


def simultaneous_answers(ctx: Context, urls: list[str], path: str, user: str,
                         count: int) -> list[tuple[int, dict[str, str]]]:
    """As simultaneous(), with each answer's headers (names in lower case)."""
    sockets = []
    try:
        for i in range(count):
            parts = urlsplit(urls[i % len(urls)])
            sock = socket.create_connection((parts.hostname, parts.port), timeout=max(0.5, ctx.remaining()))
            sockets.append((sock, parts.netloc))
        for sock, host in sockets:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {user}\r\n"
                         "Connection: close\r\n\r\n".encode())
        return [_answer_of(sock, ctx) for sock, _ in sockets]
    finally:
        for sock, _ in sockets:
            sock.close()


def _answer_of(sock: socket.socket, ctx: Context) -> tuple[int, dict[str, str]]:
    """The status code and headers of the answer on `sock` (read to its end: Connection: close)."""
    sock.settimeout(max(0.5, ctx.remaining()))
    data = b""
    try:
        while len(data) < 65536:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        expect(False, "a request sent at the same moment as others got no answer in time")
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    line = head[0].split()
    expect(len(line) >= 2 and line[1].isdigit(), "a request sent at the same moment as others got no HTTP answer")
    headers = {}
    for field in head[1:]:
        name, _, value = field.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(line[1]), headers


def expect_exactly_the_limit(seen: list[int], what: str) -> None:
    odd = [s for s in seen if s not in (ADMITTED, REFUSED)]
    expect(not odd, f"{what}: {len(odd)} answers were neither 200 nor 429 (for example {odd[0]})" if odd else "")
    admitted = seen.count(ADMITTED)
    expect(admitted == REPORTS_LIMIT, f"{what}: {admitted} were admitted, expected exactly {REPORTS_LIMIT}"
           + (": the count and the write are not one atomic step, or the state is not shared"
              if admitted > REPORTS_LIMIT else ""))


def retry_after_seconds(response: httpx.Response, what: str) -> int:
    value = response.headers.get("retry-after")
    expect(value is not None, f"{what}: the 429 had no Retry-After header")
    expect(value.strip().isdigit(), f"{what}: Retry-After was {value[:40]!r}; send whole seconds, such as '12'")
    return int(value)


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


limiter = Suite("05-limiter")


@limiter.check(points=1, hint=["Count each user's requests in Redis and answer 429 once the limit is reached.",
                               "In RateLimit.__call__, count the user's requests still in the window in request.app.state.redis; raise HTTPException(429) when the count already equals self.limit, else record this request and return None."])
def admits_the_limit_then_refuses(ctx: Context) -> None:
    "GET /reports: a user's first 3 requests answer 200, the 4th 429"
    use_up_reports(ctx, "count-ada")


@limiter.check(points=1, hint=["Put the user in the key: each user has a budget of their own.",
                               "Build the Redis key from the user argument that current_user gives (alongside a prefix, lab.run_id() and the route path); a key without the user makes every user share one budget."])
def limits_each_user_separately(ctx: Context) -> None:
    "once one user has used up GET /reports, another user is still admitted"
    use_up_reports(ctx, "users-ada")
    other = get(ctx, "/reports", "users-bob").status_code
    expect(other == ADMITTED, f"after one user used up GET /reports, another user's first request answered "
                              f"{other}: users share a budget")


@limiter.check(points=1, hint=["Put the endpoint (request.scope['route'].path) in the key as well, and use "
                              "each endpoint's own limit and window.",
                               "Add request.scope['route'].path ('/reports' or '/search') to the key and use self.limit and self.window, not the REPORTS_ constants; otherwise /search inherits the used-up /reports count."])
def limits_each_endpoint_separately(ctx: Context) -> None:
    "a user who used up GET /reports is still admitted to GET /search, up to its own limit of 5"
    use_up_reports(ctx, "endpoints-ada")
    seen = statuses(ctx, "/search", "endpoints-ada", SEARCH_LIMIT)
    expect(seen == [ADMITTED] * SEARCH_LIMIT,
           f"after using up GET /reports, {SEARCH_LIMIT} quick GET /search from the same user answered {seen}, "
           f"expected {[ADMITTED] * SEARCH_LIMIT}")


@limiter.check(points=2, timeout=15, hint=["Retry-After is the time until the oldest request in the window leaves "
                                          "it: oldest + window - now, in whole seconds rounded up.",
                                           "Log each request in a sorted set scored by its time (ZADD); on refusal read the oldest score (ZRANGE key 0 0 WITHSCORES) and send Retry-After = ceil(oldest + window - now) seconds, at least 1, as a string."])
def retry_after_is_the_time_left(ctx: Context) -> None:
    "a 429's Retry-After is the whole seconds until a request is admitted again, not the full window"
    user = "retry-ada"
    sent_first = time.monotonic()
    first = get(ctx, "/reports", user).status_code
    got_first = time.monotonic()
    expect(first == ADMITTED, f"a new user's first GET /reports answered {first}")
    sleep_until(got_first + 1.1)
    rest = statuses(ctx, "/reports", user, REPORTS_LIMIT - 1)
    expect(rest == [ADMITTED] * (REPORTS_LIMIT - 1), f"the user's next GET /reports answered {rest}")
    sent_last = time.monotonic()
    refused = get(ctx, "/reports", user)
    got_last = time.monotonic()
    expect(refused.status_code == REFUSED, f"the 4th GET /reports within a minute answered {refused.status_code}")
    value = retry_after_seconds(refused, "GET /reports")
    # the first request leaves the window REPORTS_WINDOW after it was admitted
    earliest = math.ceil(REPORTS_WINDOW - (got_last - sent_first))
    latest = math.ceil(REPORTS_WINDOW - (sent_last - got_first))
    expect(value != REPORTS_WINDOW, f"Retry-After was {value}, the full window: the first request was sent "
                                    f"over a second earlier, so it leaves the window in about {latest} s")
    expect(earliest <= value <= latest, f"Retry-After was {value}; the first request leaves the window in "
                                        f"{latest} s (rounded up)")


@limiter.check(points=1, hint=["Set X-RateLimit-Limit and X-RateLimit-Remaining on the `response` parameter "
                              "when you admit a request.",
                               "After admitting, remaining = limit minus the count including this request (2, 1, 0 for 3); write both as strings into response.headers of the Response the dependency receives, not a new Response."])
def headers_count_down(ctx: Context) -> None:
    "admitted answers carry X-RateLimit-Limit: 3 and X-RateLimit-Remaining: 2, then 1, then 0"
    seen = []
    for _ in range(REPORTS_LIMIT):
        response = get(ctx, "/reports", "headers-ada")
        expect(response.status_code == ADMITTED, f"a new user's GET /reports answered {response.status_code}")
        seen.append((response.headers.get("x-ratelimit-limit"), response.headers.get("x-ratelimit-remaining")))
    limits = [limit for limit, _ in seen]
    expect(limits == [str(REPORTS_LIMIT)] * REPORTS_LIMIT,
           f"X-RateLimit-Limit on the three admitted answers was {limits}, expected {[str(REPORTS_LIMIT)] * 3}")
    remaining = [left for _, left in seen]
    expect(remaining == ["2", "1", "0"], f"X-RateLimit-Remaining on the three admitted answers was {remaining}, "
                                         "expected ['2', '1', '0']")


@limiter.check(points=2, timeout=20, hint=["Decide in one atomic step: a Lua script that counts and adds, so "
                                          "concurrent requests cannot all count before any of them adds.",
                                           "Separate ZCARD and ZADD calls race even in a plain pipeline: put ZREMRANGEBYSCORE, ZCARD and the conditional ZADD in one Lua script (redis.register_script) and await it with keys= and args=."])
def exact_under_concurrency(ctx: Context) -> None:
    "20 GET /reports from one user arriving at the same moment: exactly 3 answer 200, the others 429"
    for user in ("concurrent-ada", "concurrent-bob", "concurrent-cy"):  # a race shows only now and then
        seen = simultaneous(ctx, [ctx.url], "/reports", user, 20)
        expect_exactly_the_limit(seen, "of 20 GET /reports from one user arriving at the same moment")


@limiter.check(points=2, timeout=30, hint=["Keep the counts in Redis (request.app.state.redis), not in the process, "
                                          "and build keys from what every instance sees (user, route path), not from "
                                          "the object.",
                                           "Each instance is its own process, so a dict on self or the module is not shared; keep the log in request.app.state.redis under a key every instance computes alike (run id, user, route path), not id(self)."])
def shared_across_instances(ctx: Context) -> None:
    "two instances of the app share each user's budget: 3 admitted in all, not 3 each"
    urls = [ctx.url, *ctx.app.more_instances(1)]
    seen = []
    for i in range(6):
        with ctx.http_client(urls[i % 2]) as client:
            seen.append(get(ctx, "/reports", "instances-ada", client).status_code)
    expect_exactly_the_limit(seen, "of 6 GET /reports from one user, alternating between two instances")
