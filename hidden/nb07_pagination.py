"""Hidden checks for notebook 07: the grader and the tests run them, the notebook does not."""
from __future__ import annotations

import base64
import json

from labsupport.checks import Context, expect
from labsupport.suites.nb07_pagination import (
    add, cursor_pages, edited_cursors, expect_every_product_once, get_page, page, remove, restock, walk,
)


@cursor_pages.check(points=2, hidden=True, hint="With many equal prices the id decides: continue after "
                                                "(price, id), never after the price alone.")
def many_equal_prices(ctx: Context) -> None:
    "60 products at one price, pages of 7: each product once, in order of id"
    expected = restock(ctx, [999] * 60)
    expect_every_product_once(walk(ctx, 7), expected, "a walk with limit=7 through 60 products at one price")


@cursor_pages.check(points=2, hidden=True, hint="A cursor must hold the position (the last price and id), not "
                                                "a count of rows to skip: positions do not move when rows do.")
def stable_while_rows_change(ctx: Context) -> None:
    "a walk while products are added and removed between pages: nothing repeats, nothing still there is missed"
    original = restock(ctx, [100 * (i + 1) for i in range(40)])
    changes: dict[str, list[dict]] = {"added behind": [], "added ahead": [], "removed unseen": []}

    def between(number: int) -> None:
        if number == 1:  # behind the position: cheaper than anything seen so far, and one seen item gone
            changes["added behind"] += add(ctx, [50, 60])
            remove(ctx, original[1])
        elif number == 3:  # ahead of it: one product added further on, one not yet seen removed
            changes["added ahead"] += add(ctx, [3350])
            changes["removed unseen"].append(original[35])
            remove(ctx, original[35])

    items = walk(ctx, 6, between)
    ids = [item["id"] for item in items]
    twice = len(ids) - len(set(ids))
    expect(not twice, f"{twice} product{'s' if twice > 1 else ''} came twice in a walk while products were added "
                      "and removed between pages")
    pairs = [(item["price"], item["id"]) for item in items]
    expect(pairs == sorted(pairs), "the walk's products were not in order of price, then id")
    gone = {row["id"] for row in changes["removed unseen"]}
    kept = [row for row in original if row["id"] not in gone and row is not original[1]]
    missed = [row for row in kept if row["id"] not in ids]
    expect(not missed, f"{len(missed)} products that were there throughout never came (the first at price "
                       f"{missed[0]['price'] if missed else 0})")
    expect(not gone & set(ids), "a product removed before the walk reached it still came")
    expect(all(row["id"] in ids for row in changes["added ahead"]), "a product added ahead of the walk's position "
                                                                   "never came")
    expect(not any(row["id"] in ids for row in changes["added behind"]),
           "a product added behind the walk's position came anyway")


@cursor_pages.check(points=2, hidden=True, hint="Sign the cursor (itsdangerous's URLSafeSerializer with "
                                                "CURSOR_KEY) and answer 400 when the signature does not match.")
def tampered_cursor_is_400(ctx: Context) -> None:
    "cursors the API did not issue (edited, cut short, made up) answer 400"
    expected = restock(ctx, [100 * (i + 1) for i in range(30)])
    first = page(ctx, 10, what="the first page (limit=10)")
    last = first["items"][-1]
    for what, cursor in edited_cursors(first["next_cursor"], last, expected[20]):
        status = get_page(ctx, 10, cursor).status_code
        expect(status == 400, f"a cursor {what} answered {status}, expected 400"
               + (": a client can move the cursor anywhere (sign it)" if status == 200 else ""))


@cursor_pages.check(points=1, hidden=True, hint="Catch every way decoding can fail (bad base64, bad signature, "
                                                "wrong shape) and answer 400; bound the length in the decoder "
                                                "(CURSOR_MAX_LENGTH), not with Query(max_length=...), which answers 422.")
def invalid_cursors_are_400(ctx: Context) -> None:
    "garbage cursors of several kinds, an overlong one among them, answer 400"
    restock(ctx, [100, 200, 300])
    garbage = {"%%%": "%%%", "a word": "hello", "a dot": ".", "two dots": "a.b.c", "a long run of letters": "A" * 80,
               "base64 of a JSON object": base64.urlsafe_b64encode(json.dumps({"price": 1}).encode()).decode(),
               "base64 of nothing": "====", "a number": "12345",
               "600 characters long": "A" * 600, "4000 characters long": "A" * 2000 + "." + "B" * 1999}
    for what, cursor in garbage.items():
        status = get_page(ctx, 2, cursor).status_code
        expect(status == 400, f"a cursor that is {what} answered {status}, expected 400")


@cursor_pages.check(points=1, hidden=True, hint="Keep limit: int = Query(default=20, ge=1, le=100).")
def limit_bounds_are_422(ctx: Context) -> None:
    "limit outside 1..100 answers 422; limit=1 and limit=100 are served"
    restock(ctx, [100 + i for i in range(120)])
    for value in ("0", "-1", "101", "1000", "ten"):
        status = ctx.client.get("/products", params={"limit": value}).status_code
        expect(status == 422, f"GET /products?limit={value} answered {status}, expected 422")
    for value in (1, 100):
        body = page(ctx, value, what=f"GET /products?limit={value}")
        expect(len(body["items"]) == value, f"GET /products?limit={value} held {len(body['items'])} products")


@cursor_pages.check(points=1, hidden=True, hint="An empty page has no last item: only build next_cursor when "
                                                "there is a next page.")
def empty_catalogue(ctx: Context) -> None:
    "with no products, GET /products answers 200 with no items, has_more false and next_cursor null"
    restock(ctx, [])
    body = page(ctx, what="GET /products on an empty catalogue")
    expect(body["items"] == [] and body["has_more"] is False,
           "GET /products on an empty catalogue should answer no items and has_more: false")
