"""How fast notebook 09's reference bulk upsert (exercise 1) writes: against the database driver's
own executemany, it reaches at least a twentieth of the driver's rate; against a savepoint and a
statement per row (the course text's loop made correct), at least five times that rate.

What is timed, on the lab's database (SQLite, or PostgreSQL with LAB_DATABASE_URL):
- the reference solution's endpoint function, `bulk_upsert`, from solutions/09_bulk_operations.ipynb
  (the setup cell and the exercise cell, as the grader builds the app), called with a batch of
  MAX_ITEMS new products as FastAPI hands it over: the JSON body already parsed into a list of dicts.
  So it includes everything the endpoint does (validating every item with ProductIn, looking up which
  skus exist, the upsert statement in a savepoint, the commit, the per-item results) and leaves out
  only HTTP and JSON parsing, which are the same for any endpoint;
- the driver's own executemany inserting the same rows into the same empty table, in a transaction,
  on a connection opened beforehand (as the endpoint's pool has one): the stdlib sqlite3 module on
  the same file, or asyncpg on PostgreSQL;
- the same upsert statement sent once per row, each in its own savepoint, in one transaction.
Each is run on an empty table, in turns, REPEATS times (the row-by-row way PER_ROW_REPEATS times); the
best run of each is compared (the best of the same work, so that a run slowed by other work on the
machine is left out). Measured on a 2-core machine with other work running, the reference's ratio to
the driver was 0.12 to 0.3 on SQLite and 0.33 to 0.44 on PostgreSQL. Half the driver's rate is out of
reach for an endpoint that validates: ProductIn's validation and dump of a batch alone took 1.5 ms
there, where the driver inserted the same 500 rows in 2.6 ms."""
from __future__ import annotations

import asyncio
import gc
import sqlite3
import sys
import time

from fastapi import Response
from sqlalchemy import func, select

from labsupport import course, program

REPEATS = 12
PER_ROW_REPEATS = 3  # the row-by-row way takes a hundred times longer: its best of 3 is enough
AT_LEAST = 0.05  # of the driver's rate, for the reference
TIMES_PER_ROW = 5  # the reference's rate over a savepoint and a statement per row


async def rates() -> tuple[float, float, int]:
    exercise = course.exercise("09-bulk-upsert")
    cells = {cell.get("id"): cell["source"] for cell in program.shipped_cells(exercise.notebook)}
    app = program.load_app(program.build(exercise, cells["09-bulk-upsert-solution"]), exercise.app)
    ns = sys.modules[program.EXERCISE_MODULE].__dict__  # the program's namespace
    products, size = ns["PRODUCTS"], ns["MAX_ITEMS"]
    rows = [{"sku": f"SKU-{i:07d}", "ean": f"{i:013d}", "name": f"Product {i}", "price_cents": 100 + i}
            for i in range(size)]
    values = [(r["sku"], r["ean"], r["name"], r["price_cents"]) for r in rows]
    async with app.router.lifespan_context(app):
        engine = app.state.engine

        async def empty_table() -> None:
            async with engine.begin() as conn:
                await conn.run_sync(products.drop)
                await conn.run_sync(products.create)

        async def endpoint() -> None:
            answer = await ns["bulk_upsert"](items=list(rows), response=Response(), atomic=False)
            assert answer["created"] == size, answer

        async def savepoint_per_row() -> None:  # the course text's loop, made correct: a statement per row
            async with engine.begin() as conn:
                upsert = ns["on_conflict_insert"](conn)
                upsert = upsert.on_conflict_do_update(
                    index_elements=["sku"], set_={c: upsert.excluded[c] for c in ("ean", "name", "price_cents")})
                for row in rows:
                    async with conn.begin_nested():
                        await conn.execute(upsert, row)

        sqlite = sqlite3.connect(engine.url.database) if engine.dialect.name == "sqlite" else None

        async def driver() -> None:  # on a connection opened beforehand, as the endpoint's pool has one
            if sqlite is not None:
                with sqlite:  # a transaction, committed at the end of the block
                    sqlite.executemany("INSERT INTO products (sku, ean, name, price_cents) VALUES (?, ?, ?, ?)", values)
            else:
                async with engine.connect() as conn:
                    raw = (await conn.get_raw_connection()).driver_connection
                    async with raw.transaction():
                        await raw.executemany(
                            "INSERT INTO products (sku, ean, name, price_cents) VALUES ($1, $2, $3, $4)", values)

        best = {endpoint: float("inf"), driver: float("inf"), savepoint_per_row: float("inf")}
        for repeat in range(REPEATS):
            for way in best:
                if way is savepoint_per_row and repeat >= PER_ROW_REPEATS:
                    continue
                await empty_table()
                gc.collect()
                started = time.perf_counter()
                await way()
                best[way] = min(best[way], time.perf_counter() - started)
                async with engine.connect() as conn:
                    assert (await conn.scalar(select(func.count()).select_from(products))) == size
        if sqlite is not None:
            sqlite.close()
        return size / best[endpoint], size / best[driver], size / best[savepoint_per_row], size


def test_the_reference_upsert_reaches_a_twentieth_of_the_drivers_rate(fresh_kernel_services):
    endpoint, driver, per_row, size = asyncio.run(rates())
    print(f"batches of {size}: the reference endpoint {endpoint:,.0f} rows/s, the driver {driver:,.0f} rows/s "
          f"(ratio {endpoint / driver:.2f}), a savepoint per row {per_row:,.0f} rows/s (ratio {per_row / driver:.3f})")
    assert endpoint >= AT_LEAST * driver
    assert endpoint >= TIMES_PER_ROW * per_row
