"""Compare a student's Keras model with the reference: layer by layer, semantically.

`trace` runs one *symbolic* forward pass (placeholders in a scratch graph: shapes only, no
activation is computed, so a student-controlled architecture costs the grader no real
work) and records every leaf layer that was called, in call order, with its output shape
and parameter count. It works the same for Sequential, functional and subclassed models,
nested models included. Tracing patches `Layer.__call__` under a process-wide lock, and
the patch records only the tracing thread's calls: a Dask worker grading in several
threads gets a correct trace in each.

`compare_structure` then aligns the *significant* layers of both traces: layers with
parameters and pooling layers. Layers that change neither shape nor parameters
(Activation, Dropout, InputLayer), reshapes (Flatten) and padding layers are skipped,
so equivalent spellings agree: ZeroPadding2D + 'valid' conv and a 'same' conv give the
same conv output; a 5x5 conv to 1x1x120 and Flatten + Dense(120) both give 120
features from 48,120 parameters (size-1 axes are ignored when comparing shapes).
"""

from __future__ import annotations

import dataclasses
import difflib
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from .checks import CheckFailed, StudentCodeError, explain_exception
from .patching import patched


@dataclasses.dataclass(frozen=True)
class LayerTrace:
    """One call of a leaf layer during the traced forward pass."""

    name: str
    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int
    config: dict[str, Any]

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


def _shape_of(value: Any) -> tuple[int, ...] | None:
    import keras

    for item in keras.tree.flatten(value):
        if hasattr(item, "shape"):
            return tuple(int(d) if d is not None else -1 for d in item.shape)
    return None


def _layer_config(layer: Any) -> dict[str, Any]:
    keys = ("filters", "kernel_size", "strides", "padding", "units", "use_bias", "pool_size", "rate", "activation")
    try:
        config = layer.get_config()
    except Exception:  # noqa: BLE001 - a layer whose get_config fails is described without its settings
        return {}
    return {k: config[k] for k in keys if k in config}


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
    depth = [0]
    owner = threading.get_ident()
    if _count_layers(model) > MAX_TRACED_LAYERS:  # refused before any work
        raise StudentCodeError(_too_many_layers(call))

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
                    )
                )
            return outputs

        try:
            with patched([keras.layers.Layer], "__call__", recording_call):
                _symbolic_call(keras, model, (batch, *input_shape))
        except _TooManyLayers:
            raise StudentCodeError(_too_many_layers(call)) from None
        except Exception as error:  # noqa: BLE001 - whatever the student's model raises is reported to the student
            raise StudentCodeError(
                explain_exception(f"{call} on an input of shape {(batch, *input_shape)}", error)
            ) from None
    return records


def _too_many_layers(call: str) -> str:
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


def significant_layers(layers: Sequence[LayerTrace]) -> list[LayerTrace]:
    return [layer for layer in layers if layer.significant]


def compare_structure(reference: Sequence[LayerTrace], student: Sequence[LayerTrace]) -> str:
    """Return a pass message, or raise `CheckFailed` naming the first layer that differs."""
    expected = significant_layers(reference)
    actual = significant_layers(student)
    matcher = difflib.SequenceMatcher(
        None, [e.signature for e in expected], [a.signature for a in actual], autojunk=False
    )
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        previous = f"after {expected[i1 - 1].name}" if i1 > 0 else "at the start"
        if tag == "delete" or (tag == "replace" and len(actual) < len(expected) and (i2 - i1) > (j2 - j1)):
            missing = expected[i1]
            found = f"; your model has {_theirs(actual[j1])} there" if j1 < len(actual) else ""
            raise CheckFailed(
                f"Missing layer {previous}: the reference has {missing.name} ({missing.describe()}){found}. "
                f"Your model has {len(actual)} layers with weights or pooling, the reference {len(expected)}.",
                diagnosis="missing-layer",
            )
        if tag == "insert" or (tag == "replace" and len(actual) > len(expected) and (j2 - j1) > (i2 - i1)):
            extra = actual[j1]
            raise CheckFailed(
                f"Extra layer {previous}: {_theirs(extra)} has no counterpart in the reference "
                f"(which continues with {expected[i1].name if i1 < len(expected) else 'nothing'}). "
                f"Your model has {len(actual)} layers with weights or pooling, the reference {len(expected)}.",
                diagnosis="extra-layer",
            )
        raise CheckFailed(
            describe_difference(expected[i1], actual[j1]), diagnosis=difference_id(expected[i1], actual[j1])
        )
    return f"all {len(expected)} layers match ({', '.join(e.name for e in expected)})"


def _theirs(layer: LayerTrace) -> str:
    return f"your layer '{layer.name}' ({layer.describe()})"


def describe_difference(expected: LayerTrace, actual: LayerTrace) -> str:
    """What differs between two aligned layers, and the likely fix."""
    head = (
        f"{expected.name} (your layer '{actual.name}') gives {format_shape(actual.output_shape)} "
        f"with {actual.params:,} parameters, expected {format_shape(expected.output_shape)} "
        f"with {expected.params:,}"
    )
    return f"{head}: {likely_cause(expected, actual)}"


def difference_id(expected: LayerTrace, actual: LayerTrace) -> str:
    """The diagnosis id of what `likely_cause` says (the ids are declared in `grader.questions.common`)."""
    exp_shape, act_shape = squeeze(expected.output_shape), squeeze(actual.output_shape)
    if expected.is_conv and actual.is_conv:
        if expected.output_shape[-1] != actual.output_shape[-1]:
            return "wrong-filters"
        if tuple(expected.config.get("kernel_size") or ()) != tuple(actual.config.get("kernel_size") or ()):
            return "wrong-kernel"
        if expected.output_shape[:-1] != actual.output_shape[:-1]:
            same_strides = tuple(actual.config.get("strides", ())) == tuple(expected.config.get("strides", ()))
            return "wrong-padding" if same_strides else "wrong-strides"
        return _bias_or_inputs_id(expected, actual, expected.output_shape[-1])
    if expected.is_dense and actual.is_dense or (exp_shape and len(exp_shape) == 1 and len(act_shape) == 1):
        if exp_shape[-1] != act_shape[-1]:
            return "wrong-units"
        return _bias_or_inputs_id(expected, actual, exp_shape[-1])
    if "Pooling" in expected.kind and "Pooling" in actual.kind:
        return "wrong-pooling"
    return "wrong-layer-kind"


def _bias_or_inputs_id(expected: LayerTrace, actual: LayerTrace, outputs: int) -> str:
    if actual.params == expected.params - outputs:
        return "layer-bias-missing"
    if actual.params == expected.params + outputs and not expected.config.get("use_bias", True):
        return "layer-bias-extra"
    return "wrong-fan-in"


def likely_cause(expected: LayerTrace, actual: LayerTrace) -> str:
    exp_shape, act_shape = squeeze(expected.output_shape), squeeze(actual.output_shape)
    if expected.is_conv and actual.is_conv:
        return _conv_cause(expected, actual)
    if expected.is_dense and actual.is_dense or (exp_shape and len(exp_shape) == 1 and len(act_shape) == 1):
        units_e, units_a = exp_shape[-1], act_shape[-1]
        if units_e != units_a:
            return f"it has {units_a} units, expected {units_e}."
        return _bias_or_inputs(expected, actual, units_e)
    if "Pooling" in expected.kind and "Pooling" in actual.kind:
        return (
            f"check the pooling window and stride (yours: pool_size={actual.config.get('pool_size')}, "
            f"strides={actual.config.get('strides')}; expected pool_size={expected.config.get('pool_size')}, "
            f"strides={expected.config.get('strides')})."
        )
    return f"expected a {expected.kind} here, found a {actual.kind}."


def _conv_cause(expected: LayerTrace, actual: LayerTrace) -> str:
    filters_e, filters_a = expected.output_shape[-1], actual.output_shape[-1]
    if filters_e != filters_a:
        return f"it has {filters_a} filters, expected {filters_e}."
    kernel_e, kernel_a = expected.config.get("kernel_size"), actual.config.get("kernel_size")
    if tuple(kernel_e or ()) != tuple(kernel_a or ()):
        return f"its kernel is {format_kernel(kernel_a)}, expected {format_kernel(kernel_e)}."
    spatial_e, spatial_a = expected.output_shape[:-1], actual.output_shape[:-1]
    if spatial_e != spatial_a:
        if tuple(actual.config.get("strides", ())) != tuple(expected.config.get("strides", ())):
            return f"its strides are {actual.config.get('strides')}, expected {expected.config.get('strides')}."
        padding = actual.config.get("padding")
        return f"{_padding_hint(actual, spatial_e)} (yours: padding='{padding}')."
    return _bias_or_inputs(expected, actual, filters_e)


def _padding_hint(actual: LayerTrace, spatial_expected: Sequence[int]) -> str:
    """How to pad the input of a conv so that it gives `spatial_expected`."""
    kernel = actual.config.get("kernel_size", (1, 1))
    strides = actual.config.get("strides", (1, 1))
    inputs = actual.input_shape[:-1]
    same = all(-(-w // s) == o for w, s, o in zip(inputs, strides, spatial_expected))
    size_in = format_shape(inputs)
    if same:
        return (
            f"use padding='same' on {size_in} input (or zero-pad the input first) so the output is "
            f"{format_shape(spatial_expected)}"
        )
    pads: list[int | None] = []
    for w, k, s, o in zip(inputs, kernel, strides, spatial_expected):
        low, high = (o - 1) * s + k - w, o * s + k - w - 1  # total padding that floors to o
        even = [p for p in range(max(low, 0), high + 1) if p % 2 == 0]
        pads.append(even[0] // 2 if even else None)
    first = pads[0] if pads else None
    if first is not None and None not in pads and len(set(pads)) == 1 and first > 0:
        return (
            f"on {size_in} input it needs {pads[0]} pixels of zero padding on each side: put "
            f"keras.layers.ZeroPadding2D({pads[0]}) before it and keep padding='valid' "
            f"(padding='same' would not give {format_shape(spatial_expected)} here)"
        )
    return f"check the padding and strides: the output should be {format_shape(spatial_expected)}"


def _bias_or_inputs(expected: LayerTrace, actual: LayerTrace, outputs: int) -> str:
    if actual.params == expected.params - outputs:
        return "it has no bias: remove use_bias=False (every output channel or unit has one bias)."
    if actual.params == expected.params + outputs and not expected.config.get("use_bias", True):
        return "it has a bias where the reference has none (use_bias=False)."
    fan_in_e = expected.params // outputs - 1
    fan_in_a = actual.params // outputs - 1
    return (
        f"each output sees {fan_in_a:,} inputs instead of {fan_in_e:,}: the layers before it produce "
        f"a different shape (check the flatten and the padding of earlier layers)."
    )


def call_model_builder(ctx: Any, builder: str, **kwargs: Any) -> Any:
    """Call the student's model builder and make sure it returned a Keras model."""
    import keras

    from .checks import describe_call, require_type

    model = ctx.call(builder, **kwargs)
    return require_type(model, keras.Model, describe_call(builder, (), kwargs), "a keras.Model")


def trace_student(ctx: Any, builder: str, shape: Sequence[int], **kwargs: Any) -> list[LayerTrace]:
    """Build the student's model with `kwargs` and trace it on inputs of `shape` (cached per context)."""

    def compute() -> list[LayerTrace]:
        from .checks import describe_call

        model = call_model_builder(ctx, builder, **kwargs)
        return trace(model, shape, call=f"the model from {describe_call(builder, (), kwargs)}")

    return ctx.cached(("trace-student", builder, tuple(shape), repr(sorted(kwargs.items()))), compute)


def trace_reference(ctx: Any, builder: str, shape: Sequence[int], **kwargs: Any) -> list[LayerTrace]:
    """Trace the reference model built with `kwargs` on inputs of `shape` (cached per context)."""

    def compute() -> list[LayerTrace]:
        model = ctx.reference_call(builder, **kwargs)
        traced = trace(model, shape)
        if total_params(traced) != int(model.count_params()):  # never cache a wrong reference (e.g. a racing thread)
            raise RuntimeError(
                f"the grader's trace of the reference {builder} has {total_params(traced):,} parameters, the model "
                f"{int(model.count_params()):,}: not kept"
            )
        return traced

    return ctx.cached(("trace-reference", builder, tuple(shape), repr(sorted(kwargs.items()))), compute)


def total_params(layers: Sequence[LayerTrace]) -> int:
    """Parameters of the traced model: each layer counted once, however often it was called."""
    seen: dict[str, int] = {}
    for layer in layers:
        seen.setdefault(layer.name, layer.params)
    return sum(seen.values())


def weight_shapes(model: Any) -> list[tuple[int, ...]]:
    """The shapes of a model's weights, in order: what a sandboxed process must hand back unchanged after training."""
    return [tuple(int(d) for d in w.shape) for w in getattr(model, "weights", [])]


def ensure(condition: bool, message: str, *, diagnosis: str | None = None) -> None:
    """Raise `CheckFailed(message, diagnosis=diagnosis)` unless `condition` holds."""
    if not condition:
        raise CheckFailed(message, diagnosis=diagnosis)
