"""The course manifest (course.toml at the repository's root), read once into plain objects.

    from labsupport import course
    course.exercise("01-welcome-email").services     # ('mail',)
    course.notebook("01").solution_path               # solutions/01_background_tasks.ipynb
"""
from __future__ import annotations

import contextlib
import functools
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import LabError

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "course.toml"
SERVICES = ("mail", "redis", "database", "faults", "openai", "s3", "webhooks")
_EXERCISE_ID = re.compile(r"^\d\d-[a-z0-9]+(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class Exercise:
    id: str
    app: str
    title: str
    services: tuple[str, ...]
    budget: float
    antipattern: str
    notebook: "Notebook"

    @property
    def run_services(self) -> tuple[str, ...]:
        """What a run of it starts: the services of every exercise of its notebook, since the
        notebook's setup cells (part of every exercise's program) may connect to any of them."""
        return tuple(dict.fromkeys(s for e in self.notebook.exercises for s in e.services))

    @property
    def fixtures(self) -> Path:
        return self.notebook.root / "tests" / "fixtures" / self.id


@dataclass(frozen=True)
class Notebook:
    number: str
    slug: str
    title: str
    root: Path = ROOT
    exercises: tuple[Exercise, ...] = ()

    @property
    def id(self) -> str:
        """The id in the notebook's metadata, which the grader recognises it by."""
        return f"{self.number}-{self.slug.replace('_', '-')}"

    @property
    def filename(self) -> str:
        return f"{self.number}_{self.slug}.ipynb"

    @property
    def solution_path(self) -> Path:
        return self.root / "solutions" / self.filename

    @property
    def learner_path(self) -> Path:
        return self.root / "notebooks" / self.filename

    @property
    def suite_module(self) -> str:
        return f"labsupport.suites.nb{self.number}_{self.slug}"

    @property
    def hidden_path(self) -> Path:
        """Hidden checks: kept out of the labsupport package, so the learner edition can leave them out."""
        return self.root / "hidden" / f"nb{self.number}_{self.slug}.py"

    @property
    def written(self) -> bool:
        """Its source notebook exists, or (in a learner edition, which has no solutions/) its learner notebook."""
        return self.solution_path.exists() or self.learner_path.exists()

    @property
    def pristine_path(self) -> Path:
        """In a learner edition: the learner notebook as shipped (stubs, no outputs), for `labsupport reset`."""
        return self.root / "pristine" / self.filename


@dataclass(frozen=True)
class Course:
    id: str
    title: str
    notebooks: tuple[Notebook, ...]

    @property
    def exercises(self) -> tuple[Exercise, ...]:
        return tuple(e for nb in self.notebooks for e in nb.exercises)


def _need(table: dict, key: str, kind, where: str):
    value = table.get(key)
    if not isinstance(value, kind):
        raise LabError(f"course.toml: {where} needs {key!r} ({kind.__name__ if isinstance(kind, type) else 'number'})")
    return value


def parse(text: str, root: Path = ROOT) -> Course:
    """The course described by a manifest's text; LabError names what is wrong."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise LabError(f"course.toml is not valid TOML: {error}") from None
    notebooks, seen = [], set()
    for index, table in enumerate(data.get("notebook", []), 1):
        where = f"notebook {index}"
        number = _need(table, "number", str, where)
        if not re.fullmatch(r"\d\d", number):
            raise LabError(f"course.toml: {where}: number must be two digits, not {number!r}")
        notebook = Notebook(number, _need(table, "slug", str, where), _need(table, "title", str, where), Path(root))
        exercises = []
        for exercise in table.get("exercise", []):
            where = f"exercise {exercise.get('id')!r}"
            exercise_id = _need(exercise, "id", str, where)
            if not _EXERCISE_ID.match(exercise_id) or not exercise_id.startswith(number + "-"):
                raise LabError(f"course.toml: {where}: an id looks like {number}-some-name")
            if exercise_id in seen:
                raise LabError(f"course.toml: two exercises have the id {exercise_id!r}")
            seen.add(exercise_id)
            services = tuple(exercise.get("services", []))
            unknown = set(services) - set(SERVICES)
            if unknown:
                raise LabError(f"course.toml: {where}: unknown services {sorted(unknown)}; known: {', '.join(SERVICES)}")
            exercises.append(Exercise(
                exercise_id, _need(exercise, "app", str, where), _need(exercise, "title", str, where), services,
                float(_need(exercise, "budget", (int, float), where)), _need(exercise, "antipattern", str, where),
                notebook,
            ))
        object.__setattr__(notebook, "exercises", tuple(exercises))
        notebooks.append(notebook)
    return Course(_need(data, "course", str, "the course"), _need(data, "title", str, "the course"), tuple(notebooks))


_override: list[Course] = []


@functools.cache
def _manifest() -> Course:
    return parse(MANIFEST.read_text(encoding="utf-8"))


def load() -> Course:
    """The course: course.toml's, or the one a test put in its place with override()."""
    return _override[-1] if _override else _manifest()


@contextlib.contextmanager
def override(replacement: Course) -> Iterator[Course]:
    """Use another course inside the block (the grader's tests bring a small one of their own)."""
    _override.append(replacement)
    try:
        yield replacement
    finally:
        _override.remove(replacement)


def exercise(exercise_id: str) -> Exercise:
    for candidate in load().exercises:
        if candidate.id == exercise_id:
            return candidate
    known = ", ".join(e.id for e in load().exercises) or "none"
    raise LabError(f"There is no exercise {exercise_id!r}. Known exercises: {known}.")


def notebook(key: str) -> Notebook:
    """A notebook by number ('01'), id ('01-background-tasks'), slug or file name."""
    for candidate in load().notebooks:
        if key in (candidate.number, candidate.id, candidate.slug, candidate.filename, candidate.filename[:-6]):
            return candidate
    raise LabError(f"course.toml has no notebook {key!r}")


def notebook_by_id(notebook_id: str) -> Notebook | None:
    return next((nb for nb in load().notebooks if nb.id == notebook_id), None)
