"""q1 — LeNet-5 for 28x28 Fashion-MNIST images.

Expected figures come from the reference `solutions/q1_lenet.py`: 28x28x6 -> 14x14x6 ->
10x10x16 -> 5x5x16 -> 120 -> 84 -> 10, 61,706 parameters (LeNet-5 as in the course notes:
(5*5+1)*6 + (6*5*5+1)*16 + (5*5*16+1)*120 + (120+1)*84 + (84+1)*10).
"""

from __future__ import annotations

from ..checks import Check, Context, Question
from ..comparator import trace_student
from .common import check_builds_model, check_layer_shapes, check_output_units, check_total_params, ensure_only_layer_changes

BUILDER = "build_lenet5"
INPUT_SHAPE = (28, 28, 1)
OTHER_CLASSES = 7
OTHER_INPUT_SHAPE = (28, 28, 3)


def builds_a_model(ctx: Context) -> str:
    return check_builds_model(ctx, BUILDER)


def layer_shapes_match(ctx: Context) -> str:
    return check_layer_shapes(ctx, BUILDER, INPUT_SHAPE)


def parameter_count(ctx: Context) -> str:
    return check_total_params(ctx, BUILDER, INPUT_SHAPE, hint="count (kernel + 1 bias) x filters for each conv, (inputs + 1) x units for each dense layer")


def num_classes_is_used(ctx: Context) -> str:
    return check_output_units(ctx, BUILDER, INPUT_SHAPE, num_classes=OTHER_CLASSES)


def input_shape_is_used(ctx: Context) -> str:
    student = trace_student(ctx, BUILDER, OTHER_INPUT_SHAPE, input_shape=OTHER_INPUT_SHAPE)
    ensure_only_layer_changes(f"input_shape={OTHER_INPUT_SHAPE}", trace_student(ctx, BUILDER, INPUT_SHAPE), student, 0, "C1")
    return f"input_shape={OTHER_INPUT_SHAPE} works"


QUESTION = Question(
    id="q1",
    title="LeNet-5 for Fashion-MNIST",
    module="q1_lenet",
    names=(BUILDER,),
    checks=(
        Check("builds a keras.Model", 1, builds_a_model),
        Check("layer output shapes match LeNet-5", 4, layer_shapes_match),
        Check("parameter count", 2, parameter_count),
        Check("num_classes is honoured", 2, num_classes_is_used),
        Check("input_shape is honoured", 1, input_shape_is_used, hidden=True),
    ),
)
