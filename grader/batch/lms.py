"""Gradebook CSVs that Canvas and Moodle import, from a batch's results store and the class roster.

Canvas (Grades > Import; format as Canvas's own gradebook export): the columns `Student,
ID, SIS User ID, SIS Login ID, Section`, then one column per assignment named
`<name> (<Canvas assignment id>)` (a name without an id makes Canvas create the
assignment), and a `Points Possible` row under the header. Canvas matches a row to a
student by `ID` (its own user id), else `SIS User ID`, else `SIS Login ID`: here `SIS User
ID` is the roster's `student_id`; `ID`, `SIS Login ID` and `Section` come from optional
roster columns `canvas_id`, `sis_login_id` and `section`.

Moodle (Grades > Import > CSV file; the columns its own export writes): `First name,
Last name, ID number, Email address`, then one column per grade item. At import the
teacher maps users "from" `Email address` (to the user's email) or `ID number` (to the
user's ID number: the roster's `student_id`), and each grade column to a grade item.

Every cell is made spreadsheet-safe (`grader.text.spreadsheet_cell`). Students graded but
missing from the roster are written with the names left empty and reported; roster
students without a graded submission are left out (an import leaves their grade alone).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..checks import QuestionResult
from ..text import spreadsheet_cell
from .outputs import total

FORMATS = ("canvas", "moodle")
CANVAS_IDENTITY = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
MOODLE_IDENTITY = ("First name", "Last name", "ID number", "Email address")


def grade_columns(
    assignment: str, question_ids: Sequence[str], *, per_question: bool, canvas_id: str = ""
) -> list[tuple[str, str | None]]:
    """(column title, question id or None for the total) of each grade column."""
    name = f"{assignment} ({canvas_id})" if canvas_id else assignment
    columns: list[tuple[str, str | None]] = [(name, None)]
    if per_question:
        columns += [(f"{assignment} {q}", q) for q in question_ids]
    return columns


def export_gradebook(
    path: Path,
    lms: str,
    everything: Mapping[str, Mapping[str, QuestionResult]],
    question_ids: Sequence[str],
    roster: Mapping[str, Mapping[str, str]],
    *,
    assignment: str = "cnn",
    canvas_id: str = "",
    per_question: bool = False,
) -> list[str]:
    """Write the `lms` ("canvas" or "moodle") gradebook CSV to `path`; returns the graded students not in the roster."""
    if lms not in FORMATS:
        raise ValueError(f"unknown LMS {lms!r}: one of {', '.join(FORMATS)}")
    from ..questions import get_question

    canvas_id = canvas_id if lms == "canvas" else ""
    columns = grade_columns(assignment, question_ids, per_question=per_question, canvas_id=canvas_id)
    most = {q: get_question(q).max_score for q in question_ids}
    unknown = sorted(s for s in everything if s not in roster)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        identity = CANVAS_IDENTITY if lms == "canvas" else MOODLE_IDENTITY
        writer.writerow([spreadsheet_cell(c) for c in (*identity, *(title for title, _ in columns))])
        if lms == "canvas":
            possible = [f"{sum(most.values()):g}" if q is None else f"{most[q]:g}" for _, q in columns]
            writer.writerow(["    Points Possible", "", "", "", "", *possible])
        for student in sorted(everything):
            results = everything[student]
            person = roster.get(student, {})
            first, last = person.get("first_name", ""), person.get("last_name", "")
            if lms == "canvas":
                name = f"{last}, {first}" if last and first else last or first or student
                ids = [person.get(key, "") for key in ("canvas_id", "sis_login_id", "section")]
                who = [name, ids[0], student, ids[1], ids[2]]
            else:
                who = [first, last, student, person.get("email", "")]
            scores = {q: f"{results[q].score:g}" for q in question_ids if q in results}
            grades = [f"{total(results, question_ids)[0]:g}" if q is None else scores.get(q, "") for _, q in columns]
            writer.writerow([spreadsheet_cell(cell) for cell in (*who, *grades)])
    return unknown
