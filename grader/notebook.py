"""The notebook API: `check("q1", build_lenet5)` prints the report and returns the score."""

from __future__ import annotations

import dataclasses
import inspect
import io
import sys
from collections.abc import Collection
from typing import Any

from . import progress
from .options import GradingOptions
from .quiet import silence_frameworks

# Switched on by `grading_time()` in the hidden part of an nbgrader test cell: every later
# `check` also runs the hidden checks and reports them without names or messages.
_GRADING_TIME = False


def grading_time() -> None:
    """Run hidden checks from now on, reporting only whether each passed (nbgrader autograde)."""
    global _GRADING_TIME
    _GRADING_TIME = True


def _collect(
    question_names: tuple[str, ...], objects: tuple[Any, ...], named: dict[str, Any], caller_globals: dict[str, Any]
) -> dict[str, Any]:
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
    and are reported without their names or messages. Keyword arguments named like the
    fields of `GradingOptions` set the run's options, e.g.
    `check("q2", train_until_overfit, tier="quick", plots="plots", time_limit=300)`.
    """
    silence_frameworks()
    from .grading import grade_namespace
    from .questions import get_question
    from .report import render_text

    spec = get_question(question)
    if by_hand:
        spec = spec.without_checks_screening(tuple(by_hand))
    frame = inspect.currentframe()
    caller = frame.f_back if frame is not None else None
    given = {key: named.pop(key) for key in OPTION_NAMES if key in named and key not in spec.names}
    options = GradingOptions.from_env(**given)
    caller_globals = caller.f_globals if caller else {}
    namespace = _collect(spec.names, objects, named, caller_globals)
    if spec.training is not None:
        for name in spec.training.borrows:  # e.g. the notebook's own build_lenet5, trained by q2/q3
            if name not in namespace and callable(caller_globals.get(name)):
                namespace[name] = caller_globals[name]
        notice = spec.training.notice(options)
        if notice and show:
            print(notice)
    # Training shows its epochs live (rich's bar in Jupyter or a terminal, else plain lines); not while autograding.
    sink = progress.for_stream(sys.stdout, plain=True) if show and not _GRADING_TIME else progress.NullSink()
    with progress.showing(sink):
        result = grade_namespace(spec, namespace, include_hidden=hidden or _GRADING_TIME, options=options)
    if _GRADING_TIME:
        result = result.redacted({c.name for c in spec.checks if c.hidden})
    if show:
        buffer = io.StringIO()
        render_text([result], file=buffer)
        print(buffer.getvalue(), end="")
        _show_images(result.meta.get("plots", []))
    return float(result.score)


# Keyword arguments of `check` that set the run's options rather than name a student object.
OPTION_NAMES = tuple(field.name for field in dataclasses.fields(GradingOptions))


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
