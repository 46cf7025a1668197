"""Results of grading: one per check, one per question; what reports, stores and feedback read."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Any

from .text import clean

OUTPUT_LINES = 20  # lines of what student code printed, kept under a failed check (the last ones)
OUTPUT_CHARS = 2000


@dataclasses.dataclass
class CheckResult:
    name: str
    passed: bool
    points: float
    max_points: float
    message: str
    diagnosis: str | None = None  # failed checks: a `grader.diagnoses` id (for TAs; never shown to students)
    output: str = ""  # failed checks: the end of what the student's code printed (`output_tail`)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if not self.output:
            del data["output"]
        return data


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
                output_tail(check.get("output") or ""),
            )
            for check in data.get("checks", [])
        ]
        return cls(str(data["question"]), str(data.get("title") or title), checks, dict(data.get("meta") or {}))

    def redacted(self, hidden: Collection[str]) -> QuestionResult:
        """This result with the checks named in `hidden` renamed, their messages and output removed (for feedback).

        What student code printed during a hidden check could show the hidden inputs it was called with.
        """
        checks, number = [], 0
        for item in self.checks:
            if item.name in hidden:
                number += 1
                message = "passed" if item.passed else HIDDEN_FAILED
                item = CheckResult(f"hidden check {number}", item.passed, item.points, item.max_points, message)
            checks.append(item)
        return QuestionResult(self.question, self.title, checks)


HIDDEN_FAILED = "failed (details are not shown for hidden checks)"


def output_tail(text: Any, lines: int = OUTPUT_LINES, chars: int = OUTPUT_CHARS) -> str:
    """The last `lines` lines (at most `chars` characters) of what student code printed, safe to show.

    A carriage return overwrites its line as on a terminal (Keras's progress bars keep
    their final state); control characters and escape sequences go (`text.clean`).
    """
    window = 8 * chars  # enough for `lines` lines once escape sequences are gone; never the whole of 10 MB
    text = str(text)[-window:]
    shown = [clean(line.rstrip("\r").rsplit("\r", 1)[-1], window) for line in text.split("\n")]
    while shown and not shown[-1].strip():
        shown.pop()
    tail = "\n".join(shown[-lines:])
    return tail[-chars:] if len(tail) > chars else tail


def internal_error_message(error: BaseException) -> str:
    """What a student sees when the grader itself failed on a check (not their fault)."""
    return f"internal grader error ({type(error).__name__}: {error}); please tell your TA."
