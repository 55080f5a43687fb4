"""Hidden checks for notebook 09: the grader and the tests run them, the notebook does not."""
from __future__ import annotations

import json

from labsupport.checks import Context, expect
from labsupport.suites.nb09_bulk_operations import (
    _errors, _import, _post, _statuses, _stored, bulk, count, imports, ndjson, product,
)


@bulk.check(points=1, hidden=True, hint="A sku or an EAN may appear once per batch: a repeat is a "
                                        "'conflict', and the first occurrence is the one stored.")
def repeats_within_a_batch(ctx: Context) -> None:
    "a sku, or an EAN, repeated within one batch: the repeat is 'conflict', the first is stored"
    items = [product("REP-A", 7001, price_cents=100), product("REP-A", 7002, price_cents=200),
             product("REP-C", 7001), product("REP-D", 7004)]
    body = _post(ctx, items)
    expect(_statuses(body) == ["created", "error", "error", "created"],
           f"the results' statuses were {_statuses(body)}, expected ['created', 'error', 'error', 'created']")
    expect([r.get("error") for r in body["results"][1:3]] == ["conflict", "conflict"],
           "the repeated items' errors should be 'conflict'")
    expect(_stored(ctx, "REP-A") == product("REP-A", 7001, price_cents=100),
           "REP-A should be stored as its first occurrence in the batch")


@bulk.check(points=1, hidden=True, hint="An update can break a unique constraint too (an EAN another product "
                                        "has): isolate it with a savepoint and keep the rest.")
def conflicting_update_keeps_the_rest(ctx: Context) -> None:
    "an update that takes another product's EAN fails alone; both products stay as they were"
    _post(ctx, [product("CUP-X", 8001), product("CUP-Y", 8002)])
    body = _post(ctx, [product("CUP-Z", 8003), product("CUP-X", 8002, "Takes Y's EAN"), product("CUP-W", 8004)])
    expect(_statuses(body) == ["created", "error", "created"],
           f"the results' statuses were {_statuses(body)}, expected ['created', 'error', 'created']")
    expect(body["results"][1].get("error") == "conflict", "the conflicting update's error should be 'conflict'")
    expect(_stored(ctx, "CUP-X") == product("CUP-X", 8001) and _stored(ctx, "CUP-Y") == product("CUP-Y", 8002),
           "the products involved in the failed update were changed")
    expect(_stored(ctx, "CUP-Z") and _stored(ctx, "CUP-W"), "the other items of the batch were not stored")


@bulk.check(points=1, hidden=True, hint="A body that is not a JSON list is the client's mistake: 422, "
                                        "never 500; an empty list is an empty answer.")
def malformed_bodies_are_422(ctx: Context) -> None:
    "a body that is not a JSON list gets 422, an empty list an empty answer; never 500"
    for content in (b'{"sku": "ONE"}', b"[1, 2", b'"text"'):
        code = ctx.client.post("/products/bulk", content=content, headers={"content-type": "application/json"}).status_code
        expect(code == 422, f"POST /products/bulk with a body that is not a JSON list answered {code}, expected 422")
    body = _post(ctx, [])
    expect(body["results"] == [], "an empty batch should answer an empty results list")


@imports.check(points=1, hidden=True, hint="Every line counts, blank ones included; strip a trailing \\r; "
                                           "the last line needs no newline.")
def blank_lines_crlf_and_no_final_newline(ctx: Context) -> None:
    "CRLF line ends, blank lines and no final newline: numbering counts every line"
    lines = [json.dumps(product("CRLF-1", 90_001)), "", json.dumps(product("CRLF-3", 90_003)),
             '{"not": "a product"}', json.dumps(product("CRLF-5", 90_005))]
    answer = _import(ctx, "\r\n".join(lines).encode())
    expect(_errors(answer) == [(4, "invalid")], f"the errors were {_errors(answer)}, expected [(4, 'invalid')]")
    expect(answer["imported"] == 3 and _stored(ctx, "CRLF-5"),
           "the last line, without a newline, should be imported too")


@imports.check(points=1, hidden=True, hint="Count every failure, but list at most MAX_ERRORS of them: the "
                                           "answer must stay small whatever the body holds.")
def the_error_list_is_bounded(ctx: Context) -> None:
    "300 bad lines: failed counts 300, and the answer lists at most 100 of them"
    answer = _import(ctx, b"not json\n" * 300 + ndjson([product("ERR-1", 91_001)]))
    expect(answer.get("failed") == 300, f"the answer said failed={answer.get('failed')!r}, expected 300")
    expect(len(_errors(answer)) <= 100, f"the answer listed {len(_errors(answer))} errors, more than MAX_ERRORS")
    expect(answer["imported"] == 1, "the one valid line should be imported")


@imports.check(points=1, hidden=True, hint="An empty body is an import of nothing: 200 and imported 0.")
def an_empty_body_imports_nothing(ctx: Context) -> None:
    "an empty body: 200, imported 0"
    before = count(ctx)
    answer = _import(ctx, b"")
    expect(answer["imported"] == 0 and count(ctx) == before, "an empty body should import nothing")
