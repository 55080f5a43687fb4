"""Checks for notebook 08, filtering and sorting.

The checks read the users table the app's lifespan filled (through the run's database) to know
what each listing should hold, and ask the database itself for the order of every sort, so that
they agree with the database's collation, whichever database it is.
"""
from __future__ import annotations

import asyncio
import base64

import httpx

from ..checks import Context, Suite, expect

TABLE = "lab08_users"
SORT_FIELDS = ("created_at", "name", "email")
PUBLIC_FIELDS = {"id", "name", "email", "role", "is_active", "created_at"}
MAX_PAGES = 60  # a listing that needs more pages than this at the checks' page sizes never ends

user_listing = Suite("08-user-listing")


# -- what the database holds ----------------------------------------------------------------------


SORTS = ("-created_at", "-created_at,name", "email", "-email", "name", "name,-created_at", "-name,email")


def _order_sql(sort: str) -> str:
    keys = []
    for part in sort.split(","):
        field = part.removeprefix("-")
        assert field in SORT_FIELDS  # the suite's own sorts only: never a learner's string
        keys.append(f"{field} {'DESC' if part.startswith('-') else 'ASC'}")
    return ", ".join(keys)


def _query(ctx: Context, statements: dict[str, str]) -> dict[str, list[dict]]:
    """The rows of each statement, read through one connection to the run's database."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    database = ctx.database
    options = {"connect_args": {"server_settings": {"search_path": database.schema}}} if database.schema else {}

    async def run() -> dict[str, list[dict]]:
        engine = create_async_engine(database.url, **options)
        try:
            async with engine.connect() as conn:
                return {name: [dict(row._mapping) for row in await conn.execute(text(sql))]
                        for name, sql in statements.items()}
        finally:
            await engine.dispose()

    return asyncio.run(run())


@user_listing.experiment
def database_view(ctx: Context) -> dict:
    """Every user as the database holds it (the app filled the table at startup), and each user's
    place in every order the checks ask for: users that tie on every field share one."""
    statements = {"users": f"SELECT id, name, email, role, is_active, created_at FROM {TABLE}"}
    for sort in SORTS:
        statements[sort] = f"SELECT id, DENSE_RANK() OVER (ORDER BY {_order_sql(sort)}) AS place FROM {TABLE}"
    found = _query(ctx, statements)
    expect(found["users"], f"the table {TABLE} is empty: the app should use the setup's users_database lifespan")
    return {"users": [{**row, "is_active": bool(row["is_active"])} for row in found["users"]],
            "places": {sort: {row["id"]: row["place"] for row in found[sort]} for sort in SORTS}}


def table(ctx: Context) -> list[dict]:
    return database_view(ctx)["users"]


def _ranks(ctx: Context, sort: str) -> dict[int, int]:
    return database_view(ctx)["places"][sort]


def _expected(ctx: Context, search: str | None = None, **filters) -> set[int]:
    """The ids a listing with these filters should hold."""
    needle = search.lower() if search is not None else None
    return {row["id"] for row in table(ctx)
            if all(row[name] == value for name, value in filters.items())
            and (needle is None or needle in row["name"].lower() or needle in row["email"].lower())}


# -- what the app answers -------------------------------------------------------------------------


def _describe(params: dict) -> str:
    shown = []
    for name, value in params.items():
        if name == "cursor":
            value = "<cursor>"
        elif isinstance(value, str) and len(value) > 20:
            value = value[:12] + "..."
        shown.append(f"{name}={value}")
    return "GET /users" + ("?" + "&".join(shown) if shown else "")


def _page(ctx: Context, params: dict) -> dict:
    response = ctx.client.get("/users", params=params)
    what = _describe(params)
    expect(response.status_code == 200, f"{what} answered {response.status_code}, expected 200")
    try:
        body = response.json()
    except ValueError:
        body = None
    expect(isinstance(body, dict) and isinstance(body.get("items"), list) and "next_cursor" in body,
           f"{what} should answer {{\"items\": [...], \"next_cursor\": ...}}")
    for item in body["items"]:
        expect(isinstance(item, dict) and isinstance(item.get("id"), int),
               f"each item of {what} should be a user with its id")
        hidden = {key for key in item if "password" in key.lower() or "hash" in key.lower()}
        expect(not hidden, f"{what} answered users with their password hash: answer UserOut, not the table's rows")
        expect(PUBLIC_FIELDS <= item.keys(), f"each item of {what} should have the fields of UserOut")
    cursor = body["next_cursor"]
    expect(cursor is None or (isinstance(cursor, str) and cursor),
           f"the next_cursor of {what} should be a string, or null on the last page")
    return body


def _walk(ctx: Context, params: dict) -> list[int]:
    """Every id of a listing, following next_cursor from the first page to the last."""
    ids: list[int] = []
    body = _page(ctx, params)
    for _ in range(MAX_PAGES):
        limit = params.get("limit", 20)
        expect(len(body["items"]) <= limit, f"a page of {_describe(params)} held {len(body['items'])} users, "
                                             f"more than limit={limit}")
        ids += [item["id"] for item in body["items"]]
        if body["next_cursor"] is None:
            return ids
        expect(body["items"], f"a page of {_describe(params)} was empty, yet had a next_cursor")
        body = _page(ctx, {**params, "cursor": body["next_cursor"]})
    expect(False, f"{_describe(params)} was still giving pages after {MAX_PAGES}: the cursor does not advance")


def _in_order(ctx: Context, ids: list[int], sort: str, what: str) -> None:
    places = _ranks(ctx, sort)
    sequence = [places.get(user_id, 0) for user_id in ids]
    wrong = next((i for i in range(1, len(sequence)) if sequence[i] < sequence[i - 1]), None)
    expect(wrong is None, f"{what} is not in the order sort={sort} asks for (from the {_ordinal(wrong)} user on)")


def _ordinal(index: int | None) -> str:
    n = (index or 0) + 1
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _exactly(ids: list[int], expected: set[int], what: str) -> None:
    duplicated = len(ids) - len(set(ids))
    expect(not duplicated, f"{what} listed {duplicated} user(s) twice")
    missing, extra = expected - set(ids), set(ids) - expected
    expect(not extra, f"{what} listed {len(extra)} user(s) that do not match it")
    expect(not missing, f"{what} left out {len(missing)} matching user(s)")


def _refused(ctx: Context, params: dict, statuses: tuple[int, ...] = (422,)) -> httpx.Response:
    response = ctx.client.get("/users", params=params)
    wanted = " or ".join(map(str, statuses))
    expect(response.status_code in statuses, f"{_describe(params)} answered {response.status_code}, expected {wanted}")
    return response


# -- the checks -----------------------------------------------------------------------------------


@user_listing.check(points=1, hint=["Order by -created_at by default, limit to 20, answer Page(items=..., "
                                   "next_cursor=...) with UserOut items.",
                                    "With no sort given, ListParams.sort defaults to '-created_at': order by User.created_at.desc(), then User.id, take limit + 1 rows and return Page(items=rows[:limit], next_cursor=...) so response_model drops the hash."])
def lists_newest_first(ctx: Context) -> None:
    "GET /users answers the 20 newest users as UserOut, and a next_cursor"
    body = _page(ctx, {})
    ids = [item["id"] for item in body["items"]]
    expect(len(ids) == 20, f"GET /users answered {len(ids)} users, expected 20 (the default limit)")
    places = _ranks(ctx, "-created_at")
    newest = sorted(places.values())[:20]
    expect(sorted(places.get(i, 0) for i in ids) == newest, "GET /users should answer the 20 newest users")
    _in_order(ctx, ids, "-created_at", "GET /users")
    expect(body["next_cursor"] is not None, "GET /users should answer a next_cursor: there are more users")


@user_listing.check(points=1, hint=["Each filter given adds a condition to the WHERE clause; all must hold.",
                                    "Add query.where(User.role == params.role) only when role is not None, and the same for is_active (a bool: test is not None, not truthiness, or is_active=false is ignored)."])
def filters_combine(ctx: Context) -> None:
    "role and is_active filter, together"
    for params, filters in (({"role": "editor", "is_active": "false"}, {"role": "editor", "is_active": False}),
                            ({"role": "admin", "is_active": "true"}, {"role": "admin", "is_active": True}),
                            ({"is_active": "false"}, {"is_active": False})):
        ids = [item["id"] for item in _page(ctx, {**params, "limit": 100})["items"]]
        _exactly(ids, _expected(ctx, **filters), _describe(params))


@user_listing.check(points=1, hint=["Match name OR email, ignoring case: icontains() on each column.",
                                    "Use or_(User.name.icontains(search), User.email.icontains(search)): == or a plain like() misses case and partial matches, and checking only one column misses users found by the other."])
def search_ignores_case(ctx: Context) -> None:
    "search finds the users whose name or email contains the text, in any case"
    for search in ("ADA", "hOpPeR", "R.TURING", "KNUTH1"):
        params = {"search": search, "limit": 100}
        ids = [item["id"] for item in _page(ctx, params)["items"]]
        _exactly(ids, _expected(ctx, search=search), _describe(params))


@user_listing.check(points=2, hint=["The search text is not a LIKE pattern: escape %, _ and the escape "
                                   "character, e.g. icontains(search, autoescape=True).",
                                    "Pass autoescape=True to icontains on both columns; without it % and _ in the search text act as LIKE wildcards and match users that do not contain them."])
def wildcards_are_plain_text(ctx: Context) -> None:
    "a search for 100%, %, _ or a_h finds only the users that contain exactly that"
    for search in ("100%", "%", "_", "a_h"):
        params = {"search": search, "limit": 100}
        ids = [item["id"] for item in _page(ctx, params)["items"]]
        _exactly(ids, _expected(ctx, search=search), _describe(params))


@user_listing.check(points=1, hint=["Split sort on commas; a leading - means descending; order by each field in "
                                   "turn, then by id.",
                                    "Turn '-created_at,name' into [('created_at', True), ('name', False), ('id', False)] and order_by COLUMNS[f].desc() or .asc() for each pair in that order, not just the first field."])
def sorts_by_several_fields(ctx: Context) -> None:
    "sort=-created_at,name, sort=email and sort=name,-created_at order the users as asked"
    for sort in ("-created_at,name", "email", "name,-created_at", "-email"):
        params = {"sort": sort, "limit": 100}
        ids = [item["id"] for item in _page(ctx, params)["items"]]
        expect(len(ids) == 100, f"{_describe(params)} answered {len(ids)} users, expected 100")
        _in_order(ctx, ids, sort, _describe(params))


@user_listing.check(points=2, hint=["Add the id as the last sort key, and put all of them in the cursor: the next "
                                   "page is the rows after the last one on every key, not on created_at alone.",
                                    "tuple_(...) > (...) is wrong once directions mix (created_at DESC, id ASC): build or_ of and_(equal on earlier keys, < or > on this key), and encode every key's value, id included, of the page's last user."])
def pages_list_every_user_once(ctx: Context) -> None:
    "following next_cursor lists each matching user once, in order, though many share a creation time"
    params = {"is_active": "true", "limit": 7}
    ids = _walk(ctx, params)
    _exactly(ids, _expected(ctx, is_active=True), f"{_describe(params)}, page after page,")
    _in_order(ctx, ids, "-created_at", f"{_describe(params)}, page after page,")


@user_listing.check(points=2, hint=["Validate sort in a field_validator against SORTABLE and raise ValueError "
                                   "naming the fields allowed; take the model as Annotated[ListParams, Query()].",
                                    "In the field_validator('sort'), strip the leading - from each comma part and raise ValueError if one is not in SORTABLE; put ', '.join(SORTABLE) in the message so the 422 names created_at, name, email."])
def unknown_sort_fields_answer_422(ctx: Context) -> None:
    "sort=password_hash, sort=nickname or sort=-created_at,secret answers 422 naming the fields allowed"
    for sort in ("password_hash", "nickname", "-created_at,secret"):
        response = _refused(ctx, {"sort": sort})
        expect(all(field in response.text for field in SORT_FIELDS),
               f"the 422 for sort={sort} should name the fields that may be sorted by ({', '.join(SORT_FIELDS)})")


@user_listing.check(points=1, hint=["ListParams declares the bounds; take it as Annotated[ListParams, Query()].",
                                    "Take params: Annotated[ListParams, Query()] so FastAPI validates limit (ge=1, le=100), role's pattern, is_active as bool and search's max_length=100 itself; separate Query params without these bounds answer 200."])
def bad_parameters_answer_422(ctx: Context) -> None:
    "limit, role, is_active and search: valid values answer 200, invalid ones 422"
    for good, bad in ((("limit", "100"), [("limit", "0"), ("limit", "101"), ("limit", "ten")]),
                      (("role", "viewer"), [("role", "root")]),
                      (("is_active", "false"), [("is_active", "maybe")]),
                      (("search", "a" * 100), [("search", "a" * 101)])):
        _page(ctx, dict([good]))
        for name, value in bad:
            _refused(ctx, {name: value})


@user_listing.check(points=1, hint=["Put the sort in the cursor and compare it with the request's sort; refuse "
                                   "a cursor you cannot decode with HTTPException(422).",
                                    "Store {'sort': sort, 'after': [...]} in the cursor; in decode_cursor compare payload['sort'] with the request's sort and turn ValueError, TypeError and KeyError (bad base64, JSON, keys) into HTTPException(422)."])
def cursors_belong_to_their_sort(ctx: Context) -> None:
    "a cursor of sort=name used with sort=email or -created_at, or a made-up one, answers 422 (or 400)"
    cursor = _page(ctx, {"sort": "name", "limit": 5})["next_cursor"]
    expect(cursor is not None, "GET /users?sort=name&limit=5 should answer a next_cursor")
    for other in ("email", "-created_at"):
        _refused(ctx, {"sort": other, "limit": 5, "cursor": cursor}, (400, 422))
    for made_up in ("not-a-cursor", base64.urlsafe_b64encode(b"{}").decode()):
        _refused(ctx, {"limit": 5, "cursor": made_up}, (400, 422))

