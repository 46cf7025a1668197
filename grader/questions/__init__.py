"""The question registry: one module per question, in course order.

Adding a question: write its module here (it ends in one `QUESTION = Question(...)`),
its stub in `exercises/`, its reference in `solutions/`, then import it and list it in
`MODULES` below. Nothing else in the package names a question.
"""

from __future__ import annotations

from ..checks import Question
from . import q1_lenet, q2_overfit, q3_augment, q4_alexnet, q5_params, q6_dropout, q7_flowers

MODULES = (
    q1_lenet,
    q2_overfit,
    q3_augment,
    q4_alexnet,
    q5_params,
    q6_dropout,
    q7_flowers,
)

QUESTIONS: dict[str, Question] = {module.QUESTION.id: module.QUESTION for module in MODULES}


def get_question(question_id: str) -> Question:
    """The question called `question_id` ('q1', 'Q1' and '1' all work)."""
    key = question_id.lower()
    key = key if key.startswith("q") else f"q{key}"
    if key not in QUESTIONS:
        raise KeyError(f"unknown question '{question_id}'; the questions are {', '.join(QUESTIONS)}")
    return QUESTIONS[key]
