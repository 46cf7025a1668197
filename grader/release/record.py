"""Record what the public checks take from the reference solutions, check by check.

Every check of every question runs once, alone (a fresh `Context`, so nothing is reused
from another check), on the reference solutions and on the stubs, with references that
write down each reference call and trace and which check asked for it. The stubs reach the
branches where a student's code fails first (e.g. a training question's fallback model);
questions that train run on the stubs only (a real training run is not needed to reach
their reference calls). A key that only hidden checks used is not released.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from ..checks import Check, Context, Question, run_checks
from ..options import GradingOptions
from ..quiet import captured_stderr, import_keras
from ..references import (
    DATA_FORMAT,
    SolutionReferences,
    Unrecordable,
    call_key,
    decode_trace,
    decode_value,
    encode_trace,
    encode_value,
    trace_key,
)
from ..submission import load_module
from ..tracing import LayerTrace


@dataclasses.dataclass
class Entry:
    """One recorded reference result and the checks (label, hidden) that used it."""

    value: Any
    checks: set[tuple[str, bool]] = dataclasses.field(default_factory=set)


@dataclasses.dataclass
class Recording:
    """Everything the checks took from the references, by key; `problems`: what could not be recorded."""

    calls: dict[str, Entry] = dataclasses.field(default_factory=dict)
    traces: dict[str, Entry] = dataclasses.field(default_factory=dict)
    problems: list[str] = dataclasses.field(default_factory=list)
    values: dict[str, Any] = dataclasses.field(default_factory=dict)  # reference results computed so far
    traced: dict[str, list[LayerTrace]] = dataclasses.field(default_factory=dict)  # reference traces so far
    check: tuple[str, bool] = ("", False)  # the check running now: its label and whether it is hidden

    def note(self, store: dict[str, Entry], key: str, encode: Callable[[], Any]) -> None:
        entry = store.get(key)
        if entry is None:
            entry = store[key] = Entry(encode())
        entry.checks.add(self.check)

    def released(self) -> dict[str, Any]:
        """The data file's content: the entries some public check used, each with those checks' labels."""

        def public(store: dict[str, Entry]) -> dict[str, Any]:
            return {
                key: {"value": entry.value, "checks": sorted(label for label, hidden in entry.checks if not hidden)}
                for key, entry in sorted(store.items())
                if any(not hidden for _, hidden in entry.checks)
            }

        return {"format": DATA_FORMAT, "calls": public(self.calls), "traces": public(self.traces)}

    def hidden_only(self) -> list[str]:
        """Keys that only hidden checks used (left out of the release)."""
        return sorted(
            key
            for store in (self.calls, self.traces)
            for key, entry in store.items()
            if all(hidden for _, hidden in entry.checks)
        )


class RecordingReferences(SolutionReferences):
    """The solutions' references that write each result into a shared `Recording`."""

    def __init__(self, namespace: Mapping[str, Any], recording: Recording) -> None:
        super().__init__(namespace)
        self.recording = recording

    def call_reference(self, name: str, args: tuple, kwargs: Mapping[str, Any]) -> Any:
        try:
            key = call_key(name, args, kwargs)
        except Unrecordable as error:
            self.recording.problems.append(f"{self.recording.check[0]}: reference call {name} not recorded: {error}")
            return super().call_reference(name, args, kwargs)
        if key in self.recording.values:  # computed once for all checks (reference code is deterministic)
            if key in self.recording.calls:
                self.recording.note(self.recording.calls, key, lambda: None)
            return self.recording.values[key]
        value = self.recording.values[key] = super().call_reference(name, args, kwargs)
        try:
            encoded = encode_value(value)
            _verify_round_trip(value, encoded)
        except Unrecordable as error:
            self.recording.problems.append(f"{self.recording.check[0]}: reference call {name} not recorded: {error}")
            return value
        self.recording.note(self.recording.calls, key, lambda: encoded)
        return value

    def trace_reference(
        self, builder: str, shape: Sequence[int], kwargs: Mapping[str, Any], build: Callable[[], Any]
    ) -> list[LayerTrace]:
        try:
            key = trace_key(builder, shape, kwargs)
        except Unrecordable as error:
            self.recording.problems.append(f"{self.recording.check[0]}: trace of {builder} not recorded: {error}")
            return super().trace_reference(builder, shape, kwargs, build)
        model = build()  # notes the reference call for this check too
        if key in self.recording.traced:
            traced = self.recording.traced[key]
        else:
            traced = self.recording.traced[key] = super().trace_reference(builder, shape, kwargs, lambda: model)
        encoded = encode_trace(traced)
        if decode_trace(encoded) != traced:
            self.recording.problems.append(f"{self.recording.check[0]}: the trace of {builder} does not survive JSON")
            return traced
        self.recording.note(self.recording.traces, key, lambda: encoded)
        return traced


def _verify_round_trip(value: Any, encoded: Any) -> None:
    """A recorded model must come back with the same layers and count; other values equal."""
    import keras
    import numpy as np

    decoded = decode_value(encoded)
    if isinstance(value, keras.Model):
        same = [layer.name for layer in value.layers] == [layer.name for layer in decoded.layers] and int(
            value.count_params()
        ) == int(decoded.count_params())
    else:
        same = all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in _leaves(value, decoded))
    if not same:
        raise Unrecordable(f"a {type(value).__name__} that does not survive JSON")


def _leaves(a: Any, b: Any) -> Iterable[tuple[Any, Any]]:
    if isinstance(a, (tuple, list)):
        if not isinstance(b, (tuple, list)) or len(a) != len(b):
            raise Unrecordable("a container that does not survive JSON")
        for x, y in zip(a, b):
            yield from _leaves(x, y)
    else:
        yield a, b


class RecordingContext(Context):
    """A grading context that asks the references again on every use, so each check's use is noted.

    Student calls stay cached across checks as in real grading; reference results are
    memoized by the `Recording` instead of the context.
    """

    def reference_call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        with contextlib.redirect_stdout(io.StringIO()):
            return cast(RecordingReferences, self.reference).call_reference(name, args, kwargs)

    def cached(self, key: Any, compute: Callable[[], Any]) -> Any:
        name = key[0] if isinstance(key, tuple) else key
        if name in self.SHAREABLE_KEYS:  # computed from reference code alone: recomputed (memoized) and noted
            return compute()
        return super().cached(key, compute)


def _labelled(recording: Recording, question: Question, check: Check) -> Check:
    """`check` that names itself in `recording` while it runs."""

    def run(ctx: Context) -> str:
        recording.check = (f"{question.id}: {check.name}", check.hidden)
        return check.run(ctx)

    return dataclasses.replace(check, run=run)


def record(
    questions: Iterable[Question],
    solutions: Path,
    stubs: Path,
    namespace_of: Callable[[Question], Mapping[str, Any]],
    options: GradingOptions | None = None,
) -> Recording:
    """Grade the references and the stubs with every check; return what each check took from the references.

    `namespace_of(question)` gives the reference solutions' names as `question`'s checks see them.
    """
    keras = import_keras()
    options = options if options is not None else GradingOptions(plots=None)
    recording = Recording()
    for question in questions:
        references = RecordingReferences(namespace_of(question), recording)
        labelled = dataclasses.replace(
            question, checks=tuple(_labelled(recording, question, c) for c in question.checks)
        )
        folders = [stubs] if question.training is not None else [solutions, stubs]
        for folder in folders:
            with captured_stderr():
                loaded = load_module(folder, question)
                keras.utils.set_random_seed(0)
                context = RecordingContext(
                    labelled,
                    loaded.namespace,
                    references,
                    source=str(loaded.path),
                    load_error=loaded.error,
                    options=options,
                )
                result = run_checks(labelled, context)
                keras.backend.clear_session()
            if folder == solutions:
                recording.problems += [
                    f"{question.id}: {c.name} fails on the reference solution: {c.message}"
                    for c in result.checks
                    if not c.passed
                ]
    return recording


def uses_by_check(data: Mapping[str, Any]) -> dict[str, list[str]]:
    """Check label -> the released keys it uses (for the release's summary and the tests)."""
    found: dict[str, list[str]] = collections.defaultdict(list)
    for kind in ("calls", "traces"):
        for key, entry in data.get(kind, {}).items():
            for label in entry["checks"]:
                found[label].append(key)
    return dict(found)
