"""Grade a question: load the submission and the reference, run the checks quietly."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .checks import Context, Question, QuestionResult, run_checks
from .options import GradingOptions, Limits
from .paths import reference_data_file, solutions_available, solutions_dir
from .quiet import captured_stderr, import_keras
from .submission import load_module


@functools.lru_cache(maxsize=32)
def _reference_module(folder: Path, module: str) -> dict[str, Any]:
    from .questions import QUESTIONS

    loaded = load_module(folder, next(q for q in QUESTIONS.values() if q.module == module))
    if loaded.error:
        raise RuntimeError(f"the reference solution is broken: {loaded.error}")
    return loaded.namespace


class _ReferenceModules(Mapping[str, Any]):
    """The names of the solution modules in `folder`, `first`'s own module first; another module is
    loaded only when a name is not found in those before it (q7's reference alone takes a while)."""

    def __init__(self, folder: Path, first: Question) -> None:
        from .questions import QUESTIONS

        self.folder = folder
        self.order = [first.module, *(q.module for q in QUESTIONS.values() if q.module != first.module)]

    def __getitem__(self, name: str) -> Any:
        for module in self.order:
            namespace = _reference_module(self.folder, module)
            if name in namespace:
                return namespace[name]
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(n for m in self.order for n in _reference_module(self.folder, m)))

    def __len__(self) -> int:
        return sum(1 for _ in self)


@functools.lru_cache(maxsize=4)
def _released_references(path: Path) -> Mapping[str, Any]:
    from .references import load_data_references

    if not path.is_file():
        raise RuntimeError(
            f"no reference solutions ({solutions_dir()}) and no released reference data ({path}): "
            "install the student package your TA gave you, or run from the course checkout"
        )
    return load_data_references(path)


def references_loaded() -> bool:
    """Whether this process holds reference code or data (then no sandbox zygote may be forked from it)."""
    return _reference_module.cache_info().currsize > 0 or _released_references.cache_info().currsize > 0


def solution_namespace(question: Question) -> Mapping[str, Any]:
    """The reference solutions' code: the question's own module first (other modules' builders are reachable too)."""
    return _ReferenceModules(solutions_dir(), question)


def reference_namespace(question: Question) -> Mapping[str, Any]:
    """What `question`'s checks compare with (`grader.references`): the solutions' code when `solutions/` is
    here, else the data a release recorded (`paths.reference_data_file`)."""
    from .references import SolutionReferences

    if solutions_available():
        return SolutionReferences(solution_namespace(question))
    return _released_references(reference_data_file())


def checked_when_graded(question: Question, reference: Mapping[str, Any]) -> dict[str, str]:
    """`{"hidden_checks": note}` when grading from released data and `question` has hidden checks, else `{}`.

    A student package holds no hidden check's data: those checks run only when the TA grades.
    """
    hidden = [check for check in question.checks if check.hidden]
    if getattr(reference, "has_code", True) or not hidden:
        return {}
    points = sum(check.points for check in hidden)
    checks = "1 hidden check" if len(hidden) == 1 else f"{len(hidden)} hidden checks"
    worth = f"{points:g} point{'' if points == 1 else 's'}"
    return {"hidden_checks": f"{checks} ({worth}) {'is' if len(hidden) == 1 else 'are'} checked when your TA grades"}


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
        not_here = checked_when_graded(question, reference)
        include_hidden = include_hidden and not not_here  # a student package runs the public checks only
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
        context.meta.update(not_here)
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
    unconfined_ok: bool = False,
) -> QuestionResult:
    """Grade the file of `question` found in the submission `folder`.

    With `isolated=True` the file is imported and called only in a sandboxed child
    process (`grader.sandbox`) under `limits` (raised to what the question needs), with
    `hide` (and the solutions) out of its reach; the result's `meta["isolation"]` says what
    was enforced. Without it, the file is imported into this process (the library API and
    the tests). Where the sandbox cannot run (`sandbox.probe.available`), `unconfined_ok`
    (a student's own `grader check`) grades in this process, `meta["isolation"]["mode"]`
    saying "unconfined"; without it (grading for marks) `SandboxUnavailable` is raised.
    """
    options = options if options is not None else GradingOptions()
    if isolated:
        from .sandbox.probe import SandboxUnavailable, available, unconfined_isolation

        runs, reason = available()
        if not runs:
            if not unconfined_ok:
                raise SandboxUnavailable(reason)
            result = grade_folder(question, folder, include_hidden=include_hidden, options=options)
            result.meta["isolation"] = unconfined_isolation(reason)
            return result
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
            result.meta["isolation"] = {**result.meta.get("isolation", {}), **executor.describe()}
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
