"""Checks for notebook 09, bulk operations."""
from __future__ import annotations

import asyncio
import json
import time

import httpx

from ..checks import Context, Suite, expect

LEAKS = ("constraint", "insert into", "integrityerror", "sqlite", "asyncpg", "violates", "[sql",
         "duplicate key", "traceback")


def product(sku: str, ean: int | str, name: str | None = None, price_cents: int = 1999) -> dict:
    """A valid product; `ean` as a number is padded to 13 digits."""
    return {"sku": sku, "ean": str(ean).zfill(13), "name": name or f"Product {sku}", "price_cents": price_cents}


def _stored(ctx: Context, sku: str, client: httpx.Client | None = None) -> dict | None:
    """The product as the app stores it (GET /products/{sku}), or None."""
    response = (client or ctx.client).get(f"/products/{sku}")
    if response.status_code == 404:
        return None
    expect(response.status_code == 200, f"GET /products/{sku} answered {response.status_code}, expected 200 or 404")
    return response.json()


def _leaks(text: str) -> list[str]:
    return [word for word in LEAKS if word in text.lower()]


# -- exercise 1: bulk upsert with a result per item ----------------------------------------------

bulk = Suite("09-bulk-upsert")


def _post(ctx: Context, items: list, atomic: bool | None = None, expect_status: int | None = 200) -> dict:
    params = {} if atomic is None else {"atomic": str(atomic).lower()}
    response = ctx.client.post("/products/bulk", json=items, params=params)
    where = "POST /products/bulk" + ("?atomic=true" if atomic else "")
    if expect_status is not None:
        expect(response.status_code == expect_status,
               f"{where} answered {response.status_code}, expected {expect_status}")
    body = response.json()
    results = body.get("results") if isinstance(body, dict) else None
    expect(isinstance(results, list) and len(results) == len(items),
           f"{where} should answer a 'results' list with one entry per item ({len(items)})")
    for index, result in enumerate(results):
        expect(isinstance(result, dict) and result.get("index") == index,
               f"results[{index}] should be an object with 'index': {index}")
    return body


def _statuses(body: dict) -> list:
    return [r.get("status") for r in body["results"]]


@bulk.check(points=1, hint=["Insert every valid item and answer {'created', 'updated', 'failed', 'results'}, "
                           "each result {'index', 'sku', 'status': 'created'}.",
                            "Answer {'created': n, 'updated': 0, 'failed': 0, 'results': [...]} with one {'index': i, 'sku': ..., 'status': 'created'} per item, in the order sent, and store each item's fields exactly as received."])
def creates_new_products(ctx: Context) -> None:
    "a batch of new products: each is stored, and each result says 'created'"
    items = [product(f"NEW-{i}", 1000 + i) for i in range(3)]
    body = _post(ctx, items)
    expect(_statuses(body) == ["created"] * 3, f"the results' statuses were {_statuses(body)}, expected 'created' x3")
    expect(body.get("created") == 3 and body.get("failed") == 0,
           f"the answer counted created={body.get('created')!r} failed={body.get('failed')!r}, expected 3 and 0")
    for item in items:
        expect(_stored(ctx, item["sku"]) == item, f"{item['sku']} was not stored as sent")


@bulk.check(points=1, hint=["Upsert by sku: INSERT ... ON CONFLICT (sku) DO UPDATE; look up which skus "
                           "existed before to tell 'updated' from 'created'.",
                            "Before the upsert, SELECT the skus of the batch that already exist; on_conflict_do_update(index_elements=['sku'], set_ from excluded) then updates them, and those items get status 'updated'."])
def updates_existing_products(ctx: Context) -> None:
    "an item whose sku exists updates that product, and its result says 'updated'"
    _post(ctx, [product("UPD-1", 2001, price_cents=500)])
    body = _post(ctx, [product("UPD-1", 2001, "Renamed", 750), product("UPD-2", 2002)])
    expect(_statuses(body) == ["updated", "created"],
           f"the results' statuses were {_statuses(body)}, expected ['updated', 'created']")
    expect(body.get("created") == 1 and body.get("updated") == 1,
           f"the answer counted created={body.get('created')!r} updated={body.get('updated')!r}, expected 1 and 1")
    expect(_stored(ctx, "UPD-1") == product("UPD-1", 2001, "Renamed", 750), "UPD-1 was not updated")


@bulk.experiment
def _conflict_in_the_middle(ctx: Context) -> dict:
    """An existing product X; a batch of four whose third item takes X's EAN."""
    _post(ctx, [product("MID-X", 3000)])
    items = [product("MID-A", 3001), product("MID-B", 3002), product("MID-C", 3000), product("MID-D", 3003)]
    response = ctx.client.post("/products/bulk", json=items)
    return {"items": items, "response": response}


@bulk.check(points=2, hint=["Roll back only the failed row: a SAVEPOINT per row (begin_nested), or one "
                           "statement for the batch and, if it fails, a savepoint per row to find the culprit.",
                            "An IntegrityError aborts the whole transaction; wrap each row's insert in async with conn.begin_nested() so only that savepoint rolls back, mark it 'error', then commit the outer transaction."])
def one_conflict_keeps_the_other_rows(ctx: Context) -> None:
    "one item breaks a unique constraint: the items before and after it are still stored"
    run = _conflict_in_the_middle(ctx)
    response = run["response"]
    expect(response.status_code == 200, f"POST /products/bulk answered {response.status_code}, expected 200")
    stored = [sku for sku in ("MID-A", "MID-B", "MID-D") if _stored(ctx, sku) is not None]
    expect("MID-A" in stored and "MID-B" in stored,
           "the items before the failing one were lost: a rollback discarded them")
    expect("MID-D" in stored, "the item after the failing one was not stored")
    expect(_stored(ctx, "MID-C") is None, "MID-C, whose EAN belongs to another product, was stored")
    expect(_stored(ctx, "MID-X") == product("MID-X", 3000), "MID-X, the product that owns the EAN, was changed")
    body = response.json()
    expect(_statuses(_post_shape(body, 4)) == ["created", "created", "error", "created"],
           f"the results' statuses were {_statuses(body)}, expected ['created', 'created', 'error', 'created']")
    expect(body.get("created") == 3 and body.get("failed") == 1,
           f"the answer counted created={body.get('created')!r} failed={body.get('failed')!r}, expected 3 and 1")


def _post_shape(body: object, count: int) -> dict:
    results = body.get("results") if isinstance(body, dict) else None
    expect(isinstance(results, list) and len(results) == count,
           f"the answer should hold a 'results' list with one entry per item ({count})")
    return body


@bulk.check(points=1, hint=["Put a code of your own in 'error' ('conflict', 'invalid'); keep the "
                           "database's message for the log.",
                            "In the except IntegrityError branch set result['error'] = 'conflict' and never put str(exc) or exc.orig in the answer; log it instead if you need the detail."])
def errors_are_codes_not_database_messages(ctx: Context) -> None:
    "the failing item's error is the code 'conflict', and the answer quotes no database message"
    response = _conflict_in_the_middle(ctx)["response"]
    expect(not _leaks(response.text), "the answer repeats the database's error message: table and constraint "
                                      "names, SQL and values are internals")
    body = _post_shape(response.json(), 4)
    error = body["results"][2].get("error")
    expect(error == "conflict", f"results[2].error was {error!r}, expected 'conflict'")


@bulk.check(points=1, hint=["Accept a list of anything and validate each item yourself "
                           "(ProductIn.model_validate): a bad item gets error 'invalid', the rest go on.",
                            "Declare the body as items: list[Any], then call ProductIn.model_validate(item) in a try per item; on ValidationError set status 'error', error 'invalid' at that index and continue with the next."])
def invalid_items_are_reported_by_index(ctx: Context) -> None:
    "malformed items get status 'error' and error 'invalid' at their index; the valid ones are stored"
    items = [product("INV-A", 4001), {**product("bad sku!", 4002)}, {**product("INV-C", 4003), "price_cents": -5},
             "not an object", product("INV-E", 4005), product("INV-F", 4006, "Nul\x00byte")]
    body = _post(ctx, items)
    statuses = _statuses(body)
    expect(statuses == ["created", "error", "error", "error", "created", "error"],
           f"the results' statuses were {statuses}, expected ['created', 'error', 'error', 'error', 'created', 'error']")
    codes = [r.get("error") for r in body["results"][1:4]]
    expect(codes == ["invalid"] * 3, f"the malformed items' errors were {codes}, expected 'invalid' x3")
    expect(body["results"][5].get("error") == "invalid" and _stored(ctx, "INV-F") is None,
           "an item whose name holds a NUL character (which PostgreSQL cannot store) should be 'invalid', not stored")
    expect(_stored(ctx, "INV-A") and _stored(ctx, "INV-E"), "the valid items were not stored")


@bulk.check(points=2, hint=["With atomic=true, run the batch in one transaction and roll it all back when "
                           "any item fails: answer 409 with the results, and no result 'created'.",
                            "When atomic and any result failed, call transaction.rollback() instead of commit, change the non-error results' status away from 'created'/'updated' (e.g. 'rolled_back') and set response.status_code = 409."])
def all_or_nothing_when_asked(ctx: Context) -> None:
    "with ?atomic=true one bad item stores nothing (409); a clean batch stores everything"
    _post(ctx, [product("ALL-X", 5000)])
    items = [product("ALL-A", 5001), product("ALL-B", 5000), product("ALL-C", 5003)]
    body = _post(ctx, items, atomic=True, expect_status=409)
    stored = [sku for sku in ("ALL-A", "ALL-C") if _stored(ctx, sku) is not None]
    expect(not stored, f"with atomic=true and a failing item, {len(stored)} other item(s) were stored anyway")
    expect(body["results"][1].get("status") == "error" and body["results"][1].get("error") == "conflict",
           "results[1], the item that failed, should say status 'error' and error 'conflict'")
    claims = [s for s in _statuses(body) if s in ("created", "updated")]
    expect(not claims, "with everything rolled back, a result still says 'created' or 'updated'")
    body = _post(ctx, [product("ALL-D", 5004), product("ALL-E", 5005)], atomic=True)
    expect(_statuses(body) == ["created", "created"] and _stored(ctx, "ALL-D") and _stored(ctx, "ALL-E"),
           "a clean batch with atomic=true should be stored, each item 'created'")


@bulk.check(points=1, hint=["Refuse more than MAX_ITEMS items with 413 (or 422) before writing anything.",
                            "Check len(items) > MAX_ITEMS (500) first, before opening a connection, and raise HTTPException(413); a limit of 500 must still accept exactly 500 items."],
            timeout=20)
def batch_size_is_bounded(ctx: Context) -> None:
    "501 items are refused with 413 or 422 and nothing is stored; 500 are accepted"
    items = [product(f"MAX-{i}", 6_000_000 + i) for i in range(501)]
    response = ctx.client.post("/products/bulk", json=items, timeout=15)
    expect(response.status_code in (413, 422), f"a batch of 501 items was answered {response.status_code}, "
                                               "expected 413 or 422")
    expect(_stored(ctx, "MAX-0") is None and _stored(ctx, "MAX-500") is None,
           "a refused batch of 501 items was partly stored")
    response = ctx.client.post("/products/bulk", json=items[:500], timeout=15)
    expect(response.status_code == 200, f"a batch of 500 items was answered {response.status_code}, expected 200")
    created = response.json().get("created")
    expect(created == 500, f"a batch of 500 new items counted created={created!r}, expected 500")


# -- exercise 2: a streaming NDJSON import --------------------------------------------------------

imports = Suite("09-streaming-import")


def ndjson(items) -> bytes:
    return b"".join(json.dumps(item, ensure_ascii=False).encode() + b"\n" for item in items)


def count(ctx: Context, client: httpx.Client | None = None) -> int:
    response = (client or ctx.client).get("/products/count")
    expect(response.status_code == 200, f"GET /products/count answered {response.status_code}, expected 200")
    return response.json()["count"]


def _import(ctx: Context, body, expect_status: int | None = 200, timeout: float = 10.0) -> dict:
    response = ctx.client.post("/products/import", content=body, headers={"content-type": "application/x-ndjson"},
                               timeout=timeout)
    if expect_status is not None:
        expect(response.status_code == expect_status,
               f"POST /products/import answered {response.status_code}, expected {expect_status}")
    answer = response.json()
    expect(isinstance(answer, dict) and isinstance(answer.get("imported"), int),
           "the answer should hold 'imported', the number of products imported")
    return answer


def _errors(answer: dict) -> list:
    """The answer's errors as (line, code) pairs, in line order (the order they were found in may differ)."""
    errors = answer.get("errors")
    expect(isinstance(errors, list), "the answer should hold 'errors', a list of {'line', 'error'}")
    pairs = [(e.get("line"), e.get("error")) if isinstance(e, dict) else (None, None) for e in errors]
    return sorted(pairs, key=lambda pair: (pair[0] if isinstance(pair[0], int) else -1, str(pair[1])))


def pieces(data: bytes, size: int):
    """The body in pieces of `size` bytes: lines and characters split across chunks."""
    for start in range(0, len(data), size):
        yield data[start:start + size]


_preflights = iter(range(10**6))


def preflight(ctx: Context) -> None:
    """Import one valid line first. An app that fails before reading the body answers a large
    upload while the check is still sending it, and the check may get the answer or a closed
    connection; a one-line body gets the answer, the same every time."""
    number = next(_preflights)
    response = ctx.client.post("/products/import", content=ndjson([product(f"PRE-{number}", 99_000_000 + number)]))
    expect(response.status_code == 200, f"POST /products/import with one valid line answered "
                                        f"{response.status_code}, expected 200")


@imports.check(points=1, hint=["Read request.stream(), split it into lines, validate each with "
                              "ProductIn.model_validate_json and insert the valid ones.",
                               "Take request: Request, iterate async for chunk in request.stream(), split complete lines on b'\\n', ProductIn.model_validate_json(line) each, insert them and answer {'imported': n, 'failed': 0, 'errors': []}."])
def imports_every_line(ctx: Context) -> None:
    "40 valid lines: 40 products imported, no errors"
    before = count(ctx)
    answer = _import(ctx, ndjson(product(f"IMP-{i}", 10_000 + i) for i in range(40)))
    expect(answer["imported"] == 40, f"the answer said imported={answer['imported']}, expected 40")
    expect(_errors(answer) == [] and answer.get("failed") == 0, "a clean import should report no errors")
    expect(count(ctx) == before + 40, f"the table grew by {count(ctx) - before}, expected 40")


@imports.experiment
def _dense_unicode_import(ctx: Context) -> dict:
    """4000 lines whose names are mostly 3- and 4-byte UTF-8 characters, about 3 MB, sent in
    pieces of 1021 bytes: the app receives it in many chunks, and (almost) every place where a
    chunk can end is inside a line and inside a character."""
    preflight(ctx)
    name = "Crème " + "日本茶🍵" * 46  # 190 characters, 605 bytes
    items = [product(f"UTF-{i}", 20_000 + i, f"{name} {i}") for i in range(4000)]
    response = ctx.client.post("/products/import", content=pieces(ndjson(items), 1021), timeout=20)
    return {"items": items, "response": response}


@imports.check(points=2, hint=["Chunks end anywhere, even inside a line or a UTF-8 character: keep the "
                              "unfinished tail for the next chunk, split on b'\\n', decode whole lines only.",
                               "Keep a bytes tail between chunks: *complete, tail = (tail + chunk).split(b'\\n'); validate only the complete lines and the final tail after the stream ends. Never .decode() a chunk on its own."],
               timeout=25)
def lines_split_across_chunks(ctx: Context) -> None:
    "3 MB of non-ASCII names, arriving in many chunks: every line imported intact"
    run = _dense_unicode_import(ctx)
    response, items = run["response"], run["items"]
    expect(response.status_code == 200, f"POST /products/import answered {response.status_code}, expected 200")
    answer = response.json()
    expect(isinstance(answer, dict) and answer.get("imported") == 4000 and _errors(answer) == [],
           f"4000 valid lines gave imported={answer.get('imported')!r} and {len(answer.get('errors') or [])} "
           "error(s), expected 4000 and none: lines or characters cut by a chunk's end were broken")
    for item in (items[0], items[1717], items[3999]):
        expect(_stored(ctx, item["sku"]) == item, f"{item['sku']} was not stored as sent")


@imports.check(points=2, hint=["Count lines from 1 as they come; a line that is not JSON, or not a valid "
                              "product, is {'line': n, 'error': 'invalid'} and the import goes on.",
                               "Number every line (starting at 1) before validating; model_validate_json raises ValidationError for broken JSON and for [1, 2, 3] alike, so catch it and append {'line': n, 'error': 'invalid'}."])
def bad_lines_reported_by_number(ctx: Context) -> None:
    "lines that are not valid products are reported by line number, and the others imported"
    lines = [json.dumps(product("BAD-1", 30_001)).encode(), b'{"sku": "BAD-2", "ean": ',
             json.dumps(product("BAD-3", 30_003)).encode(), json.dumps({**product("BAD-4", 30_004), "price_cents": -1}).encode(),
             b"[1, 2, 3]", json.dumps(product("BAD-6", 30_006)).encode(),
             json.dumps(product("BAD-7", 30_007, "Nul\x00byte")).encode()]  # JSON's "\u0000": PostgreSQL cannot store it
    answer = _import(ctx, b"\n".join(lines) + b"\n")
    expect(_errors(answer) == [(2, "invalid"), (4, "invalid"), (5, "invalid"), (7, "invalid")],
           f"the errors were {_errors(answer)}, expected lines 2, 4, 5 and 7, each 'invalid'")
    expect(answer["imported"] == 3 and answer.get("failed") == 4,
           f"the answer said imported={answer['imported']} failed={answer.get('failed')!r}, expected 3 and 4")


@imports.check(points=1, hint=["INSERT ... ON CONFLICT DO NOTHING RETURNING sku tells which rows went in; "
                              "remember the skus and EANs of earlier lines to catch repeats.",
                               "Keep sets of skus and EANs seen in this import (repeats are 'conflict'), and insert with on_conflict_do_nothing().returning(sku): a line whose sku is not returned hit a row already in the table."])
def conflicts_reported_by_number(ctx: Context) -> None:
    "lines whose sku or EAN is taken (in the table, or earlier in the import) are 'conflict'"
    _import(ctx, ndjson([product("CON-X", 40_000)]))
    items = [product("CON-A", 40_001), product("CON-X", 40_002), product("CON-C", 40_000),
             product("CON-A", 40_004), product("CON-E", 40_005)]
    answer = _import(ctx, ndjson(items))
    expect(_errors(answer) == [(2, "conflict"), (3, "conflict"), (4, "conflict")],
           f"the errors were {_errors(answer)}, expected lines 2, 3 and 4, each 'conflict'")
    expect(answer["imported"] == 2, f"the answer said imported={answer['imported']}, expected 2")
    expect(_stored(ctx, "CON-X") == product("CON-X", 40_000), "CON-X was changed by the import")


@imports.check(points=2, hint=["Don't await request.body(): iterate request.stream(), and write and commit "
                              "every BATCH lines as soon as they have arrived.",
                               "Inside the async for over request.stream(), write and commit (engine.begin() per batch) as soon as BATCH (500) lines are collected, not once after the loop; request.body() waits for the whole upload."], timeout=20)
async def commits_in_batches_while_streaming(ctx: Context) -> None:
    "while the body is still arriving, the first batches are already in the table"
    first = ndjson(product(f"STR-{i}", 50_000 + i) for i in range(1200))
    rest = ndjson(product(f"STR-{i}", 50_000 + i) for i in range(1200, 1300))
    seen = asyncio.Event()
    preflight(ctx)

    async def body():
        for piece in pieces(first, 16_384):
            yield piece
        await seen.wait()  # the body stays open until the check has looked: a count that is slow to
        yield rest         # answer under load must not see a commit made after the last line

    async with ctx.async_client(timeout=15) as client:
        before = (await client.get("/products/count")).json()["count"]
        upload = asyncio.create_task(client.post("/products/import", content=body(),
                                                 headers={"content-type": "application/x-ndjson"}))
        grew = 0
        deadline = time.monotonic() + 8
        try:
            while time.monotonic() < deadline and not upload.done():
                grew = (await client.get("/products/count")).json()["count"] - before
                if grew >= 1000:
                    break
                await asyncio.sleep(0.02)
        finally:
            seen.set()
        try:
            response = await upload
        except httpx.HTTPError:
            response = None
    expect(response is None or response.status_code == 200 or grew >= 1000,
           f"a streamed import was answered {response.status_code if response else 0}, expected 200")
    expect(grew >= 1000, f"with 1200 lines sent and the body still open, {grew} products were in the table: "
                         "the import waits for the whole body (or commits only at the end)")
    expect(response is not None and response.status_code == 200,
           "the streamed import did not end with a 200 answer")
    expect(response.json().get("imported") == 1300, "the streamed import should end with imported=1300")


@imports.check(points=1, hint=["Count lines as they arrive and stop at MAX_LINES: answer 413 without "
                              "importing anything after that line.",
                               "When the line number passes MAX_LINES (5000), write the pending batch and return JSONResponse(..., status_code=413) straight away, without validating or inserting line 5001."], timeout=20)
def too_many_lines_is_413(ctx: Context) -> None:
    "a body of 5001 lines is refused with 413, and nothing after line 5000 is imported"
    preflight(ctx)
    before = count(ctx)
    items = [product(f"LIM-{i}", 60_000 + i) for i in range(5001)]
    response = ctx.client.post("/products/import", content=ndjson(items), timeout=15)
    expect(response.status_code == 413, f"a body of 5001 lines was answered {response.status_code}, expected 413")
    expect(_stored(ctx, "LIM-5000") is None, "line 5001 was imported although the limit is 5000 lines")
    expect(count(ctx) - before <= 5000, "more than 5000 lines were imported")


@imports.check(points=1, hint=["When the unfinished tail grows past MAX_LINE_BYTES, drop it and remember "
                              "that the line is too long; report it as 'too_long' when its newline comes.",
                               "A line is too_long if it is over MAX_LINE_BYTES (4096) when complete or if the kept tail grows past it: then empty the tail, set a flag, and at its newline report {'line': n, 'error': 'too_long'}."])
def long_line_is_an_error(ctx: Context) -> None:
    "a 100 kB line is reported as 'too_long'; the lines around it are imported"
    preflight(ctx)
    long_line = json.dumps(product("LONG-2", 70_002, "x" * 100_000)).encode()
    body = ndjson([product("LONG-1", 70_001)]) + long_line + b"\n" + ndjson([product("LONG-3", 70_003)])
    answer = _import(ctx, pieces(body, 4096))
    expect(_errors(answer) == [(2, "too_long")], f"the errors were {_errors(answer)}, expected [(2, 'too_long')]")
    expect(answer["imported"] == 2 and _stored(ctx, "LONG-1") and _stored(ctx, "LONG-3"),
           "the lines before and after the long one should be imported")
