"""The labsupport command: build the learner notebooks, check a notebook from the terminal."""
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
    import nbformat

    from .build import execute
    from .checks import RESULTS_MIME, Results, CheckResult

    path = Path(args.notebook)
    nb = nbformat.read(path, as_version=4)
    execute(nb, path.resolve().parent, allow_errors=True)
    earned = possible = 0
    found = False
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {}).get(RESULTS_MIME)
            if data:
                found = True
                results = Results(data["exercise"], data["title"], [CheckResult(**c) for c in data["checks"]],
                                  data.get("app_errors", []))
                print(repr(results), end="\n\n")
                earned += results.earned
                possible += results.possible
            elif output.get("output_type") == "error":
                print(f"cell {cell.get('id')}: {output['ename']}: {output['evalue']}", end="\n\n")
    if not found:
        print("No check results: this notebook has no exercises, or its check cells did not run.")
        return 1
    print(f"total: {earned}/{possible} points")
    return 0 if earned == possible else 1


def _cmd_grade(args) -> int:
    from .grading import cli

    return cli(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labsupport", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build", help="make notebooks/ from solutions/ (stubs, then re-execute)")
    p.add_argument("notebooks", nargs="*", help="names or numbers (01, 01_background_tasks); default all")
    p.add_argument("--check", action="store_true", help="write nothing; fail when notebooks/ differs")
    p.set_defaults(run=_cmd_build)
    p = sub.add_parser("check", help="run a notebook headless and print its exercises' checks")
    p.add_argument("notebook")
    p.set_defaults(run=_cmd_check)
    p = sub.add_parser("grade", help="grade learners' notebooks (or, with --url, an app deployed anywhere)")
    p.add_argument("submissions", nargs="?", help="a folder of submitted notebooks (any names, any subfolders)")
    p.add_argument("--out", help="where grades.csv, grades.json and feedback/ go")
    p.add_argument("--jobs", type=int, default=1, help="submissions graded at a time (default 1)")
    p.add_argument("--exercise-timeout", type=float, default=90, help="seconds per exercise (default 90)")
    p.add_argument("--submission-timeout", type=float, default=300, help="seconds per submission (default 300)")
    p.add_argument("--memory", type=int, default=1024, help="MB of address space per process (default 1024)")
    p.add_argument("--url", help="the base URL of a deployed app to check (with --exercise)")
    p.add_argument("--exercise", help="the exercise id whose checks to run against --url")
    p.set_defaults(run=_cmd_grade)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except LabError as error:
        print(f"labsupport: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
