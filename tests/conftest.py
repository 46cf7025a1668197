"""Test set-up: a private KERAS_HOME, quiet frameworks, and helpers to grade code."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_HOME", tempfile.mkdtemp(prefix="cnn-grader-keras-home-"))

from grader.quiet import silence_frameworks  # noqa: E402

silence_frameworks()

import pytest  # noqa: E402

from grader.checks import QuestionResult  # noqa: E402
from grader.grading import grade_folder, grade_namespace  # noqa: E402
from grader.questions import get_question  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def grade(question: str, **objects) -> QuestionResult:
    """Grade objects defined in a test, hidden checks included."""
    return grade_namespace(get_question(question), objects)


def failed(result: QuestionResult) -> dict[str, str]:
    """The failed checks' names and messages."""
    return {c.name: c.message for c in result.checks if not c.passed}


def grade_source(tmp_path: Path, question: str, source: str) -> QuestionResult:
    """Write `source` as the question's file in a submission folder and grade it."""
    spec = get_question(question)
    (tmp_path / spec.filename).write_text(source)
    return grade_folder(spec, tmp_path)


@pytest.fixture
def repo() -> Path:
    return REPO
