"""Compare a student's Keras model with the reference: layer by layer, semantically.

Both models are traced (`grader.tracing.trace`: the leaf layers called in a symbolic
forward pass, with shapes, parameter counts and settings). In the sandbox the grader
traces a model it rebuilt from the student's configuration; a model it cannot rebuild
(subclassed, a Lambda or custom layer) is traced in the student's process and the trace
checked for consistency (`grader.structure`), and the result's `meta["isolation"]` says so.

`compare_structure` then aligns the *significant* layers of both traces: layers with
parameters and pooling layers. Layers that change neither shape nor parameters
(Activation, Dropout, InputLayer), reshapes (Flatten) and padding layers are skipped,
so equivalent spellings agree: ZeroPadding2D + 'valid' conv and a 'same' conv give the
same conv output; a 5x5 conv to 1x1x120 and Flatten + Dense(120) both give 120
features from 48,120 parameters (size-1 axes are ignored when comparing shapes).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

from .checks import CheckFailed, StudentCodeError
from .diagnoses import NOT_REBUILDABLE
from .tracing import (
    MAX_TRACED_LAYERS,
    LayerTrace,
    format_kernel,
    format_shape,
    significant_layers,
    squeeze,
    total_params,
    trace,
    weight_shapes,
)

__all__ = [  # the tracing names are kept here too: checks import them from the comparator
    "MAX_TRACED_LAYERS",
    "LayerTrace",
    "TracedModel",
    "call_model_builder",
    "compare_structure",
    "describe_difference",
    "difference_id",
    "ensure",
    "format_kernel",
    "format_shape",
    "likely_cause",
    "significant_layers",
    "squeeze",
    "total_params",
    "trace",
    "trace_reference",
    "trace_student",
    "weight_shapes",
]
TRACE_TARGET = "grader.sandbox.traced:describe_model"  # run in the child for a model the grader cannot rebuild


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


class TracedModel:
    """Stands for a sandboxed student's model the grader cannot rebuild: its structure is traced in the child."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return "<a keras.Model traced where your code runs>"


TracedModel.__name__ = "keras.Model (subclassed or with Python code: traced where your code runs)"


def call_model_builder(ctx: Any, builder: str, **kwargs: Any) -> Any:
    """Call the student's model builder and make sure it returned a Keras model.

    In the sandbox, a model the grader cannot rebuild comes back as a `TracedModel`.
    """
    import keras

    from .checks import describe_call, require_type

    try:
        model = ctx.call(builder, **kwargs)
    except StudentCodeError as failure:
        if ctx.executor is None or failure.diagnosis != NOT_REBUILDABLE.id:
            raise
        return TracedModel(str(failure))
    return require_type(model, keras.Model, describe_call(builder, (), kwargs), "a keras.Model")


def trace_student(ctx: Any, builder: str, shape: Sequence[int], **kwargs: Any) -> list[LayerTrace]:
    """Build the student's model with `kwargs` and trace it on inputs of `shape` (cached per context)."""

    def compute() -> list[LayerTrace]:
        from .checks import describe_call

        model = call_model_builder(ctx, builder, **kwargs)
        what = f"the model from {describe_call(builder, (), kwargs)}"
        if isinstance(model, TracedModel):
            return _traced_in_child(ctx, builder, shape, kwargs, what)
        return trace(model, shape, call=what)

    return ctx.cached(("trace-student", builder, tuple(shape), repr(sorted(kwargs.items()))), compute)


def _traced_in_child(
    ctx: Any, builder: str, shape: Sequence[int], kwargs: dict[str, Any], what: str
) -> list[LayerTrace]:
    """The trace of a model the grader cannot rebuild, made in the student's process and checked here."""
    from .structure import STRUCTURE_TRACED, validated_trace

    data = ctx.run_with_student(TRACE_TARGET, builder, tuple(int(d) for d in shape), dict(kwargs))
    layers = validated_trace(data, shape, what)
    ctx.meta.setdefault("isolation", {})["structure"] = STRUCTURE_TRACED
    return layers


def trace_reference(ctx: Any, builder: str, shape: Sequence[int], **kwargs: Any) -> list[LayerTrace]:
    """Trace the reference model built with `kwargs` on inputs of `shape` (cached per context).

    `ctx.reference` (`grader.references`) traces the solutions' model or returns the trace a
    release recorded; a plain mapping (tests) is called and traced here.
    """

    def build() -> Any:
        return ctx.reference_call(builder, **kwargs)

    def compute() -> list[LayerTrace]:
        traced_by_reference = getattr(ctx.reference, "trace_reference", None)
        if traced_by_reference is not None:
            return traced_by_reference(builder, tuple(shape), kwargs, build)
        model = build()
        traced = trace(model, shape)
        if total_params(traced) != int(model.count_params()):  # never cache a wrong reference (e.g. a racing thread)
            raise RuntimeError(
                f"the grader's trace of the reference {builder} has {total_params(traced):,} parameters, the model "
                f"{int(model.count_params()):,}: not kept"
            )
        return traced

    return ctx.cached(("trace-reference", builder, tuple(shape), repr(sorted(kwargs.items()))), compute)


def ensure(condition: bool, message: str, *, diagnosis: str | None = None) -> None:
    """Raise `CheckFailed(message, diagnosis=diagnosis)` unless `condition` holds."""
    if not condition:
        raise CheckFailed(message, diagnosis=diagnosis)
