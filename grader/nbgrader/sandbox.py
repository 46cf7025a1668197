"""After nbgrader's autograde, grade the same notebooks again in the sandbox; its score is the one that counts.

nbgrader runs a student's notebook in one kernel: the locked test cell's `check(...)` runs
in the same process as the student's cells, which ran first and could have replaced
`grader.notebook.check`, patched Keras, or read the course's `source/` notebook. Restoring
the test cells does not help against that. So `grader nbgrader grade` also hands the
submitted notebooks to `grader batch` (each question in its own sandboxed child, the course
folder out of reach) and compares, per student, each test cell's autograde score with the
sandbox's score on the same checks (the checks that only screen a hand-graded answer are
left out of both). Where they differ, the sandbox's score is written as the cell's
`manual_score`, nbgrader's own way to override a grade; a TA's existing manual score is
never touched.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

SCORE_TOLERANCE = 1e-6


@dataclasses.dataclass(frozen=True)
class Correction:
    """A test cell whose autograde score the sandbox did not confirm."""

    student: str
    cell: str  # grade id, e.g. "q1_test"
    notebook_score: float
    sandbox_score: float | None  # None: the sandbox has no result for it (the TA should look)
    applied: bool  # written as the cell's manual score (False: a TA's manual score was kept)

    def describe(self) -> str:
        sandbox = "no result" if self.sandbox_score is None else f"{self.sandbox_score:g}"
        action = "the sandbox's score now counts" if self.applied else "left as it is: check it by hand"
        return f"{self.student} {self.cell}: notebook {self.notebook_score:g}, sandbox {sandbox} ({action})"


@functools.lru_cache(maxsize=None)
def _checks_graded_by_hand(question_id: str) -> frozenset[str]:
    from ..notebook import checks_graded_by_hand
    from ..questions import get_question
    from .build import written_answers

    question = get_question(question_id)
    return frozenset(checks_graded_by_hand(question, tuple(written_answers(question))))


def autograded_points(question_id: str, result: Mapping[str, Any]) -> float:
    """The points of a sandboxed question result that the notebook's test cell grades (hand-graded answers left out)."""
    by_hand = _checks_graded_by_hand(question_id)
    return float(sum(float(check["points"]) for check in result["checks"] if check["name"] not in by_hand))


def autograded_cells(course_dir: Path, assignment: str) -> dict[str, str]:
    """The assignment's autograded test cells: grade id -> question id."""
    from nbgrader.api import Gradebook

    from ..questions import QUESTIONS

    with Gradebook(_gradebook_url(course_dir)) as gradebook:
        found = {}
        for notebook in gradebook.find_assignment(assignment).notebooks:
            for cell in notebook.grade_cells:
                question, _, kind = cell.name.partition("_")
                if kind == "test" and question in QUESTIONS:
                    found[cell.name] = question
        return found


def crosscheck(
    course_dir: Path, assignment: str, *, workers: int = 2, echo: Callable[[str], None] | None = None
) -> list[Correction]:
    """Grade `submitted/*/<assignment>/` with `grader batch` and override the test cells the sandbox disagrees with.

    The batch's results store lives in `<course_dir>/sandbox-grading/<assignment>/` (a
    re-run grades only new or changed submissions). Returns the corrections made or proposed
    by this call (a cell an earlier call corrected is not listed again).
    """
    from nbgrader.api import Gradebook

    from ..batch import run_batch

    course_dir = Path(course_dir).resolve()
    cells = autograded_cells(course_dir, assignment)
    if not cells:
        return []
    timeout = cell_timeout(course_dir)
    report = run_batch(
        course_dir / "submitted", out_dir=course_dir / "sandbox-grading" / assignment, questions=sorted(set(cells.values())),
        workers=workers, assignment=assignment, hide=[course_dir], limits={"wall_s": timeout} if timeout else None,
    )
    if echo:
        echo(f"sandbox: graded {len(report.graded)} submission(s) again in {report.wall_s:g} s ({len(report.skipped)} unchanged)")
    corrections = []
    with Gradebook(_gradebook_url(course_dir)) as gradebook:
        for submission in gradebook.assignment_submissions(assignment):
            sandboxed = report.results.get(submission.student_id, {})
            for notebook in submission.notebooks:
                for grade in notebook.grades:
                    if grade.name not in cells:
                        continue
                    result = sandboxed.get(cells[grade.name])
                    sandbox = autograded_points(cells[grade.name], result) if result else None
                    notebook_score = float(grade.auto_score or 0.0)  # None: nbgrader found no valid score (e.g. above the maximum)
                    settled = grade.manual_score if grade.manual_score is not None else notebook_score
                    if sandbox is not None and abs(settled - sandbox) <= SCORE_TOLERANCE:
                        continue  # confirmed (or corrected by an earlier run)
                    applied = sandbox is not None and grade.manual_score is None
                    if applied:
                        grade.manual_score = sandbox
                    corrections.append(Correction(submission.student_id, grade.name, notebook_score, sandbox, applied))
        gradebook.db.commit()
    if echo:
        for correction in corrections:
            echo(f"sandbox disagrees: {correction.describe()}")
    return corrections


def cell_timeout(course_dir: Path) -> float | None:
    """The course's per-cell time limit at autograde (`c.Execute.timeout` in nbgrader_config.py), used per question."""
    from traitlets.config.loader import PyFileConfigLoader

    path = Path(course_dir) / "nbgrader_config.py"
    if not path.is_file():
        return None
    config = PyFileConfigLoader(path.name, str(path.parent)).load_config()
    value = config.Execute.get("timeout") or config.ExecutePreprocessor.get("timeout")
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def _gradebook_url(course_dir: Path) -> str:
    return "sqlite:///" + str(Path(course_dir).resolve() / "gradebook.db")
