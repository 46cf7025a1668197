"""What checks compare with: the reference solutions' code, or the data a release recorded from it.

In the course checkout the references are the modules of `solutions/` (`SolutionReferences`).
In the student package there is no `solutions/`: `grader release` ran the public checks once
on the references and recorded what they took from them (`DataReferences`): each reference
call's result (a model as its Keras config, arrays, numbers) and each reference trace, keyed
by the call's arguments. A check reaches either through the same two methods,
`call_reference` and `trace_reference`; what was not recorded (hidden checks' inputs, a
reference call on inputs no public check made) raises `ReferenceUnavailable`, whose message
says the check runs when the TA grades.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .checks import CheckFailed, describe_call
from .tracing import LayerTrace, total_params, trace

DATA_FORMAT = 1


class ReferenceUnavailable(CheckFailed):
    """A check needs a reference result that the student package does not hold."""


def unavailable_message(what: str) -> str:
    """What a student reads when a check needs the reference solution itself."""
    return (
        f"This check compares with the reference solution's {what}, which the student package does not include: "
        "it is checked when your TA grades (in the course checkout it runs here too)."
    )


class Unrecordable(ValueError):
    """A value or argument that the release cannot write as data."""


def value_key(value: Any) -> Any:
    """A JSON-able key for an argument, by content (arrays by their SHA-256)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return [type(value).__name__, [value_key(v) for v in value]]
    if isinstance(value, np.ndarray) or isinstance(value, np.generic):
        array = np.ascontiguousarray(value)
        return ["array", str(array.dtype), list(array.shape), hashlib.sha256(array.tobytes()).hexdigest()]
    raise Unrecordable(f"an argument of type {type(value).__name__}")


def call_key(name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    """The data file's key of the reference call `name(*args, **kwargs)`."""
    return json.dumps([name, value_key(tuple(args)), sorted((k, value_key(v)) for k, v in kwargs.items())])


def trace_key(builder: str, shape: Sequence[int], kwargs: Mapping[str, Any]) -> str:
    """The data file's key of the trace of `builder(**kwargs)` on inputs of `shape`."""
    return json.dumps([builder, [int(d) for d in shape], sorted((k, value_key(v)) for k, v in kwargs.items())])


def encode_value(value: Any) -> dict[str, Any]:
    """A reference result as JSON data: a model as its Keras config, arrays and containers by content."""
    import keras

    if isinstance(value, keras.Model):
        return {"model": json.loads(value.to_json())}
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.asarray(value)
        return {"array": array.tolist(), "dtype": str(array.dtype)}
    if isinstance(value, (tuple, list)):
        return {type(value).__name__: [encode_value(v) for v in value]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    raise Unrecordable(f"a result of type {type(value).__name__}")


def decode_value(data: Mapping[str, Any]) -> Any:
    """The inverse of `encode_value` (a model comes back fresh: the same layers and names, new weights)."""
    if "model" in data:
        import keras

        return keras.models.model_from_json(json.dumps(data["model"]))
    if "array" in data:
        return np.asarray(data["array"], dtype=data["dtype"])
    if "tuple" in data:
        return tuple(decode_value(v) for v in data["tuple"])
    if "list" in data:
        return [decode_value(v) for v in data["list"]]
    return data["value"]


def _tuples(value: Any) -> Any:
    """JSON lists back to the tuples Keras configs hold (kernel sizes, strides)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def encode_trace(layers: Sequence[LayerTrace]) -> list[dict[str, Any]]:
    """A trace as JSON data: every field of each `LayerTrace` (tuples become lists)."""
    return [{field.name: getattr(layer, field.name) for field in dataclasses.fields(LayerTrace)} for layer in layers]


def decode_trace(data: Sequence[Mapping[str, Any]]) -> list[LayerTrace]:
    """The inverse of `encode_trace`: lists back to tuples, in the settings too (kernel sizes, strides)."""
    names = {field.name for field in dataclasses.fields(LayerTrace)}
    layers = []
    for item in data:
        fields = {name: _tuples(value) for name, value in item.items() if name in names}
        fields["config"] = {str(k): _tuples(v) for k, v in dict(item.get("config") or {}).items()}
        layers.append(LayerTrace(**fields))
    return layers


def checked_trace(model: Any, builder: str, shape: Sequence[int]) -> list[LayerTrace]:
    """Trace a reference model; a trace that disagrees with the model's own count is never kept."""
    traced = trace(model, shape)
    if total_params(traced) != int(model.count_params()):  # e.g. a racing thread
        raise RuntimeError(
            f"the grader's trace of the reference {builder} has {total_params(traced):,} parameters, the model "
            f"{int(model.count_params()):,}: not kept"
        )
    return traced


class SolutionReferences(Mapping[str, Any]):
    """The reference solutions' names (a mapping, as checks and tests read them) with the two seam methods."""

    has_code = True

    def __init__(self, namespace: Mapping[str, Any]) -> None:
        self.namespace = namespace

    def __getitem__(self, name: str) -> Any:
        return self.namespace[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.namespace)

    def __len__(self) -> int:
        return len(self.namespace)

    def call_reference(self, name: str, args: tuple, kwargs: Mapping[str, Any]) -> Any:
        """The reference's `name(*args, **kwargs)`."""
        return self.namespace[name](*args, **kwargs)

    def trace_reference(
        self, builder: str, shape: Sequence[int], kwargs: Mapping[str, Any], build: Callable[[], Any]
    ) -> list[LayerTrace]:
        """The trace of the reference model that `build()` returns (`builder(**kwargs)`) on inputs of `shape`."""
        return checked_trace(build(), builder, shape)


class DataReferences(Mapping[str, Any]):
    """The references as a release recorded them: no code (an empty mapping), only recorded results."""

    has_code = False

    def __init__(self, data: Mapping[str, Any]) -> None:
        if data.get("format") != DATA_FORMAT:
            raise ValueError(f"reference data of format {data.get('format')!r}; this grader reads {DATA_FORMAT}")
        self.calls: dict[str, Any] = dict(data.get("calls") or {})
        self.traces: dict[str, Any] = dict(data.get("traces") or {})

    def __getitem__(self, name: str) -> Any:
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def call_reference(self, name: str, args: tuple, kwargs: Mapping[str, Any]) -> Any:
        try:
            record = self.calls.get(call_key(name, args, kwargs))
        except Unrecordable:
            record = None
        if record is None:
            raise ReferenceUnavailable(unavailable_message(f"`{describe_call(name, args, kwargs)}`"))
        return decode_value(record["value"])

    def trace_reference(
        self, builder: str, shape: Sequence[int], kwargs: Mapping[str, Any], build: Callable[[], Any]
    ) -> list[LayerTrace]:
        try:
            record = self.traces.get(trace_key(builder, shape, kwargs))
        except Unrecordable:
            record = None
        if record is None:
            call = describe_call(builder, (), kwargs)
            raise ReferenceUnavailable(unavailable_message(f"model `{call}` on inputs of shape {tuple(shape)}"))
        return decode_trace(record["value"])


def load_data_references(path: Path) -> DataReferences:
    """The references recorded in the data file `path` (written by `grader release`)."""
    return DataReferences(json.loads(Path(path).read_text()))


def fresh_reference(reference: Mapping[str, Any], name: str, *args: Any, **kwargs: Any) -> Any:
    """A new result of the reference's `name(*args, **kwargs)`, not cached (e.g. a model to train)."""
    call = getattr(reference, "call_reference", None)
    return call(name, args, kwargs) if call is not None else reference[name](*args, **kwargs)
