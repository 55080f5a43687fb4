"""Hidden checks for notebook 08: run by the grader and the tests, not shown in the notebook."""
from __future__ import annotations

import base64
import json

from labsupport.checks import Context
from labsupport.suites.nb08_filtering_sorting import (
    _describe, _exactly, _expected, _in_order, _page, _refused, _walk, user_listing,
)


@user_listing.check(points=2, hidden=True, hint="With keys in different directions, a row-value comparison "
                                                "(tuple_) is wrong: the next page is name > n, OR name = n AND "
                                                "created_at < c, OR ... one alternative per key.")
def pages_in_mixed_directions(ctx: Context) -> None:
    "pages sorted by name,-created_at (and -name,email) list each matching user once, in order"
    for params, filters in (({"sort": "name,-created_at", "role": "viewer", "limit": 6}, {"role": "viewer"}),
                            ({"sort": "-name,email", "search": "a", "limit": 9}, {"search": "a"})):
        what = f"{_describe(params)}, page after page,"
        ids = _walk(ctx, params)
        _exactly(ids, _expected(ctx, **filters), what)
        _in_order(ctx, ids, params["sort"], what)


@user_listing.check(points=1, hidden=True, hint="Look fields up in SORTABLE only (never getattr on the model), "
                                                "and refuse empty parts.")
def sort_abuse_answers_422(ctx: Context) -> None:
    "sort=metadata, __class__, __table__, an empty field or a repeated one answers 422"
    for sort in ("metadata", "__class__", "__table__", "", "-", ",", "name,,email", "name,-name"):
        _refused(ctx, {"sort": sort})


@user_listing.check(points=1, hidden=True, hint="Escape the escape character too: autoescape=True does it for you.")
def escape_characters_are_plain_text(ctx: Context) -> None:
    "a search for \\% or / finds only users that contain exactly that"
    for search in ("\\%", "/"):
        params = {"search": search, "limit": 100}
        ids = [item["id"] for item in _page(ctx, params)["items"]]
        _exactly(ids, _expected(ctx, search=search), _describe(params))


def _forged(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


@user_listing.check(points=1, hidden=True, hint="A cursor comes back from the client: check each value's type and "
                                                "range (CURSOR_VALUES) and answer 422 when one is wrong.")
def forged_cursors_answer_4xx(ctx: Context) -> None:
    "cursors that the app did not make (wrong types, out-of-range ids, time zones) answer 422 or 400"
    forged = [
        ["a", "list"],
        {"sort": "-created_at", "after": ["yesterday", 5]},
        {"sort": "-created_at", "after": ["2026-01-05T09:00:00"]},
        {"sort": "-created_at", "after": ["2026-01-05T09:00:00", 10**30]},
        {"sort": "-created_at", "after": [{"$gt": ""}, 5]},
        {"sort": "-created_at", "after": ["2026-01-05T09:00:00+05:00", 5]},
    ]
    for payload in forged:
        _refused(ctx, {"cursor": _forged(payload)}, (400, 422))
    _refused(ctx, {"cursor": base64.urlsafe_b64encode(b"\xff\xfe\x00").decode()}, (400, 422))
