"""Hidden checks for notebook 05: the grader and the tests run them, the notebook does not."""
from __future__ import annotations

import time

from labsupport.checks import Context, expect
from labsupport.suites.nb05_rate_limiting import (
    ADMITTED, REFUSED, REPORTS_WINDOW, SEARCH_LIMIT, SEARCH_WINDOW, expect_exactly_the_limit, get, limiter,
    simultaneous, simultaneous_answers, sleep_until, statuses,
)

MARGIN = 0.12  # seconds past a window's end before the checks count on it


@limiter.check(points=2, hidden=True, timeout=30, hint="A sliding window frees one slot when the oldest admitted "
                                                       "request turns a window old: a fixed window resets all at "
                                                       "once, and a token bucket refills gradually.")
def window_slides(ctx: Context) -> None:
    "GET /search: each admitted request leaves the window 1 s after it came, one at a time"
    for attempt in range(6):
        user = f"edge-{attempt}"
        sent_a = time.monotonic()
        first = get(ctx, "/search", user).status_code
        got_a = time.monotonic()
        expect(first == ADMITTED, f"a new user's first GET /search answered {first}")
        sleep_until(sent_a + 0.5)
        sent_b = time.monotonic()
        # the rest of the quota at once, then one more
        middle = simultaneous(ctx, [ctx.url], "/search", user, SEARCH_LIMIT - 1) + statuses(ctx, "/search", user, 1)
        if time.monotonic() > sent_a + SEARCH_WINDOW - 0.05:
            continue  # too slow to be sure they all came within the first one's second
        expect(middle == [ADMITTED] * (SEARCH_LIMIT - 1) + [REFUSED],
               f"half a second after one GET /search, {SEARCH_LIMIT - 1} at once and one more answered {middle}, "
               f"expected {SEARCH_LIMIT - 1} admitted, then 429 (a limit of {SEARCH_LIMIT} per second)")
        sleep_until(got_a + SEARCH_WINDOW + MARGIN)  # the first request has left its window
        edge = statuses(ctx, "/search", user, 2)
        if time.monotonic() > sent_b + SEARCH_WINDOW - 0.05:
            continue  # the four of the middle may have left the window too
        expect(edge[0] == ADMITTED, f"just after the first request turned 1 s old, GET /search answered {edge[0]}: "
                                    "its slot should be free (do refused requests count?)")
        expect(edge[1] == REFUSED, "just after the first request turned 1 s old, two GET /search in a row were both "
                                   "admitted: only that one request left the window (a fixed window resets all at "
                                   "once)")
        return
    expect(False, "the requests were too slow to judge the window's edge (six attempts)")


@limiter.check(points=2, hidden=True, timeout=30, hint="Keep each decision one atomic step in Redis, shared by "
                                                       "every instance.")
def exact_across_four_instances(ctx: Context) -> None:
    "60 GET /reports from one user arriving at the same moment, spread over four instances: exactly 3 admitted"
    urls = [ctx.url, *ctx.app.more_instances(3)]
    for user in ("fleet-ada", "fleet-bob", "fleet-cy"):  # three bursts: a race that one burst misses shows in another
        seen = simultaneous(ctx, urls, "/reports", user, 60)
        expect_exactly_the_limit(seen, "of 60 GET /reports arriving at the same moment over four instances")


@limiter.check(points=1, hidden=True, hint="Set a TTL on every key you write (PEXPIRE to the window), in the same "
                                           "atomic step, and name your keys with lab.run_id().")
def every_key_expires(ctx: Context) -> None:
    "every Redis key the limiter writes expires, within the longest window"
    for path in ("/search", "/reports"):
        status = get(ctx, path, "ttl-ada").status_code
        expect(status == ADMITTED, f"a new user's first GET {path} answered {status}")
    with ctx.redis.client() as redis:
        keys = list(redis.scan_iter(match=f"*{ctx.services.id}*", count=1000))
        expect(keys, "found no Redis key with lab.run_id() in its name: name the limiter's keys with it")
        for key in keys:
            ttl = redis.pttl(key)
            expect(ttl != -1, "a key the limiter wrote has no TTL: it never expires (a crash between two "
                              "commands leaves such keys, and every idle user's key stays forever)")
            expect(ttl <= (REPORTS_WINDOW + 1) * 1000, f"a key the limiter wrote expires in {ttl / 1000:.0f} s, "
                                                       f"longer than the longest window ({REPORTS_WINDOW:g} s)")


@limiter.check(points=1, hidden=True, timeout=20, hint="Round the time left up (math.ceil), and never send less "
                                                       "than 1.")
def retry_after_rounds_up(ctx: Context) -> None:
    "a 429 from GET /search says Retry-After: 1 (under a second left, rounded up, never 0)"
    refusals: list[str] = []
    for _ in range(3):  # a busy machine may spread a burst over more than the window: burst again
        answers = simultaneous_answers(ctx, [ctx.url], "/search", "round-ada", 2 * SEARCH_LIMIT)
        refusals = [headers.get("retry-after", "none") for status, headers in answers if status == REFUSED]
        if refusals:
            break
    for _ in range(2 * SEARCH_LIMIT):  # none refused at once (not atomic?): one after the other, then
        if refusals:
            break
        response = get(ctx, "/search", "round-ada")
        if response.status_code == REFUSED:
            refusals.append(response.headers.get("retry-after", "none"))
    expect(refusals, "GET /search from a new user, in bursts of 10 and then one after the other, was never "
                     "answered 429")
    values = sorted(set(refusals))
    said = f"with less than a second left in the window, the 429s said Retry-After: {', '.join(values)}"
    expect(all(value.isdigit() and int(value) >= 1 for value in values), f"{said}, expected 1 (never 0)")
    # 1 is the answer. A limiter that reads the app's clock may see a 2 in a burst: a request that read
    # the clock first can reach Redis after others, and then the oldest entry is younger than its clock.
    expect("1" in values and all(int(value) <= 2 for value in values), f"{said}, expected 1")
