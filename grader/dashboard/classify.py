"""What a failed check's diagnosis is, for the dashboard, and what isolation a result says was not enforced.

Every failed check reaches the store with a diagnosis id: the one its check declared, a
generic one the engine or the sandbox gave (a timeout, a killed process, the stub's
NotImplementedError), or the check's own fallback id (`q1:parameter-count`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..checks import CheckResult
from ..diagnoses import CRASHED, GRADER_ERROR, LOAD_ERROR, OUT_OF_MEMORY, PROCESS_DIED, SYS_EXIT, TIMEOUT

# The grading-health kinds the dashboard lists (diagnosis ids), in the order shown.
HEALTH_KINDS = (TIMEOUT.id, OUT_OF_MEMORY.id, PROCESS_DIED.id, CRASHED.id, SYS_EXIT.id, LOAD_ERROR.id, GRADER_ERROR.id)


def effective_diagnosis(question_id: str, check: CheckResult) -> str:
    """The diagnosis id a failed check stands for (results stored before ids existed count as unclassified)."""
    return check.diagnosis or f"{question_id}:unclassified"


def isolation_warnings(meta: Mapping[str, Any]) -> list[str]:
    """What the sandbox reported as not enforced for a question (`meta["isolation"]`), e.g. 'network: not available'."""
    isolation = meta.get("isolation")
    if not isinstance(isolation, Mapping):
        return []
    warnings = []
    for key, value in isolation.items():
        if isinstance(value, str) and value.startswith("not "):
            warnings.append(f"{key}: {value}")
    return sorted(warnings)
