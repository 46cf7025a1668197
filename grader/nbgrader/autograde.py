"""nbgrader's autograde without running the notebook: the test cells are graded in the sandbox.

`SandboxGrade` takes the place of nbgrader's `Execute` in `Autograde.autograde_preprocessors`
(set in the course's `nbgrader_config.py`). No student notebook runs in a kernel with the
TA's user and files. Instead, for each test cell `<qN>_test`, the grader builds question
qN's module from every code cell above it (`grader.batch.submissions.notebook_modules`,
as `grader batch` does) and grades it with `grade_folder(..., isolated=True)`: the student's
code runs only in a sandboxed child (own uid, no network) that cannot see the course
folder (gradebook, `source/`, `release/`, other students' submissions, feedback), nbgrader's
exchange, or the reference solutions. The cell then holds what `check("qN")` would have
printed and returned: the grader's report (hidden checks redacted) as its stdout and the
score as its `execute_result`, a plain float. nbgrader's own `SaveAutoGrades`, feedback,
formgrader and export read these as they read any executed notebook.

It fails closed: a test cell the sandbox could not grade (notebook over the size limit,
sandbox not confined as required, grader error, a graded cell the grader does not know)
gets an error output, which nbgrader scores 0, and the reason is recorded in the notebook's
`cnn_grader` metadata for `grader nbgrader grade` to list. It never raises: a cell left
without output would get full marks from nbgrader.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nbformat.notebooknode import NotebookNode, from_dict
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Dict, Integer, Unicode

from ..batch.submissions import MAX_FILE_BYTES, notebook_modules
from ..checks import Question, QuestionResult, internal_error_message
from ..options import GradingOptions, Limits

METADATA_KEY = "cnn_grader"  # the notebook's metadata entry with what was graded and what could not be
NOT_GRADED = "NotGraded"  # ename of the error output of a test cell that the sandbox could not grade
TIMED_OUT = "did not finish within"  # how the sandbox words a question that ran out of time
DEFAULT_EXCHANGE = "/srv/nbgrader/exchange"  # nbgrader's `Exchange.root` when the config does not set one


@dataclasses.dataclass
class CellGrade:
    """What one test cell gets: the report and score, or why it could not be graded (then 0)."""

    report: str = ""
    score: float = 0.0
    not_graded: str | None = None  # the reason, for the TA (the student sees it too)
    problem: str | None = None  # something the TA should know although the cell was graded (e.g. a timeout)
    result: dict[str, Any] | None = None  # the full result (hidden checks named), for the TA's class dashboard
    source: str = ""  # the question's module as graded (the cells above the test cell)


def confinement_problem(isolation: Mapping[str, Any], must_hide: Sequence[str | os.PathLike[str]]) -> str | None:
    """Why the sandbox that graded a question was not confined enough to trust (None: it was).

    Required: its own unprivileged uid, no network, and every folder of `must_hide` hidden.
    """
    user = str(isolation.get("user", "not reported"))
    if "(unprivileged)" not in user:
        return f"student code did not run under a uid of its own ({user}): run the grading as root"
    if isolation.get("network") != "off":
        return f"the network was not cut ({isolation.get('network', 'not reported')})"
    hidden = isolation.get("hidden")
    if not isinstance(hidden, list):
        return f"folders could not be hidden ({hidden or 'not reported'})"
    for folder in must_hide:
        real = os.path.realpath(folder)
        if os.path.exists(real) and not any(real == h or real.startswith(h.rstrip(os.sep) + os.sep) for h in hidden):
            return f"{real} was not hidden from student code"
    return None


def autograded_cells(notebook: Mapping[str, Any]) -> list[tuple[int, str]]:
    """(index, grade id) of every autograded code cell: nbgrader's grade cells that are not solutions."""
    found = []
    for index, cell in enumerate(notebook.get("cells", [])):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.get("cell_type") == "code" and meta.get("grade") and not meta.get("solution"):
            found.append((index, str(meta.get("grade_id", ""))))
    return found


def question_of_cell(grade_id: str) -> Question | None:
    """The question whose test cell `grade_id` is (`<qN>_test`), None for any other cell."""
    from ..questions import QUESTIONS

    question, _, kind = grade_id.rpartition("_")
    return QUESTIONS[question] if kind == "test" and question in QUESTIONS else None


def graded_in_cell(question: Question) -> Question:
    """`question` as its test cell grades it: without the checks that screen hand-graded answers, hidden checks last.

    Hidden checks run after every visible one, so nothing the student's code saw in a hidden
    call (its arguments) can reach the visible checks' messages, the only ones shown.
    """
    own = question.without_checks_screening([answer.name for answer in question.written_answers])
    checks = sorted(own.checks, key=lambda check: check.hidden)
    return dataclasses.replace(own, checks=tuple(checks))


def notebook_size(notebook: Mapping[str, Any]) -> int:
    """Bytes of the notebook as JSON, its outputs cleared."""
    data = json.loads(json.dumps(notebook))
    for cell in data.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
    return len(json.dumps(data, ensure_ascii=False).encode("utf-8"))


def grade_notebook(
    notebook: Mapping[str, Any],
    *,
    hide: Sequence[str | os.PathLike[str]],
    limits: Limits,
    options: GradingOptions | None = None,
    max_bytes: int = MAX_FILE_BYTES,
) -> dict[int, CellGrade]:
    """Grade every test cell of `notebook` in the sandbox: {cell index: grade}.

    `hide` must stay out of the student code's reach (the course folder): a sandbox that
    could not hide it, run the code under its own uid or cut the network grades nothing.
    """
    cells = autograded_cells(notebook)
    size = notebook_size(notebook)
    if size > max_bytes:
        why = f"the notebook is {size / 2**20:.1f} MB without its outputs, over the {max_bytes / 2**20:g} MB limit"
        return {index: CellGrade(not_graded=why) for index, _ in cells}
    questions = {index: question_of_cell(grade_id) for index, grade_id in cells}
    known = [q for q in questions.values() if q is not None]
    modules = notebook_modules(notebook, known)
    options = (options or GradingOptions.from_env()).replace(plots=None)
    grades = {}
    for index, grade_id in cells:
        question = questions[index]
        if question is None:
            grades[index] = CellGrade(not_graded=f"{grade_id or 'this cell'} is not a test cell of the grader")
            continue
        points = float(notebook["cells"][index].get("metadata", {}).get("nbgrader", {}).get("points", 0) or 0)
        worth = graded_in_cell(question).max_score
        if abs(points - worth) > 1e-9:
            why = f"the cell is worth {points:g} points but {question.id}'s checks give {worth:g}: rebuild the course"
            grades[index] = CellGrade(not_graded=why)
            continue
        grades[index] = _grade_question(question, modules.get(question.filename, ""), hide, limits, options)
    return grades


def _grade_question(
    question: Question, source: str, hide: Sequence[str | os.PathLike[str]], limits: Limits, options: GradingOptions
) -> CellGrade:
    """One question's module (the cells above its test cell) graded alone in the sandbox."""
    from ..grading import grade_folder
    from ..report import render_text

    graded = graded_in_cell(question)
    with tempfile.TemporaryDirectory(prefix="cnn-grader-notebook-") as staging:
        folder = Path(staging) / "notebook"  # holds this module only: nothing else of the submission
        folder.mkdir()
        (folder / question.filename).write_text(source)
        try:
            result = grade_folder(
                graded, folder, isolated=True, limits=limits, hide=[str(path) for path in hide], options=options
            )
        except Exception as error:  # noqa: BLE001 - a grader error fails this cell closed, never the class
            return CellGrade(not_graded=internal_error_message(error))
        problem = confinement_problem(result.meta.get("isolation", {}), hide)
        if problem:
            return CellGrade(not_graded=f"the sandbox was not confined: {problem}")
        shown = _in_declared_order(result, question).redacted({c.name for c in question.checks if c.hidden})
        buffer = io.StringIO()
        render_text([shown], file=buffer)
        report = buffer.getvalue().replace(str(folder), "your notebook")
        full = json.loads(
            json.dumps(result.to_dict(), default=str).replace(json.dumps(str(folder))[1:-1], "your notebook")
        )
    timed_out = any(TIMED_OUT in check.message for check in result.checks)
    problem = "timed out" if timed_out else None
    return CellGrade(report=report, score=float(result.score), problem=problem, result=full, source=source)


def _in_declared_order(result: QuestionResult, question: Question) -> QuestionResult:
    order = {check.name: index for index, check in enumerate(question.checks)}
    checks = sorted(result.checks, key=lambda check: order.get(check.name, len(order)))
    return dataclasses.replace(result, checks=checks)


def write_grades(notebook: NotebookNode, grades: Mapping[int, CellGrade]) -> dict[str, Any]:
    """Put each grade into its test cell as outputs (report and score, or the reason as an error); returns a summary."""
    not_graded, problems, results, sources = {}, {}, {}, {}
    for count, (index, grade) in enumerate(sorted(grades.items()), 1):
        cell = notebook.cells[index]
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", f"cell {index + 1}")
        if grade.result is not None:
            results[grade_id] = grade.result
            sources[grade_id] = grade.source
        cell.execution_count = count
        if grade.not_graded is not None:
            not_graded[grade_id] = grade.not_graded
            message = f"This cell could not be graded: {grade.not_graded}. It scores 0 until your TA looks at it."
            error = {"output_type": "error", "ename": NOT_GRADED, "evalue": message, "traceback": [message]}
            cell.outputs = [from_dict(error)]
            continue
        if grade.problem:
            problems[grade_id] = grade.problem
        outputs: list[dict[str, Any]] = []
        if grade.report:
            outputs.append({"output_type": "stream", "name": "stdout", "text": grade.report})
        score = {"text/plain": repr(grade.score)}  # a plain float: nbgrader's partial credit
        outputs.append({"output_type": "execute_result", "execution_count": count, "metadata": {}, "data": score})
        cell.outputs = [from_dict(output) for output in outputs]
    return {"not_graded": not_graded, "problems": problems, "results": results, "sources": sources}


class SandboxGrade(NbGraderPreprocessor):
    """Grade the notebook's test cells in the sandbox (in place of nbgrader's `Execute` at autograde)."""

    course_dir = Unicode("", help="The course folder, hidden from student code (so is the exchange).").tag(config=True)
    timeout = Integer(600, help="Seconds the student code of one question may run in the sandbox.").tag(config=True)
    timeouts = Dict({}, help="Seconds per question by assignment (`timeout` for one not listed).").tag(config=True)
    max_bytes = Integer(MAX_FILE_BYTES, help="Largest notebook graded, measured without its outputs.").tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict[str, Any]]:
        info = resources.get("nbgrader", {})
        summary: dict[str, Any] = {}
        try:
            summary["notebook_sha256"] = self._collected_digest(info)
            limits = Limits(wall_s=self._seconds(str(info.get("assignment", ""))))
            # tier and training time limit: what `grader nbgrader grade --tier/--time-limit` put in the environment
            options = GradingOptions.from_env()
            grades = grade_notebook(nb, hide=self._hidden(), limits=limits, options=options, max_bytes=self.max_bytes)
        except Exception as error:  # noqa: BLE001 - fail closed: every test cell 0, the reason listed
            why = internal_error_message(error)
            grades = {index: CellGrade(not_graded=why) for index, _ in autograded_cells(nb)}
        summary.update(write_grades(nb, grades))
        nb.metadata[METADATA_KEY] = summary
        for grade_id, why in summary["not_graded"].items():
            self.log.warning("%s %s: not graded by the sandbox (0 points): %s", info.get("student"), grade_id, why)
        return nb, resources

    def _seconds(self, assignment: str) -> float:
        """The assignment's seconds per question (its entry in `timeouts`, else `timeout`)."""
        value = self.timeouts.get(assignment, self.timeout)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"SandboxGrade.timeouts[{assignment!r}] is {value!r}: a number of seconds is needed")
        return float(value)

    def _hidden(self) -> list[str]:
        """What student code must not see: the course folder and nbgrader's exchange."""
        if not self.course_dir:
            raise RuntimeError("SandboxGrade.course_dir is not set in nbgrader_config.py")
        hidden = [self.course_dir]
        exchange = self.config.get("Exchange", {}).get("root") or DEFAULT_EXCHANGE
        if isinstance(exchange, str) and os.path.isdir(exchange):
            hidden.append(exchange)
        return hidden

    def _collected_digest(self, info: Mapping[str, Any]) -> str | None:
        """SHA-256 of the notebook as nbgrader collected it into `submitted/` (None: not found)."""
        from nbgrader.coursedir import CourseDirectory

        try:
            coursedir = CourseDirectory(config=self.config)
            folder = coursedir.format_path(coursedir.submitted_directory, info["student"], info["assignment"])
            data = (Path(folder) / f"{info['notebook']}.ipynb").read_bytes()
        except (KeyError, OSError):
            return None
        return hashlib.sha256(data).hexdigest()
