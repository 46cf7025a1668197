"""The reference solutions get full marks; the shipped stubs get 0 with 'not implemented'."""

from __future__ import annotations

import pytest

from grader.grading import grade_folder
from grader.paths import exercises_dir, solutions_dir
from grader.questions import QUESTIONS

STRUCTURAL = [q for q in QUESTIONS.values() if q.id in ("q1", "q4", "q5", "q6")]


@pytest.mark.parametrize("question", STRUCTURAL, ids=lambda q: q.id)
def test_reference_gets_full_marks(question):
    result = grade_folder(question, solutions_dir())
    assert [c.message for c in result.checks if not c.passed] == []
    assert result.score == result.max_score > 0


@pytest.mark.parametrize("question", STRUCTURAL, ids=lambda q: q.id)
def test_stub_scores_zero_with_not_implemented(question):
    result = grade_folder(question, exercises_dir())
    assert result.score == 0
    for check in result.checks:
        assert "not implemented yet" in check.message or "still the stub" in check.message, check


def test_points_are_declared_once_per_check():
    for question in QUESTIONS.values():
        assert question.max_score == sum(check.points for check in question.checks)
        assert len({check.name for check in question.checks}) == len(question.checks)
