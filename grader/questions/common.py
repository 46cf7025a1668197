"""Checks shared by the model-building questions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..checks import CheckFailed, Context
from ..comparator import LayerTrace, call_model_builder, compare_structure, ensure, format_shape, significant_layers, squeeze, total_params, trace_reference, trace_student


def check_builds_model(ctx: Context, builder: str) -> str:
    """The builder returns a keras.Model."""
    model = call_model_builder(ctx, builder)
    return f"{builder}() returns a {type(model).__name__}"


def check_layer_shapes(ctx: Context, builder: str, input_shape: Sequence[int]) -> str:
    """The student's significant layers match the reference's on `input_shape`."""
    return compare_structure(trace_reference(ctx, builder, input_shape), trace_student(ctx, builder, input_shape))


def check_total_params(ctx: Context, builder: str, input_shape: Sequence[int], *, hint: str, known_totals: dict[int, str] | None = None) -> str:
    """The built model's parameter count equals the reference's; known wrong totals get their explanation."""
    expected = total_params(trace_reference(ctx, builder, input_shape))
    actual = total_params(trace_student(ctx, builder, input_shape))
    if actual != expected:
        known = (known_totals or {}).get(actual)
        detail = f" {known}" if known else f" The difference is {actual - expected:+,}: {hint}."
        ensure(False, f"Your model has {actual:,} parameters, expected {expected:,}.{detail}")
    return f"{actual:,} parameters"


def check_output_units(ctx: Context, builder: str, input_shape: Sequence[int], **kwargs: Any) -> str:
    """With another `num_classes` the output layer and the parameter count follow."""
    num_classes = kwargs["num_classes"]
    default = trace_student(ctx, builder, input_shape)
    student = trace_student(ctx, builder, input_shape, **kwargs)
    out_default, out = squeeze(default[-1].output_shape), squeeze(student[-1].output_shape)
    if out != (num_classes,):
        stuck = out == squeeze(trace_reference(ctx, builder, input_shape)[-1].output_shape)
        hint = (
            " The class count looks hard-coded: use the num_classes argument in the last Dense layer."
            if stuck or out == out_default
            else ""
        )
        ensure(False, f"With num_classes={num_classes} the model outputs {format_shape(out)} values per image, expected {num_classes}.{hint}")
    ensure_only_layer_changes(f"num_classes={num_classes}", default, student, -1, "the output layer")
    return f"num_classes={num_classes} gives {num_classes} outputs"


def ensure_only_layer_changes(change: str, before: Sequence[LayerTrace], after: Sequence[LayerTrace], index: int, which: str) -> None:
    """Building with another argument changes only one layer of the student's own model.

    Comparing the student's model with itself keeps one structural mistake from being
    charged again in every check that builds the model with other arguments.
    """
    old, new = significant_layers(before), significant_layers(after)
    ensure(len(old) == len(new), f"With {change} your model has {len(new)} layers with weights or pooling instead of {len(old)}.")
    position = index % len(old)
    for i, (a, b) in enumerate(zip(old, new)):
        if i != position and a.signature != b.signature:
            raise CheckFailed(
                f"With {change} your layer '{b.name}' changes too ({a.describe()} became {b.describe()}): only {which} should change."
            )
