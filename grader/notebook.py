"""The notebook API: `check("q1", build_lenet5)` prints the report and returns the score."""

from __future__ import annotations

import inspect
import io
from typing import Any

from .quiet import silence_frameworks


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


def check(question: str, *objects: Any, show: bool = True, hidden: bool = False, **named: Any) -> float:
    """Grade `question` on the objects passed (functions matched by name; a string answer by position or name).

    With no objects, the names are taken from the caller's globals (the notebook). Prints
    the report (to stdout only) and returns the score as a plain float.
    """
    silence_frameworks()
    from .grading import grade_namespace
    from .questions import get_question
    from .report import render_text

    spec = get_question(question)
    caller = inspect.currentframe().f_back
    namespace = _collect(spec.names, objects, named, caller.f_globals if caller else {})
    result = grade_namespace(spec, namespace, include_hidden=hidden)
    if show:
        buffer = io.StringIO()
        render_text([result], file=buffer)
        print(buffer.getvalue(), end="")
    return float(result.score)
