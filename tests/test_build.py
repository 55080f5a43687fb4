import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from labsupport import LabError, build, notebook

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


def test_exercise_program_is_setup_cells_then_the_exercise():
    nb = make_nb(role_cell("base = 40", "setup"), new_code_cell("base = 0  # a demo cell"),
                 role_cell("answer = base + 2", "exercise", "99-ex"))
    namespace = notebook.run_program(notebook.exercise_program(nb, "99-ex"))
    assert namespace["answer"] == 42
    replaced = notebook.run_program(notebook.exercise_program(nb, "99-ex", "answer = -base"))
    assert replaced["answer"] == -40


def test_learner_notebooks_match_the_solutions():
    """notebooks/ holds exactly what the build makes of solutions/ (outputs are nbval's job)."""
    assert build.build(check=True, outputs=False) == []


def test_drift_is_detected(tmp_path, monkeypatch):
    solutions, notebooks = tmp_path / "solutions", tmp_path / "notebooks"
    solutions.mkdir()
    notebooks.mkdir()
    for name in ("01_background_tasks.ipynb",):
        (solutions / name).write_bytes((ROOT / "solutions" / name).read_bytes())
        learner = nbformat.read(ROOT / "notebooks" / name, as_version=4)
        learner.cells[0].source += "\nedited by hand"
        nbformat.write(learner, notebooks / name)
    monkeypatch.setattr(build, "SOLUTIONS", solutions)
    monkeypatch.setattr(build, "NOTEBOOKS", notebooks)
    monkeypatch.setattr(build, "ROOT", tmp_path)
    assert build.build(check=True, outputs=False) == [
        "notebooks/01_background_tasks.ipynb differs from a fresh build (ids, points, stubs or outputs)"]


def test_check_command_reports_the_learner_notebook_from_a_terminal():
    result = subprocess.run([sys.executable, "-m", "labsupport", "check", "notebooks/01_background_tasks.ipynb"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "01-welcome-email: Send the welcome email after the response - 0/5 points" in result.stdout
    assert "POST /users answered 500, expected 201" in result.stdout
    assert result.stdout.rstrip().endswith("total: 0/13 points")
