"""Questions as data: each check has a name, points and a function; running them scores a submission.

A check function receives a `Context` and returns the message shown when it passes,
or raises `CheckFailed` with the message shown when it fails. Student code is only
ever reached through the `Context`: `call`/`call_with` call a student function, and
`run_with_student` runs a small grader function beside the student's code (in the
sandboxed child when there is one), for work that must happen where that code runs, such
as watching `fit`. Whatever student code raises becomes a readable `StudentCodeError`:
the grader itself never crashes on a submission.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import re
import traceback
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, Protocol

from . import diagnoses
from .diagnoses import Diagnosis
from .options import DEFAULT_WALL_S, GradingOptions, Limits, Transfer
from .patching import built_unallocated, zero_initialized
from .results import CheckResult, QuestionResult, internal_error_message, output_tail
from .text import clean, clean_data


class CheckFailed(Exception):
    """A check did not pass; the message is written for the student, the diagnosis id for the class dashboard."""

    stdout: str = ""  # what student code printed before it failed, when it did

    def __init__(self, message: str = "", *, diagnosis: str | None = None) -> None:
        super().__init__(message)
        self.diagnosis = diagnosis  # a `grader.diagnoses` id, declared beside the check that raises it


class StudentCodeError(CheckFailed):
    """Student code raised, or returned something of the wrong kind."""


class UserFacingError(Exception):
    """An error whose message is written for the user: the CLI prints it without a traceback."""


@dataclasses.dataclass(frozen=True)
class Check:
    """One graded check: `run(ctx)` returns the pass message or raises `CheckFailed`."""

    name: str
    points: float
    run: Callable[[Context], str]
    hidden: bool = False
    screens_answer: str | None = None  # the written answer this check only screens (a hand grade can replace it)
    diagnoses: tuple[Diagnosis, ...] = ()  # the misconceptions this check recognises (ids its failures carry)


@dataclasses.dataclass(frozen=True)
class WrittenAnswer:
    """A written answer (a string the student assigns) graded by hand in nbgrader, with its rubric."""

    name: str
    points: float
    rubric: str = ""  # Markdown for the graders; `{points}` is filled in. Empty: a generic rubric.


@dataclasses.dataclass(frozen=True)
class Training:
    """How a question trains: what the engine, the CLI and the notebook API must know beforehand."""

    # The notice printed before grading when the chosen tier will be slow on this machine (None: no notice).
    notice: Callable[[GradingOptions], str | None]
    # Names of other questions' functions that the notebook API passes along when the
    # notebook defines them (q2/q3 train the student's own `build_lenet5`).
    borrows: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Question:
    """A question, and everything the engine, CLI, notebook API, sandbox, nbgrader and batch need to know of it.

    Adding a question is a module in `grader/questions/` that ends in one `QUESTION = Question(...)`
    declaration, a stub in `exercises/`, a reference in `solutions/`, and a line in the registry.
    """

    id: str
    title: str
    module: str
    names: tuple[str, ...]
    checks: tuple[Check, ...]
    # Seconds the sandbox gives the question when the run sets no limit: student code still running
    # then is stopped and reported (an endless loop in a structural question is reported within a minute).
    time_limit_s: float = DEFAULT_WALL_S
    # The sandbox limits this question needs beyond that, given the run's (e.g. a training tier's time).
    sandbox_limits: Callable[[Limits, GradingOptions], Limits] | None = None
    training: Training | None = None  # set on questions that train a network
    written_answers: tuple[WrittenAnswer, ...] = ()  # answers graded by hand (nbgrader), besides the checks
    report: str | None = None  # "grader.module:function" that `grader report` runs for this question
    # `Context.cached` keys (or their first element) that are computed from reference code alone:
    # a batch worker computes them once for the whole class.
    shared_cache_keys: frozenset[str] = frozenset()

    def limits_for(self, limits: Limits, options: GradingOptions) -> Limits:
        """`limits` as this question needs them under `options` (its own time limit where the run set none)."""
        if limits.wall_s is None:
            limits = dataclasses.replace(limits, wall_s=self.time_limit_s)
        return self.sandbox_limits(limits, options) if self.sandbox_limits is not None else limits

    @property
    def manual_points(self) -> float:
        """Points graded by hand (written answers), not part of `max_score`."""
        return float(sum(answer.points for answer in self.written_answers))

    def checks_screening(self, answers: Collection[str]) -> tuple[str, ...]:
        """The names of the checks that only screen the written answers `answers` (a hand grade replaces them)."""
        return tuple(check.name for check in self.checks if check.screens_answer in answers)

    def without_checks_screening(self, answers: Collection[str]) -> Question:
        """This question without the checks that only screen `answers` (graded by hand elsewhere)."""
        screening = set(self.checks_screening(answers))
        return dataclasses.replace(self, checks=tuple(c for c in self.checks if c.name not in screening))

    @property
    def max_score(self) -> float:
        return float(sum(check.points for check in self.checks))

    @property
    def filename(self) -> str:
        return f"{self.module}.py"


def describe_call(name: str, args: tuple = (), kwargs: Mapping[str, Any] | None = None) -> str:
    """`build_lenet5(num_classes=7)`: how a call reads in a message."""
    parts = [_short_repr(a) for a in args]
    parts += [f"{k}={_short_repr(v)}" for k, v in (kwargs or {}).items()]
    return f"{name}({', '.join(parts)})"


def _short_repr(value: Any) -> str:
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"<array {tuple(value.shape)}>"
    if hasattr(value, "layers") and hasattr(value, "name"):
        return f"<model '{value.name}'>"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def explain_exception(call: str, error: BaseException, source: str | None = None) -> str:
    """A one-paragraph account of what student code raised, pointing at its own line."""
    if isinstance(error, NotImplementedError):
        return f"`{call}` is not implemented yet: it still raises NotImplementedError. Replace the `raise` line with your code."
    where = ""
    frames = traceback.extract_tb(error.__traceback__)
    student_frames = [f for f in frames if source and Path(f.filename).name == Path(source).name]
    if student_frames:
        frame = student_frames[-1]
        where = f" at {Path(frame.filename).name} line {frame.lineno} (`{(frame.line or '').strip()}`)"
    detail = _first_meaningful_line(str(error))
    if len(detail) > 300:
        detail = detail[:297] + "..."
    return f"`{call}` raised {type(error).__name__}{where}" + (f": {detail}" if detail else "")


def _call_key(args: tuple, kwargs: Mapping[str, Any]) -> tuple:
    """A cache key for a call: values for plain data, identities for models and arrays."""

    def token(value: Any) -> Any:
        if value is None or isinstance(value, (bool, int, float, str)):
            return repr(value)
        if isinstance(value, (tuple, list)):
            return (type(value).__name__, tuple(token(v) for v in value))
        return ("id", id(value))

    return tuple(token(a) for a in args), tuple((k, token(v)) for k, v in sorted(kwargs.items()))


def _first_meaningful_line(text: str) -> str:
    """The line of an error message that says what went wrong (Keras puts a generic line first)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    if len(lines) > 1 and lines[0].startswith("Exception encountered when calling"):
        return f"{lines[0]} {lines[1]}"
    return lines[0] if lines else ""


@dataclasses.dataclass
class StudentCall:
    """One call of student code: what it returned (or the failure message), printed, and its arguments after it."""

    value: Any
    stdout: str = ""
    args: tuple = ()
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    diagnosis: str | None = None  # when the call raised: what kind of failure it was


def explain_failure(call: str, error: BaseException, source: str | None = None) -> str:
    """What a student's call did wrong, for any exception it let out (`sys.exit` and `MemoryError` included)."""
    if isinstance(error, SystemExit):
        return f"`{call}` called sys.exit({error.code!r}): a function must return its result, not end the program."
    if isinstance(error, MemoryError):
        return f"`{call}` ran out of memory (MemoryError): look for a huge array or a model far bigger than asked."
    return explain_exception(call, error, source)


class StudentSide:
    """The student's names as grader code sees them where student code runs.

    That is the sandboxed child (`Context.run_with_student` sends grader code there) or,
    without a sandbox, the grading process itself. `call` turns whatever the student's
    function raises into a `StudentCodeError` that points at the student's line.
    """

    def __init__(
        self, namespace: Mapping[str, Any], source: str | None, stdout: Callable[[], Any] = io.StringIO
    ) -> None:
        self.namespace = namespace
        self.source = source
        self._stdout = stdout

    def function(self, name: str) -> Callable[..., Any]:
        if name not in self.namespace:
            raise StudentCodeError(
                f"`{name}` is not defined in {Path(self.source or 'your file').name}: keep the name and signature from the stub.",
                diagnosis=diagnoses.MISSING_NAME.id,
            )
        function = self.namespace[name]
        if not callable(function):
            raise StudentCodeError(
                f"`{name}` should be a function, but it is a {type(function).__name__}.",
                diagnosis=diagnoses.WRONG_TYPE.id,
            )
        return function

    def call(self, name: str, *args: Any, **kwargs: Any) -> StudentCall:
        """Call the student's `name`; its printed output is in the result's `stdout`."""
        function = self.function(name)
        buffer = self._stdout()
        try:
            with contextlib.redirect_stdout(buffer):
                value = function(*args, **kwargs)
        except (Exception, SystemExit) as error:  # noqa: BLE001 - student code may raise anything
            failure = StudentCodeError(
                explain_failure(describe_call(name, args, kwargs), error, self.source),
                diagnosis=diagnoses.for_exception(error).id,
            )
            failure.stdout = buffer.getvalue()
            raise failure from None
        return StudentCall(value, buffer.getvalue(), tuple(args), dict(kwargs))


def resolve_grader_function(dotted: str) -> Callable[..., Any]:
    """`grader.module:function` -> that function; nothing outside the grader package is reachable."""
    import importlib

    module, _, attribute = dotted.partition(":")
    if not module.startswith("grader."):
        raise ValueError(f"only grader functions run beside student code, not {module}")
    return getattr(importlib.import_module(module), attribute)


class StudentProcess(Protocol):
    """Where student code runs when it does not run in the grader's process (`grader.sandbox.IsolatedExecutor`)."""

    names: Mapping[str, str]  # the submission's names: "function" or "value"

    def value(self, name: str) -> Any: ...

    def call(
        self, name: str, args: tuple = (), kwargs: Mapping[str, Any] | None = None, *, transfer: Transfer = ...
    ) -> StudentCall: ...

    def run(
        self, target: str, args: tuple = (), kwargs: Mapping[str, Any] | None = None, *, seed: int | None = None
    ) -> Any: ...


class Context:
    """What a check sees: the student's objects, the reference's, and a cache shared by the checks."""

    # `cached` keys (or their first element) that generic code computes from reference code alone;
    # a question adds its own in `Question.shared_cache_keys`.
    SHAREABLE_KEYS = frozenset({"trace-reference"})

    def __init__(
        self,
        question: Question,
        submission: Mapping[str, Any],
        reference: Mapping[str, Any],
        *,
        source: str | None = None,
        load_error: str | None = None,
        options: GradingOptions | None = None,
        executor: StudentProcess | None = None,
        shared: dict[Any, Any] | None = None,
    ) -> None:
        self.question = question
        self.executor = executor  # None: call student code in this process; else a `sandbox.IsolatedExecutor`
        # Reference results kept across submissions. Only safe when student code never
        # touches the grader's objects, i.e. with an isolated executor.
        self.shared = shared if executor is not None else None
        self.submission = submission
        self.reference = reference
        self.source = source
        self.load_error = load_error
        self.options = options if options is not None else GradingOptions()
        self.meta: dict[str, Any] = {}
        self._cache: dict[Any, Any] = {}
        self.last_stdout = ""

    def student(self, name: str) -> Any:
        """The student's object called `name`, or a failure that says it is missing."""
        if self.load_error:
            raise StudentCodeError(self.load_error, diagnosis=diagnoses.LOAD_ERROR.id)
        defined = self.executor.names if self.executor is not None else self.submission
        if name not in defined:
            raise StudentCodeError(
                f"`{name}` is not defined in {self.question.filename}: keep the name and signature from the stub.",
                diagnosis=diagnoses.MISSING_NAME.id,
            )
        return self.executor.value(name) if self.executor is not None else self.submission[name]

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the student's function `name`, caching the result; its stdout is kept in `last_stdout`."""
        return self.call_with(name, args, kwargs).value

    def call_with(
        self,
        name: str,
        args: tuple = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        transfer: Transfer = Transfer.ARCHITECTURE,
        fresh: bool = False,
    ) -> StudentCall:
        """`call` that returns value, stdout and the arguments after the call; `transfer` says how models cross.

        In-process the arguments are the very objects passed (a model trained in place is
        the caller's). In the sandbox models cross as `transfer` says (`Transfer.ROUND_TRIP`:
        the arguments come back as the call left them). `fresh` calls again even when the
        same call was made before (functions that draw at random).
        """
        kwargs = dict(kwargs or {})
        key = ("student", name, _call_key(args, kwargs), transfer)
        if key in self._cache and not fresh:
            outcome, result, _ = self._cache[key]
        else:
            if self.executor is not None:
                outcome, result = self._call_isolated(name, args, kwargs, transfer)
            else:
                outcome, result = self._call_here(name, args, kwargs)
            if not fresh:
                self._cache[key] = (outcome, result, (args, kwargs))  # keeps the arguments alive: ids stay unique
        self.last_stdout = result.stdout
        if outcome == "raised":
            raise StudentCodeError(result.value, diagnosis=result.diagnosis)
        return result

    def _call_here(self, name: str, args: tuple, kwargs: dict[str, Any]) -> tuple[str, StudentCall]:
        self.student(name)  # the load error, or "not defined in <the question's file>"
        try:
            return "ok", StudentSide(self.submission, self.source).call(name, *args, **kwargs)
        except StudentCodeError as error:
            return "raised", StudentCall(str(error), error.stdout, tuple(args), dict(kwargs), error.diagnosis)

    def _call_isolated(
        self, name: str, args: tuple, kwargs: dict[str, Any], transfer: Transfer
    ) -> tuple[str, StudentCall]:
        if self.load_error:
            raise StudentCodeError(self.load_error)
        assert self.executor is not None
        kind = self.executor.names.get(name)
        if kind is None:
            self.student(name)  # raises the "not defined" message
        if kind != "function":
            raise StudentCodeError(f"`{name}` should be a function, but it is a {type(self.student(name)).__name__}.")
        try:
            result = self.executor.call(name, args, kwargs, transfer=transfer)
        except StudentCodeError as error:
            if getattr(error, "cacheable", True) is False:
                raise
            return "raised", StudentCall(str(error), error.stdout, tuple(args), dict(kwargs), error.diagnosis)
        return "ok", result

    def run_with_student(self, target: str, *args: Any, seed: int | None = None, **kwargs: Any) -> Any:
        """Run the grader function `target` ("grader.module:function") where the student's code runs.

        It is called as `function(StudentSide, *args, **kwargs)`: in the sandboxed child
        when there is one (arguments and result cross as artifacts, models with their
        weights; what it returns is only as trustworthy as the student's process, so the
        parent re-measures what it grades), else here. `seed` seeds Keras, NumPy and Python
        first. Failures arrive as `StudentCodeError` or `CheckFailed`, as raised there.
        """
        if self.load_error:
            raise StudentCodeError(self.load_error)
        if self.executor is not None:
            return self.executor.run(target, args, kwargs, seed=seed)
        if seed is not None:
            import keras

            keras.utils.set_random_seed(seed)
        return resolve_grader_function(target)(StudentSide(self.submission, self.source), *args, **kwargs)

    def reference_call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the reference solution's `name` (cached; its prints are discarded; models get zero weights).

        The reference is a `grader.references` object (the solutions' code, or a release's
        recorded data, which raises `ReferenceUnavailable` for what it does not hold) or, in
        tests, a plain mapping of names.
        """
        key = ("reference", name, _call_key(args, kwargs))
        store = self._cache if self.shared is None else self.shared
        if key not in store:
            call = getattr(self.reference, "call_reference", None)
            # A cached reference model is traced, counted or handed to the student's code, never trained
            # (`references.fresh_reference` builds those): random draws for its weights would be wasted.
            with contextlib.redirect_stdout(io.StringIO()), zero_initialized():
                value = built_unallocated(
                    lambda: call(name, args, kwargs) if call is not None else self.reference[name](*args, **kwargs)
                )
            store[key] = (value, (args, kwargs))
        return store[key][0]

    def cached(self, key: Any, compute: Callable[[], Any]) -> Any:
        """Compute once per grading run: `compute` may raise `CheckFailed`, which is cached too.

        Keys named in `SHAREABLE_KEYS` or the question's `shared_cache_keys` (grader-only
        computations) live in `shared` when there is one: a batch worker computes them once
        for the whole class.
        """
        store = self._cache
        name = key[0] if isinstance(key, tuple) else key
        if self.shared is not None and (name in self.SHAREABLE_KEYS or name in self.question.shared_cache_keys):
            store = self.shared
        if key not in store:
            try:
                store[key] = ("ok", compute())
            except CheckFailed as failure:
                store[key] = ("failed", failure)
        outcome, value = store[key]
        if outcome == "failed":
            raise value
        return value


def run_checks(question: Question, context: Context, *, include_hidden: bool = True) -> QuestionResult:
    """Run every check of `question`; a failure in one never stops the others.

    Messages may quote student code (what it raised, returned or named): they are cleaned
    of control characters and capped here, before any report, file or database sees them.
    """
    results = []
    for check in question.checks:
        if check.hidden and not include_hidden:
            continue
        diagnosis, output = None, ""
        context.last_stdout = ""  # what this check's calls print (a cached call brings its output again)
        try:
            passed, message = True, check.run(context)
        except CheckFailed as failure:
            passed, message = False, str(failure)
            diagnosis = failure.diagnosis or diagnoses.check_diagnosis(question.id, check.name)
            output = output_tail(failure.stdout or context.last_stdout)
        except Exception as error:  # noqa: BLE001 - a grader bug must not cost the student the other checks
            passed, message, diagnosis = False, internal_error_message(error), diagnoses.GRADER_ERROR.id
        points = float(check.points) if passed else 0.0
        diagnosis = clean(diagnosis or "", 80) or None
        results.append(CheckResult(check.name, passed, points, float(check.points), clean(message), diagnosis, output))
    return QuestionResult(question.id, question.title, results, clean_data(dict(context.meta)))


def require_type(value: Any, expected: type | tuple[type, ...], call: str, what: str) -> Any:
    """Fail with a readable message unless `value` is an instance of `expected` (a finite one, for numbers).

    `True` is not an int here (unless `bool` is expected), and NaN or an infinity is no answer.
    """
    wrong = diagnoses.WRONG_TYPE.id
    if isinstance(value, bool) and bool not in (expected if isinstance(expected, tuple) else (expected,)):
        raise StudentCodeError(f"`{call}` returned a bool; it should return {what}.", diagnosis=wrong)
    if not isinstance(value, expected):
        raise StudentCodeError(
            f"`{call}` returned {type(value).__name__} ({_short_repr(value)}); it should return {what}.",
            diagnosis=wrong,
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise StudentCodeError(
            f"`{call}` returned {value!r}, which is not a number; it should return {what}.",
            diagnosis=diagnoses.NOT_A_NUMBER.id,
        )
    return value
