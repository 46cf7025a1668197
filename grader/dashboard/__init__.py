"""The class dashboard: `OUT/dashboard.html`, one self-contained page for TAs after a batch.

Modules, one job each: `stats` (the figures, also in summary.json), `classify` (what a
failure's diagnosis is; what isolation was not enforced), `similarity` (near-identical
submissions), `figures` (matplotlib charts as inline SVG), `page` (the HTML).
`write_dashboard(out_dir)` rebuilds the page from `out_dir/results.sqlite` alone; a
caller that holds the results in memory (e.g. `grader nbgrader grade`) passes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..checks import QuestionResult
from ..paths import exercises_dir, solutions_dir
from ..questions import QUESTIONS
from ..text import parse_timestamp
from . import figures, page, similarity
from .classify import isolation_warnings
from .stats import class_figures, diagnosis_titles, total_of

__all__ = ["feedback_name", "write_dashboard"]
MAX_DIFFS = 40  # side-by-side diffs embedded (the most similar pairs)


def feedback_name(student: str) -> str:
    """The file name of a student's feedback (`feedback/<name>.md`): the id with unsafe characters replaced."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in student) + ".md"


def student_rows(
    everything: Mapping[str, Mapping[str, QuestionResult]],
    question_ids: Sequence[str],
    timestamps: Mapping[str, str | None],
    wall_s: Mapping[str, float | None],
    duedate: str = "",
) -> list[dict[str, Any]]:
    """One row per student: score per question, total, time, timestamp, late flag, isolation warnings."""
    due = parse_timestamp(duedate)
    rows = []
    for student in sorted(everything):
        results = everything[student]
        submitted = parse_timestamp(timestamps.get(student))
        warnings = sorted({w for q in question_ids if q in results for w in isolation_warnings(results[q].meta)})
        rows.append({
            "student": student, "scores": {q: results[q].score for q in question_ids if q in results},
            "total": total_of(results, question_ids), "wall_s": wall_s.get(student),
            "timestamp": timestamps.get(student), "late": bool(due and submitted and submitted > due),
            "warnings": warnings,
        })  # fmt: skip
    return rows


def find_similar(sources: Mapping[str, Mapping[str, str]], question_ids: Sequence[str]) -> list[similarity.SimilarPair]:
    """Similar pairs for every question (the reference and the stub excluded as sources)."""
    pairs = []
    for q in question_ids:
        spec = QUESTIONS.get(q)
        code = {student: by_question[q] for student, by_question in sources.items() if q in by_question}
        if spec is None or len(code) < 2:
            continue
        reference, stub = (folder / spec.filename for folder in (solutions_dir(), exercises_dir()))
        pairs += similarity.similar_pairs(
            code, question=q, reference=reference.read_text() if reference.is_file() else "",
            stub=stub.read_text() if stub.is_file() else "",
        )  # fmt: skip
    return sorted(pairs, key=lambda p: (-p.similarity, p.question, p.first, p.second))


def write_dashboard(
    out_dir: Path,
    results: Mapping[str, Mapping[str, QuestionResult]] | None = None,
    *,
    question_ids: Sequence[str] | None = None,
    timestamps: Mapping[str, str | None] | None = None,
    wall_s: Mapping[str, float | None] | None = None,
    sources: Mapping[str, Mapping[str, str]] | None = None,
    duedate: str | None = None,
    title: str = "Class dashboard",
) -> Path:
    """Write `out_dir/dashboard.html`; returns its path.

    Without `results`, everything is read from `out_dir/results.sqlite` (what `grader batch`
    wrote: results, timestamps, times, the staged code and the last run's questions and
    due date). Feedback links point at `out_dir/feedback/<student>.md` where those exist.
    """
    out_dir = Path(out_dir)
    if results is None:
        from ..batch.store import BatchStore

        store = BatchStore(out_dir / "results.sqlite")
        try:
            options = store.last_run_options()
            results = store.results()
            timestamps = store.timestamps() if timestamps is None else timestamps
            wall_s = store.wall_times() if wall_s is None else wall_s
            sources = store.sources() if sources is None else sources
            question_ids = question_ids or options.get("questions")
            duedate = options.get("duedate", "") if duedate is None else duedate
        finally:
            store.close()
    if not question_ids:
        question_ids = [q for q in QUESTIONS if any(q in r for r in results.values())]
    question_ids = list(question_ids)
    numbers = class_figures(results, question_ids)
    rows = student_rows(results, question_ids, timestamps or {}, wall_s or {}, duedate or "")
    pairs = find_similar(sources or {}, question_ids)
    diffs = {
        (p.question, p.first, p.second): similarity.side_by_side(
            (sources or {})[p.first][p.question], (sources or {})[p.second][p.question], (p.first, p.second)
        )
        for p in pairs[:MAX_DIFFS]
    }
    feedback = {
        s: f"feedback/{feedback_name(s)}" for s in results if (out_dir / "feedback" / feedback_name(s)).is_file()
    }
    titles = {q: QUESTIONS[q].title for q in question_ids if q in QUESTIONS}
    charts = {"total": figures.histogram_svg(numbers["total"]["histogram"], numbers["total"], "Total score", wide=True)}
    for q, data in numbers["questions"].items():
        charts[q] = figures.histogram_svg(data["histogram"], data, f"{q} {titles.get(q, '')}")
    diagnoses = diagnosis_titles(question_ids)
    sections = [
        page.summary_cards(numbers, numbers["health"], len(pairs)),
        page.distribution_section(numbers, charts, titles),
        page.checks_section(numbers["checks"], figures.pass_rate_svg(numbers["checks"])),
        page.misconceptions_section(numbers["misconceptions"], feedback),
        page.students_section(rows, question_ids, feedback),
        page.similarity_section(pairs, diffs, similarity.THRESHOLD),
        page.health_section(numbers["health"], diagnoses),
    ]
    path = out_dir / "dashboard.html"
    path.write_text(page.render(title=f"{title}: {', '.join(question_ids)}", sections=sections), encoding="utf-8")
    return path
