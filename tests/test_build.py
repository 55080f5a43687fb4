import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

import importlib.util
import json
import re

from labsupport import LabError, build, course, exercises, fixtures, notebook, program, runner, scaffold, suites

ROOT = Path(__file__).resolve().parent.parent

SOLVED = '''def greet(name):
    ### BEGIN SOLUTION
    return f"hello {name}"
    ### END SOLUTION


def shout(name):
    ### BEGIN SOLUTION
    return greet(name).upper()
    ### END SOLUTION
'''


def test_stub_replaces_each_region_at_its_indentation():
    stub = notebook.stub_source(SOLVED)
    assert "hello" not in stub and "upper" not in stub and "SOLUTION" not in stub
    assert stub.count("    # YOUR CODE HERE\n    raise NotImplementedError()\n") == 2
    namespace = {}
    exec(stub, namespace)  # the stubbed cell still runs; only calling it fails
    with pytest.raises(NotImplementedError):
        namespace["greet"]("ada")


@pytest.mark.parametrize("source, message", [
    ("x = 1\n", "no '### BEGIN SOLUTION' region"),
    ("def f():\n    ### BEGIN SOLUTION\n    return 1\n", "unbalanced"),
])
def test_malformed_regions_are_reported(source, message):
    with pytest.raises(LabError, match=message):
        notebook.stub_source(source)


def make_nb(*cells):
    nb = new_notebook(cells=list(cells))
    nb.metadata["labsupport"] = {"course": notebook.COURSE, "notebook": "99-test"}
    return nb


def role_cell(source, role, exercise=None):
    cell = new_code_cell(source)
    cell.metadata["labsupport"] = {"role": role, **({"exercise": exercise} if exercise else {})}
    return cell


def test_validate_catches_a_missing_check_cell_and_unknown_exercises():
    points = {"99-ex": 3}
    ok = make_nb(role_cell("import os", "setup"), role_cell(SOLVED, "exercise", "99-ex"),
                 role_cell('lab.check("99-ex")', "check", "99-ex"))
    notebook.validate(ok, points)
    with pytest.raises(LabError, match="without a check cell"):
        notebook.validate(make_nb(role_cell(SOLVED, "exercise", "99-ex")), points)
    with pytest.raises(LabError, match="no check suite"):
        notebook.validate(make_nb(role_cell(SOLVED, "exercise", "99-other")), points)
    with pytest.raises(LabError, match="course"):
        notebook.validate(new_notebook(), points)


def test_stamp_gives_stable_ids_and_nbgrader_points():
    nb = make_nb(role_cell("import os", "setup"), role_cell(SOLVED, "exercise", "99-ex"),
                 role_cell('lab.check("99-ex")', "check", "99-ex"))
    notebook.stamp(nb, {"99-ex": 3}, {"99-ex": ["first hint"]})
    exercise, check = nb.cells[1], nb.cells[2]
    assert exercise.id == "99-ex-solution" and exercise.metadata.nbgrader["solution"] is True
    assert check.id == "99-ex-check" and check.metadata.nbgrader["points"] == 3
    assert check.metadata.labsupport["hints"] == ["first hint"]
    assert nb.cells[0].metadata.nbgrader["locked"] is True


def test_a_program_is_the_setup_cells_then_the_exercise_cell():
    prog = [("s1", "base = 40"), ("01-x-solution", "answer = base + 2\napp = None")]
    namespace = {}
    with pytest.raises(program.ProgramError, match="did not define `app`"):
        program.load_app(prog, "app", namespace)
    assert namespace["answer"] == 42
    with pytest.raises(program.ProgramError, match=r"NameError: name 'helper' is not defined \(line 1 of the exercise cell\)"):
        program.load_app([("01-x-solution", "helper()")], "app")


def test_the_shipped_setup_cells_are_the_solutions_own():
    for nb in course.load().notebooks:
        if nb.written and nb.learner_path.exists():
            learner = [(c.get("id"), c["source"]) for c in program.shipped_cells_of(nb.learner_path)
                       if notebook.role(c) == "setup"]
            assert learner == program.setup_cells(nb), nb.filename


def test_each_exercise_app_is_assigned_in_its_exercise_cell_only():
    """lab.check finds the exercise cell as the last run cell that assigns the app (when the front
    end sends no cell ids): no other cell of the notebook may assign it."""
    for exercise in course.load().exercises:
        if not exercise.notebook.written:
            continue
        assigning = [c.get("id") for c in program.shipped_cells(exercise.notebook)
                     if c["cell_type"] == "code" and exercises._assigns(c["source"], exercise.app)]
        assert assigning == [f"{exercise.id}-solution"], (exercise.id, assigning)


def test_exercise_headings_state_the_points_the_suites_give():
    for exercise in course.load().exercises:
        if not exercise.notebook.written:
            continue
        points = suites.get(exercise.id, hidden=True).points
        text = "\n".join(c["source"] for c in program.shipped_cells(exercise.notebook) if c["cell_type"] == "markdown")
        stated = re.findall(rf"{re.escape(exercise.title)}.*?\((\d+) points\)", text)
        headings = re.findall(r"^#+ .*\((\d+) points\)", text, re.M)
        assert all(int(n) in {suites.get(e.id, hidden=True).points for e in exercise.notebook.exercises}
                   for n in headings + stated), (exercise.notebook.filename, headings)


def test_the_readme_table_is_made_from_the_manifest():
    assert not scaffold.update_readme(write=False), "run `labsupport readme`"


@pytest.mark.parametrize("text, message", [
    ("course = 'x'\ntitle = 't'\n[[notebook]]\nnumber = '1'\nslug = 's'\ntitle = 't'\n", "two digits"),
    ("course = 'x'\ntitle = 't'\n[[notebook]]\nnumber = '01'\nslug = 's'\ntitle = 't'\n"
     "[[notebook.exercise]]\nid = '02-a'\napp = 'a'\ntitle = 't'\nbudget = 1\nantipattern = 'x'\n", "01-some-name"),
    ("course = 'x'\ntitle = 't'\n[[notebook]]\nnumber = '01'\nslug = 's'\ntitle = 't'\n"
     "[[notebook.exercise]]\nid = '01-a'\napp = 'a'\ntitle = 't'\nbudget = 1\nantipattern = 'x'\n"
     "services = ['ftp']\n", "unknown services"),
    ("course = [", "not valid TOML"),
])
def test_a_malformed_manifest_says_what_is_wrong(text, message):
    with pytest.raises(LabError, match=message):
        course.parse(text)


def test_new_scaffolds_a_notebook_whose_files_work(tmp_path):
    manifest = course.parse(
        "course = 'fastapi-advanced-patterns'\ntitle = 't'\n[[notebook]]\nnumber = '98'\nslug = 'demo'\n"
        "title = 'Demo'\n[[notebook.exercise]]\nid = '98-hello'\napp = 'hello_app'\ntitle = 'Say hello'\n"
        "budget = 20\nantipattern = 'forgets_the_name'\n", root=tmp_path)
    with course.override(manifest):
        written = scaffold.new_notebook("98", "demo")
        assert all(path.exists() for path in written)
        with pytest.raises(LabError, match="exist already"):
            scaffold.new_notebook("98", "demo")
        suite_path = tmp_path / "labsupport" / "suites" / "nb98_demo.py"
        module = importlib.util.module_from_spec(importlib.util.spec_from_file_location("nb98_demo", suite_path))
        module.__package__ = "labsupport.suites"
        module.__spec__.loader.exec_module(module)
        exercise = course.exercise("98-hello")
        reference = fixtures.without_markers(fixtures.reference_cell(exercise))
        verdicts = {name: runner.run(exercise, source, runner.InProcessHost()).earned
                    for name, source in [("reference", reference), ("stub", program.stub_source(exercise))]
                    + [(f.name, f.source) for f in fixtures.of(exercise)]}
        assert verdicts == {"reference": 1, "stub": 0, "forgets_the_name": 0, "sync_handler": 1}


def test_learner_notebooks_match_the_solutions():
    """notebooks/ holds exactly what the build makes of solutions/ (outputs are nbval's job)."""
    assert build.build(check=True, outputs=False) == []


def test_a_heading_opens_its_own_cell():
    """DESIGN.md's notebook style: a section heading is the first line of a markdown cell."""
    buried = []
    for path in sorted((ROOT / "solutions").glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "markdown":
                continue
            fenced = False
            for number, line in enumerate(cell.source.splitlines()):
                fenced ^= line.lstrip().startswith("```")
                if number and not fenced and re.match(r"#{1,6} ", line):
                    buried.append(f"{path.name} {cell.get('id')}: {line}")
    assert not buried, buried


@pytest.mark.parametrize("folder", ["solutions", "notebooks"])
def test_stored_outputs_name_no_port(folder):
    """A stored output that names a loopback port is stale the moment it is saved (and differs on
    every run): live views are tagged lab-live and the build stores none of their output."""
    found = []
    for path in sorted((ROOT / folder).glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            text = json.dumps(cell.get("outputs", []))
            found += [f"{path.name} {cell.get('id')}: {m}" for m in re.findall(r"(?:127\.0\.0\.1|localhost):\d+", text)]
    assert not found, found


def test_drift_is_detected(tmp_path):
    suites.all_suites(hidden=True)  # loaded from this checkout (the copy below has no hidden/), whatever ran before
    for folder in ("solutions", "notebooks"):
        (tmp_path / folder).mkdir()
        name = "01_background_tasks.ipynb"
        (tmp_path / folder / name).write_bytes((ROOT / folder / name).read_bytes())
    learner = nbformat.read(tmp_path / "notebooks" / name, as_version=4)
    learner.cells[0].source += "\nedited by hand"
    nbformat.write(learner, tmp_path / "notebooks" / name)
    with course.override(course.parse(course.MANIFEST.read_text(), root=tmp_path)):
        assert build.build(check=True, outputs=False) == [
            "notebooks/01_background_tasks.ipynb differs from a fresh build (ids, points, stubs or outputs)"]


def test_check_command_reports_the_learner_notebook_from_a_terminal():
    result = subprocess.run([sys.executable, "-m", "labsupport", "check", "notebooks/01_background_tasks.ipynb"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    points = sum(suites.get(e.id).visible_points for e in course.notebook("01").exercises)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "01-welcome-email: Send the welcome email after the response - 0/" in result.stdout
    assert "[FAIL] POST /users answers 201 with the new user" in result.stdout
    assert result.stdout.rstrip().endswith(f"total: 0/{points} points")
