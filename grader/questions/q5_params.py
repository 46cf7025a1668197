"""q5 — counting parameters by hand and by walking a model's layers.

Every expected value is Keras's own count (`count_params()` of a freshly built layer or
model), so the reference `solutions/q5_params.py` and the students are held to the same
oracle; the reference AlexNet has 61,100,840 parameters.
"""

from __future__ import annotations

from typing import Any

from ..checks import Check, CheckFailed, Context, Question, StudentSide, describe_call, require_type
from ..diagnoses import Diagnosis
from ..patching import patched
from ..slips import BIASES_OMITTED, COUNT_SLIPS, count_slip, layer_params
from .alexnet_slips import DIAGNOSES as ALEXNET_SLIPS
from .alexnet_slips import known_alexnet_diagnoses, known_alexnet_totals

CONV = "conv2d_params"
DENSE = "dense_params"
COUNT = "count_parameters"

CONV_CASES = [
    ((3, 64, 11), {}),
    ((64, 192, 5), {}),
    ((3, 6, (5, 3)), {}),
    ((16, 32, 3), {"use_bias": False}),
]
DENSE_CASES = [((9216, 4096), {}), ((84, 10), {}), ((120, 84), {"use_bias": False})]
BIASES_DESPITE_NO_BIAS = Diagnosis("biases-despite-use-bias-false", "the formula adds biases although use_bias=False")
FORMULA_WRONG = Diagnosis("parameter-formula-wrong", "the parameter formula is wrong (not a bias slip)")
ALEXNET_COUNT_WRONG = Diagnosis("alexnet-count-wrong", "count_parameters is wrong on AlexNet (no known slip)")
TRAINABLE_ONLY = Diagnosis(
    "trainable-only-count", "counts only trainable weights (BatchNorm's moving statistics left out)"
)
USE_BIAS_IGNORED = Diagnosis("use-bias-false-ignored", "counts biases that layers with use_bias=False do not have")
NESTED_MODEL_SKIPPED = Diagnosis("nested-model-skipped", "skips the layers of a model nested inside another")
COUNT_HARD_CODED = Diagnosis("count-hard-coded", "count_parameters returns a fixed number (AlexNet's) for any model")
COUNT_PARAMS_CALLED = Diagnosis("count-params-called", "calls Keras's count_params() instead of adding up the weights")
WALK_COUNT_WRONG = Diagnosis("walk-count-wrong", "adding up the weights by hand gives a wrong total")
FORMULA_DIAGNOSES = (BIASES_OMITTED, BIASES_DESPITE_NO_BIAS, FORMULA_WRONG)


def keras_conv_params(in_channels: int, out_channels: int, kernel_size: Any, use_bias: bool = True) -> int:
    import keras

    layer = keras.layers.Conv2D(out_channels, kernel_size, use_bias=use_bias)
    layer.build((None, 32, 32, in_channels))
    return int(layer.count_params())


def keras_dense_params(in_features: int, out_features: int, use_bias: bool = True) -> int:
    import keras

    layer = keras.layers.Dense(out_features, use_bias=use_bias)
    layer.build((None, in_features))
    return int(layer.count_params())


def _check_formula(ctx: Context, name: str, cases, oracle, bias_of) -> str:
    for args, kwargs in cases:
        call = describe_call(name, args, kwargs)
        value = require_type(ctx.call(name, *args, **kwargs), int, call, "an int")
        expected = oracle(*args, **kwargs)
        if value != expected:
            use_bias = kwargs.get("use_bias", True)
            if use_bias and value == expected - bias_of(args):
                hint, diagnosis = " You left out the biases: one per output channel or unit.", BIASES_OMITTED
            elif not use_bias and value == expected + bias_of(args):
                hint, diagnosis = " With use_bias=False there are no biases to add.", BIASES_DESPITE_NO_BIAS
            else:
                hint, diagnosis = "", FORMULA_WRONG
            raise CheckFailed(f"`{call}` returned {value:,}, expected {expected:,}.{hint}", diagnosis=diagnosis.id)
    return f"{len(cases)} cases agree with Keras"


def conv_formula(ctx: Context) -> str:
    return _check_formula(ctx, CONV, CONV_CASES, keras_conv_params, lambda args: args[1])


def dense_formula(ctx: Context) -> str:
    return _check_formula(ctx, DENSE, DENSE_CASES, keras_dense_params, lambda args: args[1])


def _count(ctx: Context, model: Any) -> int:
    return require_type(ctx.call(COUNT, model), int, describe_call(COUNT, (model,)), "an int")


def _reference_alexnet_total(ctx: Context) -> int:
    return int(ctx.reference_call("build_alexnet").count_params())


def count_alexnet(ctx: Context) -> str:
    model = ctx.reference_call("build_alexnet")
    expected = _reference_alexnet_total(ctx)
    actual = _count(ctx, model)
    if actual != expected:
        hint, diagnosis = _slip_or(model, actual, "Sum the sizes of every weight tensor of every layer.")
        if actual in known_alexnet_totals():
            hint, diagnosis = known_alexnet_totals()[actual], known_alexnet_diagnoses()[actual]
        raise CheckFailed(
            f"`{COUNT}` on the reference AlexNet returned {actual:,}, expected {expected:,}. {hint}",
            diagnosis=diagnosis or ALEXNET_COUNT_WRONG.id,
        )
    return f"{actual:,} parameters in AlexNet"


def _slip_or(model: Any, actual: int, otherwise: str) -> tuple[str, str | None]:
    """(the hint, the diagnosis id) of the slip that gives `actual` on `model`; else (`otherwise`, None)."""
    slip = count_slip(layer_params(model), actual)
    return (otherwise, None) if slip is None else (slip.message, slip.diagnosis.id)


def hidden_models() -> list[tuple[str, Any, str, str]]:
    """Models that a hard-coded or trainable-only count gets wrong, each with its likely cause and its diagnosis."""
    import keras

    inner = keras.Sequential([keras.Input((8,)), keras.layers.Dense(6), keras.layers.Dense(4)], name="inner")
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(4, 3, use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(8)(x)
    outputs = inner(x)
    return [
        (
            "a model with BatchNormalization",
            keras.Sequential(
                [keras.Input((10,)), keras.layers.Dense(5), keras.layers.BatchNormalization(), keras.layers.Dense(3)]
            ),
            "BatchNormalization has 4 weights per channel: gamma and beta (trainable) and the moving mean and variance (non-trainable, but parameters all the same).",
            TRAINABLE_ONLY.id,
        ),
        (
            "a model with use_bias=False",
            keras.Sequential(
                [
                    keras.Input((9, 9, 2)),
                    keras.layers.Conv2D(3, 3, use_bias=False),
                    keras.layers.Flatten(),
                    keras.layers.Dense(2, use_bias=False),
                ]
            ),
            "layers built with use_bias=False have no bias weights: count the weights the layer actually has.",
            USE_BIAS_IGNORED.id,
        ),
        (
            "a model nested inside another",
            keras.Model(inputs, outputs),
            "a nested model is itself a layer: count its layers' weights too (or simply every weight the layer holds).",
            NESTED_MODEL_SKIPPED.id,
        ),
    ]


def count_hidden_models(ctx: Context) -> str:
    models = ctx.cached("q5-hidden-models", hidden_models)
    for label, model, cause, diagnosis in models:
        expected = int(model.count_params())
        actual = _count(ctx, model)
        if actual != expected:
            if actual == _reference_alexnet_total(ctx) or actual in known_alexnet_totals():
                diagnosis = COUNT_HARD_CODED.id
            else:
                cause, slipped = _slip_or(model, actual, cause)
                diagnosis = slipped or diagnosis
            raise CheckFailed(
                f"`{COUNT}` on {label} returned {actual:,}, expected {expected:,}: {cause}", diagnosis=diagnosis
            )
    return f"right on {len(models)} more models"


def count_without_count_params(student: StudentSide, model: Any) -> dict[str, Any]:
    """Where the student's code runs: their count, and the classes whose Keras `count_params` it called."""
    import keras

    calls: list[str] = []

    def watched(self):
        calls.append(type(self).__name__)
        return 0

    with patched((keras.layers.Layer, keras.Model), "count_params", watched):
        value = student.call(COUNT, model).value
    return {"value": value, "count_params_calls": calls}


def counts_by_walking(ctx: Context) -> str:
    model = ctx.reference_call("build_lenet5", num_classes=3)
    expected = int(model.count_params())
    # Runs where the student code runs (this process, or the sandbox). A student who undoes
    # the watch there can hide the call, but not change the count the grader checks.
    result = ctx.run_with_student("grader.questions.q5_params:count_without_count_params", model)
    calls = list(result["count_params_calls"] or [])
    actual = require_type(result["value"], int, describe_call(COUNT, (model,)), "an int")
    if calls:
        raise CheckFailed(
            f"`{COUNT}` calls count_params() on a {calls[0]}: the exercise is to add up the "
            "weights yourself (walk model.layers and each layer's weights, multiplying out their shapes).",
            diagnosis=COUNT_PARAMS_CALLED.id,
        )
    if actual != expected:
        hint, diagnosis = _slip_or(model, actual, "")
        raise CheckFailed(
            f"`{COUNT}` on a LeNet-5 returned {actual:,}, expected {expected:,}. {hint}".rstrip(),
            diagnosis=diagnosis or WALK_COUNT_WRONG.id,
        )
    return "adds up the weights itself"


QUESTION = Question(
    id="q5",
    title="Counting parameters",
    module="q5_params",
    names=(CONV, DENSE, COUNT),
    checks=(
        Check("conv2d_params formula", 2, conv_formula, diagnoses=FORMULA_DIAGNOSES),
        Check("dense_params formula", 2, dense_formula, diagnoses=FORMULA_DIAGNOSES),
        Check(
            "count_parameters on AlexNet",
            2,
            count_alexnet,
            diagnoses=(*ALEXNET_SLIPS, *COUNT_SLIPS, ALEXNET_COUNT_WRONG),
        ),
        Check(
            "count_parameters on other models",
            3,
            count_hidden_models,
            hidden=True,
            diagnoses=(TRAINABLE_ONLY, USE_BIAS_IGNORED, NESTED_MODEL_SKIPPED, COUNT_HARD_CODED, *COUNT_SLIPS),
        ),
        Check(
            "count_parameters walks the layers",
            1,
            counts_by_walking,
            diagnoses=(COUNT_PARAMS_CALLED, *COUNT_SLIPS, WALK_COUNT_WRONG),
        ),
    ),
    shared_cache_keys=frozenset({"q5-hidden-models"}),  # built from reference code alone
)
