"""q4 — AlexNet (the course's torchvision layout) and its layer output shapes.

Expected figures come from the reference `solutions/q4_alexnet.py`: for a 224x224x3 input
55x55x64, 27x27x64, 27x27x192, 13x13x192, 13x13x384, 13x13x256, 13x13x256, 6x6x256,
then 9216 -> 4096 -> 4096 -> 1000, with 61,100,840 parameters.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..checks import Check, CheckFailed, Context, Question, StudentCodeError, describe_call
from ..comparator import LayerTrace, ensure, trace_reference, trace_student
from ..diagnoses import Diagnosis
from .alexnet_slips import DIAGNOSES as ALEXNET_SLIPS
from .alexnet_slips import known_alexnet_diagnoses, known_alexnet_totals
from .common import (
    OUTPUT_UNITS_DIAGNOSES,
    PARAMETER_COUNT_DIAGNOSES,
    STRUCTURE,
    check_builds_model,
    check_layer_shapes,
    check_output_units,
    check_total_params,
)

BUILDER = "build_alexnet"
SHAPES = "layer_output_shapes"
INPUT_SHAPE = (224, 224, 3)
OTHER_CLASSES = 10
OTHER_DROPOUT = 0.3

DROPOUT_COUNT = Diagnosis("dropout-count-wrong", "the wrong number of Dropout layers (two, in the classifier)")
DROPOUT_RATE_IGNORED = Diagnosis("dropout-argument-ignored", "the dropout argument does not reach keras.layers.Dropout")
DROPOUT_OUTSIDE_CLASSIFIER = Diagnosis(
    "dropout-outside-classifier", "Dropout outside the classifier (e.g. after a conv)"
)
SHAPES_NOT_A_LIST = Diagnosis("shapes-not-pairs", "layer_output_shapes does not return (layer_name, shape) pairs")
SHAPES_COUNT = Diagnosis("shapes-entry-count", "layer_output_shapes returns the wrong number of entries")
SHAPES_NAMES = Diagnosis("shapes-layer-names", "layer_output_shapes does not use each layer's .name in order")
BATCH_DROPPED = Diagnosis("batch-dimension-dropped", "layer shapes reported without the batch dimension")
SHAPES_NOT_CHAINED = Diagnosis("shapes-not-chained", "each layer is not fed the previous layer's output")
SHAPES_NOT_PRINTED = Diagnosis("shapes-not-printed", "layer_output_shapes does not print the layers")
SHAPES_DIAGNOSES = (
    SHAPES_NOT_A_LIST, SHAPES_COUNT, SHAPES_NAMES, BATCH_DROPPED, SHAPES_NOT_CHAINED, SHAPES_NOT_PRINTED,
)  # fmt: skip


def builds_a_model(ctx: Context) -> str:
    return check_builds_model(ctx, BUILDER)


def layer_shapes_match(ctx: Context) -> str:
    return check_layer_shapes(ctx, BUILDER, INPUT_SHAPE)


def parameter_count(ctx: Context) -> str:
    return check_total_params(
        ctx,
        BUILDER,
        INPUT_SHAPE,
        known_totals=known_alexnet_totals(),
        known_diagnoses=known_alexnet_diagnoses(),
        hint="compare each layer's count with (kh*kw*in + 1) x out for convs and (in + 1) x out for dense layers",
    )


def num_classes_is_used(ctx: Context) -> str:
    return check_output_units(ctx, BUILDER, INPUT_SHAPE, num_classes=OTHER_CLASSES)


def _dropouts(layers: list[LayerTrace]) -> list[tuple[float, int]]:
    """(rate, index of the next significant layer) for each Dropout called."""
    found, significant_seen = [], 0
    for layer in layers:
        if layer.significant:
            significant_seen += 1
        elif "Dropout" in layer.kind:
            found.append((float(layer.config.get("rate", float("nan"))), significant_seen))
    return found


def dropout_is_used(ctx: Context) -> str:
    # Where the reference drops out (its rates do not matter: the student's must be OTHER_DROPOUT).
    reference = _dropouts(trace_reference(ctx, BUILDER, INPUT_SHAPE))
    student_layers = trace_student(ctx, BUILDER, INPUT_SHAPE, dropout=OTHER_DROPOUT)
    student = _dropouts(student_layers)
    ensure(
        len(student) == len(reference),
        f"Your AlexNet has {len(student)} Dropout layers, expected {len(reference)}: one before each of the two "
        "4096-unit Dense layers, none in the convolutional part.",
        diagnosis=DROPOUT_COUNT.id,
    )
    rates = sorted({rate for rate, _ in student})
    ensure(
        all(np.isclose(rate, OTHER_DROPOUT) for rate, _ in student),
        f"With dropout={OTHER_DROPOUT} your Dropout layers use rate {rates}: pass the dropout argument to keras.layers.Dropout.",
        diagnosis=DROPOUT_RATE_IGNORED.id,
    )
    significant = [layer for layer in student_layers if layer.significant]
    for (_, expected_at), (_, actual_at) in zip(reference, student):
        if expected_at != actual_at:
            before = significant[actual_at].name if actual_at < len(significant) else "the end"
            raise CheckFailed(
                f"A Dropout layer sits before your layer '{before}': in AlexNet dropout goes only in the classifier, "
                "right before each of the two 4096-unit Dense layers.",
                diagnosis=DROPOUT_OUTSIDE_CLASSIFIER.id,
            )
    return f"{len(student)} Dropout layers at rate {OTHER_DROPOUT}, in the classifier"


def true_layer_shapes(model: Any, input_shape: tuple[int, ...]) -> list[tuple[str, tuple[int, ...]]]:
    """What `layer_output_shapes` should return: each layer of a Sequential fed the previous one's output.

    Computed symbolically (shapes only, as Keras infers them when it builds a model): the
    grader runs no forward pass, so a model of unallocated weights costs nothing here.
    """
    import keras

    x = keras.KerasTensor((1, *input_shape))
    shapes = []
    for layer in model.layers:
        x = layer.compute_output_spec(x)
        shapes.append((layer.name, tuple(int(d) for d in x.shape)))
    return shapes


def _check_reported_shapes(ctx: Context, model: Any, input_shape: tuple[int, ...], label: str) -> str:
    call = describe_call(SHAPES, (model,), {"input_shape": input_shape})
    result = ctx.call(SHAPES, model, input_shape=input_shape)
    printed = ctx.last_stdout
    if not isinstance(result, (list, tuple)):
        raise StudentCodeError(
            f"`{call}` returned {type(result).__name__}; it should return a list of (layer_name, shape) tuples.",
            diagnosis=SHAPES_NOT_A_LIST.id,
        )
    expected = true_layer_shapes(model, input_shape)
    try:
        actual = [(str(name), tuple(int(d) for d in shape)) for name, shape in result]
    except (TypeError, ValueError):
        raise StudentCodeError(
            f"`{call}` should return (layer_name, shape) pairs such as ('conv2d', (1, 55, 55, 64)); got {str(result)[:120]}.",
            diagnosis=SHAPES_NOT_A_LIST.id,
        ) from None
    ensure(
        len(actual) == len(expected),
        f"On {label}, `{SHAPES}` returned {len(actual)} entries; the model has {len(expected)} layers (one entry per layer, in order).",
        diagnosis=SHAPES_COUNT.id,
    )
    for (name_a, shape_a), (name_e, shape_e) in zip(actual, expected):
        ensure(
            name_a == name_e,
            f"On {label}, entry '{name_a}' should be layer '{name_e}': use each layer's .name, in model.layers order.",
            diagnosis=SHAPES_NAMES.id,
        )
        if shape_a != shape_e:
            dropped = shape_a == shape_e[1:]
            why = (
                "keep the batch dimension: report the shape of the whole batch of one sample"
                if dropped
                else "feed the output of each layer into the next one"
            )
            raise CheckFailed(
                f"On {label}, layer '{name_e}' should report {shape_e} (batch of 1 included), not {shape_a}: {why}.",
                diagnosis=(BATCH_DROPPED if dropped else SHAPES_NOT_CHAINED).id,
            )
    missing = [name for name, _ in expected if name not in printed]
    ensure(
        not missing,
        f"`{SHAPES}` should also print each layer's name and shape; not printed: {', '.join(missing[:3])}.",
        diagnosis=SHAPES_NOT_PRINTED.id,
    )
    return f"{len(expected)} layers on {label}, printed and returned"


def shapes_of_alexnet(ctx: Context) -> str:
    model = ctx.reference_call(BUILDER)
    return _check_reported_shapes(ctx, model, INPUT_SHAPE, "the reference AlexNet")


def shapes_of_hidden_model(ctx: Context) -> str:
    import keras

    def build() -> Any:
        keras.utils.set_random_seed(3)
        return keras.Sequential(
            [
                keras.Input((40, 30, 2)),
                keras.layers.Conv2D(5, 3, strides=2, name="probe_conv"),
                keras.layers.BatchNormalization(name="probe_norm"),
                keras.layers.MaxPooling2D(2, name="probe_pool"),
                keras.layers.Flatten(name="probe_flatten"),
                keras.layers.Dense(11, name="probe_dense"),
            ],
            name="probe",
        )

    model = ctx.cached("hidden-sequential", build)
    return _check_reported_shapes(ctx, model, (40, 30, 2), "another Sequential model")


QUESTION = Question(
    id="q4",
    title="AlexNet layer shapes",
    module="q4_alexnet",
    names=(BUILDER, SHAPES),
    checks=(
        Check("builds a keras.Model", 1, builds_a_model),
        Check("layer output shapes match AlexNet", 3, layer_shapes_match, diagnoses=STRUCTURE),
        Check("parameter count", 2, parameter_count, diagnoses=(*ALEXNET_SLIPS, *PARAMETER_COUNT_DIAGNOSES)),
        Check("num_classes is honoured", 1, num_classes_is_used, diagnoses=OUTPUT_UNITS_DIAGNOSES),
        Check(
            "dropout argument, classifier only",
            1,
            dropout_is_used,
            diagnoses=(DROPOUT_COUNT, DROPOUT_RATE_IGNORED, DROPOUT_OUTSIDE_CLASSIFIER),
        ),
        Check("layer_output_shapes on AlexNet", 1, shapes_of_alexnet, diagnoses=SHAPES_DIAGNOSES),
        Check(
            "layer_output_shapes on another model", 1, shapes_of_hidden_model, hidden=True, diagnoses=SHAPES_DIAGNOSES
        ),
    ),
    shared_cache_keys=frozenset({"hidden-sequential"}),  # built from reference code alone
    time_limit_s=120.0,  # AlexNet's 61M parameters are built several times (other num_classes, dropout)
)
