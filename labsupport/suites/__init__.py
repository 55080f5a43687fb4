"""Every exercise's check suite, found by exercise id. One module per notebook: nbNN_slug.py."""
from __future__ import annotations

import importlib
import pkgutil

from ..checks import Suite
from ..errors import LabError


def all_suites() -> dict[str, Suite]:
    found: dict[str, Suite] = {}
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for value in vars(module).values():
            if isinstance(value, Suite):
                if value.exercise_id in found and found[value.exercise_id] is not value:
                    raise LabError(f"two suites share the exercise id {value.exercise_id!r}")
                found[value.exercise_id] = value
    return found


def get(exercise_id: str) -> Suite:
    suites = all_suites()
    if exercise_id not in suites:
        known = ", ".join(sorted(suites)) or "none"
        raise LabError(f"There is no exercise {exercise_id!r}. Known exercises: {known}.")
    return suites[exercise_id]
