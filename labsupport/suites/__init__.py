"""Every exercise's check suite, found by exercise id.

The visible checks of notebook NN live in labsupport/suites/nbNN_slug.py (learners have them);
its hidden checks in hidden/nbNN_slug.py at the repository's root, which the grader and the tests
load and the learner edition leaves out. A hidden module adds checks to the visible module's suites:

    from labsupport.suites.nb02_websockets import chat

    @chat.check(points=2, hidden=True)
    def messages_stay_in_their_room(ctx): ...
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import threading

from .. import course
from ..checks import Suite, _registry
from ..errors import LabError

_lock = threading.RLock()
_hidden_loaded: set[str] = set()


def _module_suites(nb: course.Notebook, hidden: bool) -> dict[str, Suite]:
    with _lock:
        if not all(e.id in _registry for e in nb.exercises):  # suites of a test's course are already there
            try:
                importlib.import_module(nb.suite_module)
            except ModuleNotFoundError as error:
                if error.name != nb.suite_module:
                    raise
                raise LabError(f"notebook {nb.number} has exercises in course.toml but no {nb.suite_module}") from None
        if hidden and nb.number not in _hidden_loaded and nb.hidden_path.exists():
            name = f"labsupport_hidden_nb{nb.number}"
            spec = importlib.util.spec_from_file_location(name, nb.hidden_path)
            hidden_module = importlib.util.module_from_spec(spec)
            sys.modules[name] = hidden_module
            spec.loader.exec_module(hidden_module)
            _hidden_loaded.add(nb.number)
    for exercise in nb.exercises:
        if exercise.id not in _registry:
            raise LabError(f"{nb.suite_module} has no Suite({exercise.id!r})")
    return {e.id: _registry[e.id] for e in nb.exercises}


def get(exercise_id: str, hidden: bool = False) -> Suite:
    """The suite of an exercise; with `hidden`, its hidden checks loaded too (where they exist)."""
    exercise = course.exercise(exercise_id)
    return _module_suites(exercise.notebook, hidden)[exercise_id]


def all_suites(hidden: bool = False) -> dict[str, Suite]:
    """Every exercise's suite, in course order."""
    found = {}
    for nb in course.load().notebooks:
        if nb.exercises:
            suites = _module_suites(nb, hidden)
            found.update({e.id: suites[e.id] for e in nb.exercises})
    return found
