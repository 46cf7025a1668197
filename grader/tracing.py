"""Trace a Keras model symbolically: the leaf layers it calls, in call order, as data (`LayerTrace`).

`trace` runs one *symbolic* forward pass (placeholders in a scratch graph: shapes only, no
activation is computed, so a student-controlled architecture costs the grader no real
work) and records every leaf layer that was called, in call order, with its input and
output shapes, parameter count and plain settings. It works the same for Sequential,
functional and subclassed models, nested models included. Tracing patches
`Layer.__call__` under a process-wide lock, and the patch records only the tracing
thread's calls: a Dask worker grading in several threads gets a correct trace in each.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from .checks import StudentCodeError, explain_exception
from .patching import patched

# The settings of a layer a trace keeps (plain values: numbers, strings, tuples of ints).
CONFIG_KEYS = (
    "filters", "kernel_size", "strides", "padding", "units", "use_bias", "pool_size", "rate", "activation",
    "dilation_rate", "groups", "depth_multiplier", "data_format", "axis", "center", "scale", "keepdims",
    "target_shape",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class LayerTrace:
    """One call of a leaf layer during the traced forward pass.

    `uid` tells layers apart: calls of one layer object share it (-1: unknown, then the
    name stands for the layer).
    """

    name: str
    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int
    config: dict[str, Any]
    uid: int = -1

    @property
    def significant(self) -> bool:
        return self.params > 0 or "Pooling" in self.kind

    @property
    def signature(self) -> tuple[tuple[int, ...], int]:
        return squeeze(self.output_shape), self.params

    @property
    def is_conv(self) -> bool:
        return "kernel_size" in self.config

    @property
    def is_dense(self) -> bool:
        return "units" in self.config

    def describe(self) -> str:
        what = self.kind
        if self.is_conv:
            what = f"{self.kind} {self.config.get('filters', '')}@{format_kernel(self.config['kernel_size'])}"
        elif self.is_dense:
            what = f"Dense {self.config['units']}"
        return f"{what} -> {format_shape(self.output_shape)}, {self.params:,} parameters"


def squeeze(shape: Sequence[int]) -> tuple[int, ...]:
    """Drop size-1 axes: 1x1x120 and 120 are the same features."""
    return tuple(int(d) for d in shape if d != 1) or (1,)


def format_shape(shape: Sequence[int]) -> str:
    return "x".join(str(int(d)) for d in shape)


def format_kernel(kernel: Any) -> str:
    if isinstance(kernel, (tuple, list)):
        return "x".join(str(k) for k in kernel)
    return f"{kernel}x{kernel}"


def significant_layers(layers: Sequence[LayerTrace]) -> list[LayerTrace]:
    return [layer for layer in layers if layer.significant]


def total_params(layers: Sequence[LayerTrace]) -> int:
    """Parameters of the traced model: each layer counted once, however often it was called."""
    seen: dict[tuple[int, str], int] = {}
    for layer in layers:
        seen.setdefault((layer.uid, layer.name if layer.uid < 0 else ""), layer.params)
    return sum(seen.values())


def _shape_of(value: Any) -> tuple[int, ...] | None:
    import keras

    for item in keras.tree.flatten(value):
        if hasattr(item, "shape"):
            return tuple(int(d) if d is not None else -1 for d in item.shape)
    return None


def _plain(value: Any) -> Any:
    """A setting as a plain value (lists become tuples; anything else its short text)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return tuple(value)
    return str(value)[:100]


def _layer_config(layer: Any) -> dict[str, Any]:
    try:
        config = layer.get_config()
    except Exception:  # noqa: BLE001 - a layer whose get_config fails is described without its settings
        return {}
    return {k: _plain(config[k]) for k in CONFIG_KEYS if k in config}


MAX_TRACED_LAYERS = 500  # leaf layer calls (and layers) of a model the grader traces; the exercises' have a few dozen
_TRACE_LOCK = threading.Lock()  # one trace at a time: the patch of `Layer.__call__` is class-wide


class _TooManyLayers(Exception):
    """Raised inside a trace when the model calls more than `MAX_TRACED_LAYERS` layers."""


def trace(model: Any, input_shape: Sequence[int], *, batch: int = 2, call: str = "the model") -> list[LayerTrace]:
    """Call `model` symbolically on a batch of `input_shape` in inference mode; record each leaf layer it calls.

    Raises `StudentCodeError` when the model cannot be called on such an input, or calls
    more than `MAX_TRACED_LAYERS` layers.
    """
    import keras

    records: list[LayerTrace] = []
    uids: dict[int, int] = {}
    depth = [0]
    owner = threading.get_ident()
    if _count_layers(model) > MAX_TRACED_LAYERS:  # refused before any work
        raise StudentCodeError(too_many_layers(call))

    with _TRACE_LOCK:
        original_call = keras.layers.Layer.__call__

        def recording_call(layer, *args, **kwargs):
            if isinstance(layer, keras.Model) or threading.get_ident() != owner:
                return original_call(layer, *args, **kwargs)
            depth[0] += 1
            try:
                outputs = original_call(layer, *args, **kwargs)
            finally:
                depth[0] -= 1
            if depth[0] == 0:
                if len(records) >= MAX_TRACED_LAYERS:
                    raise _TooManyLayers()
                in_shape = _shape_of(args[0] if args else next(iter(kwargs.values()), None))
                out_shape = _shape_of(outputs)
                records.append(
                    LayerTrace(
                        name=layer.name,
                        kind=type(layer).__name__,
                        input_shape=tuple(in_shape[1:]) if in_shape else (),
                        output_shape=tuple(out_shape[1:]) if out_shape else (),
                        params=int(sum(int(np.prod(w.shape)) for w in layer.weights)),
                        config=_layer_config(layer),
                        uid=uids.setdefault(id(layer), len(uids)),
                    )
                )
            return outputs

        try:
            if not getattr(model, "built", True):  # building calls the layers once more: not recorded
                _symbolic_call(keras, model, (batch, *input_shape))
            with patched([keras.layers.Layer], "__call__", recording_call):
                _symbolic_call(keras, model, (batch, *input_shape))
        except _TooManyLayers:
            raise StudentCodeError(too_many_layers(call)) from None
        except Exception as error:  # noqa: BLE001 - whatever the student's model raises is reported to the student
            raise StudentCodeError(
                explain_exception(f"{call} on an input of shape {(batch, *input_shape)}", error)
            ) from None
    return records


def too_many_layers(call: str) -> str:
    return (
        f"{call} has more than {MAX_TRACED_LAYERS:,} layers: the grader does not inspect a model that large "
        "(the models of these exercises have a few dozen)."
    )


def _count_layers(model: Any) -> int:
    """The layers inside `model`, nested ones included (0 where Keras cannot list them)."""
    try:
        return sum(1 for _ in model._flatten_layers(include_self=False, recursive=True))
    except Exception:  # noqa: BLE001 - not a Keras layer: the trace reports what is wrong with it
        return 0


def _symbolic_call(keras: Any, model: Any, shape: tuple[int, ...]) -> Any:
    """`model(x, training=False)` on a placeholder `x` of `shape`: shapes are inferred, nothing is computed."""
    from keras.src import backend

    spec = keras.KerasTensor(shape, dtype="float32")
    return backend.compute_output_spec(lambda x: model(x, training=False), spec)


def weight_shapes(model: Any) -> list[tuple[int, ...]]:
    """The shapes of a model's weights, in order: what a sandboxed process must hand back unchanged after training."""
    return [tuple(int(d) for d in w.shape) for w in getattr(model, "weights", [])]
