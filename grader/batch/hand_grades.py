"""Hand grades of the written answers (q6's `ANSWER`, ...), imported into `grader batch` from a TA's CSV.

`grader batch` grades only what a machine can: a written answer's points (`Question.written_answers`)
are left out of its totals and marked "pending hand grading" until the TA imports them with
`--hand-grades FILE.csv`: a header `student,question,points` and a row per graded answer
(`alice,q6,4`). Every row is checked: a known question with a written answer, a number
between 0 and the answer's points, no student graded twice for the same question.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

MAX_BYTES = 4 * 2**20  # a class's hand grades fit in far less
COLUMNS = ("student", "question", "points")

HandGrades = Mapping[str, Mapping[str, float]]  # student -> question id -> points graded by hand


class HandGradesError(ValueError):
    """The hand-grades file cannot be used as it is (the message names the line and what to fix)."""


def hand_graded_questions(question_ids: Sequence[str]) -> dict[str, float]:
    """The questions among `question_ids` with a written answer graded by hand, and its points."""
    from ..questions import get_question

    return {q: get_question(q).manual_points for q in question_ids if get_question(q).manual_points}


def read_hand_grades(path: Path) -> dict[str, dict[str, float]]:
    """student -> question -> points from `path`, validated (raises `HandGradesError`)."""
    from ..questions import QUESTIONS, get_question

    if path.stat().st_size > MAX_BYTES:
        raise HandGradesError(f"{path} is over {MAX_BYTES // 2**20} MB: is it the right file?")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise HandGradesError(f"{path} cannot be read as UTF-8 text: {error}") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip().lower() for name in reader.fieldnames or []]
    if not set(COLUMNS) <= set(header):
        raise HandGradesError(f"{path} needs the columns {', '.join(COLUMNS)} in its first line (it has: {header})")
    reader.fieldnames = header
    grades: dict[str, dict[str, float]] = {}
    for line, row in enumerate(reader, start=2):
        student, question, points = (str(row.get(key) or "").strip() for key in COLUMNS)
        where = f"{path}, line {line}"
        if not student:
            raise HandGradesError(f"{where}: no student")
        try:
            spec = get_question(question)
        except KeyError:
            having = ", ".join(q for q, s in QUESTIONS.items() if s.manual_points) or "none"
            raise HandGradesError(f"{where}: unknown question '{question}' (graded by hand: {having})") from None
        if not spec.manual_points:
            raise HandGradesError(f"{where}: {spec.id} has no answer graded by hand")
        try:
            value = float(points)
        except ValueError:
            raise HandGradesError(f"{where}: points '{points}' is not a number") from None
        if not math.isfinite(value) or not 0 <= value <= spec.manual_points:
            raise HandGradesError(f"{where}: {value:g} points is outside 0-{spec.manual_points:g} for {spec.id}")
        if spec.id in grades.get(student, {}):
            raise HandGradesError(f"{where}: {student} already has a hand grade for {spec.id}")
        grades.setdefault(student, {})[spec.id] = value
    return grades


def pending(students: Sequence[str], question_ids: Sequence[str], hand: HandGrades | None) -> dict[str, list[str]]:
    """student -> the hand-graded questions without an imported grade (their points are out of the totals)."""
    manual = hand_graded_questions(question_ids)
    hand = hand or {}
    return {s: [q for q in manual if q not in hand.get(s, {})] for s in students}


def unknown_students(hand: HandGrades | None, students: Sequence[str]) -> list[str]:
    """Students in the hand grades with no submission (a typo, most likely)."""
    return sorted(set(hand or {}) - set(students))
