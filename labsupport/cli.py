"""The labsupport command: build, check, grade, and the course's scaffolding.

    labsupport build [NN ...] [--check]     notebooks/ from solutions/ (stubs, then re-execute)
    labsupport check NOTEBOOK               a notebook's exercises judged from the terminal
    labsupport grade ...                    grading (see grading.py)
    labsupport new NN slug                  a new notebook's files, from course.toml's entry
    labsupport release OUT_DIR              the learner edition: notebooks, no solutions, no hidden checks
    labsupport readme [--check]             the README's table of notebooks, from course.toml
    labsupport progress                     where you stand: every exercise's points, last attempt
    labsupport reset NOTEBOOK [EXERCISE]    an exercise cell (or a whole notebook) back to its stub
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import LabError


def _cmd_build(args) -> int:
    from .build import build

    problems = build(args.notebooks or None, check=args.check)
    for problem in problems:
        print(problem)
    if args.check:
        print("notebooks/ matches solutions/" if not problems else f"{len(problems)} problem(s): run `labsupport build`")
    return 1 if problems else 0


def _cmd_check(args) -> int:
    """Judge each exercise cell of a notebook file, as lab.check would after a Run All."""
    from . import course, progress, runner
    from .grading import Rejected, find_exercise, read_notebook

    path = Path(args.notebook)
    try:
        nb = read_notebook(path)
    except (Rejected, OSError) as error:
        raise LabError(f"{path}: {error}") from None
    notebook_id = (nb["metadata"].get("labsupport") or {}).get("notebook")
    entry = course.notebook_by_id(notebook_id) if isinstance(notebook_id, str) else None
    if entry is None:
        raise LabError(f"{path} is not a notebook of this course")
    if not entry.exercises:
        print("This notebook has no exercises.")
        return 0
    earned = possible = 0
    for exercise in entry.exercises:
        source = find_exercise(nb, exercise.id)
        if source is None:
            results = runner.all_failed(exercise, "the exercise cell is missing from the notebook")
        else:
            results = runner.run(exercise, source, runner.InProcessHost())
        print(repr(results), end="\n\n")
        progress.record_quietly(results, interactive=True, notebook_path=str(path))
        earned += results.earned
        possible += results.possible
    print(f"total: {earned}/{possible} points")
    return 0 if earned == possible else 1


def _cmd_grade(args) -> int:
    from .grading import cli

    return cli(args)


def _cmd_release(args) -> int:
    from .release import cli

    return cli(args)


def _cmd_new(args) -> int:
    from .scaffold import new_notebook

    for path in new_notebook(args.number, args.slug):
        print(f"wrote {path}")
    return 0


def _cmd_readme(args) -> int:
    from .scaffold import README, readme_table, update_readme

    if args.check:
        stale = update_readme(write=False)
        print(f"{README.name}'s table of notebooks is out of date: run `labsupport readme`" if stale
              else f"{README.name}'s table of notebooks matches course.toml")
        return 1 if stale else 0
    update_readme(write=True)
    print(readme_table())
    return 0


def _cmd_progress(args) -> int:
    from . import progress

    table = progress.progress()
    print(repr(table))
    print(f"\n(record: {table.where})")
    return 0


def _cmd_reset(args) -> int:
    from .reset import reset

    print(reset(args.notebook, args.exercise))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labsupport", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build", help="make notebooks/ from solutions/ (stubs, then re-execute)")
    p.add_argument("notebooks", nargs="*", help="names or numbers (01, 01_background_tasks); default all")
    p.add_argument("--check", action="store_true", help="write nothing; fail when notebooks/ differs")
    p.set_defaults(run=_cmd_build)
    p = sub.add_parser("check", help="judge a notebook's exercise cells from the terminal")
    p.add_argument("notebook")
    p.set_defaults(run=_cmd_check)
    p = sub.add_parser("grade", help="grade learners' notebooks (or, with --url, an app deployed anywhere)")
    p.add_argument("submissions", nargs="?", help="a folder of submitted notebooks (any names, any subfolders)")
    p.add_argument("--out", help="where grades.csv, grades.json and feedback/ go")
    p.add_argument("--jobs", type=int, default=1, help="submissions graded at a time (default 1)")
    p.add_argument("--exercise-timeout", type=float, default=None,
                   help="seconds per exercise (default: each exercise's budget in course.toml)")
    p.add_argument("--submission-timeout", type=float, default=300, help="seconds per submission (default 300)")
    p.add_argument("--memory", type=int, default=1024, help="MB of address space per process (default 1024)")
    p.add_argument("--url", help="the base URL of a deployed app to check (with --exercise)")
    p.add_argument("--exercise", help="the exercise id whose checks to run against --url")
    p.set_defaults(run=_cmd_grade)
    p = sub.add_parser("new", help="scaffold a notebook of course.toml: solution notebook, suite, fixtures")
    p.add_argument("number", help="two digits, as in course.toml")
    p.add_argument("slug", help="as in course.toml (background_tasks)")
    p.set_defaults(run=_cmd_new)
    p = sub.add_parser("release", help="write the learner edition (no solutions, no hidden checks) into a folder")
    p.add_argument("out_dir", help="a new or empty folder (an earlier edition there is replaced)")
    p.set_defaults(run=_cmd_release)
    p = sub.add_parser("readme", help="rewrite the README's table of notebooks from course.toml")
    p.add_argument("--check", action="store_true", help="write nothing; fail when the table is out of date")
    p.set_defaults(run=_cmd_readme)
    p = sub.add_parser("progress", help="where you stand: every notebook's exercises, points and last attempt")
    p.set_defaults(run=_cmd_progress)
    p = sub.add_parser("reset", help="put an exercise cell (or a whole notebook) back to the learner's stub")
    p.add_argument("notebook", help="a number, slug or file name (01, background_tasks), or a notebook's path")
    p.add_argument("exercise", nargs="?", help="an exercise id (01-welcome-email); default: the whole notebook")
    p.set_defaults(run=_cmd_reset)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except LabError as error:
        print(f"labsupport: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
