"""Checks for notebook 06, API versioning and deprecation."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httpx

from ..checks import Context, Suite, expect

# the setup's settings and seeded orders: what the exercise text promises
V1_DEPRECATED_AT = datetime(2026, 11, 1, tzinfo=timezone.utc)
V1_SUNSET_AT = datetime(2027, 5, 1, tzinfo=timezone.utc)
SEEDED = {1: ("Ada Lovelace", 1250), 2: ("Alan Turing", 999), 3: ("Grace Hopper", 100000)}
SUPPORTED = ("1", "2")


def _answer(response: httpx.Response, what: str, status: int = 200):
    expect(response.status_code == status, f"{what} answered {response.status_code}, expected {status}")
    try:
        return response.json()
    except ValueError:
        expect(False, f"{what} did not answer JSON")


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _is_v1(item: object, customer: str, cents: int) -> bool:
    """v1's order: {id, customer, total} with the total in euros as a number."""
    return (isinstance(item, dict) and item.get("customer") == customer
            and isinstance(item.get("total"), (int, float)) and not isinstance(item.get("total"), bool)
            and abs(item["total"] - cents / 100) < 0.005)


def _is_v2(item: object, customer: str, cents: int) -> bool:
    """v2's order: {id, customer, amount: {value: "12.50", currency: "EUR"}}."""
    return (isinstance(item, dict) and item.get("customer") == customer
            and item.get("amount") == {"value": _money(cents), "currency": "EUR"})


def _v2_list(ctx: Context) -> list:
    body = _answer(ctx.client.get("/api/v2/orders"), "GET /api/v2/orders")
    expect(isinstance(body, dict) and isinstance(body.get("data"), list),
           "GET /api/v2/orders should answer {\"data\": [...], \"meta\": {\"total\": n}}")
    expect(isinstance(body.get("meta"), dict) and body["meta"].get("total") == len(body["data"]),
           "in GET /api/v2/orders, meta.total should be the number of orders in data")
    return body["data"]


# -- exercise 1: v2 beside v1, and v1's retirement announced --------------------------------------

url_versions = Suite("06-url-versions")


@url_versions.check(points=1, hint=["Leave the v1 routes as they are: v1's clients read a bare list of "
                                   "{id, customer, total}.",
                                    "If v1 answers 500, the middleware still has the template's raise NotImplementedError after call_next: delete it and end with return response. Do not change the v1 routes, OrderV1 or as_v1."])
def v1_answers_as_before(ctx: Context) -> None:
    "GET /api/v1/orders and /api/v1/orders/1 answer v1's shape, as before"
    body = _answer(ctx.client.get("/api/v1/orders"), "GET /api/v1/orders")
    expect(isinstance(body, list), "GET /api/v1/orders should answer a bare JSON list, as v1 always did")
    by_id = {item.get("id"): item for item in body if isinstance(item, dict)}
    for order_id, (customer, cents) in SEEDED.items():
        expect(_is_v1(by_id.get(order_id), customer, cents),
               f"order {order_id} in GET /api/v1/orders is not v1's {{id, customer, total}} with total {cents / 100:g}")
    one = _answer(ctx.client.get("/api/v1/orders/1"), "GET /api/v1/orders/1")
    expect(_is_v1(one, *SEEDED[1]) and one.get("id") == 1,
           "GET /api/v1/orders/1 should answer v1's {id, customer, total} of order 1")


@url_versions.check(points=2, hint=["Return OrdersV2(data=[as_v2(order) ...], meta=Meta(total=...)) for the "
                                   "list and as_v2(order) for one order.",
                                    "Build both answers from as_v2 (amount value is a string such as '12.50'); the list's meta.total must equal len(data), and GET /api/v2/orders/{id} raises HTTPException(404) when orders.get(order_id) is None."])
def v2_answers_the_new_shape(ctx: Context) -> None:
    "GET /api/v2/orders answers {data, meta}, and /api/v2/orders/2 one order with its amount"
    data = _v2_list(ctx)
    by_id = {item.get("id"): item for item in data if isinstance(item, dict)}
    for order_id, (customer, cents) in SEEDED.items():
        expect(_is_v2(by_id.get(order_id), customer, cents),
               f"order {order_id} in GET /api/v2/orders should have amount "
               f"{{\"value\": \"{_money(cents)}\", \"currency\": \"EUR\"}}")
    one = _answer(ctx.client.get("/api/v2/orders/2"), "GET /api/v2/orders/2")
    expect(_is_v2(one, *SEEDED[2]) and one.get("id") == 2,
           "GET /api/v2/orders/2 should answer order 2 in v2's shape {id, customer, amount}")


@url_versions.check(points=1, hint=["Both versions call the same OrderService (`orders`): v2 creates with "
                                   "orders.create(new.customer, new.amount.cents()).",
                                    "POST /api/v2/orders must call the shared orders.create(...) (not a new OrderService or a list of your own) with the cents from new.amount.cents(), and answer as_v2 of the order it returns, id included."])
def one_service_layer(ctx: Context) -> None:
    "an order created through v2 is seen through v1, and one created through v1 through v2"
    created = _answer(ctx.client.post("/api/v2/orders", json={
        "customer": "Edsger Dijkstra", "amount": {"value": "7.05", "currency": "EUR"}}), "POST /api/v2/orders", 201)
    expect(_is_v2(created, "Edsger Dijkstra", 705) and isinstance(created.get("id"), int),
           "POST /api/v2/orders should answer the new order in v2's shape, with its id")
    seen = _answer(ctx.client.get(f"/api/v1/orders/{created['id']}"), "GET /api/v1/orders/<id of the v2 order>")
    expect(_is_v1(seen, "Edsger Dijkstra", 705), "the order created through v2 should read through v1 with total 7.05")
    made = _answer(ctx.client.post("/api/v1/orders", json={"customer": "Barbara Liskov", "total": 3.5}),
                   "POST /api/v1/orders", 201)
    expect(any(_is_v2(item, "Barbara Liskov", 350) and item.get("id") == made.get("id") for item in _v2_list(ctx)),
           "the order created through v1 is missing from GET /api/v2/orders (or its amount is not \"3.50\")")


def _deprecation_problem(response: httpx.Response) -> str | None:
    value = response.headers.get("deprecation")
    if value is None:
        return "no Deprecation header"
    match = re.fullmatch(r"@(-?\d+)", value.strip())
    if match is None:
        return "a Deprecation header that is not a structured date such as @1793491200 (RFC 9745)"
    if int(match[1]) != int(V1_DEPRECATED_AT.timestamp()):
        return "a Deprecation date other than V1_DEPRECATED_AT"
    sunset = response.headers.get("sunset")
    if sunset is None:
        return "no Sunset header"
    try:
        when = parsedate_to_datetime(sunset)
    except (TypeError, ValueError):
        return "a Sunset header that is not an HTTP date such as Sat, 01 May 2027 00:00:00 GMT"
    if when.tzinfo is None or when != V1_SUNSET_AT:
        return "a Sunset date other than V1_SUNSET_AT"
    return None


def _successor_path(response: httpx.Response) -> str | None:
    link = response.links.get("successor-version")
    return urlsplit(link["url"]).path if link and link.get("url") else None


@url_versions.check(points=2, hint=["In the middleware, for paths under /api/v1/: Deprecation = "
                                   "f\"@{int(V1_DEPRECATED_AT.timestamp())}\", Sunset = "
                                   "format_datetime(V1_SUNSET_AT, usegmt=True).",
                                    "Typical slips: timestamp() is a float, so '@1793491200.0' fails (wrap it in int()); isoformat() is not an HTTP date (use format_datetime with usegmt=True); set both on the response from call_next."])
def v1_announces_its_retirement(ctx: Context) -> None:
    "v1 answers carry Deprecation (@ Unix time) and Sunset (HTTP date) with the setup's dates"
    for path in ("/api/v1/orders", "/api/v1/orders/1"):
        response = ctx.client.get(path)
        _answer(response, f"GET {path}")
        problem = _deprecation_problem(response)
        expect(problem is None, f"GET {path} answered with {problem}")


@url_versions.check(points=1, hint=["Link: </api/v2/...same path...>; rel=\"successor-version\".",
                                    "Set response.headers['Link'] to the request path with its /api/v1/ prefix swapped for /api/v2/, in angle brackets, then ; rel=\"successor-version\": /api/v1/orders/1 links </api/v2/orders/1>."])
def v1_links_its_successor(ctx: Context) -> None:
    "v1 answers link the same path under /api/v2 as their successor-version"
    for path in ("/api/v1/orders", "/api/v1/orders/1"):
        response = ctx.client.get(path)
        _answer(response, f"GET {path}")
        successor = _successor_path(response)
        expected = "/api/v2" + path.removeprefix("/api/v1")
        expect(successor is not None, f"GET {path} answered without a Link whose rel is successor-version")
        expect(successor == expected, f"the successor-version of {path} should be {expected}")


@url_versions.check(points=1, hint=["Add the headers only to answers under /api/v1/.",
                                    "Guard all three headers with request.url.path.startswith('/api/v1/'); setting them unconditionally, or testing '/v1' in path loosely, also stamps v2's answers."])
def v2_is_not_deprecated(ctx: Context) -> None:
    "v2 answers carry no Deprecation, Sunset or successor-version link"
    for path in ("/api/v2/orders", "/api/v2/orders/1"):
        response = ctx.client.get(path)
        _answer(response, f"GET {path}")
        for header in ("Deprecation", "Sunset"):
            expect(header.lower() not in response.headers, f"GET {path} answered with a {header} header: "
                                                            "clients would think v2 is being retired too")
        expect(_successor_path(response) is None, f"GET {path} names a successor-version, but v2 is the latest")


# -- exercise 2: one URL, the version in a header ---------------------------------------------------

header_versions = Suite("06-header-versions")


def _orders(ctx: Context, version: str | None) -> httpx.Response:
    return ctx.client.get("/orders", headers={} if version is None else {"X-API-Version": version})


def _shown(version: str | None) -> str:
    if version is None:
        return "without X-API-Version"
    return f"with X-API-Version: {version if len(version) <= 12 else version[:6] + '...'}"


def _is_v1_list(body: object) -> bool:
    return isinstance(body, list) and all(_is_v1(next((i for i in body if isinstance(i, dict) and i.get("id") == k), None),
                                                 *SEEDED[k]) for k in SEEDED)


def _is_v2_list(body: object) -> bool:
    if not (isinstance(body, dict) and isinstance(body.get("data"), list)):
        return False
    by_id = {item.get("id"): item for item in body["data"] if isinstance(item, dict)}
    return (all(_is_v2(by_id.get(k), *SEEDED[k]) for k in SEEDED)
            and isinstance(body.get("meta"), dict) and body["meta"].get("total") == len(body["data"]))


@header_versions.check(points=1, hint=["When the header is missing (None), serve DEFAULT_VERSION.",
                                       "Declare x_api_version as str | None with Header() and default None, and return DEFAULT_VERSION ('1') when it is None; the route then answers v1's bare list of as_v1(order) from header_orders."])
def no_header_gets_the_default(ctx: Context) -> None:
    "GET /orders without X-API-Version answers the default version, v1's list"
    body = _answer(_orders(ctx, None), "GET /orders without X-API-Version")
    expect(_is_v1_list(body), "GET /orders without X-API-Version should answer v1's bare list of "
                              "{id, customer, total}: clients that name no version get DEFAULT_VERSION")


@header_versions.check(points=1, hint=["Return [as_v1(...)] for \"1\" and OrdersV2(...) for \"2\".",
                                       "Branch on the string api_version returns: '1' gives a list of as_v1 over header_orders.list(); '2' gives OrdersV2 with data of as_v2 and meta=Meta(total=len(data))."])
def serves_each_version(ctx: Context) -> None:
    "X-API-Version: 1 answers v1's list, X-API-Version: 2 answers {data, meta}"
    expect(_is_v1_list(_answer(_orders(ctx, "1"), "GET /orders with X-API-Version: 1")),
           "GET /orders with X-API-Version: 1 should answer v1's bare list of {id, customer, total}")
    expect(_is_v2_list(_answer(_orders(ctx, "2"), "GET /orders with X-API-Version: 2")),
           "GET /orders with X-API-Version: 2 should answer {\"data\": [v2 orders], \"meta\": {\"total\": n}}")


def _rejects(ctx: Context, version: str) -> None:
    response = _orders(ctx, version)
    expect(response.status_code == 400, f"GET /orders {_shown(version)} answered {response.status_code}, "
                                        "expected 400")
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    text = detail if isinstance(detail, str) else repr(detail)
    expect(detail is not None and all(re.search(rf"(?<![\w.]){v}(?![\w.])", text) for v in SUPPORTED),
           f"the 400 for GET /orders {_shown(version)} should have a JSON detail that names the supported "
           "versions (1 and 2)")


@header_versions.check(points=2, hint=["Compare the header with SUPPORTED_VERSIONS and raise "
                                      "HTTPException(400, ...) naming them when it is not one of them.",
                                       "In api_version, raise HTTPException(400, detail) for any value not in SUPPORTED_VERSIONS, and name them as bare numbers in the detail, e.g. ', '.join(SUPPORTED_VERSIONS); 'v1' or 'v2' do not count."])
def unknown_versions_answer_400(ctx: Context) -> None:
    "X-API-Version: 3, 0 or 99 answers 400, naming the supported versions"
    for version in ("3", "0", "99"):
        _rejects(ctx, version)


@header_versions.check(points=2, hint=["A version is a name, not a number: int('two') raises ValueError, which "
                                      "FastAPI answers with 500. Compare strings instead.",
                                       "Test the raw header string for membership in SUPPORTED_VERSIONS (a tuple of strings) before any conversion: int() or float() on 'two' or '2;drop' raises, and an uncaught error is a 500."])
def malformed_versions_answer_400(ctx: Context) -> None:
    "X-API-Version: two, 1.5 or 2;drop answers 400, not 500"
    for version in ("two", "1.5", "2;drop"):
        _rejects(ctx, version)


@header_versions.check(points=1, hint=["response.headers[\"Vary\"] = \"X-API-Version\" on the Response the "
                                      "route receives.",
                                       "Set response.headers['Vary'] = 'X-API-Version' on the response parameter list_orders already declares, and return the model; a JSONResponse you build yourself would drop that header."])
def answers_vary_on_the_version(ctx: Context) -> None:
    "every 200 answer of GET /orders says Vary: X-API-Version"
    for version in (None, "1", "2"):
        response = _orders(ctx, version)
        _answer(response, f"GET /orders {_shown(version)}")
        varies = {name.strip().lower() for name in response.headers.get("vary", "").split(",")}
        expect("x-api-version" in varies or "*" in varies,
               f"GET /orders {_shown(version)} answered without Vary: X-API-Version: a shared cache would hand "
               "this answer to clients of the other version")


def _counts(ctx: Context) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    response = ctx.client.get("/metrics")
    expect(response.status_code == 200, f"GET /metrics answered {response.status_code}, expected 200")
    counts: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                if sample.name == "api_requests_total":
                    version = sample.labels.get("version", "")
                    counts[version] = counts.get(version, 0) + sample.value
    except ValueError:
        expect(False, "GET /metrics did not answer Prometheus' text format")
    return counts


@header_versions.check(points=1, hint=["requests_by_version.labels(version=version).inc() once the version "
                                      "is known to be supported.",
                                       "Call requests_by_version.labels(version=version).inc() inside list_orders, after Depends(api_version) validated it: no header counts as '1', a 400 counts nothing; never create a new Counter per request."])
def counts_requests_per_version(ctx: Context) -> None:
    "each GET /orders answered counts once under its version in api_requests_total"
    before = _counts(ctx)
    for version, times in ((None, 2), ("1", 1), ("2", 2), ("3", 1)):
        for _ in range(times):
            _orders(ctx, version)
    after = _counts(ctx)
    for version, expected in (("1", 3), ("2", 2)):
        counted = after.get(version, 0) - before.get(version, 0)
        expect(counted == expected, f"after {expected} answered requests for version {version} (requests without "
                                    f"the header count as version 1), api_requests_total{{version=\"{version}\"}} "
                                    f"grew by {counted:g}")
