"""The TA workflow: run the nbgrader steps for an assignment and summarise the gradebook.

Autograde grades in the sandbox (the course's config puts `grader.nbgrader.autograde.SandboxGrade`
in place of nbgrader's kernel), so the gradebook's automatic scores are the sandbox's; what it
could not grade scores 0 and is listed here from the autograded notebooks' metadata.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..options import GradingOptions

# (step, nbgrader arguments); ASSIGNMENT is replaced by the assignment id.
STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("generate_assignment", ("generate_assignment", "ASSIGNMENT", "--force")),
    ("collect", ("collect", "ASSIGNMENT", "--update")),
    ("autograde", ("autograde", "ASSIGNMENT", "--create")),
    ("generate_feedback", ("generate_feedback", "ASSIGNMENT", "--force")),
    ("export", ("export", "--to", "grades.csv")),
)


class StepFailed(RuntimeError):
    """An nbgrader step exited with an error."""


class UnknownStudent(ValueError):
    """A student named on the command line is no student id or has no submission (a usage error)."""


def nbgrader_command() -> list[str]:
    """How to run nbgrader with this interpreter (the one that has the grader package)."""
    script = Path(sys.executable).with_name("nbgrader")
    return [str(script)] if script.exists() else [sys.executable, "-m", "nbgrader"]


def run_nbgrader(
    course_dir: Path,
    *args: str,
    echo: Callable[[str], None] | None = None,
    environment: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run one nbgrader command in `course_dir` (where its nbgrader_config.py is); raises `StepFailed`.

    `environment` adds variables (the `CNN_GRADER_*` options that autograde's sandbox reads)."""
    env = {**os.environ, **(environment or {})}
    # nbgrader runs `alembic` (the gradebook migrations) from PATH: use this environment's.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    process = subprocess.run(
        [*nbgrader_command(), *args], cwd=course_dir, env=env, capture_output=True, text=True, check=False
    )
    if echo:
        echo(f"$ nbgrader {' '.join(args)}  (exit {process.returncode})")
    if process.returncode != 0:
        raise StepFailed(
            f"nbgrader {' '.join(args)} failed (exit {process.returncode}):\n{process.stdout}{process.stderr}"
        )
    return process


def grade_assignment(
    course_dir: Path,
    assignment: str,
    *,
    generate: bool = True,
    collect: bool = False,
    exchange: Path | None = None,
    feedback: bool = True,
    export_to: Path | None = None,
    regrade: bool = False,
    students: Sequence[str] = (),
    options: GradingOptions | None = None,
    echo: Callable[[str], None] | None = None,
) -> GradingOutcome:
    """Run the TA steps for `assignment` in `course_dir`; returns the CSV path, failures and what was not graded.

    generate_assignment (when `generate`), collect from the exchange (when `collect`;
    otherwise the submissions must already be in `submitted/<student>/<assignment>/`),
    autograde (in the sandbox), generate_feedback (when `feedback`) and export to CSV.
    nbgrader autogrades only new or resubmitted notebooks unless `regrade` (its `--force`).
    `students` restricts collect, autograde and feedback to those students (each must have
    a submission): the others' grades, autograded notebooks and feedback are not touched.
    `options` (tier, training time limit) reach the sandbox through the environment.
    A failed autograde (a submission nbgrader could not process) does not stop the rest: it
    is returned in the failures; any other failed step raises `StepFailed`.
    """
    course_dir = Path(course_dir).resolve()
    _check_config(course_dir)
    check_student_names(students)
    csv = Path(export_to).resolve() if export_to else course_dir / "grades.csv"
    environment = (options or GradingOptions.from_env()).environment()
    failures: list[str] = []
    for step, args in STEPS:
        if (
            (step == "generate_assignment" and not generate)
            or (step == "collect" and not collect)
            or (step == "generate_feedback" and not feedback)
        ):
            continue
        args = tuple(assignment if a == "ASSIGNMENT" else a for a in args)
        if step == "collect" and exchange:
            args += (f"--Exchange.root={exchange}",)
        if step == "autograde":
            missing_submissions(course_dir, assignment, students)
            if regrade:
                args += ("--force",)
        if step == "export":
            args = ("export", "--to", str(csv))
        # the release and the CSV are the class's; the other steps run once per chosen student
        per_student = step in ("collect", "autograde", "generate_feedback") and students
        commands = [(*args, f"--student={name}") for name in students] if per_student else [args]
        for command in commands:
            try:
                run_nbgrader(course_dir, *command, echo=echo, environment=environment)
            except StepFailed as error:
                if step != "autograde":
                    raise
                failures.append(str(error))
                if echo:
                    echo(str(error)[-4000:])
    dashboard = write_class_dashboard(course_dir, assignment)
    return GradingOutcome(csv, failures, not_graded(course_dir, assignment), dashboard)


def check_student_names(students: Sequence[str]) -> None:
    """Refuse a student name that nbgrader would read as a pattern or a path (`*`, `?`, `[`, `/`)."""
    for name in students:
        if not name or name.startswith((".", "-")) or any(ch in name for ch in "*?[]/\\"):
            raise UnknownStudent(f"'{name}' is not a student id (letters, digits, '-', '_', '.', '@'; no patterns)")


def missing_submissions(course_dir: Path, assignment: str, students: Sequence[str]) -> None:
    """Raise `UnknownStudent` naming the students of `students` without a submission of `assignment`."""
    submitted = Path(course_dir) / "submitted"
    missing = [name for name in students if not (submitted / name / assignment).is_dir()]
    if missing:
        have = sorted(p.parent.name for p in submitted.glob(f"*/{assignment}"))
        raise UnknownStudent(
            f"no submission of {assignment} for {', '.join(missing)} in {submitted} "
            f"(students with one: {', '.join(have) or 'none'})"
        )


def write_class_dashboard(course_dir: Path, assignment: str) -> Path | None:
    """`<course>/dashboard/<assignment>/dashboard.html` from what autograde left in the notebooks' metadata."""
    from ..checks import QuestionResult
    from ..dashboard import write_dashboard
    from ..questions import QUESTIONS

    results: dict[str, dict[str, QuestionResult]] = {}
    sources: dict[str, dict[str, str]] = {}
    for folder in sorted((Path(course_dir) / "autograded").glob(f"*/{assignment}")):
        student = folder.parent.name
        for path in sorted(folder.glob("*.ipynb")):
            summary = _grader_metadata(path)
            for cell, data in sorted((summary.get("results") or {}).items()):
                question = _question_of(str(cell))
                if question not in QUESTIONS or not isinstance(data, dict):
                    continue
                title = QUESTIONS[question].title
                results.setdefault(student, {})[question] = QuestionResult.from_dict(data, title=title)
                code = (summary.get("sources") or {}).get(cell)
                if isinstance(code, str):
                    sources.setdefault(student, {})[question] = code
    if not results:
        return None
    out = Path(course_dir) / "dashboard" / assignment
    out.mkdir(parents=True, exist_ok=True)
    questions = [q for q in QUESTIONS if any(q in r for r in results.values())]
    return write_dashboard(
        out, results, question_ids=questions, sources=sources, title=f"Class dashboard ({assignment})"
    )


def _check_config(course_dir: Path) -> None:
    """Refuse a course whose config would run student notebooks in nbgrader's kernel (built by an older grader)."""
    config = course_dir / "nbgrader_config.py"
    if not config.is_file() or "SandboxGrade" not in config.read_text():
        raise StepFailed(
            f"{config} does not grade in the sandbox (autograde would run every student notebook with your rights): "
            "write it again with `grader nbgrader build` (your gradebook and submissions are kept)"
        )


@dataclasses.dataclass(frozen=True)
class NotGraded:
    """A test cell the sandbox could not grade: it scores 0 until a TA looks at it."""

    student: str
    cell: str  # grade id, e.g. "q1_test"
    reason: str

    def describe(self) -> str:
        return f"{self.student} {self.cell}: {self.reason}"


@dataclasses.dataclass
class GradingOutcome:
    """What `grade_assignment` produced: the CSV, the submissions nbgrader failed on, the cells the sandbox did not grade."""

    csv: Path
    failures: list[str]
    not_graded: list[NotGraded]
    dashboard: Path | None = None  # the class dashboard (None: nothing was graded)


def not_graded(course_dir: Path, assignment: str) -> list[NotGraded]:
    """Every test cell of the autograded notebooks that the sandbox could not grade, with the reason."""
    found = []
    for folder in sorted((Path(course_dir) / "autograded").glob(f"*/{assignment}")):
        for path in sorted(folder.glob("*.ipynb")):
            summary = _grader_metadata(path)
            for cell, reason in sorted(summary.get("not_graded", {}).items()):
                found.append(NotGraded(folder.parent.name, str(cell), str(reason)))
    return found


def _grader_metadata(path: Path) -> dict[str, Any]:
    """The `cnn_grader` entry that the sandbox's autograde left in an autograded notebook ({} if none)."""
    import nbformat

    from .autograde import METADATA_KEY

    try:
        notebook = nbformat.read(path, as_version=4)
    except (OSError, ValueError):
        return {}
    summary = notebook.metadata.get(METADATA_KEY, {})
    return summary if isinstance(summary, dict) else {}


@dataclasses.dataclass
class StudentGrades:
    """One student's scores on an assignment, per question."""

    student: str
    scores: dict[str, float]  # question id -> points (None-free: ungraded manual cells count 0)
    max_scores: dict[str, float]
    needs_manual: list[str]  # grade ids still to grade by hand
    problems: list[str] = dataclasses.field(default_factory=list)  # timeouts and errors seen at autograde

    @property
    def total(self) -> float:
        return float(sum(self.scores.values()))

    @property
    def max_total(self) -> float:
        return float(sum(self.max_scores.values()))


def _question_of(grade_id: str) -> str:
    return grade_id.split("_", 1)[0]


def summarise(course_dir: Path, assignment: str) -> list[StudentGrades]:
    """Per student, the points per question from the gradebook (test cell + hand-graded cells)."""
    from nbgrader.api import Gradebook

    course_dir = Path(course_dir).resolve()
    db_url = "sqlite:///" + str(course_dir / "gradebook.db")
    rows: list[StudentGrades] = []
    with Gradebook(db_url) as gradebook:
        for submission in sorted(gradebook.assignment_submissions(assignment), key=lambda s: s.student_id):
            scores: dict[str, float] = {}
            maxima: dict[str, float] = {}
            manual: list[str] = []
            for notebook in submission.notebooks:
                for grade in notebook.grades:
                    if not grade.max_score:
                        continue  # the 0-point rubric task cells: nothing to grade
                    question = _question_of(grade.name)
                    scores[question] = scores.get(question, 0.0) + float(grade.score or 0.0)
                    maxima[question] = maxima.get(question, 0.0) + float(grade.max_score)
                    if grade.needs_manual_grade:
                        manual.append(grade.name)
            problems = _problems(course_dir / "autograded" / submission.student_id / assignment)
            rows.append(StudentGrades(submission.student_id, scores, maxima, manual, problems))
    return rows


def _problems(folder: Path) -> list[str]:
    """What the TA should know of an autograded submission, e.g. 'q1_test timed out', 'q5_test not graded'."""
    if not folder.is_dir():
        return ["not autograded: nbgrader failed on it (see its log)"]
    found = []
    for path in sorted(folder.glob("*.ipynb")):
        summary = _grader_metadata(path)
        if not summary:
            found.append(f"{path.name} was not graded in the sandbox: autograde it again")
        found += [f"{cell} not graded ({why})" for cell, why in sorted(summary.get("not_graded", {}).items())]
        found += [f"{cell} {what}" for cell, what in sorted(summary.get("problems", {}).items())]
    return found


def render_summary(rows: Sequence[StudentGrades], file=None) -> None:
    """A rich table: one row per student, one column per question, the total and what needs a TA."""
    from rich.console import Console
    from rich.table import Table

    questions: list[str] = []
    for row in rows:
        questions += [q for q in row.max_scores if q not in questions]
    table = Table(title="Grades (points per question)")
    table.add_column("student")
    for question in questions:
        top = max((r.max_scores.get(question, 0.0) for r in rows), default=0.0)
        table.add_column(f"{question} /{top:g}", justify="right")
    table.add_column("total", justify="right")
    table.add_column("to grade by hand")
    table.add_column("problems")
    for row in rows:
        table.add_row(
            row.student,
            *[f"{row.scores[q]:g}" if q in row.scores else "-" for q in questions],
            f"{row.total:g}/{row.max_total:g}",
            ", ".join(row.needs_manual),
            ", ".join(row.problems),
        )
    console = Console(file=file, highlight=False)
    if not console.is_terminal:
        console.width = 200  # logs and CI: one line per student
    console.print(table)
