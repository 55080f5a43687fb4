"""The report layer (labsupport/report.py): nothing a learner sends can break or inject into it.

Hostile strings go through every writer and printer: a lone surrogate, ANSI escapes (colours, a
window title, a hyperlink), Markdown headings, links and raw HTML, a spreadsheet formula, control
and bidirectional characters, a 300 KB message. File names: Latin-1 bytes, a formula, `a.ipynb`
beside `a.ipynb.md/...`, names that differ only by case, a dangling link. The results folder: a link, another
user's folder, a folder anyone may write into, links planted inside it. Then a whole grading run
with such submissions, two at a time: it goes on, and every report file is complete and valid.
"""
from __future__ import annotations

import csv
import html
import html.parser
import json
import os
import re
import unicodedata
from pathlib import Path

import mistune
import nbformat
import pytest

from labsupport import build, course, grading, notebook, report
from labsupport.checks import Suite, expect
from labsupport.cli import main as cli_main
from labsupport.errors import LabError
from labsupport.sandbox import Limits

HOSTILE = [
    "lone \ud800 surrogate and a pair \ud83d\ude00",
    "\x1b[31mred\x1b[0m \x1b]0;window title\x07 \x1b]8;;http://evil.example\x1b\\a link\x1b]8;;\x1b\\ \x1b[2J\x1b[H",
    "# a heading\n## another\n- [PASS] a forged line: 13/13",
    "<script>alert(1)</script><img src=x onerror=alert(1)><a href='javascript:alert(1)'>x</a>",
    "[click me](http://evil.example) ![pixel](http://evil.example/p.png) <http://evil.example>",
    "=cmd|' /C calc'!A0",
    "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\uff1d1+1",
    "bell\x07 nul\x00 backspace\x08 del\x7f c1\x85\x9b31m",
    "right\u202eto-left override\u2066 isolate\u200b zero width\ufeff bom",
    "**bold** _it_ `code` ~~strike~~ | pipe | \\ backslash &amp; &#60;",
    "os._exit() and welcome_app are fine as they are",
    "x" * 300_000,
]
FORMULA = re.compile(r"^\s*[=+\-@\uff1d\uff0b\uff0d\uff20]")
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


# -- strings -------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_clean_leaves_no_escape_control_or_surrogate_and_bounds_the_length(text):
    cleaned = report.clean(text)
    assert not CONTROL.search(cleaned), repr(cleaned)
    assert "\n" not in cleaned and len(cleaned) <= report.MAX_TEXT + 10
    cleaned.encode("utf-8")  # would raise on a surrogate
    assert report.clean(cleaned) == cleaned  # cleaning twice changes nothing


def test_clean_keeps_what_was_said():
    assert report.clean("\x1b[1;31mKeyError\x1b[0m: 'b'") == "KeyError: 'b'"
    assert report.clean("\x1b]0;pwned\x07title stays out") == "title stays out"
    assert report.clean("a\ud800b") == "a\ufffdb"
    assert report.clean("a pair \ud83d\ude00 is one character") == "a pair \U0001f600 is one character"
    assert report.clean("caf\u00e9 \u6f22\u5b57 \U0001f600") == "caf\u00e9 \u6f22\u5b57 \U0001f600"
    assert report.clean("one\ntwo\r\nthree\tfour") == "one two three four"
    assert report.clean("x" * 5000, limit=100) == "x" * 100 + " [...]"


def _rendered_text(markdown_source: str) -> str:
    rendered = mistune.create_markdown()(markdown_source)
    return html.unescape(re.sub(r"<[^>]+>", "", rendered)).strip()


def _tags(markdown_source: str) -> set[str]:
    return set(re.findall(r"<(\w+)", mistune.create_markdown()(markdown_source)))


@pytest.mark.parametrize("text", HOSTILE[:-1] + ["_a_ and *b*", "__init__", "a `b", "ends with #", "1. item"],
                         ids=range(len(HOSTILE) + 4))
def test_markdown_renders_as_exactly_the_text(text):
    """In a list item (where feedback puts every learner string), the escaped text renders as the
    text itself: no heading, HTML, link, image, emphasis or code span of the learner's making."""
    source = f"- why: {report.markdown(text)}\n"
    assert _rendered_text(source) == "why: " + report.clean(text)
    assert _tags(source) <= {"ul", "li"}, mistune.create_markdown()(source)


def test_markdown_escapes_only_what_could_act():
    assert report.markdown("os._exit() in welcome_app") == "os._exit() in welcome_app"
    assert report.markdown("the app raised KeyError (line 7 of the exercise cell)") == \
        "the app raised KeyError (line 7 of the exercise cell)"
    assert report.markdown("<b>") == "\\<b>"


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_csv_cells_never_start_a_formula(text):
    cell = report.csv_cell(text)
    assert not FORMULA.match(cell), cell
    assert report.csv_cell(-3) == -3 and report.csv_cell(None) == ""


# -- file names ----------------------------------------------------------------------------------


def test_display_names_show_bytes_that_are_not_utf8():
    latin1 = os.fsdecode(b"caf\xe9.ipynb")  # what os.walk gives for a Latin-1 name
    assert report.display_name(latin1) == "caf\\xe9.ipynb"
    assert report.display_name(os.fsdecode("café.ipynb".encode())) == "café.ipynb"
    assert report.display_name("\x1b[31mred.ipynb") == "red.ipynb"


def test_feedback_paths_are_unique_and_safe_on_any_file_system():
    names = ["a.ipynb", "a.ipynb.md/x.ipynb", "a.ipynb.md/y.ipynb", "A.ipynb", "caf\u00e9.ipynb",
             unicodedata.normalize("NFD", "caf\u00e9.ipynb"), "con.ipynb", "-rf.ipynb", ".hidden.ipynb", "a:b*c?.ipynb",
             "=cmd|' C calc'!A0.ipynb", "x" * 400 + ".ipynb", "/".join("d" * 10) + "/deep.ipynb", "..",
             "caf\\xe9.ipynb"]
    paths = report.feedback_paths(names)
    assert paths["a.ipynb"] == "a.ipynb.md"
    assert paths["a.ipynb.md/x.ipynb"] == "a.ipynb.md (2)/x.ipynb.md"  # the file took the name first
    assert paths["a.ipynb.md/y.ipynb"] == "a.ipynb.md (2)/y.ipynb.md"  # same folder for the same folder
    folded = [unicodedata.normalize("NFC", p).casefold() for p in paths.values()]
    assert len(set(folded)) == len(names), paths
    files = {unicodedata.normalize("NFC", p).casefold() for p in paths.values()}
    folders = {"/".join(p.split("/")[:i]) for p in folded for i in range(1, p.count("/") + 1)}
    assert not files & folders
    for path in paths.values():
        for part in path.split("/"):
            assert part and not part.startswith((".", "-")) and len(part.encode()) <= report.MAX_COMPONENT, path
            assert not re.search(r'[\\:*?"<>|\x00-\x1f]', part), path
        assert path.count("/") < report.MAX_DEPTH and path.endswith(".md")


# -- the results folder --------------------------------------------------------------------------


def test_the_results_folder_is_refused_if_it_is_a_link(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "results").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(LabError, match="is a link or not a folder"):
        report.ResultsFolder(tmp_path / "results")
    (tmp_path / "file").write_text("x")
    with pytest.raises(LabError, match="is a link or not a folder"):
        report.ResultsFolder(tmp_path / "file")


def test_the_results_folder_is_refused_if_anyone_may_write_into_it(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(LabError, match="may be written by anyone"):
        report.ResultsFolder(shared)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a folder to another user")
def test_the_results_folder_is_refused_if_it_belongs_to_another_user(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 64999, 64999)
    with pytest.raises(LabError, match=r"belongs to another user \(uid 64999\)"):
        report.ResultsFolder(theirs)


def test_files_are_never_written_through_links(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "victim-folder").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "grades.csv").symlink_to(victim)
    (out / "feedback").symlink_to(tmp_path / "victim-folder")
    (out / "exports").symlink_to(tmp_path / "victim-folder")
    grading.write_results(_report(out, [_graded("a.ipynb")]))
    assert victim.read_text() == "precious" and not any((tmp_path / "victim-folder").iterdir())
    assert not (out / "grades.csv").is_symlink() and (out / "grades.csv").read_text().startswith("submission,")
    assert (out / "feedback").is_dir() and not (out / "feedback").is_symlink()
    # a link planted as a folder inside: refused, not followed
    folder = report.ResultsFolder(out)
    os.symlink(tmp_path / "victim-folder", out / "graded")
    with pytest.raises(OSError):
        folder.write("graded/x.json", "{}")
    folder.close()
    assert not any((tmp_path / "victim-folder").iterdir())


def test_a_crash_while_writing_leaves_each_file_whole(tmp_path, monkeypatch):
    out = tmp_path / "out"
    grading.write_results(_report(out, [_graded("a.ipynb")]))
    before = (out / "grades.json").read_bytes()

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        grading.write_results(_report(out, [_graded("a.ipynb"), _graded("b.ipynb")]))
    assert (out / "grades.json").read_bytes() == before
    assert not [p for p in out.rglob("*.tmp")]


def test_each_result_is_kept_as_it_is_graded_and_a_rerun_resumes(tmp_path):
    """ResultsFolder.record keeps one submission's result the moment it is graded: after a crash,
    a rerun finds it (same file, same grader) and need not grade it again."""
    out = tmp_path / "out"
    submission = tmp_path / "ada.ipynb"
    submission.write_text('{"cells": []}')
    grader = report.grader_fingerprint()
    fingerprint = report.submission_fingerprint(submission, grader, "jobs=1")
    result = _graded(os.fsdecode(b"caf\xe9/\xff.ipynb"), message="lone \ud800 surrogate")
    with report.ResultsFolder(out) as folder:
        folder.record(result, fingerprint)
    # the grader dies here; a new run opens the folder again
    with report.ResultsFolder(out) as folder:
        kept = folder.recorded(result["submission"], fingerprint)
        assert kept is not None and kept["submission"] == result["submission"]
        assert kept["exercises"][0]["checks"][1]["message"] == "lone \ufffd surrogate"
        other_options = report.submission_fingerprint(submission, grader, "jobs=2")
        assert folder.recorded(result["submission"], other_options) is None
        submission.write_text('{"cells": [], "changed": true}')
        changed = report.submission_fingerprint(submission, grader, "jobs=1")
        assert folder.recorded(result["submission"], changed) is None
        folder.record({**_graded("b.ipynb"), "grader_error": True}, fingerprint)
        assert folder.recorded("b.ipynb", fingerprint) is None  # a fault of the grader's: graded again
        folder.prune(["b.ipynb"])
        assert folder.recorded(result["submission"], fingerprint) is None
        assert folder.names("graded") == [report.ResultsFolder.record_name("b.ipynb").split("/")[1]]


# -- the reports, from results made by hand ------------------------------------------------------


def _check(name, status, message="", hidden=False, points=1, hint=""):
    return {"name": name, "description": f"the {name} check", "points": points,
            "earned": points if status == "passed" else 0, "status": status, "message": message or status,
            "hint": hint, "hidden": hidden}


def _graded(name, message="the greeting was wrong", notebook_id="98-report-fixture", passed=(True, False, True),
            notes=(), app_errors=()):
    checks = [_check("greets", "passed" if passed[0] else "failed", message, hint="Return a greeting."),
              _check("refuses", "passed" if passed[1] else "failed", message, points=2, hint=message),
              _check("secret", "passed" if passed[2] else "failed", message, hidden=True, hint="the hidden hint")]
    earned = sum(c["earned"] for c in checks)
    exercise = {"exercise": "98-echo", "title": "Echo", "earned": earned, "possible": 4, "checks": checks,
                "notes": list(notes), "app_errors": list(app_errors), "started": True, "status": "graded"}
    return {"submission": name, "notebook": notebook_id, "status": "graded", "problem": "", "notes": [],
            "earned": earned, "possible": 4, "exercises": [exercise]}


def _rejected(name, problem):
    return {"submission": name, "notebook": None, "status": "not graded", "problem": problem, "notes": [],
            "earned": 0, "possible": 0, "exercises": []}


EXERCISES = [{"exercise": "98-echo", "notebook": "98-report-fixture", "title": "Echo", "points": 4}]


def _report(out, results):
    return grading.Report(results, EXERCISES, Path(out), 1.0, [])


def _hostile_results():
    results = []
    for index, text in enumerate(HOSTILE):
        results.append(_graded(f"learner{index:02d}/01.ipynb", message=text, notes=[text], app_errors=[text],
                               passed=(index % 2 == 0, index % 3 == 0, index % 5 == 0)))
    results += [
        _graded(os.fsdecode(b"caf\xe9.ipynb")), _graded("=cmd|' C calc'!A0.ipynb"), _graded("a.ipynb"),
        _graded("a.ipynb.md/x.ipynb"), _graded("A.ipynb"), _graded("# heading <b>.ipynb"),
        _graded("\x1b]0;title\x07\x1b[31mred.ipynb"), _graded("lone\ud800.ipynb"),
        _rejected("corrupt.ipynb", "corrupt notebook: " + HOSTILE[3]),
        _rejected("surrogate.ipynb", HOSTILE[0]),
        {**_rejected("grader fault.ipynb", "KeyError: " + HOSTILE[1]), "grader_error": True},
        {**_graded("odd metadata.ipynb"), "notebook": {"not": ["a", "string"]}, "status": "not graded",
         "problem": "notebook {'not': ['a', 'string']} has no exercises to grade"},
    ]
    return results


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "out"
    results = _hostile_results()
    grading.write_results(_report(out, results))
    return {"out": out, "results": results}


def test_every_report_file_is_written_and_valid(hostile_run):
    out, results = hostile_run["out"], hostile_run["results"]
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    feedback = [n for n in names if n.startswith("feedback/")]
    assert len(feedback) == len(results)
    assert {"grades.csv", "grades.json", "class-summary.csv", "report.html", "exports/canvas.csv",
            "exports/gradescope-98-report-fixture.csv"} <= set(names)
    for path in out.rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("utf-8")  # strict: no surrogate, no stray byte
            assert not CONTROL.search(text.replace("\n", "")), path
            assert len(text) < 400_000, path  # the 300 KB message was cut
    document = json.loads((out / "grades.json").read_text())
    assert len(document["submissions"]) == len(results)
    assert len({s["submission"] for s in document["submissions"]}) == len(results)
    for submission in document["submissions"]:
        assert (out / submission["feedback"]).is_file()


def test_grades_csv_has_a_row_per_submission_and_no_formula(hostile_run):
    out, results = hostile_run["out"], hostile_run["results"]
    for name in ("grades.csv", "class-summary.csv", "exports/canvas.csv", "exports/gradescope-98-report-fixture.csv"):
        with open(out / name, newline="", encoding="utf-8") as file:
            rows = list(csv.reader(file))
        assert len({len(row) for row in rows}) == 1, name
        for row in rows:
            for cell in row:
                assert not FORMULA.match(cell), (name, cell)
    with open(out / "grades.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == len(results)
    assert "'=cmd|' C calc'!A0.ipynb" in {row["submission"] for row in rows}
    assert "caf\\xe9.ipynb" in {row["submission"] for row in rows}


def test_feedback_renders_without_anything_a_learner_injected(hostile_run):
    out = hostile_run["out"]
    for path in (out / "feedback").rglob("*.md"):
        source = path.read_text()
        assert _tags(source) <= {"h1", "h2", "p", "ul", "li"}, (path, _tags(source))
        headings = [line for line in source.splitlines() if line.startswith("#")]
        assert all(line.startswith(("# Feedback on ", "## 98-echo: Echo (")) for line in headings), headings
        assert "the hidden hint" not in source  # a hidden check: its description only
        assert source.count("(hidden check)") <= 1
    text = (out / "feedback" / "learner02" / "01.ipynb.md").read_text()  # a forged "- [PASS] ..." line
    items = sum(1 for line in text.splitlines() if line.lstrip().startswith("- "))
    assert mistune.create_markdown()(text).count("<li>") == items


def test_the_hidden_checks_message_and_hint_never_reach_the_learner(tmp_path):
    result = _graded("a.ipynb", message="SECRET INPUT 42", passed=(True, True, False))
    grading.write_results(_report(tmp_path / "out", [result]))
    text = (tmp_path / "out" / "feedback" / "a.ipynb.md").read_text()
    assert "- [FAIL] the secret check (hidden check): 0/1\n" in text
    assert "SECRET INPUT 42" not in text and "the hidden hint" not in text


def test_the_html_report_holds_no_markup_of_a_learners_making(hostile_run):
    page = (hostile_run["out"] / "report.html").read_text()

    class Collector(html.parser.HTMLParser):
        tags, attributes = set(), set()

        def handle_starttag(self, tag, attrs):
            self.tags.add(tag)
            self.attributes.update(attrs)

    parser = Collector()
    parser.feed(page)
    assert parser.tags <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "svg", "text", "rect",
                           "table", "thead", "tbody", "tr", "th", "td", "a", "span", "ul", "li"}, parser.tags
    assert not [(name, value) for name, value in parser.attributes
                if name.startswith("on") or (name == "href" and not value.startswith("feedback/"))]
    assert "default-src 'none'" in page  # and a policy that would stop anything that slipped through
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_class_summary_lists_every_check_least_passed_first(tmp_path):
    results = [_graded(f"l{n}.ipynb", passed=(n < 4, n < 1, n < 2)) for n in range(5)]
    results.append(_rejected("broken.ipynb", "empty file"))
    grading.write_results(_report(tmp_path, results))
    with open(tmp_path / "class-summary.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [(r["check"], r["passed"], r["graded"], r["hidden"]) for r in rows] == [
        ("refuses", "1", "5", "no"), ("secret", "2", "5", "yes"), ("greets", "4", "5", "no")]
    page = (tmp_path / "report.html").read_text()
    bars = re.findall(r"<rect x='\d+' y='\d+' width='(\d+)' height='\d+' fill='#(?!eaeef2)", page)
    assert [int(width) for width in bars] == [60, 120, 240]  # 1/5, 2/5 and 4/5 of 300 pixels
    summary = grading.summary(_report(tmp_path, results))
    assert "Least passed checks" in summary and "  1/5 98-echo: the refuses check" in summary


def test_learning_platform_exports(tmp_path):
    results = [_graded("ada/01.ipynb", passed=(True, True, True)),
               _graded("ada/01 again.ipynb", passed=(True, False, False)),
               _graded("bo@example.edu/01.ipynb", passed=(True, False, True)),
               _graded("cy.ipynb", passed=(False, False, False)),
               _rejected("dee/notes.txt", "not a notebook")]
    grading.write_results(_report(tmp_path, results))
    canvas = (tmp_path / "exports" / "canvas.csv").read_text().splitlines()
    assert canvas[0].startswith("Student,ID,SIS User ID,SIS Login ID,Section,98-report-fixture")
    assert canvas[1:] == ["Points Possible,,,,,4", "ada,,,ada,,4", "bo@example.edu,,,bo@example.edu,,2",
                          "cy,,,cy,,0", "dee,,,dee,,"]
    gradescope = (tmp_path / "exports" / "gradescope-98-report-fixture.csv").read_text().splitlines()
    assert gradescope == ["Name,SID,Email,Total Score,Max Points,Status,98-echo (4 pts)",
                          "ada,ada,,4,4,Graded,4", "bo@example.edu,,bo@example.edu,2,4,Graded,2", "cy,cy,,0,4,Graded,0"]
    assert "ada has more than one submission of 98-report-fixture: the higher total is exported" in \
        grading.summary(_report(tmp_path, results))


def test_terminal_output_cannot_move_the_cursor_or_set_the_title(hostile_run, capsys):
    text = grading.summary(_report(hostile_run["out"], hostile_run["results"]))
    for done, result in enumerate(hostile_run["results"], 1):
        grading._progress(done, len(hostile_run["results"]), result)
    err = capsys.readouterr().err
    assert not CONTROL.search(text.replace("\n", "")) and not CONTROL.search(err.replace("\n", ""))
    total, latin1 = len(hostile_run["results"]), len(HOSTILE)  # the Latin-1 name comes right after the hostile ones
    assert err.splitlines()[latin1] == f"[{latin1 + 1}/{total}] caf\\xe9.ipynb: 2/4"


def test_two_runs_write_the_same_bytes(tmp_path):
    for name in ("first", "second"):
        grading.write_results(_report(tmp_path / name, _hostile_results()))
    for path in (tmp_path / "first").rglob("*"):
        if path.is_file():
            assert path.read_bytes() == (tmp_path / "second" / path.relative_to(tmp_path / "first")).read_bytes()


# -- a whole grading run -------------------------------------------------------------------------

MANIFEST = f"""
course = "{notebook.COURSE}"
title = "A course for the report's tests"

[[notebook]]
number = "98"
slug = "report_fixture"
title = "A notebook for the report's tests"

[[notebook.exercise]]
id = "98-echo"
app = "echo_app"
title = "Echo"
services = []
budget = 8
antipattern = "none"
"""

echo = Suite("98-echo")


@echo.check(points=2, hint="Answer {'ok': true}.")
def answers_ok(ctx):
    "GET /ok answers {'ok': true}"
    response = ctx.client.get("/ok")
    expect(response.status_code == 200 and response.text == '{"ok":true}',
           f"GET /ok answered {response.status_code}: {response.text}")  # the app's words, unescaped


@echo.check(points=1, hint="the hidden hint", hidden=True)
def answers_ok_twice(ctx):
    "GET /ok answers the same twice"
    first, second = ctx.client.get("/ok"), ctx.client.get("/ok")
    expect(first.text == second.text == '{"ok":true}', f"SECRET: {second.text}")


EXERCISE = '''echo_app = FastAPI()


@echo_app.get("/ok")
def ok():
    ### BEGIN SOLUTION
    return {"ok": True}
    ### END SOLUTION
'''
REFERENCE = EXERCISE.replace("    ### BEGIN SOLUTION\n", "").replace("    ### END SOLUTION\n", "")
SAYS = '''from fastapi.responses import PlainTextResponse

echo_app = FastAPI()


@echo_app.get("/ok")
def ok():
    return PlainTextResponse({text!r})
'''


def _make_course(folder: Path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["labsupport"] = {"course": notebook.COURSE, "notebook": "98-report-fixture"}
    setup = nbformat.v4.new_code_cell("import labsupport as lab\nfrom fastapi import FastAPI")
    setup.metadata["labsupport"] = {"role": "setup"}
    exercise = nbformat.v4.new_code_cell(EXERCISE)
    exercise.metadata["labsupport"] = {"role": "exercise", "exercise": "98-echo"}
    check = nbformat.v4.new_code_cell('lab.check("98-echo")')
    check.metadata["labsupport"] = {"role": "check", "exercise": "98-echo"}
    nb.cells = [setup, exercise, check]
    notebook.stamp(nb, {"98-echo": 3})
    (folder / "solutions").mkdir(parents=True)
    nbformat.write(nb, folder / "solutions" / "98_report_fixture.ipynb")
    return nb, build.learner_version(nb), course.parse(MANIFEST, root=folder)


def _with(nb, source: str) -> bytes:
    nb = nbformat.from_dict(json.loads(nbformat.writes(nb)))
    next(c for c in nb.cells if c.get("id") == "98-echo-solution").source = source
    return nbformat.writes(nb).encode()


@pytest.fixture(scope="module")
def graded_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("graded")
    solution, learner, tiny = _make_course(base)
    submissions = base / "submissions"
    submissions.mkdir()
    files = {
        b"reference.ipynb": _with(learner, REFERENCE),
        b"untouched.ipynb": _with(learner, learner.cells[1].source),
        b"caf\xe9 latin-1.ipynb": _with(learner, REFERENCE),
        b"=cmd|' C calc'!A0.ipynb": _with(learner, REFERENCE),
        b"a.ipynb": _with(learner, REFERENCE),
        b"a.ipynb.md/x.ipynb": _with(learner, REFERENCE),
        b"A.ipynb": _with(learner, REFERENCE),
        b"says hostile things.ipynb": _with(learner, SAYS.format(text="".join(HOSTILE[i] for i in (1, 2, 3, 5)))),
        b"raises a surrogate.ipynb": _with(learner, 'raise RuntimeError("lone \\ud800 surrogate \\x1b[2J")\n'),
        b"a 300 KB cell.ipynb": _with(learner, "DATA = " + repr("x" * 300_000) + "\n" + REFERENCE),
        b"a 300 KB answer.ipynb": _with(learner, SAYS.format(text="y" * 300_000)),
    }
    for name, content in files.items():
        path = Path(os.fsdecode(submissions)) / os.fsdecode(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    (submissions / "a dangling link.ipynb").symlink_to(base / "nowhere" / "solution.ipynb")
    out = base / "results"
    with course.override(tiny):
        result = grading.grade(submissions, out, jobs=2, limits=Limits(memory_mb=1024))
    return {"report": result, "out": out, "files": files, "course": tiny}


def test_grading_goes_on_and_every_report_file_is_complete(graded_run):
    out, files = graded_run["out"], graded_run["files"]
    document = json.loads((out / "grades.json").read_text(encoding="utf-8"))
    by_name = {s["submission"]: s for s in document["submissions"]}
    assert len(by_name) == len(files) + 1
    assert by_name["a dangling link.ipynb"]["status"] == "not graded"
    earned = {name: s["earned"] for name, s in by_name.items() if name != "a dangling link.ipynb"}
    assert earned == {"reference.ipynb": 3, "untouched.ipynb": 0, "caf\\xe9 latin-1.ipynb": 3,
                      "=cmd|' C calc'!A0.ipynb": 3, "a.ipynb": 3, "a.ipynb.md/x.ipynb": 3, "A.ipynb": 3,
                      "says hostile things.ipynb": 0, "raises a surrogate.ipynb": 0, "a 300 KB cell.ipynb": 3,
                      "a 300 KB answer.ipynb": 0}
    for submission in document["submissions"]:
        feedback = (out / submission["feedback"]).read_text(encoding="utf-8")
        assert _tags(feedback) <= {"h1", "h2", "p", "ul", "li"}, submission["feedback"]
        assert "SECRET" not in feedback and "the hidden hint" not in feedback
    says = (out / by_name["says hostile things.ipynb"]["feedback"]).read_text()
    assert "\\# a heading" in says and "\\<script>" in says and "window title" not in says
    assert "lone \ufffd surrogate" in (out / by_name["raises a surrogate.ipynb"]["feedback"]).read_text()
    with open(out / "grades.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))
    assert len(rows) == len(files) + 2 and not any(FORMULA.match(cell) for row in rows for cell in row)
    assert all(len(p.read_bytes()) < 100_000 for p in out.rglob("*.md"))


def test_the_results_folder_is_refused_from_the_command_line_if_it_is_a_link(tmp_path, capsys):
    (tmp_path / "submissions").mkdir()
    (tmp_path / "submissions" / "x.ipynb").write_text("{")
    (tmp_path / "target").mkdir()
    (tmp_path / "out").symlink_to(tmp_path / "target")
    assert cli_main(["grade", str(tmp_path / "submissions"), "--out", str(tmp_path / "out")]) == 2
    assert "is a link or not a folder" in capsys.readouterr().err
    assert not any((tmp_path / "target").iterdir())
