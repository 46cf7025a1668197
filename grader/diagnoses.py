"""Diagnoses as data: a stable id for what a failed check found, and its title for a TA.

A check that recognises a misconception raises `CheckFailed(message, diagnosis="c1-valid-padding")`
and declares that id beside itself (`Check(..., diagnoses=(Diagnosis(id, title),))`). Failures
that are the same whatever the question (student code crashed, ran out of time, is still the
stub) get the generic ids below from the engine. A failure nobody classified gets the check's
own id, `<question>:<check-slug>`, so every failed check carries one.
"""

from __future__ import annotations

import dataclasses
import re


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    """A misconception or failure mode: a stable machine-readable id and a plain-language title."""

    id: str
    title: str


NOT_IMPLEMENTED = Diagnosis("not-implemented", "still the stub: the function raises NotImplementedError")
CRASHED = Diagnosis("crashed", "student code raised an exception")
SYS_EXIT = Diagnosis("sys-exit", "student code called sys.exit")
OUT_OF_MEMORY = Diagnosis("out-of-memory", "student code ran out of memory")
TIMEOUT = Diagnosis("timeout", "student code did not finish within the time limit")
PROCESS_DIED = Diagnosis("process-died", "the process running student code died (a crash, os._exit, a signal)")
MISSING_NAME = Diagnosis("missing-name", "a function or answer the stub defines is missing or renamed")
WRONG_TYPE = Diagnosis("wrong-type", "returned a value of the wrong type")
NOT_A_NUMBER = Diagnosis("not-a-number", "returned NaN or an infinity")
LOAD_ERROR = Diagnosis("load-error", "the file could not be imported (syntax error, top-level code failed)")
GRADER_ERROR = Diagnosis("grader-error", "the grader itself failed on this check (not the student's fault)")
NOT_REBUILDABLE = Diagnosis(
    "model-not-rebuildable", "a model with Python code (subclassed, Lambda, custom layer) the grader cannot load"
)
TRACE_INCONSISTENT = Diagnosis(
    "traced-structure-inconsistent", "the model structure traced in the student's process does not add up"
)

GENERIC: tuple[Diagnosis, ...] = (
    NOT_IMPLEMENTED,
    CRASHED,
    SYS_EXIT,
    OUT_OF_MEMORY,
    TIMEOUT,
    PROCESS_DIED,
    MISSING_NAME,
    WRONG_TYPE,
    NOT_A_NUMBER,
    LOAD_ERROR,
    GRADER_ERROR,
    NOT_REBUILDABLE,
    TRACE_INCONSISTENT,
)


def for_exception(error: BaseException) -> Diagnosis:
    """The generic diagnosis of an exception that student code let out."""
    if isinstance(error, NotImplementedError):
        return NOT_IMPLEMENTED
    if isinstance(error, SystemExit):
        return SYS_EXIT
    if isinstance(error, MemoryError):
        return OUT_OF_MEMORY
    return CRASHED


def check_diagnosis(question_id: str, check_name: str) -> str:
    """The fallback id of a failure of `check_name` that nothing classified: `q1:parameter-count`."""
    slug = re.sub(r"[^a-z0-9]+", "-", check_name.lower()).strip("-")
    return f"{question_id}:{slug}"
