"""The grader, proven against hostile and broken submissions.

A small notebook of the course's shape (two exercises, a hidden check, a mailbox) is generated in
a temporary folder with suites of its own, and a corpus of submissions is made from its learner
version: each submission must get its honest grade while the whole run completes, and every
other submission in the same run keeps its own. The same is then done with the workbook's real
notebooks (reference solutions: full points; untouched learner notebooks: zero).
"""
from __future__ import annotations

import copy
import csv
import json
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest

import labsupport
from labsupport import build, course, grading, isolation, notebook, program, suites
from labsupport.checks import Suite, expect
from labsupport.cli import main as cli_main
from labsupport.sandbox import Limits

ROOT = Path(__file__).resolve().parent.parent
STORED = Path(__file__).resolve().parent / "grading"
AS_ROOT = os.geteuid() == 0
ISOLATED, WHY_NOT_ISOLATED = isolation.available()
needs_root = pytest.mark.skipif(not AS_ROOT, reason="only a grader running as root can run learners' code "
                                                    "as another user, which is what contains these")

# Short limits: the corpus holds endless loops, and each one costs its exercise's time limit.
EXERCISE_TIMEOUT = 4.0
LIMITS = Limits(memory_mb=512)

# -- a tiny course notebook and its suites ---------------------------------------------------------

TINY_MANIFEST = f"""
course = "{notebook.COURSE}"
title = "A course for the grader's tests"

[[notebook]]
number = "99"
slug = "grading_fixture"
title = "A notebook for the grader's tests"

[[notebook.exercise]]
id = "99-greet"
app = "greet_app"
title = "Greet by name"
services = []
budget = {EXERCISE_TIMEOUT}
antipattern = "none"

[[notebook.exercise]]
id = "99-mail"
app = "mail_app"
title = "Send a notification email"
services = ["mail"]
budget = {EXERCISE_TIMEOUT}
antipattern = "none"
"""

greet = Suite("99-greet")


@greet.check(points=1, hint="Return {'message': f'Hello, {name}!'}.")
def greets_by_name(ctx):
    "GET /greet?name=Ada answers Hello, Ada!"
    response = ctx.client.get("/greet", params={"name": "Ada"})
    expect(response.status_code == 200, f"GET /greet answered {response.status_code}, expected 200")
    expect(response.json() == {"message": "Hello, Ada!"}, "the greeting for Ada was not 'Hello, Ada!'")


@greet.check(points=2, hint="Declare `name` as a required query parameter.")
def requires_a_name(ctx):
    "GET /greet without a name answers 422"
    response = ctx.client.get("/greet")
    expect(response.status_code == 422, f"GET /greet without a name answered {response.status_code}")


@greet.check(points=1, hint="Keep the name exactly as given.", hidden=True)
def keeps_accents(ctx):
    "names keep their accents"
    response = ctx.client.get("/greet", params={"name": "Zo\u00eb"})  # SECRET-HIDDEN-INPUT
    expect(response.json().get("message") == "Hello, Zo\u00eb!", "a name with an accent came back changed")


mail = Suite("99-mail")

@mail.check(points=2, hint="Send with smtplib to lab.smtp_address().")
def delivers_one_email(ctx):
    "POST /notify?to=... delivers one email to that address"
    response = ctx.client.post("/notify", params={"to": "ada@example.com"})
    expect(response.status_code == 200, f"POST /notify answered {response.status_code}, expected 200")
    expect(ctx.mail.wait_for(1, timeout=3), "no email arrived")
    expect(len(ctx.mail.to("ada@example.com")) == 1, "ada@example.com did not get exactly one email")


@mail.check(points=1, hint="Answer {'sent': True}.", hidden=True)
def answers_sent(ctx):
    "POST /notify answers {'sent': true}"
    expect(ctx.client.post("/notify", params={"to": "b@example.com"}).json() == {"sent": True},
           "the answer was not {'sent': true}")


POINTS = {"99-greet": 4, "99-mail": 3}

GREET = '''greet_app = FastAPI()


@greet_app.get("/greet")
async def greet(name: str):
    ### BEGIN SOLUTION
    return {"message": f"Hello, {name}!"}
    ### END SOLUTION
'''
MAIL = '''mail_app = FastAPI()


@mail_app.post("/notify")
def notify(to: str):
    ### BEGIN SOLUTION
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "lab@example.com", to, "Hello"
    message.set_content("Hello!")
    host, port = lab.smtp_address()
    with smtplib.SMTP(host, port) as smtp:
        smtp.send_message(message)
    return {"sent": True}
    ### END SOLUTION
'''


def _cell(source, role=None, exercise=None, kind="code"):
    cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
    if role:
        cell.metadata["labsupport"] = {"role": role, **({"exercise": exercise} if exercise else {})}
    return cell


def make_course(folder: Path):
    """The tiny course's notebook in `folder`/solutions, and (solution, learner version, course)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["labsupport"] = {"course": notebook.COURSE, "notebook": "99-grading-fixture"}
    nb.cells = [
        _cell("# A notebook for the grader's tests", kind="markdown"),
        _cell("import labsupport as lab\nfrom fastapi import FastAPI", "setup"),
        _cell(GREET, "exercise", "99-greet"),
        _cell('lab.check("99-greet")', "check", "99-greet"),
        _cell("import smtplib\nfrom email.message import EmailMessage", "setup"),
        _cell(MAIL, "exercise", "99-mail"),
        _cell('lab.check("99-mail")', "check", "99-mail"),
    ]
    notebook.validate(nb, POINTS)
    notebook.stamp(nb, POINTS)
    (folder / "solutions").mkdir(parents=True)
    nbformat.write(nb, folder / "solutions" / "99_grading_fixture.ipynb")
    return nb, build.learner_version(nb), course.parse(TINY_MANIFEST, root=folder)


def with_exercises(nb, **sources):
    """A copy of `nb` whose exercise cells hold `sources` (by exercise id, '-' for '_'); None deletes."""
    nb = copy.deepcopy(nb)
    for exercise_id, source in sources.items():
        exercise_id = exercise_id.replace("_", "-")
        cell = next(c for c in nb.cells if c.get("id") == f"{exercise_id}-solution")
        if source is None:
            nb.cells.remove(cell)
        else:
            cell.source = source
    return nb


def wrong_greeting(prelude: str) -> str:
    """An exercise cell that runs `prelude`, then serves a greeting that is wrong but takes a name."""
    return prelude + '''
greet_app = FastAPI()


@greet_app.get("/greet")
async def greet(name: str):
    return {"message": "Hi"}
'''


KILLER = '''import os, signal
for target in (os.getppid(), -os.getpgid(0), 1, *[int(p) for p in os.listdir("/proc") if p.isdigit()]):
    if target not in (os.getpid(), -os.getpid()):
        try:
            os.kill(target, signal.SIGKILL)
        except OSError:
            pass
'''
PATCHER = '''import builtins, labsupport.checks, labsupport.grading, labsupport.sandbox
labsupport.checks.expect = lambda *args, **kwargs: None
labsupport.checks.Suite.run = lambda *args, **kwargs: "all checks passed"
labsupport.grading.Grader.run_exercise = lambda *args, **kwargs: {"earned": 99}
labsupport.grading.feedback = lambda result: "all passed"
for module in (labsupport.checks, labsupport.grading, labsupport.sandbox):
    try:
        with open(module.__file__, "a") as source:
            source.write("\\nraise SystemExit('patched')\\n")
    except OSError:
        pass
'''
LIAR = '''import sys
for stream in (sys.stdout, sys.stderr, sys.__stdout__):
    print("99-greet: Greet by name - 4/4 points", file=stream)
    print("  [PASS] GET /greet?name=Ada answers Hello, Ada!", file=stream)
    print('{"ready": true, "earned": 4, "passed": true}', file=stream)
'''


def writer(results: Path) -> str:
    return f'''import os
for name in ("grades.csv", "grades.json", "feedback/reference.ipynb.md", "planted.txt"):
    try:
        os.makedirs(os.path.dirname(os.path.join({str(results)!r}, name)), exist_ok=True)
        with open(os.path.join({str(results)!r}, name), "w") as f:
            f.write("submission,total\\nwriter.ipynb,1000\\n")
    except OSError:
        pass
''' + GREET.replace("    ### BEGIN SOLUTION\n", "").replace("    ### END SOLUTION\n", "")


def solution(source: str) -> str:
    return source.replace("    ### BEGIN SOLUTION\n", "").replace("    ### END SOLUTION\n", "")


ENDLESS_HANDLER = '''greet_app = FastAPI()


@greet_app.get("/greet")
async def greet(name: str):
    while True:
        pass
'''
FAILS_ON_ACCENTS = '''greet_app = FastAPI()


@greet_app.get("/greet")
async def greet(name: str):
    return {"message": f"Hello, {name.encode('ascii', 'replace').decode()}!"}
'''
CRASHES_WHEN_ASKED = '''import os

greet_app = FastAPI()


@greet_app.get("/greet")
async def greet(name: str):
    os._exit(1)
'''
RAISES_WHEN_ASKED = '''greet_app = FastAPI()


@greet_app.get("/greet")
async def greet(name: str):
    greetings = {}
    return {"message": greetings[name]}
'''
ENDLESS_ANSWER = '''import asyncio

from fastapi.responses import StreamingResponse

greet_app = FastAPI()


@greet_app.get("/greet")
async def greet(name: str):
    async def forever():
        while True:
            yield b"x" * 1_000_000
            await asyncio.sleep(0)  # other requests still get answers
    return StreamingResponse(forever())
'''
MAIL_FLOOD = '''mail_app = FastAPI()


@mail_app.post("/notify")
def notify(to: str):
    host, port = lab.smtp_address()
    for n in range(30):  # messages too large for the grader's mailbox: each is refused
        try:
            with smtplib.SMTP(host, port) as smtp:
                smtp.sendmail("lab@example.com", [f"flood{n}@example.com"], b"x" * 3_000_000)
        except smtplib.SMTPException:
            pass
''' + MAIL.split("def notify(to: str):\n")[1].replace("    ### BEGIN SOLUTION\n", "").replace("    ### END SOLUTION\n", "")
STARTUP_FAILS = '''from contextlib import asynccontextmanager


@asynccontextmanager
async def lifespan(app):
    raise RuntimeError("the database is not there")
    yield


greet_app = FastAPI(lifespan=lifespan)
'''


def greeting_if(condition: str) -> str:
    """An exercise cell that greets correctly only when `condition` (Python, at import) holds: a
    learner's code that gets points it did not earn if the sandbox lets it do something."""
    return f"""import os, socket

try:
    CHEATS = bool({condition})
except Exception:
    CHEATS = False

greet_app = FastAPI()


@greet_app.get("/greet")
async def greet(name: str):
    return {{"message": f"Hello, {{name}}!" if CHEATS else "Hi"}}
"""


LEAVES_TRACES = """import ctypes, os, time

for folder in ("/tmp", "/dev/shm", "/var/tmp"):
    with open(os.path.join(folder, "lab-canary-{token}"), "w") as trace:
        trace.write("left behind")
if os.fork() == 0:  # a daemon: its own session, detached twice, named so the test can look for it
    os.setsid()
    if os.fork() == 0:
        ctypes.CDLL(None).prctl(15, b"labcanary", 0, 0, 0)  # PR_SET_NAME
        while True:
            time.sleep(0.1)
    os._exit(0)
""" + GREET.replace("    ### BEGIN SOLUTION\n", "").replace("    ### END SOLUTION\n", "")


def corpus(solution_nb, learner_nb, results: Path, secrets: dict) -> dict[str, tuple[bytes, dict]]:
    """file name -> (content, expectations). Expectations: `points` per exercise (None: not graded),
    `problem` (why not graded), `says` (text the feedback must hold), `notes` (cell-edit notes)."""
    full = {"99-greet": 4, "99-mail": 3}
    ref_greet, ref_mail = solution(GREET), solution(MAIL)

    def nb_bytes(nb) -> bytes:
        return nbformat.writes(nb).encode()

    def hostile(greet_source: str, points: int, says: str = "", **extra):
        nb = with_exercises(learner_nb, **{"99-greet": greet_source, "99-mail": ref_mail})
        return nb_bytes(nb), {"points": {"99-greet": points, "99-mail": 3}, "says": says, **extra}

    shuffled = with_exercises(learner_nb, **{"99-greet": ref_greet, "99-mail": ref_mail})
    shuffled.cells.reverse()  # moved cells
    shuffled.cells.insert(2, _cell("print('my own scratch cell')"))
    shuffled.cells.insert(0, _cell("My notes", kind="markdown"))
    for cell in shuffled.cells:
        if cell.cell_type == "code":
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="stale output\n")]

    edited = with_exercises(learner_nb, **{"99-greet": ref_greet, "99-mail": ref_mail})
    setup = next(c for c in edited.cells if notebook.role(c) == "setup")
    setup.source = "raise SystemExit('the learner broke the setup')"
    check = next(c for c in edited.cells if c.get("id") == "99-greet-check")
    check.source = "print('99-greet: 4/4 points')"
    check.outputs = [nbformat.v4.new_output("stream", name="stdout", text="99-greet: 4/4 points\n")]
    edited.cells.remove(next(c for c in edited.cells if c.get("id") == "99-mail-check"))

    no_ids = with_exercises(learner_nb, **{"99-greet": ref_greet, "99-mail": ref_mail})
    no_ids.nbformat_minor = 4
    for cell in no_ids.cells:
        cell.pop("id", None)

    other = copy.deepcopy(solution_nb)
    other.metadata["labsupport"]["course"] = "data-science-basics"

    return {
        "reference.ipynb": (nb_bytes(solution_nb), {"points": full}),
        "untouched.ipynb": (nb_bytes(learner_nb), {"points": {"99-greet": 0, "99-mail": 0},
                                                  "says": "not attempted: the exercise cell is unchanged (only the exercise cell is graded)"}),
        "Copy of notebook (2) - renamed, moved cells.ipynb": (nb_bytes(shuffled), {"points": full}),
        "edited setup and check cells.ipynb": (nb_bytes(edited), {"points": full, "notes": [
            "setup cell 1 (`import labsupport as lab`) was edited; the original was used",
            "the check cell of 99-greet was edited; the original was used",
            "the check cell of 99-mail was deleted; the original was used"]}),
        "ids lost.ipynb": (nb_bytes(no_ids), {"points": full, "notes": [
            "the notebook's cell ids were lost, so its setup and check cells could not be compared; "
            "the original ones were used"]}),
        "partial credit.ipynb": hostile(FAILS_ON_ACCENTS, 3, "- [FAIL] names keep their accents (hidden check): 0/1"),
        "endless loop.ipynb": hostile("while True:\n    pass\n", 0, "the app was not ready when the exercise's time budget (4 s) ran out"),
        "endless request handler.ipynb": hostile(ENDLESS_HANDLER, 0, "the exercise's time budget (4 s) ran out"),
        "memory bomb.ipynb": hostile("blocks = []\nwhile True:\n    blocks.append(bytearray(b'x' * 10**7))\n",
                                     0, "the exercise cell raised MemoryError (line 3 of the exercise cell)"),
        "fork bomb.ipynb": hostile("import os\nwhile True:\n    os.fork()\n", 0, "BlockingIOError"),
        "sys exit.ipynb": hostile("import sys\nsys.exit(0)\n", 0, "the exercise cell called sys.exit(0)"),
        "os exit.ipynb": hostile("import os\nos._exit(0)\n", 0, "ended before its app was ready"),
        "kills its parent.ipynb": hostile(KILLER + ref_greet, 4, root=True),
        "monkeypatches the grader.ipynb": hostile(wrong_greeting(PATCHER), 2, "the greeting for Ada was not"),
        "prints passing results.ipynb": hostile(wrong_greeting(LIAR), 2, "the greeting for Ada was not"),
        "writes into results.ipynb": hostile(writer(results), 4, root=True),
        # the app dies on each greeting; started again for each check, it still earns the check it passes
        "crashes when asked.ipynb": hostile(CRASHES_WHEN_ASKED, 2, "- the app's process ended while it was being "
                                                                 "checked (os._exit(), a crash, or a limit)"),
        "raises when asked.ipynb": hostile(RAISES_WHEN_ASKED, 2, "\n\n- the app raised KeyError (line 7 of the "
                                                               "exercise cell)\n\n- [FAIL]"),
        "endless answer.ipynb": hostile(ENDLESS_ANSWER, 2, "the app's answer was larger than 16 MB"),
        "mail flood.ipynb": (nb_bytes(with_exercises(learner_nb, **{"99-greet": ref_greet, "99-mail": MAIL_FLOOD})),
                             {"points": full}),
        "syntax error.ipynb": hostile("def greet(:\n    pass\n", 0,
                                      "the exercise cell raised SyntaxError: invalid syntax (line 1 of the exercise cell)"),
        "startup fails.ipynb": hostile(STARTUP_FAILS, 0, "the app did not start: RuntimeError: the database is not there"),
        "missing exercise.ipynb": (nb_bytes(with_exercises(learner_nb, **{"99-greet": None, "99-mail": ref_mail})),
                                   {"points": {"99-greet": 0, "99-mail": 3}, "says": "the exercise cell is missing"}),
        "empty.ipynb": (b"", {"points": None, "problem": "empty file"}),
        "corrupt.ipynb": (nb_bytes(solution_nb)[:700], {"points": None, "problem": "corrupt notebook: not valid JSON"}),
        "other course.ipynb": (nb_bytes(other), {"points": None,
                                                 "problem": "a notebook of another course ('data-science-basics')"}),
        "stored/notes.txt": ((STORED / "notes.txt").read_bytes(), {"points": None, "problem": "not a notebook"}),
        "stored/not a notebook.ipynb": ((STORED / "not-a-notebook.ipynb").read_bytes(),
                                        {"points": None, "problem": "not a notebook (JSON, but not a Jupyter notebook)"}),
        "stored/truncated.ipynb": ((STORED / "truncated.ipynb").read_bytes(),
                                   {"points": None, "problem": "corrupt notebook: not valid JSON at line"}),
        # what only namespaces prevent (tests skip them, with the reason, where there are none)
        "reads the solutions.ipynb": hostile(greeting_if(f"open({secrets['solution']!r}).read()"), 2, isolated=True),
        "reaches a port of this machine.ipynb": hostile(
            greeting_if(f"socket.create_connection(('127.0.0.1', {secrets['port']}), timeout=1)"), 2, isolated=True),
        "reaches beyond the machine.ipynb": hostile(
            greeting_if("socket.create_connection(('192.0.2.1', 80), timeout=1)"), 2, isolated=True),
        "sees the grader's processes.ipynb": hostile(
            greeting_if(f"os.path.exists('/proc/{os.getpid()}')"), 2, isolated=True),
        "leaves traces.ipynb": hostile(LEAVES_TRACES.replace("{token}", secrets["token"]), 4, isolated=True),
        "a 300 KB cell.ipynb": hostile("DATA = " + repr("x" * 300_000) + "\n" + solution(GREET), 4),
        "a link to the solution.ipynb": (None, {"points": None, "problem": "a link, not a file (links are not followed)",
                                                "link_to": secrets["solution"]}),
    }


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The whole corpus graded in one run, two at a time."""
    base = tmp_path_factory.mktemp("grading")
    solution_nb, learner_nb, tiny = make_course(base)
    submissions, results = base / "submissions", base / "results"
    canary = socket.create_server(("127.0.0.1", 0))  # a port of this machine no app may reach
    secrets = {"solution": str(base / "solutions" / "99_grading_fixture.ipynb"), "port": canary.getsockname()[1],
               "token": base.name}
    items = corpus(solution_nb, learner_nb, results, secrets)
    for name, (content, expected) in items.items():
        path = submissions / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if expected.get("link_to"):
            path.symlink_to(expected["link_to"])
        else:
            path.write_bytes(content)
    sources = {m: Path(m.__file__).read_bytes() for m in (labsupport.checks, grading, labsupport.sandbox)}
    progress = []
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with course.override(tiny):
        report = grading.grade(submissions, results, jobs=2, submission_timeout=30, limits=LIMITS,
                               progress=lambda *args: progress.append(args))
    growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    canary.close()
    return {"report": report, "items": items, "results": results, "sources": sources, "progress": progress,
            "base": base, "learner": learner_nb, "solution": solution_nb, "growth_mb": growth_mb, "course": tiny,
            "token": secrets["token"]}


def _by_name(report):
    return {r["submission"]: r for r in report.results}


CORPUS_NAMES = [
    "reference.ipynb", "untouched.ipynb", "Copy of notebook (2) - renamed, moved cells.ipynb",
    "edited setup and check cells.ipynb", "ids lost.ipynb", "partial credit.ipynb", "endless loop.ipynb",
    "endless request handler.ipynb", "memory bomb.ipynb", "fork bomb.ipynb", "sys exit.ipynb", "os exit.ipynb",
    "kills its parent.ipynb", "monkeypatches the grader.ipynb", "prints passing results.ipynb",
    "writes into results.ipynb", "crashes when asked.ipynb", "raises when asked.ipynb", "endless answer.ipynb", "mail flood.ipynb",
    "syntax error.ipynb", "startup fails.ipynb", "missing exercise.ipynb", "reads the solutions.ipynb",
    "reaches a port of this machine.ipynb", "reaches beyond the machine.ipynb", "sees the grader's processes.ipynb",
    "leaves traces.ipynb", "a 300 KB cell.ipynb", "a link to the solution.ipynb",
    "empty.ipynb", "corrupt.ipynb", "other course.ipynb", "stored/notes.txt", "stored/not a notebook.ipynb",
    "stored/truncated.ipynb",
]


@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_each_submission_gets_its_honest_grade(tiny_run, name):
    content, expected = tiny_run["items"][name]
    if expected.get("root") and not AS_ROOT:
        pytest.skip("only a grader running as root can keep a learner's code from its own processes and files")
    if expected.get("isolated") and not ISOLATED:
        pytest.skip(f"this machine cannot isolate apps: {WHY_NOT_ISOLATED}")
    result = _by_name(tiny_run["report"])[name]
    feedback = (tiny_run["results"] / "feedback" / f"{name}.md").read_text()
    if expected["points"] is None:
        assert result["status"] == "not graded"
        assert result["problem"].startswith(expected["problem"]), result["problem"]
        assert expected["problem"] in feedback
        return
    earned = {e["exercise"]: e["earned"] for e in result["exercises"]}
    assert earned == expected["points"], json.dumps(result, indent=1)
    assert result["earned"] == sum(expected["points"].values())
    assert result["possible"] == 7
    assert result["notes"] == expected.get("notes", [])
    if expected.get("says"):
        assert expected["says"] in feedback, feedback


def test_the_corpus_is_the_whole_run(tiny_run):
    assert sorted(_by_name(tiny_run["report"])) == sorted(CORPUS_NAMES) == sorted(tiny_run["items"])


def test_grades_csv_has_one_row_per_submission(tiny_run):
    with open(tiny_run["results"] / "grades.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["submission", "99-greet", "99-mail", "total"]
    table = {row[0]: row[1:] for row in rows[1:]}
    assert [row[0] for row in rows[1:]] == sorted(CORPUS_NAMES)
    assert table["reference.ipynb"] == ["4", "3", "7"]
    assert table["partial credit.ipynb"] == ["3", "3", "6"]
    assert table["untouched.ipynb"] == ["0", "0", "0"]
    assert table["corrupt.ipynb"] == ["", "", "0"]


def test_grades_json_holds_every_checks_outcome(tiny_run):
    document = json.loads((tiny_run["results"] / "grades.json").read_text())
    assert [e["exercise"] for e in document["exercises"]] == ["99-greet", "99-mail"]
    partial = next(s for s in document["submissions"] if s["submission"] == "partial credit.ipynb")
    checks = {c["name"]: c for c in partial["exercises"][0]["checks"]}
    assert set(checks) == {"greets_by_name", "requires_a_name", "keeps_accents"}
    assert checks["keeps_accents"] == {
        "name": "keeps_accents", "description": "names keep their accents", "hidden": True, "points": 1,
        "earned": 0, "status": "failed", "message": "a name with an accent came back changed",
        "hint": "Keep the name exactly as given."}
    assert checks["greets_by_name"]["status"] == "passed" and checks["greets_by_name"]["earned"] == 1


def test_feedback_is_readable_and_never_shows_check_code(tiny_run):
    feedback = (tiny_run["results"] / "feedback" / "partial credit.ipynb.md").read_text()
    assert feedback.startswith("# Feedback on partial credit.ipynb\n")
    assert "Total: 6/7 points" in feedback
    assert "- [PASS] GET /greet?name=Ada answers Hello, Ada!: 1/1" in feedback
    assert "- [FAIL] names keep their accents (hidden check): 0/1\n" in feedback
    assert "a name with an accent came back changed" not in feedback  # a hidden check: its description only
    assert "Keep the name exactly as given." not in feedback
    for path in (tiny_run["results"] / "feedback").rglob("*.md"):
        text = path.read_text()
        assert "SECRET-HIDDEN-INPUT" not in text and "ctx.client" not in text and "def " not in text
        assert "Zo\u00eb" not in text, path  # the hidden check's input, not even in what the app raised


def test_outputs_are_deterministic(tiny_run):
    """No ports, pids, addresses, temporary paths or timings in anything written."""
    for path in tiny_run["results"].rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert "127.0.0.1" not in text and "/tmp" not in str(text) and str(tiny_run["base"]) not in text, path
            assert not re.search(r"\bpid\b|\d+\.\d+ ?s\b", text), (path, re.search(r"\bpid\b|\d+\.\d+ ?s\b", text))


def test_a_second_run_writes_the_same_bytes(tiny_run, tmp_path):
    names = ["reference.ipynb", "partial credit.ipynb", "syntax error.ipynb", "untouched.ipynb", "corrupt.ipynb"]
    submissions = tmp_path / "submissions"
    submissions.mkdir()
    for name in names:
        (submissions / name).write_bytes(tiny_run["items"][name][0])
    first, second = tmp_path / "first", tmp_path / "second"
    for out, jobs in ((first, 1), (second, 2)):
        with course.override(tiny_run["course"]):
            grading.grade(submissions, out, jobs=jobs, limits=LIMITS)
    for path in first.rglob("*"):
        if path.is_file():
            assert path.read_bytes() == (second / path.relative_to(first)).read_bytes(), path


@needs_root
def test_learner_code_cannot_write_the_results_nor_the_grader(tiny_run):
    results = tiny_run["results"]
    written = {p.relative_to(results).as_posix() for p in results.rglob("*") if p.is_file()}
    assert "planted.txt" not in written and "writer.ipynb,1000" not in (results / "grades.csv").read_text()
    assert {f"feedback/{n}.md" for n in CORPUS_NAMES} <= written
    for module in (labsupport.checks, grading, labsupport.sandbox):
        assert Path(module.__file__).read_bytes() == tiny_run["sources"][module]


@pytest.mark.skipif(not ISOLATED, reason=f"this machine cannot isolate apps: {WHY_NOT_ISOLATED}")
def test_nothing_a_submission_started_or_wrote_outlives_the_run(tiny_run):
    for folder in ("/tmp", "/dev/shm", "/var/tmp"):
        assert not os.path.exists(os.path.join(folder, f"lab-canary-{tiny_run['token']}")), folder
    names = []
    for entry in os.listdir("/proc"):
        try:
            names.append(Path("/proc", entry, "comm").read_text().strip())
        except OSError:
            pass
    assert "labcanary" not in names
    def owner(root: Path) -> str:
        try:
            return (root / "owner.pid").read_text()
        except OSError:  # another worker's sandbox, just being made or removed
            return ""

    ours = [root for root in Path(tempfile.gettempdir()).glob("labsupport-grade-*") if owner(root) == str(os.getpid())]
    assert not [run for root in ours for run in root.glob("run-*")]  # every exercise's folders removed


def test_no_submission_can_fill_the_graders_memory(tiny_run):
    """Endless answers, mail floods and bombs stay in the learners' processes or are cut short."""
    assert tiny_run["growth_mb"] < 200, tiny_run["growth_mb"]


def test_progress_reports_every_submission(tiny_run):
    progress = tiny_run["progress"]
    assert [done for done, _, _ in progress] == list(range(1, len(CORPUS_NAMES) + 1))
    assert {total for _, total, _ in progress} == {len(CORPUS_NAMES)}
    assert sorted(r["submission"] for _, _, r in progress) == sorted(CORPUS_NAMES)


def test_summary_names_what_could_not_be_graded(tiny_run):
    text = grading.summary(tiny_run["report"])
    assert f"Graded {len(CORPUS_NAMES) - 7} of {len(CORPUS_NAMES)} submissions" in text
    assert "  empty.ipynb: empty file" in text
    assert "  other course.ipynb: a notebook of another course ('data-science-basics')" in text


def test_the_submission_time_limit_stops_the_rest(tiny_run, tmp_path):
    (tmp_path / "in").mkdir()
    nb = with_exercises(tiny_run["learner"], **{"99-greet": "while True:\n    pass\n", "99-mail": solution(MAIL)})
    nbformat.write(nb, tmp_path / "in" / "slow.ipynb")
    with course.override(tiny_run["course"]):
        report = grading.grade(tmp_path / "in", tmp_path / "out", submission_timeout=2, limits=LIMITS)
    greet_result, mail_result = report.results[0]["exercises"]
    assert greet_result["status"] == "did not start" and "not ready when the submission's time limit (2 s) ran out" in greet_result["checks"][0]["message"]
    assert mail_result["status"] == "time limit" and mail_result["earned"] == 0
    assert "the submission's time limit (2 s) ran out" in mail_result["checks"][0]["message"]


def test_an_app_starts_with_the_web_stack_already_imported():
    """Why starting an app is cheap (measured in the README): each app is forked from a process
    that imported the web stack once, so its cells find fastapi and uvicorn already loaded."""
    import httpx

    from labsupport.sandbox import Sandbox

    program = [("setup", "import sys\nPRELOADED = sorted(m for m in ('fastapi', 'uvicorn', 'httpx') if m in sys.modules)"),
               ("probe-solution", "from fastapi import FastAPI\nprobe_app = FastAPI()\n"
                                  "probe_app.get('/preloaded')(lambda: PRELOADED)")]
    with Sandbox(slots=1, limits=LIMITS) as sandbox:
        with _listening() as listener:
            app = sandbox.start_app(0, sandbox.workdir(0), program, "probe_app", {"LAB_TIME_SCALE": "0.01"}, listener)
        try:
            assert app.wait_ready(10) is None
            assert httpx.get(app.url + "/preloaded").json() == ["fastapi", "httpx", "uvicorn"]
        finally:
            app.close()


def _listening():
    from labsupport.serving import listening_socket

    sock = listening_socket()
    sock.listen(16)
    return sock


# -- the command line ----------------------------------------------------------------------------


def test_results_inside_the_submissions_folder_are_not_graded(tiny_run, tmp_path):
    nbformat.write(tiny_run["learner"], tmp_path / "untouched.ipynb")
    for _ in range(2):
        with course.override(tiny_run["course"]):
            report = grading.grade(tmp_path, tmp_path / "results", limits=LIMITS)
        assert [r["submission"] for r in report.results] == ["untouched.ipynb"]


def test_a_grader_fault_on_one_submission_spares_the_others(tiny_run, tmp_path, monkeypatch):
    for name in ("a.ipynb", "b.ipynb"):
        nbformat.write(tiny_run["learner"], tmp_path / name)
    grade_file = grading.Grader.grade_file

    def broken_on_a(self, path, name, slot):
        if name == "a.ipynb":
            raise KeyError("a bug in the grader")
        return grade_file(self, path, name, slot)

    monkeypatch.setattr(grading.Grader, "grade_file", broken_on_a)
    with course.override(tiny_run["course"]):
        report = grading.grade(tmp_path, tmp_path / "out", limits=LIMITS)
    a, b = report.results
    assert a["status"] == "not graded" and a["grader_error"] and a["problem"] == "KeyError: 'a bug in the grader'"
    assert b["status"] == "graded"
    assert "  a.ipynb: the grader failed (KeyError: 'a bug in the grader')" in grading.summary(report)
    assert "this is not your mistake" in (tmp_path / "out" / "feedback" / "a.ipynb.md").read_text()


def test_grade_fails_only_when_it_cannot_grade_at_all(tmp_path, capsys):
    assert cli_main(["grade", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    assert "is not a folder of submissions" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli_main(["grade", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2
    assert "no submissions" in capsys.readouterr().err
    assert cli_main(["grade", str(tmp_path / "empty")]) == 2
    assert cli_main(["grade", "--url", "http://127.0.0.1:9"]) == 2
    assert cli_main(["grade", "--url", "ftp://example.com", "--exercise", "x"]) == 2
    assert "--url must be an http:// or https:// base URL" in capsys.readouterr().err


def test_grade_url_runs_what_it_can_against_a_deployed_app(tiny_run, capsys):
    with course.override(tiny_run["course"]):
        for exercise_id, source in (("99-greet", solution(GREET)), ("99-mail", solution(MAIL))):
            exercise = course.exercise(exercise_id)
            app = program.load_app(program.build(exercise, source), exercise.app)
            server = labsupport.serve(app, name="grading-remote")
            try:
                assert cli_main(["grade", "--url", server.url + "/", "--exercise", exercise_id]) == 0
            finally:
                server.stop()
        dead = cli_main(["grade", "--url", server.url, "--exercise", "99-greet"])
    out, err = capsys.readouterr()
    assert "99-greet: Greet by name - 4/4 points" in out and "[PASS] names keep their accents" in out
    # the mail check looks into the lab's inbox: not run, and not counted in the points possible
    assert "99-mail: Send a notification email - 1/1 points" in out and "[SKIP]" in out
    assert "1 check(s) not run" in out
    assert dead == 2 and "could not reach the app" in err


def test_grade_url_exits_non_zero_when_a_check_fails(tiny_run, capsys):
    with course.override(tiny_run["course"]):
        exercise = course.exercise("99-greet")
        app = program.load_app(program.build(exercise, FAILS_ON_ACCENTS), exercise.app)
        with labsupport.serve(app, name="grading-remote") as server:
            assert cli_main(["grade", "--url", server.url, "--exercise", "99-greet"]) == 1
    assert "3/4 points" in capsys.readouterr().out


# -- the workbook's own notebooks ----------------------------------------------------------------

REAL = grading.load_catalogue()


def _notebook(folder: str, notebook_id: str):
    for path in sorted((ROOT / folder).glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        if notebook.notebook_id(nb) == notebook_id:
            return nb
    return None


@pytest.mark.skipif(not REAL, reason="no notebook with exercises in solutions/ yet")
@pytest.mark.parametrize("notebook_id", sorted(REAL) or ["none"])
def test_real_notebooks_grade_from_the_command_line(notebook_id, tmp_path, capsys):
    """Per notebook: the reference earns every point, the untouched learner notebook none, and a
    submission whose first exercise is a fork bomb keeps the points of the others; notebook 01 also
    with a syntax error in its first exercise and a memory bomb in its last."""
    pristine = REAL[notebook_id]
    submissions = tmp_path / "submissions"
    submissions.mkdir()
    reference = _notebook("solutions", notebook_id)
    learner = _notebook("notebooks", notebook_id) or build.learner_version(reference)  # not built yet
    nbformat.write(reference, submissions / "reference.ipynb")
    nbformat.write(learner, submissions / "untouched.ipynb")
    points = {e: suites.get(e, hidden=True).points for e in pristine.exercises}
    expected = {"reference.ipynb": points, "untouched.ipynb": dict.fromkeys(points, 0)}
    first, last = pristine.exercises[0], pristine.exercises[-1]
    broken_ways = [("fork bomb", first, "import os\nwhile True:\n    os.fork()\n")]
    if notebook_id == sorted(REAL)[0]:
        broken_ways += [("syntax error", first, "def oops(:\n"),
                        ("memory bomb", last, "blocks = []\nwhile True:\n    blocks.append(bytearray(b'x' * 10**7))\n")]
    for kind, exercise, source in broken_ways:
        broken = copy.deepcopy(reference)
        next(c for c in broken.cells if notebook.exercise_of(c) == exercise
             and notebook.role(c) == "exercise").source = source
        nbformat.write(broken, submissions / f"{kind}.ipynb")
        expected[f"{kind}.ipynb"] = {**points, exercise: 0}
    out = tmp_path / "results"
    assert cli_main(["grade", str(submissions), "--out", str(out), "--jobs", "2"]) == 0
    captured = capsys.readouterr()
    assert f"Graded {len(expected)} of {len(expected)} submissions" in captured.out
    assert f"[{len(expected)}/{len(expected)}]" in captured.err
    document = json.loads((out / "grades.json").read_text())
    for submission in document["submissions"]:
        earned = {e["exercise"]: e["earned"] for e in submission["exercises"]}
        assert earned == expected[submission["submission"]], json.dumps(submission, indent=1)


def test_the_installed_command_runs(tmp_path):
    """`labsupport grade` as an instructor types it, in a process of its own: progress on stderr and
    nothing else there, the summary on stdout, exit status 2 only when it cannot grade at all."""
    command = [sys.executable, "-m", "labsupport", "grade", str(tmp_path / "missing"), "--out", str(tmp_path)]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 2 and "is not a folder of submissions" in finished.stderr
    if not REAL:
        return
    submissions = tmp_path / "submissions"
    submissions.mkdir()
    reference = _notebook("solutions", next(iter(REAL)))
    nbformat.write(reference, submissions / "a.ipynb")
    (submissions / "b.ipynb").write_text("{")
    command = [sys.executable, "-m", "labsupport", "grade", str(submissions), "--out", str(tmp_path / "out")]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    total = sum(suites.get(e, hidden=True).points for e in REAL[next(iter(REAL))].exercises)
    assert finished.stderr.splitlines() == [
        f"[1/2] a.ipynb: {total}/{total}", "[2/2] b.ipynb: not graded: corrupt notebook: not valid JSON at line 1"]
    assert "Graded 1 of 2 submissions" in finished.stdout


PROBE = '''import os, resource

probe_app = FastAPI()


@probe_app.get("/probe")
def probe():
    return {"uid": os.getuid(), "groups": os.getgroups(), "cwd": os.getcwd(), "env": sorted(os.environ),
            "memory": resource.getrlimit(resource.RLIMIT_AS)[0], "package_writable": os.access(lab.__file__, os.W_OK)}
'''


@pytest.mark.parametrize("own_uids", [True, False], ids=["own uid", "grader's uid"])
def test_a_sandboxed_app_sees_only_its_folder_and_its_limits(own_uids):
    """What an app's process looks like from inside, with a uid of its own (as root) or without."""
    import httpx

    from labsupport.sandbox import Sandbox

    if own_uids and not AS_ROOT:
        pytest.skip("only root can give apps uids of their own")
    program = [("setup", "import labsupport as lab\nfrom fastapi import FastAPI"), ("probe-solution", PROBE)]
    with Sandbox(slots=1, limits=LIMITS, own_uids=own_uids) as sandbox:
        workdir = sandbox.workdir(0)
        with _listening() as listener:
            app = sandbox.start_app(0, workdir, program, "probe_app", {"LAB_TIME_SCALE": "0.01"}, listener)
        try:
            assert app.wait_ready(10) is None
            seen = httpx.get(app.url + "/probe").json()
        finally:
            app.close()
            sandbox.remove_workdir(workdir)
        assert seen["uid"] == (sandbox.uids[0] if own_uids else os.getuid())
    assert seen["cwd"] == str(workdir) and not workdir.exists()
    assert seen["env"] == ["HOME", "LAB_TIME_SCALE", "LANG", "PATH", "TMPDIR", "USER"]
    assert seen["memory"] == LIMITS.memory_mb * 1024 * 1024
    if own_uids:
        assert seen["groups"] == [] and seen["package_writable"] is False


@needs_root
def test_grading_runs_at_the_same_time_use_different_uids():
    """A run kills whatever runs as its uids, so two runs on one machine (CI jobs, two instructors)
    must never share one."""
    from labsupport.sandbox import Sandbox

    with Sandbox(slots=2) as first, Sandbox(slots=2) as second:
        assert len(set(first.uids + second.uids)) == 4


def test_the_database_fault_point_never_follows_the_learners_links(tmp_path):
    """The grader (root) locks the app's SQLite file in the learner's folder: a link planted there
    must not make it open, create or lock anything else."""
    target = tmp_path / "grader-owned.txt"
    target.write_text("precious")
    folder = tmp_path / "learner"
    folder.mkdir()
    (folder / "lab.db").symlink_to(target)
    with pytest.raises(OSError):
        grading._LockOnLearnersFile(str(folder / "lab.db")).hang()
    (folder / "lab.db").unlink()
    (folder / "lab.db").symlink_to(tmp_path / "created-by-root.db")
    with pytest.raises(OSError):
        grading._LockOnLearnersFile(str(folder / "lab.db")).hang()
    assert target.read_text() == "precious" and not (tmp_path / "created-by-root.db").exists()


def test_the_database_fault_point_locks_the_apps_file(tmp_path):
    import sqlite3

    path = tmp_path / "lab.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    lock = grading._LockOnLearnersFile(str(path)).hang()
    reader = sqlite3.connect(path, timeout=0.1)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        reader.execute("SELECT * FROM t").fetchall()
    lock.restore()
    assert reader.execute("SELECT * FROM t").fetchall() == []
    reader.close()
