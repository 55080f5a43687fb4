"""Hidden checks for notebook 06: run by the grader and the tests, not shown in the notebook."""
from __future__ import annotations

from labsupport.checks import Context, expect
from labsupport.suites.nb06_api_versioning import (
    _answer, _counts, _deprecation_problem, _is_v1, _orders, _rejects, _successor_path, header_versions,
    url_versions,
)


@url_versions.check(points=1, hidden=True, hint="Every v1 answer carries the headers, POST included: decide by "
                                                "path in a middleware, not per GET route.")
def v1_creation_announces_too(ctx: Context) -> None:
    "POST /api/v1/orders answers 201 with the retirement headers and the successor /api/v2/orders"
    response = ctx.client.post("/api/v1/orders", json={"customer": "Radia Perlman", "total": 42})
    body = _answer(response, "POST /api/v1/orders", 201)
    expect(_is_v1(body, "Radia Perlman", 4200), "POST /api/v1/orders should answer the new order in v1's shape")
    problem = _deprecation_problem(response)
    expect(problem is None, f"POST /api/v1/orders answered with {problem}")
    expect(_successor_path(response) == "/api/v2/orders",
           "the successor-version of POST /api/v1/orders should be /api/v2/orders")


@url_versions.check(points=1, hidden=True, hint="orders.get() returns None for an unknown id: raise "
                                                "HTTPException(404) rather than return None.")
def v2_unknown_order_is_404(ctx: Context) -> None:
    "GET /api/v2/orders/<unknown id> answers 404"
    response = ctx.client.get("/api/v2/orders/987654")
    expect(response.status_code == 404, f"GET /api/v2/orders/<an id that does not exist> answered "
                                        f"{response.status_code}, expected 404")


@url_versions.check(points=1, hidden=True, hint="Take the body as NewOrderV2, so that FastAPI validates it.")
def v2_rejects_bad_orders(ctx: Context) -> None:
    "POST /api/v2/orders answers 422 to malformed amounts and missing fields"
    bad = {
        "an amount with one decimal": {"customer": "Ken", "amount": {"value": "12.5", "currency": "EUR"}},
        "a negative amount": {"customer": "Ken", "amount": {"value": "-1.00", "currency": "EUR"}},
        "an amount as a number": {"customer": "Ken", "amount": {"value": 12.5, "currency": "EUR"}},
        "another currency": {"customer": "Ken", "amount": {"value": "1.00", "currency": "XBT"}},
        "no customer": {"amount": {"value": "1.00", "currency": "EUR"}},
    }
    for what, body in bad.items():
        response = ctx.client.post("/api/v2/orders", json=body)
        expect(response.status_code == 422, f"POST /api/v2/orders with {what} answered {response.status_code}, "
                                            "expected 422")


@url_versions.check(points=1, hidden=True, hint="Add the headers in a middleware, which sees every answer, "
                                                "errors included; a route dependency's headers are lost on errors.")
def v1_errors_announce_too(ctx: Context) -> None:
    "a v1 error answer (404 for an unknown order) carries the retirement headers too"
    response = ctx.client.get("/api/v1/orders/987654")
    expect(response.status_code == 404, f"GET /api/v1/orders/<an id that does not exist> answered "
                                        f"{response.status_code}, expected 404")
    problem = _deprecation_problem(response)
    expect(problem is None, f"GET /api/v1/orders/<an id that does not exist> answered with {problem}")


@header_versions.check(points=1, hidden=True, hint="Never convert the header to a number: compare it, as a "
                                                   "string, with SUPPORTED_VERSIONS.")
def odd_numbers_answer_400(ctx: Context) -> None:
    "X-API-Version: a 5000-digit number, 1e3, -1 or NaN answers 400"
    for version in ("9" * 5000, "1e3", "-1", "NaN"):
        _rejects(ctx, version)


@header_versions.check(points=1, hidden=True, hint="Label the counter only with versions you support: a label "
                                                   "taken from the raw header lets any client create new series.")
def bogus_versions_add_no_series(ctx: Context) -> None:
    "unsupported versions create no api_requests_total series of their own"
    before = _counts(ctx)
    for index in range(5):
        _orders(ctx, f"bogus-{index}")
    _orders(ctx, "1")
    after = _counts(ctx)
    grew = after.get("1", 0) - before.get("1", 0)
    expect(grew == 1, f"after one request for version 1 and five for unsupported versions, "
                      f"api_requests_total{{version=\"1\"}} grew by {grew:g}, expected 1")
    expect(set(after) <= {"1", "2"}, f"after requests for unsupported versions, api_requests_total has "
                                     f"{len(after)} version labels: only 1 and 2 may appear")
