"""Results of grading: one per check, one per question; what reports, stores and feedback read."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Any


@dataclasses.dataclass
class CheckResult:
    name: str
    passed: bool
    points: float
    max_points: float
    message: str
    diagnosis: str | None = None  # failed checks: a `grader.diagnoses` id (for TAs; never shown to students)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class QuestionResult:
    question: str
    title: str
    checks: list[CheckResult]
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def score(self) -> float:
        return float(sum(check.points for check in self.checks))

    @property
    def max_score(self) -> float:
        return float(sum(check.max_points for check in self.checks))

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "question": self.question,
            "score": self.score,
            "max_score": self.max_score,
            "checks": [check.to_dict() for check in self.checks],
        }
        if self.meta:
            data["meta"] = self.meta
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, title: str = "") -> QuestionResult:
        """The result that `to_dict` wrote (e.g. read back from a batch worker or the results store)."""
        checks = [
            CheckResult(
                str(check["name"]),
                bool(check["passed"]),
                float(check["points"]),
                float(check["max_points"]),
                str(check["message"]),
                str(check["diagnosis"]) if check.get("diagnosis") else None,
            )
            for check in data.get("checks", [])
        ]
        return cls(str(data["question"]), str(data.get("title") or title), checks, dict(data.get("meta") or {}))

    def redacted(self, hidden: Collection[str]) -> QuestionResult:
        """This result with the checks named in `hidden` renamed and their messages removed (for feedback)."""
        checks, number = [], 0
        for item in self.checks:
            if item.name in hidden:
                number += 1
                message = "passed" if item.passed else HIDDEN_FAILED
                item = CheckResult(f"hidden check {number}", item.passed, item.points, item.max_points, message)
            checks.append(item)
        return QuestionResult(self.question, self.title, checks)


HIDDEN_FAILED = "failed (details are not shown for hidden checks)"


def internal_error_message(error: BaseException) -> str:
    """What a student sees when the grader itself failed on a check (not their fault)."""
    return f"internal grader error ({type(error).__name__}: {error}); please tell your TA."
