"""The TA runbook of docs/tas.md, step by step, on a generated class of two (a structural question).

Every command the test runs is quoted from the runbook (the test fails when the page no
longer holds it, or holds the steps in another order), then run as written from the course
folder, the way a TA would: build, settings, roster, generate, release, hand in, grade,
hand-grade, grade again, re-grade one student, release the feedback. The students hand in
through an nbgrader exchange of the test's own (`nbgrader submit`), as on a JupyterHub. Each step's output is
checked to exist; the re-grade must leave the other students' files untouched.
"""

from __future__ import annotations

import csv
import os
import re
import shlex
import shutil
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner
from conftest import REPO
from test_nbgrader import _confinement_here, _course_folder, _reference_submission

from grader.cli import main
from grader.nbgrader.grade import run_nbgrader
from grader.questions import get_question
from grader.questions.q6_dropout import MANUAL_POINTS

pytestmark = pytest.mark.slow

ASSIGNMENT = "cnn"
QUESTION = "q6"  # structural, quick, and graded partly by hand: the runbook's steps matter here, not the questions
STUDENTS = ("alice", "bob")
HAND_GRADE = 4.0


def runbook() -> list[str]:
    """The code spans of the runbook section of docs/tas.md, in order, whitespace normalised."""
    text = (REPO / "docs" / "tas.md").read_text()
    section = text.split("## The runbook (nbgrader)", 1)[1].split("\n## ", 1)[0]
    return [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", section, re.S)]


class Runbook:
    """Finds each command in the runbook, in order, and runs it as written."""

    def __init__(self, course: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.spans = runbook()
        self.position = -1
        self.course = course
        self.monkeypatch = monkeypatch

    def quoted(self, command: str) -> str:
        """`command` as the runbook quotes it, after the previous step's (fails when missing or out of order)."""
        later = [i for i, span in enumerate(self.spans) if span == command and i > self.position]
        assert later, f"docs/tas.md's runbook no longer has `{command}` after step {self.spans[self.position]!r}"
        self.position = later[0]
        return command

    def grader(self, command: str, *, cwd: Path | None = None, replace: dict[str, str] | None = None):
        """Run a quoted `grader ...` command in-process (from `cwd`, default the course folder)."""
        args = shlex.split(self.quoted(command))
        assert args[0] == "grader"
        args = [(replace or {}).get(arg, arg) for arg in args[1:]]
        self.monkeypatch.chdir(cwd or self.course)
        return CliRunner().invoke(main, args)

    def nbgrader(self, command: str) -> None:
        """Run a quoted `nbgrader ...` command in the course folder."""
        args = shlex.split(self.quoted(command))
        assert args[0] == "nbgrader"
        run_nbgrader(self.course, *args[1:])


def _submit_through_exchange(home: Path, student: str, exchange: Path) -> None:
    """`nbgrader submit cnn --course cnn-grader --student NAME` from the student's folder (in-process: faster)."""
    from nbgrader.auth import Authenticator
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.exchange.default.submit import ExchangeSubmit
    from traitlets.config import Config

    config = Config()
    config.CourseDirectory.root = str(home)
    config.CourseDirectory.course_id = "cnn-grader"
    config.CourseDirectory.assignment_id = ASSIGNMENT
    config.CourseDirectory.student_id = student
    config.Exchange.root = str(exchange)
    coursedir = CourseDirectory(config=config)
    ExchangeSubmit(coursedir=coursedir, authenticator=Authenticator(config=config), config=config).start()


def _mtimes(course: Path, folder: str) -> dict[str, int]:
    """student -> when their autograded notebook (or feedback page) was last written."""
    suffix = "html" if folder == "feedback" else "ipynb"
    return {p.parts[-3]: p.stat().st_mtime_ns for p in course.glob(f"{folder}/*/{ASSIGNMENT}/{ASSIGNMENT}.{suffix}")}


def _csv(course: Path) -> dict[str, dict[str, str]]:
    with open(course / "grades.csv", newline="") as handle:
        return {row["student_id"]: row for row in csv.DictReader(handle)}


def test_the_ta_runbook_step_by_step(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _course_folder(tmp_path_factory)
    course = root / "course"
    try:
        _walk(Runbook(course, monkeypatch), root, course, tmp_path_factory)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _walk(steps: Runbook, root: Path, course: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    # 1. install: this test runs in the installed environment
    steps.quoted("./install.sh && source .venv/bin/activate")

    # 2. build the course (fewer questions here), and the training questions as a second assignment
    only = ["-q", QUESTION, "--question-time-limit", "60", "--no-student-package"]
    built = steps.grader("grader nbgrader build course -q q1 -q q4 -q q5 -q q6", cwd=root)
    assert built.exit_code == 0, built.output
    built = CliRunner().invoke(main, ["nbgrader", "build", str(course), *only])  # the same, on this test's questions
    assert built.exit_code == 0 and (course / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file()
    training = steps.grader(
        "grader nbgrader build course --assignment training -q q2 -q q3 -q q7 --question-time-limit 1800", cwd=root
    )
    assert training.exit_code == 0 and (course / "source" / "training" / "training.ipynb").is_file()

    # 3. the TA's settings below the grader's block (an exchange), then the roster
    steps.quoted("cd course")
    exchange = root / "exchange"
    exchange.mkdir()
    exchange.chmod(0o777)
    config = course / "nbgrader_config.py"
    steps.quoted('c.Exchange.root = "/srv/nbgrader/exchange"')  # here: an exchange of this test's own
    config.write_text(config.read_text() + f"c.Exchange.root = {str(exchange)!r}\n")
    rebuilt = CliRunner().invoke(main, ["nbgrader", "build", str(course), *only])  # a rebuild keeps the setting
    assert rebuilt.exit_code == 0 and f"c.Exchange.root = {str(exchange)!r}" in config.read_text()
    (course / "roster.csv").write_text(
        "id,first_name,last_name,email\n" + "".join(f"{s},{s.title()},Doe,{s}@example.org\n" for s in STUDENTS)
    )
    steps.nbgrader("nbgrader db student import roster.csv")

    # 4. generate the release
    steps.nbgrader(f"nbgrader generate_assignment {ASSIGNMENT}")
    release = course / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    assert release.is_file()
    # step 2's build put the student package beside the source notebook: it is handed out with the notebook
    assert [p.name for p in release.parent.glob("cnn_grader-*.whl")], sorted(os.listdir(release.parent))

    # 5. hand it out through the exchange
    steps.nbgrader(f"nbgrader release_assignment {ASSIGNMENT}")
    assert (exchange / "cnn-grader" / "outbound" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file()

    # 6. the students hand in through the exchange (alice answers, bob hands in the release as is), then collect
    released = nbformat.read(release, as_version=4)
    source = nbformat.read(course / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    for student, notebook in (("alice", _reference_submission(released, source)), ("bob", released)):
        home = root / "home" / student
        (home / ASSIGNMENT).mkdir(parents=True)
        nbformat.write(notebook, home / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
        steps.monkeypatch.chdir(home)  # nbgrader submit reads the assignment folder from where it runs
        _submit_through_exchange(home, student, exchange)
    steps.nbgrader(f"nbgrader collect {ASSIGNMENT}")
    for student in STUDENTS:
        assert (course / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file()

    # 7. grade the class
    first = steps.grader(f"grader nbgrader grade . {ASSIGNMENT}")
    if first.exit_code == 1 and "not graded by the sandbox" in first.output:  # probed only then: it costs a sandbox
        why = _confinement_here(tmp_path_factory.mktemp("probe"), root)
        if why:
            pytest.skip(f"the sandbox cannot confine student code here ({why}): autograde grades nothing")
    assert first.exit_code == 0, first.output
    for student in STUDENTS:
        assert (course / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file()
        assert (course / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").is_file()
    grades = _csv(course)
    assert sorted(grades) == list(STUDENTS) and float(grades["bob"]["score"]) == 0
    assert float(grades["alice"]["score"]) == get_question(QUESTION).max_score > 0  # the automatic points
    assert "q6_answer" in first.output  # still to grade by hand

    # 8. hand-grade q6's answer (what the formgrader writes into the gradebook)
    steps.quoted("nbgrader formgrader")
    steps.quoted("q6_answer")
    from nbgrader.api import Gradebook

    with Gradebook("sqlite:///" + str(course / "gradebook.db")) as gradebook:
        grade = gradebook.find_grade("q6_answer", ASSIGNMENT, ASSIGNMENT, "alice")
        grade.manual_score = HAND_GRADE
        grade.needs_manual_grade = False
        gradebook.db.commit()
    autograded = _mtimes(course, "autograded")

    # 9. grade again: nothing autograded twice, the CSV and feedback include the hand grades
    second = steps.grader(f"grader nbgrader grade . {ASSIGNMENT} --no-generate")
    assert second.exit_code == 0, second.output
    assert _mtimes(course, "autograded") == autograded
    grades_after = _csv(course)
    assert float(grades_after["alice"]["score"]) == float(grades["alice"]["score"]) + HAND_GRADE
    assert float(grades_after["alice"]["max_score"]) == float(grades["alice"]["max_score"])  # the 5 were counted
    assert float(grades_after["alice"]["max_score"]) >= MANUAL_POINTS

    # 10. re-grade one student in the sandbox: the others' files are untouched, the hand grade stays
    feedback = _mtimes(course, "feedback")
    again = steps.grader(f"grader nbgrader grade . {ASSIGNMENT} --no-generate --regrade --student alice")
    assert again.exit_code == 0, again.output
    now, feedback_now = _mtimes(course, "autograded"), _mtimes(course, "feedback")
    assert now["alice"] != autograded["alice"] and feedback_now["alice"] != feedback["alice"]
    assert now["bob"] == autograded["bob"] and feedback_now["bob"] == feedback["bob"]
    assert _csv(course)["alice"]["score"] == grades_after["alice"]["score"]

    # 11. release the feedback through the exchange
    steps.nbgrader(f"nbgrader release_feedback {ASSIGNMENT}")
    released_feedback = list((exchange / "cnn-grader" / "feedback").glob("*.html"))
    assert len(released_feedback) == len(STUDENTS)
