"""Notebook 04's memory measurement at the size of the course's question: a 1 GiB upload through
the in-process server, with the notebook's own code (its multipart helper, the course text's two
endpoints, its `upload_and_watch`), which the notebook itself runs at 8 and 32 MiB only to stay quick.

Streamed in chunks, the peak stays within a few MiB whatever the size; read whole, it grows with
the file (measured at smaller sizes, where the property already shows)."""
from __future__ import annotations

import shutil

import pytest

from labsupport import course, program

MiB = 1024 * 1024
FEW_MIB = 8 * MiB  # the bound the notebook asserts at 8 and 32 MiB


def notebook_cells(*ids: str) -> str:
    """The sources of these cells of notebook 04 (solutions/, or notebooks/ in a learner edition)."""
    cells = {cell.get("id"): cell["source"] for cell in program.shipped_cells(course.notebook("04"))}
    missing = [cell_id for cell_id in ids if cell_id not in cells]
    assert not missing, f"notebook 04 has no cells {missing}"
    return "\n\n".join(cells[cell_id] for cell_id in ids)


@pytest.fixture(scope="module")
def nb04():
    """The notebook's namespace after its setup, its multipart helper, the course text's app (served
    in this process, as in the notebook) and the measuring helper."""
    namespace: dict = {"__name__": "nb04"}
    exec(compile(notebook_cells("setup-imports", "multipart-helper", "text-app", "measure-helper"),
                 "notebook 04", "exec"), namespace)
    (namespace["SANDBOX"] / "uploads").mkdir()  # the notebook's "missing-folder" cell does the same
    # one small upload first, as the notebook's earlier cells make: the modules a process imports on
    # its first request are not memory that the upload holds
    namespace["upload_and_watch"]("/upload/large", MiB)
    yield namespace
    namespace["text_server"].stop()
    shutil.rmtree(namespace["SANDBOX"], ignore_errors=True)


def test_a_1_gib_upload_streamed_in_chunks_stays_within_a_few_mib(nb04):
    large = nb04["upload_and_watch"]("/upload/large", 1024 * MiB)
    stored = nb04["SANDBOX"] / "uploads" / "video.bin"
    assert stored.stat().st_size == 1024 * MiB  # the whole gigabyte went through the endpoint
    stored.unlink()
    print(f"in chunks, 1024 MiB: peak {large['peak'] / MiB:.1f} MiB, {large['seconds']:.1f} s")
    assert large["peak"] < FEW_MIB  # under 1 % of the file


def test_reading_the_file_whole_grows_with_its_size(nb04):
    peaks = {size: nb04["upload_and_watch"]("/upload/", size * MiB)["peak"] for size in (16, 64)}
    print("read whole:", {f"{size} MiB": f"peak {peak / MiB:.1f} MiB" for size, peak in peaks.items()})
    assert all(peak >= size * MiB for size, peak in peaks.items())
    assert peaks[64] > 3 * peaks[16]
