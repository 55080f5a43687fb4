"""Checks for notebook 07, pagination.

Each check sets the scene through the catalogue's admin routes (given in the setup cells): it
empties the catalogue, adds the products it needs, then pages through GET /products. Messages name
prices, counts and statuses, never cursors (they differ from run to run).
"""
from __future__ import annotations

import base64
import binascii
import json
import re

import httpx

from ..checks import Context, Suite, expect

SHAPE = '{"items": [...], "next_cursor": ..., "has_more": ...}'


def restock(ctx: Context, prices: list[int]) -> list[dict]:
    """Replace the catalogue with one product per price; the products in the expected order."""
    cleared = ctx.client.delete("/admin/products")
    expect(cleared.status_code == 204, f"DELETE /admin/products answered {cleared.status_code}: keep "
                                       "`products_app = catalogue_app()` in the exercise cell")
    products = [{"name": f"item {i}", "price": price} for i, price in enumerate(prices)]
    ids: list[int] = []
    for start in range(0, len(products), 1000):
        added = ctx.client.post("/admin/products", json=products[start:start + 1000])
        expect(added.status_code == 201, f"POST /admin/products answered {added.status_code}")
        ids += added.json()
    rows = [{"id": product_id, **product} for product_id, product in zip(ids, products)]
    return sorted(rows, key=lambda row: (row["price"], row["id"]))


def add(ctx: Context, prices: list[int]) -> list[dict]:
    products = [{"name": f"new {i}", "price": price} for i, price in enumerate(prices)]
    added = ctx.client.post("/admin/products", json=products)
    expect(added.status_code == 201, f"POST /admin/products answered {added.status_code}")
    return [{"id": product_id, **product} for product_id, product in zip(added.json(), products)]


def remove(ctx: Context, product: dict) -> None:
    removed = ctx.client.delete(f"/admin/products/{product['id']}")
    expect(removed.status_code == 204, f"DELETE /admin/products/{{id}} answered {removed.status_code}")


def get_page(ctx: Context, limit: int | None = None, cursor: str | None = None) -> httpx.Response:
    params = {}
    if limit is not None:
        params["limit"] = limit
    if cursor is not None:
        params["cursor"] = cursor
    return ctx.client.get("/products", params=params)


def page(ctx: Context, limit: int | None = None, cursor: str | None = None, what: str = "GET /products") -> dict:
    """A page, checked for its shape: items (each with id, name, price), next_cursor, has_more."""
    response = get_page(ctx, limit, cursor)
    expect(response.status_code == 200, f"{what} answered {response.status_code}, expected 200")
    body = response.json()
    expect(isinstance(body, dict) and {"items", "next_cursor", "has_more"} <= set(body),
           f"{what} answered something other than {SHAPE}")
    items = body["items"]
    expect(isinstance(items, list) and all(isinstance(i, dict) and {"id", "name", "price"} <= set(i) for i in items),
           f"{what}: `items` should be a list of products, each with id, name and price")
    expect(isinstance(body["has_more"], bool), f"{what}: `has_more` should be true or false")
    if body["has_more"]:
        expect(isinstance(body["next_cursor"], str) and body["next_cursor"],
               f"{what}: `has_more` is true but `next_cursor` is not a cursor")
    else:
        expect(body["next_cursor"] is None, f"{what}: `has_more` is false but `next_cursor` is not null")
    return body


def walk(ctx: Context, limit: int, between=None, max_pages: int = 200) -> list[dict]:
    """Every item of a walk from the first page through next_cursor; `between(n)` runs after page n."""
    items, cursor = [], None
    for number in range(1, max_pages + 1):
        body = page(ctx, limit, cursor, what=f"page {number} of a walk with limit={limit}")
        expect(len(body["items"]) <= limit, f"page {number} held {len(body['items'])} items with limit={limit}")
        items += body["items"]
        if not body["has_more"]:
            return items
        expect(body["items"], f"page {number} was empty but said has_more")
        cursor = body["next_cursor"]
        if between is not None:
            between(number)
    expect(False, f"a walk with limit={limit} had not ended after {max_pages} pages: does the cursor move on?")


def expect_every_product_once(items: list[dict], expected: list[dict], what: str) -> None:
    ids = [item["id"] for item in items]
    wanted = [row["id"] for row in expected]
    repeated = len(ids) - len(set(ids))
    missing = len(set(wanted) - set(ids))
    extra = len(set(ids) - set(wanted))
    expect(not (repeated or missing or extra),
           f"{what}: of {len(wanted)} products, {missing} never came, {repeated} came more than once"
           + (f" and {extra} that should not be there came" if extra else ""))
    expect(ids == wanted, f"{what}: every product came once, but not in order of price, then id")


cursor_pages = Suite("07-cursor-pagination")


@cursor_pages.check(points=1, hint=["Order by price, then id (select(Product).order_by(Product.price, "
                                   "Product.id)), take `limit` rows, and answer items, next_cursor and has_more.",
                                    "Return a dict, not ORM rows: items as [{'id', 'name', 'price'}] from select(Product).order_by(Product.price, Product.id).limit(limit + 1), has_more true here, and next_cursor a non-empty string."])
def first_page_in_order(ctx: Context) -> None:
    "the first page (limit=10) holds the 10 cheapest products in order, with has_more and a next_cursor"
    expected = restock(ctx, [(i * 37) % 30 * 100 + 100 for i in range(30)])
    body = page(ctx, 10, what="GET /products?limit=10")
    prices = [item["price"] for item in body["items"]]
    expect(prices == [row["price"] for row in expected[:10]],
           f"the first page held prices {prices}, expected {[row['price'] for row in expected[:10]]}")
    expect([item["id"] for item in body["items"]] == [row["id"] for row in expected[:10]],
           "the first page held the right prices but not the right products in the right order")
    expect(body["has_more"] is True, "with 30 products and limit=10, the first page said has_more: false")


@cursor_pages.check(points=2, hint=["Continue strictly after the cursor's (price, id): price > p, or the same "
                                   "price and id > i, as a row comparison tuple_(Product.price, Product.id) > (p, i).",
                                    "Build next_cursor from the LAST item on the page, both its price and its id; filtering on price > p alone skips products that share the last price, and id > i alone breaks the price order."])
def walks_every_product_once(ctx: Context) -> None:
    "following next_cursor (limit=10) through 47 products, some at equal prices, gives each once, in order"
    expected = restock(ctx, [(i * 7) % 20 * 100 + 100 for i in range(47)])
    expect_every_product_once(walk(ctx, 10), expected, "a walk with limit=10")


@cursor_pages.check(points=1, hint=["Decode the cursor inside try/except and raise HTTPException(400) for "
                                   "anything that does not decode to a position you issued.",
                                    "'not-a-cursor' makes URLSafeSerializer.loads raise itsdangerous.BadData (BadSignature); catch it, plus the TypeError/ValueError of unpacking, and raise HTTPException(400) rather than letting a 500 out."])
def garbage_cursor_is_400(ctx: Context) -> None:
    "GET /products?cursor=not-a-cursor answers 400"
    restock(ctx, [100, 200, 300])
    status = get_page(ctx, 2, "not-a-cursor").status_code
    expect(status == 400, f"GET /products?cursor=not-a-cursor answered {status}, expected 400")


@cursor_pages.check(points=1, hint=["Fetch limit + 1 rows: there is a next page exactly when the extra row came.",
                                    "Don't set has_more from len(rows) == limit: that is true on a last full page. Query .limit(limit + 1), has_more = len(rows) > limit, return rows[:limit], and next_cursor None when has_more is false."])
def has_more_is_exact(ctx: Context) -> None:
    "with exactly 20 products and limit=10, the second page is the last: has_more false, next_cursor null"
    expected = restock(ctx, [100 * (i + 1) for i in range(20)])
    first = page(ctx, 10, what="the first page (limit=10)")
    expect(first["has_more"] is True, "with 20 products and limit=10, the first page said has_more: false")
    second = page(ctx, 10, first["next_cursor"], what="the second page (limit=10)")
    expect([item["id"] for item in second["items"]] == [row["id"] for row in expected[10:]],
           f"the second page held {len(second['items'])} items, expected the last 10 products")
    expect(second["has_more"] is False, "the second of two full pages said has_more: true: the client would "
                                        "ask for an empty third page")


@cursor_pages.check(points=1, hint=["Use the `limit` parameter for the page size (its default is 20).",
                                    "Declare limit: int = Query(default=20, ge=1, le=100) and apply that value to the query (.limit(limit + 1)) and the slice rows[:limit], instead of a fixed page size."])
def page_size_follows_limit(ctx: Context) -> None:
    "a page holds `limit` products: 3 with limit=3, 20 without a limit"
    restock(ctx, [100 * (i + 1) for i in range(25)])
    three = page(ctx, 3, what="GET /products?limit=3")
    expect(len(three["items"]) == 3, f"GET /products?limit=3 held {len(three['items'])} products")
    default = page(ctx, what="GET /products")
    expect(len(default["items"]) == 20, f"GET /products without a limit held {len(default['items'])} products, "
                                        "expected the default of 20")


# -- what the hidden checks share --------------------------------------------------------------------

B64URL = re.compile(r"[A-Za-z0-9_-]{4,}")


def _b64decode(segment: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return None


def _b64encode(data: bytes, like: str) -> str:
    encoded = base64.urlsafe_b64encode(data).decode()
    return encoded if like.endswith("=") else encoded.rstrip("=")


def edited_cursors(cursor: str, last: dict, other: dict) -> list[tuple[str, str]]:
    """(what, cursor) variants of a real cursor that the API did not issue."""
    variants = []
    middle = len(cursor) // 2
    while middle < len(cursor) - 1 and not cursor[middle].isalnum():
        middle += 1
    if cursor[middle].isalnum():
        swap = {"A": "B", "a": "b", "0": "1"}
        replacement = swap.get(cursor[middle], "A" if cursor[middle].isalpha() else "0")
        if replacement == cursor[middle]:
            replacement = "Z"
        variants.append(("with one character changed", cursor[:middle] + replacement + cursor[middle + 1:]))
    variants.append(("cut short", cursor[:-4]))
    # decode each base64url piece; where one reads as the last item's id, write another id in its place
    for match in B64URL.finditer(cursor):
        decoded = _b64decode(match.group())
        if decoded is None:
            continue
        text = decoded.decode("utf-8", "replace")
        found = re.search(rf"(?<!\d){last['id']}(?!\d)", text)
        if found:
            forged = text[:found.start()] + str(other["id"]) + text[found.end():]
            piece = _b64encode(forged.encode(), match.group())
            variants.append(("with its id edited", cursor[:match.start()] + piece + cursor[match.end():]))
            break
    price, product_id = other["price"], other["id"]
    for what, raw in (("made up as price|id", f"{price}|{product_id}"),
                      ("made up as a JSON list", json.dumps([price, product_id])),
                      ("made up as a JSON object", json.dumps({"price": price, "id": product_id}))):
        variants.append((what, base64.urlsafe_b64encode(raw.encode()).decode()))
    return variants
