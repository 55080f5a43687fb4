"""Notebook 09's NDJSON export stays flat in memory at 1 000 000 rows, not only at the notebook's 4 000.

The export measured is the notebook's own: its cells (setup, the experiments' helpers, the users
app, the export endpoints) are run from solutions/09_bulk_operations.ipynb as they are, and
`GET /users/export-in-batches` (yield_per, one chunk per batch of rows) is read as it arrives over
the lab's in-process server. The database is the lab's (SQLite, or PostgreSQL with
LAB_DATABASE_URL).

Memory is the peak resident size of the process (Linux's VmHWM, reset through
/proc/self/clear_refs before each export): everything the process holds, Python objects and the
database driver's buffers alike, at no cost to speed (tracemalloc would triple the time of a
million rows). The measurement runs in a process of its own, so that memory freed by earlier tests
cannot hide growth, and compares the growth of the peak during a 20 000-row export with that during
a 1 000 000-row one. The objects made at start-up (modules, the app) are taken out of the garbage
collector's full passes (gc.freeze(), as pre-forking servers do), which saves about a third of the
time and changes nothing the exports allocate or free. The course text's export (no yield_per) of
20 000 rows is measured too, to show that the meter sees rows held in memory."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMALL, LARGE = 20_000, 1_000_000
MARGIN_MIB = 48  # the large export may hold this much more than the small one: about 50 bytes a row


def fill_statement(dialect: str) -> str:
    """One SQL statement that fills the users table with :n rows, made by the database itself."""
    rows = "'user' || i || '@example.com', 'User number ' || i"
    if dialect == "postgresql":
        return f"INSERT INTO users (email, name) SELECT {rows} FROM generate_series(0, :n - 1) AS i"
    return (f"INSERT INTO users (email, name) WITH RECURSIVE c(i) AS "
            f"(SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < :n - 1) SELECT {rows} FROM c")


def resident_mib() -> tuple[float, float]:
    """(resident now, peak resident since the last reset) of this process, in MiB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def measure() -> dict:
    """In the child process: fill, export, and report the peak's growth for each export."""
    import asyncio
    import gc

    from sqlalchemy import text

    import labsupport as lab
    from labsupport import course, program

    cells = {cell.get("id"): cell["source"] for cell in program.shipped_cells(course.notebook("09"))}
    ns: dict = {}
    for cell_id in ("nb09-setup", "nb09-helpers", "nb09-text-app", "nb09-export-app"):
        exec(compile(cells[cell_id], cell_id, "exec", dont_inherit=True), ns)  # as the notebook runs them

    async def fill(count: int) -> None:
        await ns["fresh"](ns["User"].__table__)
        async with ns["engine"].begin() as conn:
            await conn.execute(text(fill_statement(conn.dialect.name)), {"n": count})
        await ns["engine"].dispose()

    def export(path: str) -> dict:
        server = lab.serve(ns["export_app"], name="export")
        try:
            Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from here
            before, _ = resident_mib()
            lines = 0
            with server.client.stream("GET", path) as response:
                for chunk in response.iter_bytes():  # as it arrives; the client holds no more than a chunk
                    lines += chunk.count(b"\n")
            _, peak = resident_mib()
        finally:
            server.stop()
        return {"lines": lines, "growth": peak - before}

    gc.freeze()  # start-up's objects (modules, the app) leave the collector's full passes
    found = {}
    for label, count, path in (("small", SMALL, "/users/export-in-batches"),
                               ("large", LARGE, "/users/export-in-batches"),
                               ("text", SMALL, "/users/export")):
        asyncio.run(fill(count))
        found[label] = export(path)
    return found


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak memory is read from Linux's /proc")
def test_the_batched_export_of_a_million_rows_stays_flat():
    child = subprocess.run([sys.executable, __file__], cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert child.returncode == 0, child.stderr[-3000:]
    found = json.loads(child.stdout.strip().splitlines()[-1])
    small, large, text = found["small"], found["large"], found["text"]
    print(f"peak growth: {SMALL} rows {small['growth']:.1f} MiB, {LARGE} rows {large['growth']:.1f} MiB, "
          f"the course text's export of {SMALL} rows {text['growth']:.1f} MiB")
    assert (small["lines"], large["lines"], text["lines"]) == (SMALL, LARGE, SMALL)
    assert large["growth"] <= small["growth"] + MARGIN_MIB, found  # fifty times the rows, the same memory
    assert text["growth"] >= small["growth"] + 10, found  # the meter sees rows held in memory
    assert text["growth"] > large["growth"], found  # 20 000 rows held cost more than a million streamed


if __name__ == "__main__":
    print(json.dumps(measure()))
