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
from ..text import spreadsheet_cell

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


def total(results: Mapping[str, QuestionResult], question_ids: Sequence[str]) -> tuple[float, float]:
    """A student's score over `question_ids`, and the most they could get."""
    score = sum(results[q].score for q in question_ids if q in results)
    return score, sum(get_question(q).max_score for q in question_ids)


def write_csv(
    path: Path,
    everything: ClassResults,
    question_ids: Sequence[str],
    timestamps: Mapping[str, str | None],
    *,
    assignment: str,
    duedate: str = "",
    roster: Mapping[str, Mapping[str, str]] | None = None,
) -> Path:
    """nbgrader's `export` columns, then one column per question (its score)."""
    roster = roster or {}
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*NBGRADER_COLUMNS, *question_ids])
        for student in sorted(everything):
            results = everything[student]
            score, most = total(results, question_ids)
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
    if data["problems"]:
        lines += ["", "submissions to look at:"]
        lines += [f"  {student}: {problem}" for student, problem in data["problems"].items()]
    path = out_dir / "summary.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_feedback(folder: Path, everything: ClassResults, question_ids: Sequence[str]) -> Path:
    """feedback/<student>.md: every check with its message; hidden checks say only passed/failed."""
    folder.mkdir(parents=True, exist_ok=True)
    for student, results in everything.items():
        score, most = total(results, question_ids)
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
            lines.append("")
        (folder / feedback_name(student)).write_text("\n".join(lines))
    return folder
