"""q1 — LeNet-5 for 28x28 Fashion-MNIST images.

Expected figures come from the reference `solutions/q1_lenet.py`: 28x28x6 -> 14x14x6 ->
10x10x16 -> 5x5x16 -> 120 -> 84 -> 10, 61,706 parameters (LeNet-5 as in the course notes:
(5*5+1)*6 + (6*5*5+1)*16 + (5*5*16+1)*120 + (120+1)*84 + (84+1)*10).
"""

from __future__ import annotations

from collections.abc import Callable

from ..checks import Check, CheckFailed, Context, Question
from ..comparator import significant_layers, trace_reference, trace_student
from ..diagnoses import Diagnosis
from .common import (
    ARGUMENT_CHANGES_OTHERS,
    OUTPUT_UNITS_DIAGNOSES,
    PARAMETER_COUNT_DIAGNOSES,
    STRUCTURE,
    WRONG_FAN_IN,
    WRONG_PADDING,
    check_builds_model,
    check_layer_shapes,
    check_output_units,
    check_total_params,
    ensure_only_layer_changes,
)

BUILDER = "build_lenet5"
INPUT_SHAPE = (28, 28, 1)
OTHER_CLASSES = 7
OTHER_INPUT_SHAPE = (28, 28, 3)


C1_VALID_PADDING = Diagnosis("c1-valid-padding", "LeNet-5's C1 uses padding='valid' on 28x28 input (needs 'same')")


def _c1_valid_padding(ctx: Context) -> bool:
    """The student's first layer is C1 with padding='valid' where the reference keeps 28x28."""
    student = significant_layers(trace_student(ctx, BUILDER, INPUT_SHAPE))
    reference = significant_layers(trace_reference(ctx, BUILDER, INPUT_SHAPE))
    if not student or not reference or not (student[0].is_conv and reference[0].is_conv):
        return False
    first = student[0]
    return first.config.get("padding") == "valid" and first.output_shape[:-1] != reference[0].output_shape[:-1]


def _with_c1_diagnosis(ctx: Context, check: Callable[[], str]) -> str:
    """`check()`, its padding failures diagnosed as C1's padding='valid' when that is what they are."""
    try:
        return check()
    except CheckFailed as failure:
        if failure.diagnosis in (WRONG_PADDING.id, WRONG_FAN_IN.id) and _c1_valid_padding(ctx):
            raise CheckFailed(str(failure), diagnosis=C1_VALID_PADDING.id) from None
        raise


def builds_a_model(ctx: Context) -> str:
    return check_builds_model(ctx, BUILDER)


def layer_shapes_match(ctx: Context) -> str:
    return _with_c1_diagnosis(ctx, lambda: check_layer_shapes(ctx, BUILDER, INPUT_SHAPE))


def parameter_count(ctx: Context) -> str:
    hint = "count (kernel + 1 bias) x filters for each conv, (inputs + 1) x units for each dense layer"
    return _with_c1_diagnosis(ctx, lambda: check_total_params(ctx, BUILDER, INPUT_SHAPE, hint=hint))


def num_classes_is_used(ctx: Context) -> str:
    return check_output_units(ctx, BUILDER, INPUT_SHAPE, num_classes=OTHER_CLASSES)


def input_shape_is_used(ctx: Context) -> str:
    student = trace_student(ctx, BUILDER, OTHER_INPUT_SHAPE, input_shape=OTHER_INPUT_SHAPE)
    ensure_only_layer_changes(
        f"input_shape={OTHER_INPUT_SHAPE}", trace_student(ctx, BUILDER, INPUT_SHAPE), student, 0, "C1"
    )
    return f"input_shape={OTHER_INPUT_SHAPE} works"


QUESTION = Question(
    id="q1",
    title="LeNet-5 for Fashion-MNIST",
    module="q1_lenet",
    names=(BUILDER,),
    checks=(
        Check("builds a keras.Model", 1, builds_a_model),
        Check("layer output shapes match LeNet-5", 4, layer_shapes_match, diagnoses=(C1_VALID_PADDING, *STRUCTURE)),
        Check("parameter count", 2, parameter_count, diagnoses=(C1_VALID_PADDING, *PARAMETER_COUNT_DIAGNOSES)),
        Check("num_classes is honoured", 2, num_classes_is_used, diagnoses=OUTPUT_UNITS_DIAGNOSES),
        Check("input_shape is honoured", 1, input_shape_is_used, hidden=True, diagnoses=(ARGUMENT_CHANGES_OTHERS,)),
    ),
)
