"""The notebook API: `check("q1", build_lenet5)` prints the report and returns the score."""

from __future__ import annotations

import dataclasses
import inspect
import io
from collections.abc import Collection
from typing import Any

from .checks import CheckResult, Question, QuestionResult
from .quiet import silence_frameworks

# Switched on by `grading_time()` in the hidden part of an nbgrader test cell: every later
# `check` also runs the hidden checks and reports them without names or messages.
_GRADING_TIME = False


def grading_time() -> None:
    """Run hidden checks from now on, reporting only whether each passed (nbgrader autograde)."""
    global _GRADING_TIME
    _GRADING_TIME = True


def checks_graded_by_hand(question: Question, names: Collection[str]) -> tuple[str, ...]:
    """The checks of `question` that only screen one of the written answers `names` (graded by hand elsewhere)."""
    return tuple(check.name for check in question.checks if check.screens_answer in names)


def _redact_hidden(question: Question, result: QuestionResult) -> QuestionResult:
    """The result with every hidden check's name and message replaced: feedback must not reveal them."""
    hidden = {check.name for check in question.checks if check.hidden}
    checks, number = [], 0
    for item in result.checks:
        if item.name in hidden:
            number += 1
            message = "passed" if item.passed else "failed (details are not shown for hidden checks)"
            item = CheckResult(f"hidden check {number}", item.passed, item.points, item.max_points, message)
        checks.append(item)
    return QuestionResult(result.question, result.title, checks)


def _collect(question_names: tuple[str, ...], objects: tuple[Any, ...], named: dict[str, Any], caller_globals: dict[str, Any]) -> dict[str, Any]:
    """Match what the student passed to the names the question needs."""
    namespace: dict[str, Any] = {}
    leftovers = []
    for obj in objects:
        name = getattr(obj, "__name__", None)
        if callable(obj) and name in question_names:
            namespace[name] = obj
        else:
            leftovers.append(obj)
    for name in question_names:
        if name not in namespace and leftovers and not callable(leftovers[0]):
            namespace[name] = leftovers.pop(0)
    namespace.update({k: v for k, v in named.items() if k in question_names})
    if not objects and not named:
        namespace.update({k: caller_globals[k] for k in question_names if k in caller_globals})
    return namespace


def check(
    question: str,
    *objects: Any,
    show: bool = True,
    hidden: bool = False,
    by_hand: Collection[str] = (),
    **named: Any,
) -> float:
    """Grade `question` on the objects passed (functions matched by name; a string answer by position or name).

    With no objects, the names are taken from the caller's globals (the notebook). Prints
    the report (to stdout only) and returns the score as a plain float. `by_hand` names
    answers graded by hand elsewhere (the nbgrader notebook's written-answer cell): the
    checks that read them are left out. After `grading_time()` the hidden checks run too
    and are reported without their names or messages.
    """
    silence_frameworks()
    from .grading import grade_namespace
    from .questions import get_question
    from .report import render_text

    spec = get_question(question)
    if by_hand:
        manual = checks_graded_by_hand(spec, tuple(by_hand))
        spec = dataclasses.replace(spec, checks=tuple(c for c in spec.checks if c.name not in manual))
    caller = inspect.currentframe().f_back
    options = {key: named.pop(key) for key in TRAINING_OPTIONS if key in named and key not in spec.names}
    caller_globals = caller.f_globals if caller else {}
    namespace = _collect(spec.names, objects, named, caller_globals)
    if spec.id in ("q2", "q3"):
        _prepare_training(namespace, options, caller_globals, show)
    result = grade_namespace(spec, namespace, include_hidden=hidden or _GRADING_TIME, options=options)
    if _GRADING_TIME:
        result = _redact_hidden(spec, result)
    if show:
        buffer = io.StringIO()
        render_text([result], file=buffer)
        print(buffer.getvalue(), end="")
        _show_images(result.meta.get("plots", []))
    return float(result.score)


# Options of the training questions (q2, q3) that `check` passes to the grader:
# check("q2", train_until_overfit, tier="quick", plots="plots", time_limit=300).
# train_size / val_size / test_size shrink the data (for fast tests; thresholds assume a real tier).
TRAINING_OPTIONS = ("tier", "plots", "time_limit", "train_size", "val_size", "test_size")


def _prepare_training(namespace: dict[str, Any], options: dict[str, Any], caller_globals: dict[str, Any], show: bool) -> None:
    """q2/q3 train the student's own LeNet-5 when the notebook defines it; warn first when the full tier will be slow."""
    from .training import slow_tier_notice, tier_from_options

    if "build_lenet5" not in namespace and callable(caller_globals.get("build_lenet5")):
        namespace["build_lenet5"] = caller_globals["build_lenet5"]
    notice = slow_tier_notice(tier_from_options(options))
    if notice and show:
        print(notice)


def _show_images(paths: list[str]) -> None:
    """Show the PNGs inline under IPython (stdout only); elsewhere print where they are."""
    if not paths:
        return
    shell = None
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        pass
    if shell is not None:
        from IPython.display import Image, display

        for path in paths:
            display(Image(filename=path))
    else:
        print("figures: " + ", ".join(paths))
