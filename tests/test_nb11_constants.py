"""Notebook 11's timing constants live in one place, its first setup cell; the checks of its
exercises use the same values (labsupport/suites/nb11_health_checks.py), and this test holds the
two together."""
from __future__ import annotations

import ast
import types

from labsupport import course, notebook, program, services
from labsupport.suites import nb11_health_checks as suite

SHARED = ("PROBE_PERIOD", "PROBE_TIMEOUT", "CHECK_TIMEOUT", "DRAIN_DELAY", "DRAIN_TIMEOUT", "WORK_SECONDS")


def setup_constants() -> dict[str, float]:
    """The constants the setup cells assign, evaluated with `lab.seconds` and nothing else."""
    nb = course.notebook("11")
    lab = types.SimpleNamespace(seconds=services.seconds)
    found = {}
    for cell in program.shipped_cells(nb):
        if notebook.role(cell) != "setup":
            continue
        for node in ast.parse(cell["source"]).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                name = node.targets[0].id
                if name.isupper():
                    found[name] = eval(compile(ast.Expression(node.value), "<setup>", "eval"), {"lab": lab, **found})
    return found


def test_the_checks_use_the_setup_cells_constants():
    constants = setup_constants()
    assert {name: constants.get(name) for name in SHARED} == {name: getattr(suite, name) for name in SHARED}


def test_the_constants_keep_their_relations():
    c = setup_constants()
    assert c["CACHE_TTL"] < c["PROBE_PERIOD"] == suite.MAX_STALENESS  # a cached answer is younger than a period
    assert c["CHECK_TIMEOUT"] < c["PROBE_TIMEOUT"] / 2                  # a check leaves room inside the probe
    assert c["DRAIN_DELAY"] + 0.3 < suite.IN_FLIGHT  # a hook that waits only DRAIN_DELAY answers well before
    assert suite.IN_FLIGHT + suite.PROMPT < c["DRAIN_DELAY"] + c["DRAIN_TIMEOUT"]  # ... and one that sleeps
    # DRAIN_DELAY + DRAIN_TIMEOUT answers more than PROMPT after they end
