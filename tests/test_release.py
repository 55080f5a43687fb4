"""The learner edition (`labsupport release OUT_DIR`), proven where a learner would use it.

The edition is built into a temporary folder. Its .venv is this checkout's (the lock is the same
file, so workbook.py finds it installed) and the edition is first on PYTHONPATH, standing in for
the `pip install -e .` that workbook.py runs on a learner's machine: everything below imports the
edition's labsupport, not this checkout's. Then, there:

- nothing of solutions/ or the hidden checks: no marker, no solution region's code, no exercise
  cell but its stub, no hidden check's source, hint or module (scanned here independently of the
  release's own scan);
- the README's two commands: `python3 workbook.py test` passes, `python3 workbook.py lab` serves
  the notebooks;
- every notebook's exercises, solved with the reference, earn every point of their visible checks
  through `.venv/bin/labsupport check`, and only those (the hidden checks are not there);
- its exercise tests judge what the learner saved: solved passes, wrong fails, untouched is skipped.
"""
from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import nbformat
import pytest

from labsupport import course, fixtures, notebook, program, release, suites
from labsupport.cli import main as cli_main
from labsupport.errors import LabError

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.prefix)
WITH_EXERCISES = [nb for nb in course.load().notebooks if nb.written and nb.exercises]

pytestmark = pytest.mark.skipif(not (VENV / "pyvenv.cfg").exists(),
                                reason="the edition's commands are run with this checkout's .venv, and this is no venv")


def _normal(text: str) -> str:
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    out = tmp_path_factory.mktemp("edition") / "fastapi-workbook"
    assert cli_main(["release", str(out)]) == 0
    (out / ".venv").symlink_to(VENV, target_is_directory=True)
    env = {**os.environ, "PYTHONPATH": str(out), "PYTHONDONTWRITEBYTECODE": "1"}
    return out, env


def _run(args, cwd, env, timeout=600):
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


# -- nothing of the answers ----------------------------------------------------------------------


def test_the_edition_holds_no_solution_and_no_hidden_check(edition):
    out, _ = edition
    files = sorted(p for p in out.rglob("*") if p.is_file() and ".venv" not in p.relative_to(out).parts)
    names = {p.relative_to(out).as_posix() for p in files}
    assert {"README.md", "workbook.py", "pyproject.toml", "requirements.lock", "course.toml", "pytest.ini",
            "labsupport/__init__.py", "labsupport/cli.py", "tests/test_your_exercises.py"} <= names
    assert not [n for n in names if n.startswith(("solutions/", "hidden/", "tests/fixtures/"))]
    assert (out / "pyproject.toml").read_bytes() == (ROOT / "pyproject.toml").read_bytes()  # the same install
    assert (out / "requirements.lock").read_bytes() == (ROOT / "requirements.lock").read_bytes()
    shipped = [nb for nb in course.load().notebooks if nb.learner_path.exists()]
    assert sorted(n for n in names if n.startswith("notebooks/")) == \
        sorted(f"notebooks/{nb.filename}" for nb in shipped)

    regions = {e.id: [_normal(m.group(2)) for m in fixtures._REGION.finditer(fixtures.reference_cell(e))]
               for e in course.load().exercises if e.notebook.written}
    hidden = [c for suite in suites.all_suites(hidden=True).values() for c in suite.checks if c.hidden]
    hidden_sources = [_normal(inspect.getsource(c.func)) for c in hidden]
    hidden_hints = [c.hint for c in hidden if c.hint and not any(c.hint == v.hint for s in suites.all_suites().values()
                                                                   for v in s.checks if not v.hidden)]
    for path in files:
        text = path.read_bytes().decode("utf-8", "replace")
        where = path.relative_to(out).as_posix()
        assert notebook.BEGIN not in text or where.startswith("labsupport/"), where  # the package names the markers
        if path.suffix == ".ipynb":
            for cell in json.loads(text)["cells"]:
                source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
                assert notebook.BEGIN not in source and notebook.END not in source, (where, cell.get("id"))
                if notebook.role(cell) == "exercise":
                    exercise = course.exercise(notebook.exercise_of(cell))
                    assert source == program.stub_source(exercise), (where, cell.get("id"))
                    assert not any(body in _normal(source) for body in regions[exercise.id])
            text = "\n".join("".join(c["source"]) for c in json.loads(text)["cells"]
                             if notebook.role(c) is not None)  # teaching cells may show a fix; the rest may not
        normal = _normal(text)
        for exercise_id, bodies in regions.items():
            for body in bodies:
                assert body not in normal, f"{where} holds a solution region of {exercise_id}"
        for source in hidden_sources:
            assert source not in normal, f"{where} holds a hidden check's source"
        for hint in hidden_hints:
            assert hint not in text, f"{where} holds a hidden check's hint"
    found, _ = release.leaks(out)
    assert found == []


def test_a_release_refuses_to_write_over_what_is_not_an_edition(tmp_path, capsys):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "thesis.tex").write_text("mine")
    assert cli_main(["release", str(tmp_path / "work")]) == 2
    assert "not empty and holds no learner edition" in capsys.readouterr().err
    assert (tmp_path / "work" / "thesis.tex").read_text() == "mine"
    for inside in (ROOT, ROOT / "notebooks" / "x", ROOT.parent):
        with pytest.raises(LabError):
            release._check_target(inside.resolve() if inside.exists() else inside, ROOT)


def test_the_scan_finds_what_would_give_answers_away(edition, tmp_path):
    out, _ = edition
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, symlinks=True)
    exercise = next(e for nb in WITH_EXERCISES for e in nb.exercises)
    path = copy / "notebooks" / exercise.notebook.filename
    nb = nbformat.read(path, as_version=4)
    next(c for c in nb.cells if c.get("id") == f"{exercise.id}-solution").source = fixtures.reference_cell(exercise)
    nbformat.write(nb, path)
    hidden_module = next(nb.hidden_path for nb in course.load().notebooks if nb.hidden_path.exists())
    shutil.copy(hidden_module, copy / "labsupport" / "suites" / "extra.py")
    found, _ = release.leaks(copy)
    assert any("solution marker" in f for f in found) and any("not its stub" in f for f in found)
    assert any("the source of the hidden check" in f and "labsupport/suites/extra.py" in f for f in found)


# -- the README's two commands -------------------------------------------------------------------


@pytest.mark.timeout(900)  # the lab's own tests, in a process of their own
def test_the_readme_test_command_passes_there(edition):
    out, env = edition
    assert "python3 workbook.py test" in (out / "README.md").read_text()
    finished = _run([sys.executable, "workbook.py", "test", "-q", "-rs"], out, env, timeout=900)
    assert finished.returncode == 0, finished.stdout[-4000:] + finished.stderr[-2000:]
    exercises = [e for nb in course.load().notebooks if nb.learner_path.exists() for e in nb.exercises]
    summary = finished.stdout.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and "failed" not in summary and "error" not in summary, summary
    assert finished.stdout.count("not attempted yet") == len(exercises)  # each exercise test, skipped


def test_the_readme_lab_command_serves_the_notebooks(edition, tmp_path):
    out, env = edition
    assert "python3 workbook.py lab" in (out / "README.md").read_text()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token = "edition-test"
    env = {**env, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_CONFIG_DIR": str(tmp_path / "config")}
    server = subprocess.Popen([sys.executable, "workbook.py", "lab", "--no-browser", f"--ServerApp.port={port}",
                               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
                               "--ServerApp.ip=127.0.0.1"],
                              cwd=out, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        listing, deadline = None, time.monotonic() + 120
        while listing is None and time.monotonic() < deadline and server.poll() is None:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/api/contents", params={"token": token}, timeout=5)
                listing = answer.json() if answer.status_code == 200 else None
            except httpx.HTTPError:
                time.sleep(0.3)
        assert listing is not None, server.stderr.read() if server.poll() is not None else "no answer in 120 s"
        shipped = sorted(nb.filename for nb in course.load().notebooks if nb.learner_path.exists())
        assert sorted(item["name"] for item in listing["content"] if item["type"] == "notebook") == shipped
        assert httpx.get(f"http://127.0.0.1:{port}/lab", params={"token": token}, timeout=10).status_code == 200
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        server.stderr.close()


# -- the visible checks, there -------------------------------------------------------------------


@pytest.mark.parametrize("entry", WITH_EXERCISES, ids=lambda nb: nb.number)
def test_each_notebooks_visible_checks_run_there(edition, entry, tmp_path):
    out, env = edition
    nb = nbformat.read(out / "notebooks" / entry.filename, as_version=4)
    for exercise in entry.exercises:
        cell = next(c for c in nb.cells if c.get("id") == f"{exercise.id}-solution")
        cell.source = fixtures.without_markers(fixtures.reference_cell(exercise))
    solved = tmp_path / entry.filename
    nbformat.write(nb, solved)
    finished = _run([str(out / ".venv" / "bin" / "labsupport"), "check", str(solved)], out, env)
    checks = [c for e in entry.exercises for c in suites.get(e.id, hidden=True).checks]
    visible = sum(c.points for c in checks if not c.hidden)
    assert finished.returncode == 0 and f"total: {visible}/{visible} points" in finished.stdout, \
        finished.stdout[-4000:] + finished.stderr[-2000:]
    # every visible check ran and passed, and nothing else ran: the hidden checks are not there
    assert finished.stdout.count("[PASS]") == len([c for c in checks if not c.hidden])
    assert "[FAIL]" not in finished.stdout and "[SKIP]" not in finished.stdout


def test_the_exercise_tests_judge_what_the_learner_saved(edition, tmp_path):
    out, env = edition
    copy = tmp_path / "learner"
    shutil.copytree(out, copy, symlinks=True)
    pairs = [nb for nb in WITH_EXERCISES if len(nb.exercises) >= 2]
    entry = next((nb for nb in pairs if not any(e.services for e in nb.exercises)), pairs[0])  # a quick one
    solved, wrong = entry.exercises[:2]
    path = copy / "notebooks" / entry.filename
    nb = nbformat.read(path, as_version=4)
    cells = {c.get("id"): c for c in nb.cells}
    cells[f"{solved.id}-solution"].source = fixtures.without_markers(fixtures.reference_cell(solved))
    antipattern = fixtures.load(wrong.fixtures / "buggy" / f"{wrong.antipattern}.py", wrong)
    cells[f"{wrong.id}-solution"].source = antipattern.source
    nbformat.write(nb, path)
    env = {**env, "PYTHONPATH": str(copy)}
    finished = _run([sys.executable, "workbook.py", "test", "tests/test_your_exercises.py", "-q"], copy, env)
    assert finished.returncode == 1, finished.stdout[-4000:]
    skipped = sum(len(n.exercises) for n in course.load().notebooks if n.learner_path.exists()) - 2
    assert f"1 failed, 1 passed, {skipped} skipped" in finished.stdout.strip().splitlines()[-1], finished.stdout[-3000:]
    assert f"FAILED tests/test_your_exercises.py::test_exercise[{wrong.id}]" in finished.stdout


def test_progress_and_reset_work_without_solutions(edition, tmp_path):
    """The edition has no solutions/: the progress table still lists every notebook as there, and
    `labsupport reset` restores an exercise cell from the notebooks as shipped (pristine/)."""
    out, env = edition
    copy = tmp_path / "learner"
    shutil.copytree(out, copy, symlinks=True)
    env = {**env, "PYTHONPATH": str(copy), "LAB_PROGRESS_DIR": str(tmp_path / "progress")}
    shown = _run([sys.executable, "-m", "labsupport", "progress"], copy, env, timeout=120)
    assert shown.returncode == 0 and "not written yet" not in shown.stdout, shown.stdout + shown.stderr
    entry = WITH_EXERCISES[0]
    exercise = entry.exercises[0]
    path = copy / "notebooks" / entry.filename
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.get("id") == f"{exercise.id}-solution")
    stub = cell.source
    cell.source = "my attempt = 1\n"
    nbformat.write(nb, path)
    restored = _run([sys.executable, "-m", "labsupport", "reset", entry.number, exercise.id], copy, env, timeout=120)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    cell = next(c for c in nbformat.read(path, as_version=4).cells if c.get("id") == f"{exercise.id}-solution")
    assert cell.source == stub
