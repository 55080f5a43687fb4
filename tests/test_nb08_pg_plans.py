"""Notebook 08's claims about PostgreSQL's query plans, on a real PostgreSQL (LAB_DATABASE_URL).

A leading-wildcard LIKE or ILIKE cannot use a B-tree index and reads the whole table; a prefix
search can, with an index made for it (text_pattern_ops, or the C collation); a pg_trgm GIN index
serves the leading wildcard. Each test works in one transaction that is rolled back, in a schema of
its own: nothing stays in the database, not even the extension. The properties are read from the
plan's JSON form (node types and index names), never from its wording or its costs.
"""
from __future__ import annotations

import asyncio
import json
import os
import uuid

import pytest

URL = os.environ.get("LAB_DATABASE_URL", "")
pytestmark = pytest.mark.skipif(
    not URL.startswith(("postgresql://", "postgres://", "postgresql+asyncpg://")),
    reason="set LAB_DATABASE_URL to a PostgreSQL server to test notebook 08's query plans there")

ROWS = 20_000  # enough that reading every row costs more than an index lookup, whatever the server
NAME = "User" + "0042"  # the rows are User00000 ... User19999


def nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


async def explain(conn, where: str) -> list[tuple[str, str | None]]:
    """(node type, index name) of every node of the plan for the rows of `people` matching `where`."""
    raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) SELECT id FROM people WHERE {where}")
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    return [(node["Node Type"], node.get("Index Name")) for node in nodes(plan)]


async def in_a_rolled_back_schema(work):
    """Run `work(conn)` on a fresh `people` table (ROWS names), in a transaction rolled back at the end."""
    import asyncpg

    conn = await asyncpg.connect(URL.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        transaction = conn.transaction()
        await transaction.start()
        try:
            schema = f"lab08_plans_{uuid.uuid4().hex[:12]}"
            await conn.execute(f"CREATE SCHEMA {schema}")
            await conn.execute(f"SET LOCAL search_path TO {schema}")
            await conn.execute("CREATE TABLE people (id integer PRIMARY KEY, name text NOT NULL)")
            await conn.execute(f"INSERT INTO people SELECT i, 'User' || to_char(i, 'FM00000') "
                               f"FROM generate_series(0, {ROWS - 1}) AS i")
            return await work(conn, schema)
        finally:
            await transaction.rollback()
    finally:
        await conn.close()


def run(work):
    return asyncio.run(in_a_rolled_back_schema(work))


def uses_index(plan, index: str) -> bool:
    return any(name == index for _, name in plan)


def seq_scan(plan) -> bool:
    return any(node == "Seq Scan" for node, _ in plan)


def test_a_prefix_uses_a_pattern_index_and_a_leading_wildcard_reads_every_row():
    async def work(conn, schema):
        await conn.execute("CREATE INDEX people_pattern ON people (name text_pattern_ops)")
        await conn.execute("CREATE INDEX people_lower ON people (lower(name) text_pattern_ops)")
        await conn.execute('CREATE INDEX people_c ON people (name COLLATE "C")')
        await conn.execute("ANALYZE people")
        return {where: await explain(conn, where) for where in (
            f"name LIKE '{NAME}%'", f"lower(name) LIKE '{NAME.lower()}%'", f"name COLLATE \"C\" LIKE '{NAME}%'",
            f"name LIKE '%{NAME[-4:]}%'", f"name ILIKE '%{NAME[-4:]}%'", f"lower(name) LIKE '%{NAME[-4:]}%'",
            f"name ILIKE '{NAME}%'")}

    plans = run(work)
    prefix, lower_prefix, c_prefix, *wildcards, ilike_prefix = plans.values()
    assert not seq_scan(prefix) and (uses_index(prefix, "people_pattern") or uses_index(prefix, "people_c")), prefix
    assert not seq_scan(lower_prefix) and uses_index(lower_prefix, "people_lower"), lower_prefix
    assert not seq_scan(c_prefix) and uses_index(c_prefix, "people_c"), c_prefix
    for where, plan in zip(list(plans)[3:6], wildcards):
        assert seq_scan(plan) and not any(name for _, name in plan), (where, plan)
    # ILIKE with a prefix that has letters: no B-tree helps, whatever its operator class
    assert seq_scan(ilike_prefix) and not any(name for _, name in ilike_prefix), ilike_prefix


def test_a_plain_index_on_the_c_collation_serves_a_prefix():
    async def work(conn, schema):
        await conn.execute('ALTER TABLE people ALTER COLUMN name TYPE text COLLATE "C"')
        await conn.execute("CREATE INDEX people_plain ON people (name)")
        await conn.execute("ANALYZE people")
        return await explain(conn, f"name LIKE '{NAME}%'"), await explain(conn, f"name LIKE '%{NAME[-4:]}%'")

    prefix, wildcard = run(work)
    assert not seq_scan(prefix) and uses_index(prefix, "people_plain"), prefix
    assert seq_scan(wildcard) and not uses_index(wildcard, "people_plain"), wildcard


def test_a_trigram_index_serves_a_leading_wildcard():
    async def work(conn, schema):
        import asyncpg

        try:
            async with conn.transaction():  # a savepoint: a refusal leaves the test's transaction usable
                await conn.execute(f"CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA {schema}")
        except asyncpg.PostgresError as error:
            return f"{type(error).__name__}: {error}"
        where = await conn.fetchval("SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_trgm'")
        await conn.execute(f"CREATE INDEX people_trgm ON people USING gin (name {where}.gin_trgm_ops)")
        await conn.execute("ANALYZE people")
        return {pattern: await explain(conn, pattern) for pattern in (
            f"name LIKE '%{NAME[-4:]}%'", f"name ILIKE '%{NAME[-5:].lower()}%'", f"name ILIKE '%{NAME.upper()}%'")}

    plans = run(work)
    if isinstance(plans, str):
        pytest.skip(f"pg_trgm cannot be created in this database ({plans})")
    for where, plan in plans.items():
        assert uses_index(plan, "people_trgm") and not seq_scan(plan), (where, plan)
