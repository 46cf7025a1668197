"""The class's figures: score distributions, each check's pass rate and discrimination, misconceptions, health.

Plain data from graded results (`{student: {question: QuestionResult}}`): what the
dashboard draws and `summary.json` holds. Nothing here reads files or draws.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..checks import QuestionResult
from ..diagnoses import GENERIC, check_diagnosis
from ..questions import QUESTIONS
from .classify import HEALTH_KINDS, effective_diagnosis, isolation_warnings

ClassResults = Mapping[str, Mapping[str, QuestionResult]]
HISTOGRAM_BINS = 10


def question_max(question_id: str) -> float:
    return QUESTIONS[question_id].max_score if question_id in QUESTIONS else 0.0


def total_of(results: Mapping[str, QuestionResult], question_ids: Sequence[str]) -> float:
    return float(sum(results[q].score for q in question_ids if q in results))


def describe(values: Sequence[float]) -> dict[str, Any]:
    """Count, mean, median, quartiles, min and max (None where there are no values)."""
    if not values:
        keys = ("mean", "median", "lower_quartile", "upper_quartile", "min", "max")
        return {"n": 0, **dict.fromkeys(keys)}
    ordered = sorted(values)
    q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) > 1 else (ordered[0],) * 3
    return {
        "n": len(ordered), "mean": round(statistics.fmean(ordered), 2), "median": statistics.median(ordered),
        "lower_quartile": round(q1, 2), "upper_quartile": round(q3, 2), "min": ordered[0], "max": ordered[-1],
    }  # fmt: skip


def histogram(values: Iterable[float], top: float, bins: int = HISTOGRAM_BINS) -> list[dict[str, Any]]:
    """Counts in `bins` equal bins over [0, top]; the last bin includes `top`."""
    counts = [0] * bins
    for value in values:
        index = min(bins - 1, max(0, int(bins * value / top))) if top else 0
        counts[index] += 1
    return [
        {"from": round(top * i / bins, 2), "to": round(top * (i + 1) / bins, 2), "students": n}
        for i, n in enumerate(counts)
    ]


def point_biserial(passed: Sequence[bool], rest: Sequence[float]) -> float | None:
    """Correlation of passing (0/1) with the rest of the score (None when either does not vary)."""
    n = len(passed)
    ones = [r for p, r in zip(passed, rest) if p]
    zeros = [r for p, r in zip(passed, rest) if not p]
    if not ones or not zeros or n < 2:
        return None
    spread = statistics.pstdev(rest)
    if spread == 0:
        return None
    p = len(ones) / n
    return round((statistics.fmean(ones) - statistics.fmean(zeros)) / spread * math.sqrt(p * (1 - p)), 3)


def check_rates(everything: ClassResults, question_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Every check's pass rate (hardest first) with its discrimination against the rest of the score."""
    outcomes: dict[tuple[str, str], list[tuple[bool, float]]] = {}
    for results in everything.values():
        score = total_of(results, question_ids)
        for q in question_ids:
            if q in results:
                for check in results[q].checks:
                    outcomes.setdefault((q, check.name), []).append((check.passed, score - check.points))
    rows = []
    for (q, name), pairs in outcomes.items():
        passed = [p for p, _ in pairs]
        rows.append({
            "question": q, "check": name, "passed": sum(passed), "students": len(passed),
            "pass_rate": round(sum(passed) / len(passed), 3),
            "discrimination": point_biserial(passed, [r for _, r in pairs]),
        })  # fmt: skip
    return sorted(rows, key=lambda r: (r["pass_rate"], r["question"], r["check"]))


def diagnosis_titles(question_ids: Iterable[str] = ()) -> dict[str, str]:
    """Every declared diagnosis id and its title: generic ones and those of the questions' checks."""
    titles = {d.id: d.title for d in GENERIC}
    for question in QUESTIONS.values():
        for check in question.checks:
            titles.update({d.id: d.title for d in check.diagnoses})
            fallback = f"{question.id} '{check.name}' failed (not classified further)"
            titles.setdefault(check_diagnosis(question.id, check.name), fallback)
    return titles


def misconceptions(everything: ClassResults, question_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Each diagnosis id with its title, the students whose failed checks carry it and their questions (most first)."""
    found: dict[str, dict[str, set[str]]] = {}
    for student, results in everything.items():
        for q in question_ids:
            for check in results[q].checks if q in results else ():
                if not check.passed:
                    diagnosis = effective_diagnosis(q, check)
                    entry = found.setdefault(diagnosis, {"students": set(), "questions": set()})
                    entry["students"].add(student)
                    entry["questions"].add(q)
    titles = diagnosis_titles(question_ids)
    rows = [
        {
            "id": diagnosis, "title": titles.get(diagnosis, diagnosis), "count": len(entry["students"]),
            "questions": sorted(entry["questions"]), "students": sorted(entry["students"]),
        }
        for diagnosis, entry in found.items()
    ]  # fmt: skip
    return sorted(rows, key=lambda r: (-r["count"], r["id"]))


def health(everything: ClassResults, question_ids: Sequence[str]) -> dict[str, Any]:
    """Submissions that timed out, crashed, ran out of memory, ... and those graded with checks not enforced."""
    kinds: dict[str, set[tuple[str, str]]] = {kind: set() for kind in HEALTH_KINDS}
    unenforced: dict[str, list[str]] = {}
    for student, results in everything.items():
        for q in question_ids:
            if q not in results:
                continue
            for check in results[q].checks:
                diagnosis = effective_diagnosis(q, check) if not check.passed else None
                if diagnosis in kinds:
                    kinds[diagnosis].add((student, q))
            if results[q].meta.get("error"):
                kinds["grader-error"].add((student, q))
            warnings = isolation_warnings(results[q].meta)
            if warnings:
                unenforced.setdefault(student, []).extend(f"{q}: {w}" for w in warnings)
    return {
        "kinds": {k: [{"student": s, "question": q} for s, q in sorted(v)] for k, v in kinds.items()},
        "not_enforced": {s: sorted(set(w)) for s, w in sorted(unenforced.items())},
    }


def question_figures(everything: ClassResults, question_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per question: max score, distribution figures, histogram, students with full marks."""
    out = {}
    for q in question_ids:
        scores = [results[q].score for results in everything.values() if q in results]
        top = question_max(q)
        out[q] = {
            "max_score": top, **describe(scores), "histogram": histogram(scores, top),
            "full_marks": sum(1 for s in scores if s >= top),
        }  # fmt: skip
    return out


def class_figures(everything: ClassResults, question_ids: Sequence[str]) -> dict[str, Any]:
    """Everything the dashboard shows as numbers (also `summary.json`)."""
    totals = [total_of(results, question_ids) for results in everything.values()]
    top = float(sum(question_max(q) for q in question_ids))
    return {
        "students": len(totals),
        "max_score": top,
        "total": {**describe(totals), "histogram": histogram(totals, top)},
        "questions": question_figures(everything, question_ids),
        "checks": check_rates(everything, question_ids),
        "misconceptions": misconceptions(everything, question_ids),
        "health": health(everything, question_ids),
    }
