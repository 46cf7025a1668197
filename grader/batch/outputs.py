"""What `grader batch` writes for TAs: grades.csv (nbgrader's export columns), summary and feedback per student."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..checks import QuestionResult
from ..dashboard import feedback_name
from ..dashboard.stats import class_figures
from ..questions import get_question
from ..structure import STRUCTURE_TRACED
from ..text import spreadsheet_cell
from .hand_grades import HandGrades, hand_graded_questions

PENDING = "pending hand grading"  # a hand-graded answer's cell until its grade is imported (--hand-grades)

NBGRADER_COLUMNS = (
    "assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
    "raw_score", "late_submission_penalty", "score", "max_score",
)  # fmt: skip

# student -> question id -> result
ClassResults = Mapping[str, Mapping[str, QuestionResult]]


def read_roster(path: Path) -> dict[str, dict[str, str]]:
    """student_id -> {first_name, last_name, email} from a CSV with those columns."""
    with open(path, newline="") as handle:
        return {row["student_id"]: row for row in csv.DictReader(handle) if row.get("student_id")}


def total(
    results: Mapping[str, QuestionResult], question_ids: Sequence[str], hand: Mapping[str, float] | None = None
) -> tuple[float, float]:
    """A student's score over `question_ids`, and the most they could get: the automatic points, plus the
    hand-graded ones imported in `hand` (question -> points); answers still to grade by hand count in neither."""
    hand = hand or {}
    manual = hand_graded_questions(question_ids)
    score = sum(results[q].score for q in question_ids if q in results) + sum(hand.get(q, 0.0) for q in manual)
    most = sum(get_question(q).max_score for q in question_ids) + sum(p for q, p in manual.items() if q in hand)
    return score, most


def write_csv(
    path: Path,
    everything: ClassResults,
    question_ids: Sequence[str],
    timestamps: Mapping[str, str | None],
    *,
    assignment: str,
    duedate: str = "",
    roster: Mapping[str, Mapping[str, str]] | None = None,
    hand: HandGrades | None = None,
) -> Path:
    """nbgrader's `export` columns, one column per question (its automatic score), then one per hand-graded
    answer ("<q> by hand": the imported points, or "pending hand grading", left out of the totals)."""
    roster = roster or {}
    hand = hand or {}
    manual = hand_graded_questions(question_ids)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*NBGRADER_COLUMNS, *question_ids, *[f"{q} by hand" for q in manual]])
        for student in sorted(everything):
            results = everything[student]
            own = hand.get(student, {})
            score, most = total(results, question_ids, own)
            person = roster.get(student, {})
            row = [
                assignment,
                duedate,
                timestamps.get(student) or "",
                student,
                person.get("last_name", ""),
                person.get("first_name", ""),
                person.get("email", ""),
                f"{score:g}",
                "0",
                f"{score:g}",
                f"{most:g}",
                *[f"{results[q].score:g}" if q in results else "" for q in question_ids],
                *[f"{own[q]:g}" if q in own else PENDING for q in manual],
            ]
            writer.writerow([spreadsheet_cell(cell) for cell in row])  # names and timestamps come from students
    return path


def summarise(everything: ClassResults, question_ids: Sequence[str]) -> dict[str, Any]:
    """The class's figures (`grader.dashboard.stats`): score distribution with mean, median and quartiles,
    the same per question, each check's pass rate (most failed first) and discrimination, the
    misconceptions (diagnosis ids, with the students) and grading health."""
    figures = class_figures(everything, question_ids)
    total = figures["total"]
    return {
        "students": figures["students"],
        "max_score": figures["max_score"],
        **{key: total[key] for key in ("mean", "median", "lower_quartile", "upper_quartile", "min", "max")},
        "histogram": total["histogram"],
        "questions": figures["questions"],
        "checks": figures["checks"],
        "misconceptions": figures["misconceptions"],
        "health": figures["health"],
    }


def write_summary(
    out_dir: Path, everything: ClassResults, question_ids: Sequence[str], *, problems: Mapping[str, str] | None = None
) -> Path:
    """summary.txt (for people) and summary.json (for tools); `problems` are per-student notes for the TA."""
    data = summarise(everything, question_ids)
    data["problems"] = dict(sorted((problems or {}).items()))
    (out_dir / "summary.json").write_text(json.dumps(data, indent=2))
    if not data["students"]:
        lines = [f"no submission graded yet on {', '.join(question_ids)}"]
    else:
        lines = [
            f"{data['students']} students graded on {', '.join(question_ids)} (out of {data['max_score']:g} points)",
            f"mean {data['mean']:g}, median {data['median']:g}, min {data['min']:g}, max {data['max']:g}",
            "",
            "score distribution:",
        ]
        width = max(h["students"] for h in data["histogram"]) or 1
        for h in data["histogram"]:
            bar = "#" * round(30 * h["students"] / width)
            lines.append(f"  {h['from']:>6g} - {h['to']:<6g} {bar:<30} {h['students']}")
        lines += ["", "per question (mean, students with full marks):"]
        for q, info in data["questions"].items():
            mean = info["mean"] if info["mean"] is not None else 0
            lines.append(f"  {q:<4} mean {mean:g} / {get_question(q).max_score:g}, full marks {info['full_marks']}")
        lines += ["", "checks by pass rate (the ones most students fail first):"]
        for r in data["checks"]:
            lines.append(
                f"  {100 * r['pass_rate']:5.1f}%  {r['passed']:>4}/{r['students']:<4} {r['question']}: {r['check']}"
            )
    traced = sorted(f"{s} {q}" for s, r in everything.items() for q in r if _traced(r[q]))
    if traced:
        lines += ["", f"structure traced in the student's process (subclassed models; see docs): {', '.join(traced)}"]
    if data["problems"]:
        lines += ["", "submissions to look at:"]
        lines += [f"  {student}: {problem}" for student, problem in data["problems"].items()]
    path = out_dir / "summary.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def _traced(result: QuestionResult) -> bool:
    isolation = result.meta.get("isolation")
    return isinstance(isolation, Mapping) and isolation.get("structure") == STRUCTURE_TRACED


def write_feedback(
    folder: Path, everything: ClassResults, question_ids: Sequence[str], hand: HandGrades | None = None
) -> Path:
    """feedback/<student>.md: every check with its message; hidden checks say only passed/failed; the
    hand-graded answers' points, or that they are still to be graded (not in the total)."""
    folder.mkdir(parents=True, exist_ok=True)
    manual = hand_graded_questions(question_ids)
    for student, results in everything.items():
        own = (hand or {}).get(student, {})
        score, most = total(results, question_ids, own)
        lines = [f"# Feedback for {student}", "", f"**Total: {score:g} / {most:g}**", ""]
        for q in question_ids:
            question = get_question(q)
            result = results.get(q)
            if result is None:
                lines += [f"## {q} {question.title}: not graded", ""]
                continue
            lines += [f"## {q} {question.title}: {result.score:g} / {result.max_score:g}", ""]
            shown = result.redacted({c.name for c in question.checks if c.hidden})
            for check in shown.checks:
                mark = "PASS" if check.passed else "FAIL"
                lines.append(f"- {mark} {check.points:g}/{check.max_points:g} {check.name}: {check.message}")
            if q in manual:
                graded = (
                    f"{own[q]:g}/{manual[q]:g}" if q in own else f"{PENDING} ({manual[q]:g} points, not in the total)"
                )
                lines.append(f"- written answer, graded by hand: {graded}")
            lines.append("")
        (folder / feedback_name(student)).write_text("\n".join(lines))
    return folder
