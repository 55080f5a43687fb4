"""Everything the grader writes, and the one place learner strings pass through on their way out.

After `labsupport grade SUBMISSIONS_DIR --out RESULTS_DIR`, RESULTS_DIR holds:

    grades.csv                    a row per submission: submission, a column per exercise id, total
    grades.json                   every check's outcome, message and hint; each submission's feedback file
    feedback/<submission>.md      for the learner: what passed, what failed and why, with hints
    class-summary.csv             every check with how many graded submissions passed it, least passed first
    report.html                   the class summary as a chart, then every submission's points
    exports/canvas.csv            for Canvas's gradebook import: a row per learner, a column per notebook
    exports/gradescope-NN-slug.csv  per notebook, in the columns of Gradescope's score export

ResultsFolder.record keeps a submission's result in graded/<key>.json the moment it is graded, and
ResultsFolder.recorded finds it again for a rerun when the file and the grader are the same, so
that a crash loses nothing already graded and a rerun resumes.

A learner is known by the first folder under SUBMISSIONS_DIR (`submissions/ada/01.ipynb` is ada's),
or by the file's name without `.ipynb` for files at the top (`ada.ipynb`). Example, for a notebook
NN "Title" whose exercises NN-first and NN-second are worth 8 and 16 points, graded from
`submissions/ada/NN.ipynb` (8 + 12) and `submissions/bo@example.edu/NN.ipynb` (8 + 16):

    exports/canvas.csv
        Student,ID,SIS User ID,SIS Login ID,Section,NN Title
        Points Possible,,,,,24
        ada,,,ada,,20
        bo@example.edu,,,bo@example.edu,,24

    exports/gradescope-NN-slug.csv
        Name,SID,Email,Total Score,Max Points,Status,NN-first (8 pts),NN-second (16 pts)
        ada,ada,,20,24,Graded,8,12
        bo@example.edu,,bo@example.edu,24,24,Graded,8,16

Canvas's gradebook import needs the columns Student, ID, SIS User ID, SIS Login ID and Section,
finds each learner by name, ID or SIS User ID, and makes an assignment of a column it does not know
(instructors' guide: teaching.resources.osu.edu/toolsets/carmencanvas/guides/calculating-final-grades/
import-csv-file-carmen-grades). The export puts the learner's key in Student and SIS Login ID and
leaves ID and SIS User ID empty: copy them from Canvas's own gradebook export before importing. The
Gradescope file has the columns of Gradescope's score export (Name, SID, Email, Total Score, Max
Points, Status, then one per question), the key as Email when it holds an @, else as SID. A learner
with two submissions of one notebook is exported with the higher total (the summary says so); a
cell is left empty where nothing was graded.

Learner strings (file names, exception messages, answers that checks quote, notebook metadata) are
untrusted. Before anything is written or printed, every string is cut to a bounded length, ANSI
escapes and control characters (bidirectional overrides included) are removed and lone surrogates
replaced (`clean`); then it is escaped for where it goes: Markdown (`markdown`), HTML (`html.escape`),
a CSV cell (`csv_cell`: a cell that a spreadsheet would run as a formula starts with a quote), a
file name (`feedback_paths`: sanitized, unique even on case-insensitive file systems). RESULTS_DIR
is refused if it is a link, is not a folder, belongs to another user or anyone may write into it,
and every file in it is written through a descriptor of that folder, never through a link, and
replaced atomically: a crash leaves each file either complete or as it was.
"""
from __future__ import annotations

import csv
import errno
import hashlib
import html
import io
import json
import os
import re
import shutil
import stat
import sys
import unicodedata
from collections import defaultdict
from pathlib import Path
from urllib.parse import quote

from .errors import LabError

MAX_TEXT = 1000        # characters of one message, note or hint in any report
MAX_NAME = 240         # characters of a submission's name as reported
MAX_COMPONENT = 120    # bytes (UTF-8) of one component of a feedback file's path
MAX_DEPTH = 8          # folders of a feedback file's path; deeper ones are joined into one
RECORD_FORMAT = 1

# -- cleaning ------------------------------------------------------------------------------------

_ANSI = re.compile(r"""
      \x1b\[[0-?]*[ -/]*[@-~]              # CSI: colours, cursor movement, erasing
    | \x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?   # OSC: window titles, hyperlinks
    | \x1b[PX^_][^\x1b]*(?:\x1b\\)?        # DCS, SOS, PM, APC strings
    | \x1b[\x20-\x2f]*[\x30-\x7e]          # any other escape sequence
    | \x9b[0-?]*[ -/]*[@-~]                # 8-bit CSI
""", re.X)
# C0 and C1 controls, DEL, and the invisible format characters that reorder or hide text
# (bidirectional embeddings, overrides and isolates, zero-width characters, the BOM).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_BREAKS = re.compile("[\t\n\r\x0b\x0c\x85\u2028\u2029]+")
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean(value, limit: int = MAX_TEXT, multiline: bool = False) -> str:
    """`value` as text that is safe to show anywhere once escaped for its place: at most `limit`
    characters, no ANSI escapes or control characters, lone surrogates as U+FFFD, and (unless
    `multiline`) on one line."""
    text = value if isinstance(value, str) else str(value)
    text = text[: limit * 4 + 64]  # bounded work, whatever the input
    if _SURROGATE.search(text):  # a valid pair becomes its character, a lone surrogate U+FFFD
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    text = _ANSI.sub("", text)
    if multiline:
        text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ")
        text = _BREAKS.sub(lambda m: "\n" * m.group().count("\n") or " ", text)
    else:
        text = _BREAKS.sub(" ", text)
    text = _CONTROL.sub("", text).strip()
    if len(text) > limit:
        text = text[:limit].rstrip() + " [...]"
    return text


def display_name(name: str) -> str:
    """A submission's path as reported: bytes that are not UTF-8 (a Latin-1 file name) shown as
    \\xNN escapes, so that two different files never read the same."""
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # surrogates that no file system gave
        raw = _SURROGATE.sub("\ufffd", name).encode("utf-8")
    return clean(raw.decode("utf-8", "backslashreplace"), MAX_NAME)


def clean_tree(value, limit: int = MAX_TEXT):
    """Every string in a JSON-like value cleaned; anything that is not JSON becomes text."""
    if isinstance(value, dict):
        return {clean(k, 200): clean_tree(v, limit) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_tree(v, limit) for v in value]
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    return clean(value, limit)


# -- escaping for each place ---------------------------------------------------------------------

_ALWAYS = re.compile(r"([\\\[\]<#])")
_ENTITY = re.compile(r"&(?=#?[0-9A-Za-z]+;)")
_PAIRED = {"_": re.compile(r"_+"), "*": re.compile(r"\*+"), "`": re.compile(r"`+"), "~": re.compile(r"~+")}


def markdown(value, limit: int = MAX_TEXT) -> str:
    """`value` as Markdown that renders as exactly its (cleaned) text: no heading, no HTML, no
    link or image, no emphasis or code span that the learner did not write as plain text.

    Brackets, `<`, `#`, backslashes and entity references are always escaped. The characters that
    only act in pairs (emphasis `*` `_`, code spans, strikethrough) are escaped when the text holds
    two or more runs of one of them, which is when they could pair: every learner string stands in
    a list item or heading of its own, so one alone renders as itself (`os._exit()` stays readable)."""
    text = clean(value, limit)
    text = _ALWAYS.sub(r"\\\1", text)
    text = _ENTITY.sub(r"\\&", text)
    for char, runs in _PAIRED.items():
        found = runs.findall(text)
        if char == "_":  # an underscore between two letters or digits never starts emphasis
            found = [m for m in re.finditer(r"_+", text)
                     if not (m.start() > 0 and m.end() < len(text)
                             and text[m.start() - 1].isalnum() and text[m.end()].isalnum())]
        if len(found) > 1:
            text = text.replace(char, "\\" + char)
    return text


def html_text(value, limit: int = MAX_TEXT) -> str:
    return html.escape(clean(value, limit), quote=True)


_FORMULA_START = tuple("=+-@\t\r\uff1d\uff0b\uff0d\uff20")


def csv_cell(value):
    """A CSV cell a spreadsheet shows as text: numbers as they are, text cleaned, and text that
    would start a formula (`=`, `+`, `-`, `@`, full-width forms too) prefixed with a quote."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return value
    text = clean(value, MAX_TEXT)
    return "'" + text if text.lstrip().startswith(_FORMULA_START) else text


def csv_text(rows) -> str:
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    for row in rows:
        writer.writerow([csv_cell(value) for value in row])
    return table.getvalue()


# -- file names ----------------------------------------------------------------------------------

_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f\x7f]')
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{n}" for n in range(10)), *(f"LPT{n}" for n in range(10))}


def _component(part: str, reserve: int = 0) -> str:
    """One component of a path, safe on any file system, at most MAX_COMPONENT - reserve bytes."""
    part = unicodedata.normalize("NFC", clean(part, MAX_NAME))
    part = _UNSAFE.sub("_", part).strip().rstrip(". ")
    if not part:
        part = "_"
    if part.startswith((".", "-", "~")) or part.split(".")[0].upper() in _RESERVED:
        part = "_" + part
    encoded = part.encode("utf-8")
    if len(encoded) > MAX_COMPONENT - reserve:
        part = encoded[: MAX_COMPONENT - reserve - 3].decode("utf-8", "ignore").rstrip(". ") + "..."
    return part


def feedback_paths(names) -> dict[str, str]:
    """Each submission's feedback file, relative to feedback/: `NAME.md` for `NAME`, in the same
    folders, every component sanitized for any file system. Two names that would land on one file
    (or on a folder, like `a.ipynb` beside `a.ipynb.md/x.ipynb`), also when compared without case
    or in another Unicode normal form, get ` (2)`, ` (3)`, ... in the order given."""
    taken: dict[tuple, str] = {}  # (folder, name folded) -> "file" or "dir"
    paths = {}
    for name in names:
        parts = [p for p in str(name).split("/") if p not in ("", ".")] or ["_"]
        if len(parts) > MAX_DEPTH:
            parts = parts[: MAX_DEPTH - 1] + ["_".join(parts[MAX_DEPTH - 1:])]
        folder: tuple = ()
        out = []
        for index, raw in enumerate(parts):
            last = index == len(parts) - 1
            kind, base = ("file", _component(raw, reserve=12)) if last else ("dir", _component(raw, reserve=9))
            candidate, number = base + (".md" if last else ""), 1
            while taken.get((folder, candidate.casefold())) not in (None, "dir" if kind == "dir" else None):
                number += 1
                candidate = f"{base} ({number})" + (".md" if last else "")
            taken[(folder, candidate.casefold())] = kind
            out.append(candidate)
            folder += (candidate.casefold(),)
        paths[name] = "/".join(out)
    return paths


def unique_names(names) -> list[str]:
    """Display names made unique in the order given (` (2)` after a repeat)."""
    seen: set[str] = set()
    unique = []
    for name in names:
        candidate, number = name, 1
        while candidate in seen:
            number += 1
            candidate = f"{name} ({number})"
        seen.add(candidate)
        unique.append(candidate)
    return unique


def learner_key(display: str) -> str:
    """The learner a submission belongs to: its first folder, or its file name without .ipynb."""
    first = display.split("/", 1)[0]
    if "/" not in display and first.lower().endswith(".ipynb"):
        first = first[:-6]
    return first or display


# -- the results folder --------------------------------------------------------------------------

_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)


class ResultsFolder:
    """RESULTS_DIR, opened once: refused if it is a link, not a folder, another user's or writable
    by anyone; every file written through its descriptor, never through a link, atomically."""

    def __init__(self, path):
        self.path = Path(os.path.abspath(path))
        if self.path.name in ("", ".", ".."):
            raise LabError(f"{path} cannot be the results folder: name a folder of its own")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        parent = os.open(self.path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            try:
                os.mkdir(self.path.name, 0o755, dir_fd=parent)
            except FileExistsError:
                pass
            try:
                self.fd = os.open(self.path.name, _DIR_FLAGS, dir_fd=parent)
            except OSError as error:
                if error.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                    raise LabError(f"{self.path} is a link or not a folder: the results need a folder "
                                   "of their own (grading writes nothing through links)") from None
                raise
        finally:
            os.close(parent)
        info = os.fstat(self.fd)
        problem = None
        if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
            problem = f"belongs to another user (uid {info.st_uid}), who could swap its files for links"
        elif info.st_mode & 0o002:
            problem = "may be written by anyone, who could swap its files for links"
        if problem:
            os.close(self.fd)
            raise LabError(f"{self.path} {problem}: choose a folder of your own for the results")
        self._serial = 0

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "ResultsFolder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _folder(self, parts: list[str]) -> int:
        """A descriptor of the folder at `parts` below RESULTS_DIR, made if missing, never a link."""
        fd = os.dup(self.fd)
        for part in parts:
            try:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            finally:
                os.close(fd)
            fd = child
        return fd

    def write(self, relative: str, text: str) -> None:
        """Write `relative` (a path with `/`) atomically: a temporary file, then a rename."""
        *parts, name = relative.split("/")
        folder = self._folder(parts)
        try:
            self._serial += 1
            temporary = f".{name[:80]}.{os.getpid()}.{self._serial}.tmp"
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                         0o644, dir_fd=folder)
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(text.encode("utf-8"))
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
            except BaseException:
                try:
                    os.unlink(temporary, dir_fd=folder)
                except OSError:
                    pass
                raise
        finally:
            os.close(folder)

    def read(self, relative: str) -> str | None:
        *parts, name = relative.split("/")
        try:
            folder = self._folder_existing(parts)
        except OSError:
            return None
        try:
            fd = os.open(name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0), dir_fd=folder)
            with os.fdopen(fd, "rb") as file:
                return file.read(64 * 1024 * 1024).decode("utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        finally:
            os.close(folder)

    def _folder_existing(self, parts: list[str]) -> int:
        fd = os.dup(self.fd)
        for part in parts:
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            finally:
                os.close(fd)
            fd = child
        return fd

    def remove_tree(self, name: str) -> None:
        """Remove RESULTS_DIR/name (a folder of an earlier run), without following links."""
        try:
            info = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(info.st_mode):
            shutil.rmtree(name, dir_fd=self.fd)
        else:
            os.unlink(name, dir_fd=self.fd)

    def names(self, folder: str) -> list[str]:
        try:
            fd = self._folder_existing([folder])
        except OSError:
            return []
        try:
            return sorted(os.listdir(fd))
        finally:
            os.close(fd)

    # -- one record per graded submission, written as it finishes ---------------------------
    @staticmethod
    def record_name(submission: str) -> str:
        raw = submission.encode("utf-8", "surrogateescape") if isinstance(submission, str) else bytes(submission)
        return "graded/" + hashlib.sha256(raw).hexdigest()[:40] + ".json"

    def record(self, result: dict, fingerprint: str) -> None:
        """Keep a submission's result (its whole dict, as graded) the moment it is graded.
        `fingerprint`: what it was graded from (submission_fingerprint), so that a rerun reuses
        it only for the same file graded by the same grader."""
        document = {"format": RECORD_FORMAT, "fingerprint": fingerprint,
                    "result": clean_tree(result, MAX_TEXT)}
        self.write(self.record_name(result["submission"]), json.dumps(document, ensure_ascii=False) + "\n")

    def recorded(self, submission: str, fingerprint: str) -> dict | None:
        """The result kept for this submission by an earlier run, if it was graded from the same
        file by the same grader and was not cut short by a fault of the grader's."""
        text = self.read(self.record_name(submission))
        try:
            document = json.loads(text) if text else None
        except ValueError:
            return None
        if (not isinstance(document, dict) or document.get("format") != RECORD_FORMAT
                or document.get("fingerprint") != fingerprint or not isinstance(document.get("result"), dict)):
            return None
        result = document["result"]
        if result.get("grader_error"):
            return None
        return {**result, "submission": submission}

    def prune(self, submissions) -> None:
        """Forget the records of submissions that are gone."""
        keep = {self.record_name(s).split("/", 1)[1] for s in submissions}
        for name in self.names("graded"):
            if name not in keep:
                try:
                    fd = self._folder_existing(["graded"])
                    try:
                        os.unlink(name, dir_fd=fd)
                    finally:
                        os.close(fd)
                except OSError:
                    pass


def grader_fingerprint(root: Path | None = None) -> str:
    """What a result depends on besides the submission: the manifest, the labsupport package, the
    hidden checks and the shipped notebooks (their setup cells). A change to any of them makes a
    rerun grade again instead of resuming."""
    from . import course

    root = Path(root or course.ROOT)
    digest = hashlib.sha256()
    files = [root / "course.toml", *sorted((root / "labsupport").rglob("*.py")),
             *sorted((root / "hidden").glob("*.py")), *sorted((root / "solutions").glob("*.ipynb"))]
    for path in files:
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


MAX_FINGERPRINTED = 64 * 1024 * 1024


def submission_fingerprint(path: Path, grader: str, options: str = "") -> str | None:
    """The file's bytes, the grader's fingerprint and the run's options (time limits, memory); None
    for what is not a plain file of a sensible size (never kept, so graded again). OSError for a
    link or a file that cannot be read."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FINGERPRINTED:
            return None
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return hashlib.sha256(f"{digest.hexdigest()}\0{grader}\0{options}".encode()).hexdigest()


# -- the results, cleaned once -------------------------------------------------------------------


class Cleaned:
    """A run's results as every report shows them: strings cleaned, names unique, feedback paths."""

    def __init__(self, results: list[dict], exercises: list[dict]):
        self.exercises = clean_tree(exercises)
        names = unique_names([display_name(str(r.get("submission", ""))) for r in results])
        paths = feedback_paths(names)
        self.results = []
        for result, name in zip(results, names):
            tidy = clean_tree(result)
            tidy["submission"] = name
            tidy["feedback"] = "feedback/" + paths[name]
            if not isinstance(tidy.get("notebook"), (str, type(None))):  # a learner's metadata, any JSON
                tidy["notebook"] = clean(json.dumps(tidy["notebook"], ensure_ascii=False), 200)
            tidy.setdefault("exercises", [])
            tidy.setdefault("notes", [])
            self.results.append(tidy)
        self.columns = [e["exercise"] for e in self.exercises]
        self.notebooks: dict[str, list[dict]] = defaultdict(list)
        for exercise in self.exercises:
            self.notebooks[exercise["notebook"]].append(exercise)

    @property
    def graded(self) -> list[dict]:
        return [r for r in self.results if r.get("status") == "graded"]

    def class_summary(self) -> list[dict]:
        """Every check of every graded notebook: how many graded submissions passed it, least passed
        first (then in course order)."""
        rows, order = {}, 0
        for exercise in self.exercises:
            graded = [r for r in self.graded if r.get("notebook") == exercise["notebook"]]
            for result in graded:
                outcome = next((e for e in result["exercises"] if e.get("exercise") == exercise["exercise"]), None)
                for check in (outcome or {}).get("checks", []):
                    key = (exercise["exercise"], check.get("name"))
                    if key not in rows:
                        rows[key] = {"exercise": exercise["exercise"], "check": check.get("name", ""),
                                     "description": check.get("description", ""), "hidden": bool(check.get("hidden")),
                                     "points": check.get("points", 0), "passed": 0, "graded": len(graded),
                                     "order": order}
                        order += 1
                    rows[key]["passed"] += check.get("status") == "passed"
        for row in rows.values():
            row["percent"] = round(100 * row["passed"] / row["graded"]) if row["graded"] else 0
        return sorted(rows.values(), key=lambda r: (r["passed"] / r["graded"] if r["graded"] else 0, r["order"]))

    def learners(self) -> tuple[dict[str, dict[str, dict]], list[str]]:
        """learner -> notebook -> the result exported for it (the higher total), and notes on repeats."""
        by_learner: dict[str, dict[str, dict]] = defaultdict(dict)
        notes = []
        for result in self.results:
            learner = learner_key(result["submission"])
            by_learner.setdefault(learner, {})
            notebook = result.get("notebook")
            if result.get("status") != "graded" or notebook not in self.notebooks:
                continue
            kept = by_learner[learner].get(notebook)
            if kept is not None:
                notes.append(f"{learner} has more than one submission of {notebook}: the higher total is exported")
                if kept["earned"] >= result["earned"]:
                    continue
            by_learner[learner][notebook] = result
        return by_learner, sorted(set(notes))


# -- writing the results -------------------------------------------------------------------------


def write_results(report) -> None:
    """Write every report of a grading run (grading.Report) into its RESULTS_DIR."""
    data = Cleaned(report.results, report.exercises)
    with ResultsFolder(report.out_dir) as folder:
        folder.write("grades.csv", grades_csv(data))
        document = {"course": _course_id(), "exercises": data.exercises, "submissions": data.results}
        folder.write("grades.json", json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        folder.write("class-summary.csv", class_summary_csv(data))
        folder.write("report.html", html_report(data))
        folder.remove_tree("exports")
        for name, text in exports(data).items():
            folder.write(f"exports/{name}", text)
        folder.remove_tree("feedback")  # no stale feedback from an earlier run
        for result in data.results:
            folder.write(result["feedback"], feedback(result, cleaned=True))


def _course_id() -> str:
    from . import notebook

    return notebook.COURSE


def grades_csv(data: Cleaned) -> str:
    rows = [["submission", *data.columns, "total"]]
    for result in data.results:
        earned = {e.get("exercise"): e.get("earned") for e in result["exercises"]}
        rows.append([result["submission"], *(earned.get(c, "") for c in data.columns), result.get("earned", 0)])
    return csv_text(rows)


def class_summary_csv(data: Cleaned) -> str:
    rows = [["exercise", "check", "description", "hidden", "points", "passed", "graded", "percent"]]
    for row in data.class_summary():
        rows.append([row["exercise"], row["check"], row["description"], "yes" if row["hidden"] else "no",
                     row["points"], row["passed"], row["graded"], row["percent"]])
    return csv_text(rows)


def exports(data: Cleaned) -> dict[str, str]:
    """The learning platforms' files: canvas.csv, and gradescope-<notebook>.csv per notebook."""
    from . import course

    by_learner, _ = data.learners()
    titles = {}
    for notebook_id in data.notebooks:
        entry = course.notebook_by_id(notebook_id)
        titles[notebook_id] = f"{entry.number} {entry.title}" if entry else notebook_id
    possible = {nb: sum(e["points"] for e in exercises) for nb, exercises in data.notebooks.items()}
    canvas = [["Student", "ID", "SIS User ID", "SIS Login ID", "Section", *titles.values()],
              ["Points Possible", "", "", "", "", *possible.values()]]
    for learner, notebooks in sorted(by_learner.items()):
        canvas.append([learner, "", "", learner, "",
                       *(notebooks[nb]["earned"] if nb in notebooks else "" for nb in titles)])
    files = {"canvas.csv": csv_text(canvas)}
    attempted = {(learner_key(r["submission"]), r.get("notebook")) for r in data.results}
    for notebook_id, exercises in data.notebooks.items():
        rows = [["Name", "SID", "Email", "Total Score", "Max Points", "Status",
                 *(f"{e['exercise']} ({e['points']} pts)" for e in exercises)]]
        for learner, notebooks in sorted(by_learner.items()):
            result = notebooks.get(notebook_id)
            email = learner if "@" in learner else ""
            sid = "" if email else learner
            if result is None:  # listed only if a submission of this notebook could not be graded
                if (learner, notebook_id) in attempted:
                    rows.append([learner, sid, email, "", possible[notebook_id], "Ungraded", *([""] * len(exercises))])
                continue
            earned = {e.get("exercise"): e.get("earned") for e in result["exercises"]}
            rows.append([learner, sid, email, result["earned"], possible[notebook_id], "Graded",
                         *(earned.get(e["exercise"], "") for e in exercises)])
        files[f"gradescope-{_component(notebook_id)}.csv"] = csv_text(rows)
    return files


# -- the learner's feedback ----------------------------------------------------------------------


def feedback(result: dict, cleaned: bool = False) -> str:
    """The learner's report in Markdown: what passed, what failed and why, hints. A hidden check
    shows its description only, never its message or hint (they could tell its input)."""
    if not cleaned:
        result = Cleaned([result], []).results[0]
    md = markdown
    lines = [f"# Feedback on {md(result['submission'], MAX_NAME)}", ""]
    if result.get("grader_error"):
        lines += [f"The grader failed on this submission ({md(result.get('problem', ''))}); this is not your mistake."]
        return "\n".join(lines) + "\n"
    if result.get("status") != "graded":
        lines += [f"This submission could not be graded: {md(result.get('problem', ''))}.", "",
                  "Submit the notebook file (.ipynb) you worked in, saved from JupyterLab."]
        return "\n".join(lines) + "\n"
    lines += [f"Notebook: {md(result.get('notebook'))}",
              f"Total: {result.get('earned', 0)}/{result.get('possible', 0)} points", ""]
    if result["notes"]:
        lines += ["Notes:", *(f"- {md(note)}" for note in result["notes"]), ""]
    for exercise in result["exercises"]:
        lines += [f"## {md(exercise.get('exercise'))}: {md(exercise.get('title'))} "
                  f"({exercise.get('earned', 0)}/{exercise.get('possible', 0)} points)", ""]
        notes = [*exercise.get("notes", []), *(f"the app raised {error}" for error in exercise.get("app_errors", []))]
        lines += [f"- {md(note)}" for note in notes] + ([""] if notes else [])
        for check in exercise.get("checks", []):
            mark = {"passed": "PASS", "failed": "FAIL", "not run": "SKIP"}.get(check.get("status"), "FAIL")
            hidden = " (hidden check)" if check.get("hidden") else ""
            lines.append(f"- [{mark}] {md(check.get('description'))}{hidden}: "
                         f"{check.get('earned', 0)}/{check.get('points', 0)}")
            if check.get("status") != "passed" and not check.get("hidden"):
                lines.append(f"  - why: {md(check.get('message'))}")
                if check.get("hint"):
                    lines.append(f"  - hint: {md(check.get('hint'))}")
        lines.append("")
    return "\n".join(lines)


# -- the instructor's HTML report ----------------------------------------------------------------

_STYLE = """body{font:14px/1.4 system-ui,sans-serif;margin:2em;max-width:70em;color:#1f2328}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #d0d7de;padding:.25em .5em;text-align:left}
td.n{text-align:right}.bad{color:#cf222e}.muted{color:#6e7781}svg text{font:12px system-ui,sans-serif}"""


def _chart(rows: list[dict]) -> str:
    """A horizontal bar per check: the share of graded submissions that passed it."""
    if not rows:
        return "<p class='muted'>No graded submission.</p>"
    bar, label, height = 300, 420, 22
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{label + bar + 80}' height='{height * len(rows) + 10}' "
             "role='img' aria-label='share of submissions that passed each check'>"]
    for index, row in enumerate(rows):
        y = 5 + index * height
        share = row["passed"] / row["graded"] if row["graded"] else 0
        text = f"{row['exercise']}: {row['description']}" + (" (hidden)" if row["hidden"] else "")
        color = "#cf222e" if share < 0.5 else "#bf8700" if share < 0.8 else "#1a7f37"
        parts.append(f"<text x='{label - 6}' y='{y + 15}' text-anchor='end'>{html_text(text, 70)}</text>"
                     f"<rect x='{label}' y='{y + 3}' width='{bar}' height='{height - 6}' fill='#eaeef2'/>"
                     f"<rect x='{label}' y='{y + 3}' width='{round(bar * share)}' height='{height - 6}' "
                     f"fill='{color}'/>"
                     f"<text x='{label + bar + 6}' y='{y + 15}'>{row['passed']}/{row['graded']}</text>")
    parts.append("</svg>")
    return "".join(parts)


def html_report(data: Cleaned) -> str:
    rows = data.class_summary()
    graded = data.graded
    out = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
           # nothing in this page may run or load anything, whatever a learner's string holds
           "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">",
           f"<title>Grades: {html_text(_course_id())}</title><style>{_STYLE}</style></head><body>",
           f"<h1>Grades: {html_text(_course_id())}</h1>",
           f"<p>{len(graded)} of {len(data.results)} submissions graded.</p>",
           "<h2>Where the class fails: every check, least passed first</h2>", _chart(rows)]
    if rows:
        out.append("<table><thead><tr><th>exercise</th><th>check</th><th>points</th><th>passed</th></tr></thead>"
                   "<tbody>")
        for row in rows:
            hidden = " <span class='muted'>(hidden)</span>" if row["hidden"] else ""
            out.append(f"<tr><td>{html_text(row['exercise'])}</td><td>{html_text(row['description'])}{hidden}</td>"
                       f"<td class='n'>{row['points']}</td><td class='n'>{row['passed']}/{row['graded']}</td></tr>")
        out.append("</tbody></table>")
    _, notes = data.learners()
    out.append("<h2>Submissions</h2><table><thead><tr><th>submission</th><th>notebook</th>"
               + "".join(f"<th>{html_text(c)}</th>" for c in data.columns)
               + "<th>total</th><th></th></tr></thead><tbody>")
    for result in data.results:
        earned = {e.get("exercise"): e.get("earned") for e in result["exercises"]}
        status = "" if result.get("status") == "graded" else (
            f"<span class='bad'>not graded: {html_text(why(result))}</span>")
        link = html.escape(quote(result["feedback"], safe="/"), quote=True)
        notebook_id = result.get("notebook") if result.get("status") == "graded" else ""
        out.append(f"<tr><td><a href='{link}'>{html_text(result['submission'], MAX_NAME)}</a></td>"
                   f"<td>{html_text(notebook_id or '')}</td>"
                   + "".join(f"<td class='n'>{html_text(earned.get(c, ''))}</td>" for c in data.columns)
                   + f"<td class='n'>{result.get('earned', 0)}/{result.get('possible', 0)}</td><td>{status}</td></tr>")
    out.append("</tbody></table>")
    if notes:
        out.append("<ul>" + "".join(f"<li>{html_text(note)}</li>" for note in notes) + "</ul>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# -- the terminal --------------------------------------------------------------------------------


def why(result: dict) -> str:
    problem = clean(result.get("problem", ""))
    return f"the grader failed ({problem})" if result.get("grader_error") else problem


_why = why


def summary(report) -> str:
    """What the instructor reads on stdout after a run (cleaned: no learner string can move the
    cursor, recolour the terminal or set its title)."""
    data = Cleaned(report.results, report.exercises)
    graded, rejected = data.graded, [r for r in data.results if r.get("status") != "graded"]
    lines = [f"Graded {len(graded)} of {len(data.results)} submissions in {report.elapsed:.1f} s."]
    for notebook_id in sorted({str(r.get("notebook")) for r in graded}):
        totals = [r.get("earned", 0) for r in graded if str(r.get("notebook")) == notebook_id]
        possible = next(r.get("possible", 0) for r in graded if str(r.get("notebook")) == notebook_id)
        full = sum(t == possible for t in totals)
        lines.append(f"  {notebook_id}: {len(totals)} submissions, mean {sum(totals) / len(totals):.1f}/{possible}, "
                     f"{full} with full points")
    edited = [r for r in graded if r["notes"]]
    if edited:
        lines.append(f"  {len(edited)} submission(s) with edited or deleted cells (see their feedback)")
    least = [row for row in data.class_summary() if row["passed"] < row["graded"]][:3]
    if least:
        lines.append("Least passed checks (class-summary.csv, report.html):")
        lines += [f"  {row['passed']}/{row['graded']} {row['exercise']}: {clean(row['description'], 100)}"
                  for row in least]
    _, notes = data.learners()
    lines += [f"  {note}" for note in notes]
    if rejected:
        lines.append("Not graded:")
        lines += [f"  {r['submission']}: {why(r)}" for r in rejected]
    lines.append(f"Results: {clean(report.out_dir / 'grades.csv', 2000)}, grades.json, feedback/, report.html, "
                 "class-summary.csv, exports/")
    return "\n".join(lines)


def progress(done: int, total: int, result: dict) -> None:
    """One line on stderr per graded submission."""
    width = len(str(total))
    if result.get("status") == "graded":
        outcome = f"{result.get('earned', 0)}/{result.get('possible', 0)}"
    else:
        outcome = f"not graded: {why(result)}"
    print(f"[{done:>{width}}/{total}] {display_name(str(result.get('submission', '')))}: {outcome}",
          file=sys.stderr, flush=True)


_progress = progress


def _write(path: Path, text: str) -> None:
    """Write one file of RESULTS_DIR (through the folder's descriptor, never through a link)."""
    path = Path(path)
    with ResultsFolder(path.parent) as folder:
        folder.write(path.name, text)
