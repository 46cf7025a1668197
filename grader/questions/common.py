"""Checks shared by the model-building questions, and the diagnoses their failures carry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..checks import CheckFailed, Context
from ..comparator import (
    LayerTrace,
    call_model_builder,
    compare_structure,
    format_shape,
    significant_layers,
    squeeze,
    total_params,
    trace_reference,
    trace_student,
)
from ..diagnoses import Diagnosis

# What `grader.comparator.compare_structure` finds (its failures carry these ids).
MISSING_LAYER = Diagnosis("missing-layer", "a layer of the architecture is missing")
EXTRA_LAYER = Diagnosis("extra-layer", "a layer the architecture does not have was added")
WRONG_FILTERS = Diagnosis("wrong-filters", "a convolution has the wrong number of filters")
WRONG_KERNEL = Diagnosis("wrong-kernel", "a convolution has the wrong kernel size")
WRONG_STRIDES = Diagnosis("wrong-strides", "a convolution has the wrong strides")
WRONG_PADDING = Diagnosis("wrong-padding", "a convolution is padded wrongly: its output has the wrong size")
WRONG_UNITS = Diagnosis("wrong-units", "a dense layer has the wrong number of units")
WRONG_POOLING = Diagnosis("wrong-pooling", "a pooling layer has the wrong window or stride")
WRONG_LAYER_KIND = Diagnosis("wrong-layer-kind", "another kind of layer where the architecture has a different one")
LAYER_BIAS_MISSING = Diagnosis("layer-bias-missing", "a layer was built without biases (use_bias=False)")
LAYER_BIAS_EXTRA = Diagnosis("layer-bias-extra", "a layer has biases where the architecture has none")
WRONG_FAN_IN = Diagnosis("wrong-fan-in", "a layer sees the wrong number of inputs: an earlier shape is off")
STRUCTURE = (
    MISSING_LAYER, EXTRA_LAYER, WRONG_FILTERS, WRONG_KERNEL, WRONG_STRIDES, WRONG_PADDING, WRONG_UNITS,
    WRONG_POOLING, WRONG_LAYER_KIND, LAYER_BIAS_MISSING, LAYER_BIAS_EXTRA, WRONG_FAN_IN,
)  # fmt: skip

PARAMETER_COUNT = Diagnosis("parameter-count-differs", "the model's parameter count differs from the architecture's")
NUM_CLASSES_HARD_CODED = Diagnosis("num-classes-hard-coded", "the class count is hard-coded: num_classes is ignored")
NUM_CLASSES_WRONG = Diagnosis("num-classes-wrong-output", "the output layer does not follow num_classes")
ARGUMENT_CHANGES_OTHERS = Diagnosis(
    "argument-changes-other-layers", "building with another argument changes layers it should leave alone"
)
PARAMETER_COUNT_DIAGNOSES = (PARAMETER_COUNT, *STRUCTURE)
OUTPUT_UNITS_DIAGNOSES = (NUM_CLASSES_HARD_CODED, NUM_CLASSES_WRONG, ARGUMENT_CHANGES_OTHERS)


def check_builds_model(ctx: Context, builder: str) -> str:
    """The builder returns a keras.Model."""
    model = call_model_builder(ctx, builder)
    return f"{builder}() returns a {type(model).__name__}"


def check_layer_shapes(ctx: Context, builder: str, input_shape: Sequence[int]) -> str:
    """The student's significant layers match the reference's on `input_shape`."""
    return compare_structure(trace_reference(ctx, builder, input_shape), trace_student(ctx, builder, input_shape))


def structure_diagnosis(ctx: Context, builder: str, input_shape: Sequence[int]) -> str | None:
    """The diagnosis of the first structural difference from the reference (None: the layers match)."""
    try:
        check_layer_shapes(ctx, builder, input_shape)
    except CheckFailed as failure:
        return failure.diagnosis
    return None


def check_total_params(
    ctx: Context,
    builder: str,
    input_shape: Sequence[int],
    *,
    hint: str,
    known_totals: dict[int, str] | None = None,
    known_diagnoses: dict[int, str] | None = None,
) -> str:
    """The built model's parameter count equals the reference's; known wrong totals get their explanation.

    An unknown wrong total is diagnosed as the structural difference behind it, if any.
    """
    expected = total_params(trace_reference(ctx, builder, input_shape))
    actual = total_params(trace_student(ctx, builder, input_shape))
    if actual != expected:
        known = (known_totals or {}).get(actual)
        detail = f" {known}" if known else f" The difference is {actual - expected:+,}: {hint}."
        diagnosis = (known_diagnoses or {}).get(actual) or structure_diagnosis(ctx, builder, input_shape)
        raise CheckFailed(
            f"Your model has {actual:,} parameters, expected {expected:,}.{detail}",
            diagnosis=diagnosis or PARAMETER_COUNT.id,
        )
    return f"{actual:,} parameters"


def check_output_units(ctx: Context, builder: str, input_shape: Sequence[int], **kwargs: Any) -> str:
    """With another `num_classes` the output layer and the parameter count follow."""
    num_classes = kwargs["num_classes"]
    default = trace_student(ctx, builder, input_shape)
    student = trace_student(ctx, builder, input_shape, **kwargs)
    out_default, out = squeeze(default[-1].output_shape), squeeze(student[-1].output_shape)
    if out != (num_classes,):
        stuck = out == squeeze(trace_reference(ctx, builder, input_shape)[-1].output_shape)
        hard_coded = stuck or out == out_default
        hint = (
            " The class count looks hard-coded: use the num_classes argument in the last Dense layer."
            if hard_coded
            else ""
        )
        raise CheckFailed(
            f"With num_classes={num_classes} the model outputs {format_shape(out)} values per image, expected {num_classes}.{hint}",
            diagnosis=NUM_CLASSES_HARD_CODED.id if hard_coded else NUM_CLASSES_WRONG.id,
        )
    ensure_only_layer_changes(f"num_classes={num_classes}", default, student, -1, "the output layer")
    return f"num_classes={num_classes} gives {num_classes} outputs"


def ensure_only_layer_changes(
    change: str, before: Sequence[LayerTrace], after: Sequence[LayerTrace], index: int, which: str
) -> None:
    """Building with another argument changes only one layer of the student's own model.

    Comparing the student's model with itself keeps one structural mistake from being
    charged again in every check that builds the model with other arguments.
    """
    old, new = significant_layers(before), significant_layers(after)
    if len(old) != len(new):
        raise CheckFailed(
            f"With {change} your model has {len(new)} layers with weights or pooling instead of {len(old)}.",
            diagnosis=ARGUMENT_CHANGES_OTHERS.id,
        )
    position = index % len(old)
    for i, (a, b) in enumerate(zip(old, new)):
        if i != position and a.signature != b.signature:
            raise CheckFailed(
                f"With {change} your layer '{b.name}' changes too ({a.describe()} became {b.describe()}): only {which} should change.",
                diagnosis=ARGUMENT_CHANGES_OTHERS.id,
            )
