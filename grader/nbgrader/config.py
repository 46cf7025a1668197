"""The course's `nbgrader_config.py`: written by `grader nbgrader build`, merged (never silently overwritten) on a rebuild.

The file has two parts. The block between `BEGIN`/`END` markers is the grader's: every
build writes it again (the sandbox in place of nbgrader's kernel, the course paths, the
feedback's preprocessors), keeping each assignment's seconds per question
(`c.SandboxGrade.timeouts`, one entry per assignment built). Everything outside the block
is the TA's (zip_collect's file names, an exchange, late penalties) and is kept as is.
A config without the markers (an older grader's, or written by hand) is kept beside it as
`nbgrader_config.py.bak`, and its settings that the block does not own are carried over
below the block when they use nothing but `c`, `os` and `here`; the rest is listed on stderr.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Callable
from pathlib import Path

DEFAULT_COURSE_ID = "cnn-grader"
DEFAULT_TIMEOUT = 600
BEGIN = "# >>> BEGIN cnn-grader block: `grader nbgrader build` writes it again on every build; edits here are lost"
END = "# <<< END cnn-grader block: your own settings go below, they are kept when the course is rebuilt"
TIMEOUTS_LINE = re.compile(r"^c\.SandboxGrade\.timeouts = (\{.*\})", re.M)
COURSE_ID_LINE = re.compile(r"^c\.CourseDirectory\.course_id = (.+)$", re.M)
OLD_TIMEOUT_LINE = re.compile(r"^c\.SandboxGrade\.timeout = (\d+)", re.M)
SAFE_NAMES = {"c", "os", "here"}  # what a carried-over setting may use: the block defines them

HEADER = '''\
"""nbgrader configuration of the cnn-grader course (written by `grader nbgrader build`).

Run the nbgrader commands from this folder. The reference solutions that the test
cells compare with are NOT part of the course: the grading machine must have the
cnn-grader package installed with its solutions/ (or $CNN_GRADER_SOLUTIONS set).
"""
'''

BLOCK = """\
import os

from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (
    AssignLatePenalties, CheckCellMetadata, ClearHiddenTests, ClearMarkScheme, GetGrades, IgnorePattern, LimitOutput,
    SaveAutoGrades,
)

from grader.nbgrader.autograde import SandboxGrade
from grader.nbgrader.feedback import HideTestTracebacks

c = get_config()  # noqa: F821 - provided by traitlets when it loads this file
here = os.path.dirname(os.path.abspath(__file__))

c.CourseDirectory.course_id = {course_id!r}
c.CourseDirectory.root = here
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(here, "gradebook.db")

# Autograde never runs a student notebook in a kernel (that would run it with your user and
# files). SandboxGrade takes the place of nbgrader's Execute: it grades each test cell in the
# grader's sandbox (own uid, no network, this course folder and the exchange out of sight)
# and writes the report and the score into the cell, as running it would have; the steps
# after it are nbgrader's own. A test cell the sandbox could not grade scores 0.
c.Autograde.autograde_preprocessors = [
    SandboxGrade, IgnorePattern, ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades, AssignLatePenalties,
    CheckCellMetadata,
]
c.SandboxGrade.course_dir = here
# Seconds the student code of one question may run, per assignment (`grader nbgrader build
# --question-time-limit`; an endless loop scores 0); an assignment not listed gets `timeout`.
c.SandboxGrade.timeouts = {timeouts!r}
c.SandboxGrade.timeout = {default}

# Only `nbgrader validate` still runs a kernel (students check their own notebook with it):
# never run it on submissions.
c.Execute.kernel_name = "python3"
c.Execute.timeout = {longest}
c.Execute.interrupt_on_timeout = True
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = {pattern!r}

# A student who deletes a test cell gets it back (and graded) at autograde.
c.OverwriteCells.add_missing_cells = True

# Feedback shows neither the hidden part of the test cells (in their source or in a
# traceback's quoted lines) nor the graders' rubrics.
c.GenerateFeedback.preprocessors = [
    GetGrades, CSSHTMLHeaderPreprocessor, ClearHiddenTests, ClearMarkScheme, HideTestTracebacks,
]
"""

USER_PART = """
# Your settings, e.g. for `nbgrader zip_collect` (your LMS's file names) or an exchange:
# c.ZipCollectApp.archive_directory = "archive"
# c.FileNameCollectorPlugin.named_regexp = r"(?P<student_id>[^_]+)_(?P<file_id>.+)"
"""


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _block(course_id: str, timeouts: dict[str, int], pattern: str) -> str:
    text = BLOCK.format(
        course_id=course_id,
        timeouts=dict(sorted(timeouts.items())),
        default=DEFAULT_TIMEOUT,
        longest=max([DEFAULT_TIMEOUT, *timeouts.values()]),
        pattern=pattern,
    )
    return f"{BEGIN}\n{text}{END}\n"


def owned_settings() -> set[str]:
    """The `c.<Class>.<trait>` settings the grader's block writes (a TA's copy of them is not carried over)."""
    tree = ast.parse(BLOCK.format(course_id="", timeouts={}, default=0, longest=0, pattern=""))
    return {_target(node) for node in tree.body if isinstance(node, ast.Assign)} - {""}


def _target(node: ast.Assign) -> str:
    target = node.targets[0]
    return ast.unparse(target) if isinstance(target, ast.Attribute) else ""


def _literal(match: re.Match[str] | None) -> object:
    if match is None:
        return None
    try:
        return ast.literal_eval(match.group(1))
    except (ValueError, SyntaxError):
        return None


def _timeouts(text: str) -> dict[str, int]:
    found = _literal(TIMEOUTS_LINE.search(text))
    if not isinstance(found, dict):
        return {}
    return {str(k): int(v) for k, v in found.items() if isinstance(v, int) and not isinstance(v, bool) and v > 0}


def write_config(
    course_dir: Path,
    *,
    assignment: str,
    course_id: str = DEFAULT_COURSE_ID,
    timeout: int = DEFAULT_TIMEOUT,
    pattern: str = "",
    warn: Callable[[str], None] = _warn,
) -> Path:
    """Write or merge `course_dir/nbgrader_config.py` for `assignment`; returns its path.

    Other assignments keep their seconds per question; a changed course id or time limit is
    warned about, and nothing outside the grader's block changes.
    """
    path = Path(course_dir) / "nbgrader_config.py"
    old = path.read_text() if path.is_file() else None
    timeouts: dict[str, int] = {}
    user = USER_PART
    if old is not None and BEGIN in old and END in old:
        before, _, rest = old.partition(BEGIN)
        inside, _, user = rest.partition(END)
        user = user.removeprefix("\n")
        header = before
        timeouts = _timeouts(inside)
        previous_id = _literal(COURSE_ID_LINE.search(inside))
        if isinstance(previous_id, str) and previous_id != course_id:
            warn(f"{path}: course id changed from {previous_id!r} to {course_id!r} (--course-id)")
    elif old is not None:
        header = HEADER
        user = _carry_over(old, path, warn)
        legacy = _literal(OLD_TIMEOUT_LINE.search(old))
        if isinstance(legacy, int):  # an older grader's one timeout: the assignments already built keep it
            for folder in sorted((Path(course_dir) / "source").glob("*/")):
                timeouts.setdefault(folder.name, legacy)
    else:
        header = HEADER
    if assignment in timeouts and timeouts[assignment] != int(timeout):
        warn(
            f"{path}: {assignment}'s seconds per question change from {timeouts[assignment]} to {int(timeout)} "
            "(--question-time-limit); other assignments keep theirs"
        )
    timeouts[assignment] = int(timeout)
    path.write_text(header + _block(course_id, timeouts, pattern) + "\n" + user.lstrip("\n"))
    return path


def _carry_over(old: str, path: Path, warn: Callable[[str], None]) -> str:
    """The old config's own settings, for below the block; the old file is kept as `.bak`."""
    backup = path.with_name(path.name + ".bak")
    backup.write_text(old)
    try:
        tree = ast.parse(old)
    except SyntaxError:
        warn(f"{path} could not be read (kept as {backup}): copy your settings below the cnn-grader block")
        return USER_PART
    owned = owned_settings()
    kept: list[str] = []
    left: list[str] = []
    for node in tree.body:
        if not isinstance(node, (ast.Assign, ast.AugAssign, ast.Expr)):
            continue
        target = _target(node) if isinstance(node, ast.Assign) else ""
        if target in owned or not target.startswith("c."):
            continue
        names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        source = ast.get_source_segment(old, node) or ""
        (kept if names <= SAFE_NAMES else left).append(source)
    warn(
        f"{path} was not written by this grader version: rewritten, the old file kept as {backup}"
        + (f"; {len(kept)} of your settings carried over below the cnn-grader block" if kept else "")
    )
    if left:
        warn(
            f"not carried over (they use names the new file lacks), copy them by hand from {backup}: {'; '.join(left)}"
        )
    return USER_PART + "".join(f"{line}\n" for line in kept)
