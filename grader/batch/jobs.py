"""One grading job: a submission's files and what to grade, as plain data a worker anywhere can run.

A job carries the submission's files (so a remote Dask worker needs no shared disk) and
the run's limits and options as dicts; `grade_job` stages the files in a private folder
and grades every question in the sandbox. It never raises: a grader error fails that
question only, and a job no worker could finish becomes `failed_job`.
"""

from __future__ import annotations

import base64
import json
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..checks import CheckResult, Question, QuestionResult, internal_error_message
from ..diagnoses import GRADER_ERROR
from ..grading import grade_folder
from ..options import GradingOptions, Limits
from ..questions import get_question
from .submissions import Submission, stage_files


def make_job(
    submission: Submission,
    questions: Sequence[str],
    limits: Limits,
    hide: Sequence[str],
    options: GradingOptions,
) -> dict[str, Any]:
    """A self-contained job: plain JSON data, the files included."""
    return {
        "student": submission.student,
        "files": {name: base64.b64encode(data).decode() for name, data in submission.files.items()},
        "questions": list(questions),
        "limits": limits.to_dict(),
        "hide": list(hide),
        "options": options.to_dict(),
    }


def failed_result(question: Question, message: str, why: str) -> QuestionResult:
    """Every check of `question` failed with `message` (the grader, not the student, failed)."""
    checks = [CheckResult(c.name, False, 0.0, float(c.points), message, GRADER_ERROR.id) for c in question.checks]
    return QuestionResult(question.id, question.title, checks, {"error": why})


def grade_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """Grade one submission on every question of the job; never raises (a grader error fails that question)."""
    started = time.monotonic()
    questions = [get_question(q) for q in job["questions"]]
    limits = Limits.from_dict(job.get("limits", {}))
    options = GradingOptions.from_dict(job.get("options", {}))
    results = []
    staging_root = Path(tempfile.gettempdir()) / "cnn-grader-staging"
    staging_root.mkdir(mode=0o700, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=staging_root) as staging:
        folder = Path(staging) / "submission"
        try:
            files = {name: base64.b64decode(data) for name, data in job["files"].items()}
            stage_files(files, folder, questions)
        except Exception as error:  # noqa: BLE001 - a submission that cannot be staged fails alone, never the worker
            return failed_job(job, f"its files could not be prepared for grading ({type(error).__name__})")
        for question in questions:
            try:
                result = grade_folder(
                    question,
                    folder,
                    isolated=True,
                    limits=limits,
                    hide=[*job.get("hide", []), str(staging_root)],
                    include_hidden=True,
                    options=options,
                )
            except Exception as error:  # noqa: BLE001 - a grader bug costs this question, not the batch
                message = internal_error_message(error)
                result = failed_result(question, message, message)
            data = json.loads(json.dumps(result.to_dict(), default=str))  # meta may hold paths and the like
            results.append(_replace_text(data, str(folder), f"your submission ({job['student']})"))
    return {"student": job["student"], "results": results, "wall_s": round(time.monotonic() - started, 2)}


def failed_job(job: Mapping[str, Any], why: str) -> dict[str, Any]:
    """The result of a job that no worker could finish: every check failed, with `why`."""
    message = f"This submission could not be graded: {why}. Please tell your TA."
    results = [failed_result(get_question(q), message, why).to_dict() for q in job["questions"]]
    return {"student": job["student"], "results": results, "wall_s": 0.0}


def _replace_text(value: Any, old: str, new: str) -> Any:
    """`value` (JSON-like data) with `old` replaced by `new` in every string, keys included."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, Mapping):
        return {_replace_text(k, old, new): _replace_text(v, old, new) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_replace_text(v, old, new) for v in value]
    return value
