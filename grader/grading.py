"""Grade a question: load the submission and the reference, run the checks quietly."""

from __future__ import annotations

import collections
import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .checks import Context, Question, QuestionResult, run_checks
from .options import GradingOptions, Limits
from .paths import solutions_dir
from .quiet import captured_stderr, import_keras
from .submission import load_module


@functools.lru_cache(maxsize=1)
def _reference_modules() -> tuple[dict[str, Any], ...]:
    from .questions import QUESTIONS

    namespaces = []
    for question in QUESTIONS.values():
        loaded = load_module(solutions_dir(), question)
        if loaded.error:
            raise RuntimeError(f"the reference solution is broken: {loaded.error}")
        namespaces.append(loaded.namespace)
    return tuple(namespaces)


def reference_namespace(question: Question) -> Mapping[str, Any]:
    """The reference solutions' names, the question's own module first (other modules' builders are reachable too)."""
    modules = _reference_modules()
    own = [ns for ns in modules if Path(ns.get("__file__", "")).stem == question.module]
    return collections.ChainMap(*own, *modules)


def grade_namespace(
    question: Question,
    namespace: Mapping[str, Any],
    *,
    source: str | None = None,
    load_error: str | None = None,
    include_hidden: bool = True,
    options: GradingOptions | None = None,
    executor: Any | None = None,
    shared: dict[Any, Any] | None = None,
) -> QuestionResult:
    """Run `question`'s checks on the objects in `namespace` (or, with `executor`, on the sandboxed submission)."""
    keras = import_keras()
    with captured_stderr():
        keras.utils.set_random_seed(0)
        reference = reference_namespace(question)
        context = Context(
            question,
            namespace,
            reference,
            source=source,
            load_error=load_error,
            options=options,
            executor=executor,
            shared=shared,
        )
        result = run_checks(question, context, include_hidden=include_hidden)
        keras.backend.clear_session()
    return result


# Reference models and traces of isolated grading, per question, kept for the life of the process.
_SHARED: dict[str, dict[Any, Any]] = {}


def grade_folder(
    question: Question,
    folder: Path,
    *,
    isolated: bool = False,
    limits: Limits | None = None,
    hide: Sequence[str | Path] = (),
    include_hidden: bool = True,
    options: GradingOptions | None = None,
) -> QuestionResult:
    """Grade the file of `question` found in the submission `folder`.

    With `isolated=True` the file is imported and called only in a sandboxed child
    process (`grader.sandbox`) under `limits` (raised to what the question needs), with
    `hide` (and the solutions) out of its reach; the result's `meta["isolation"]` says what
    was enforced. Without it, the file is imported into this process (the library API and
    the tests).
    """
    options = options if options is not None else GradingOptions()
    if isolated:
        from .sandbox import IsolatedExecutor, RemoteNamespace

        limits = question.limits_for(limits or Limits(), options)
        with IsolatedExecutor(question, Path(folder), limits=limits, hide=hide) as executor:
            result = grade_namespace(
                question,
                RemoteNamespace(executor),
                source=str(Path(folder) / question.filename),
                load_error=executor.load_error,
                include_hidden=include_hidden,
                options=options,
                executor=executor,
                shared=_SHARED.setdefault(question.id, {}),
            )
            result.meta["isolation"] = executor.describe()
        return result
    import_keras()
    with captured_stderr():
        loaded = load_module(folder, question)
    return grade_namespace(
        question,
        loaded.namespace,
        source=str(loaded.path),
        load_error=loaded.error,
        include_hidden=include_hidden,
        options=options,
    )
