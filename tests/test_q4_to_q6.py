"""q4 (AlexNet), q5 (parameter counting), q6 (dropout): mistakes fail with their own message."""

from __future__ import annotations

import keras
import pytest
from conftest import failed, grade
from keras import layers

from grader.paths import solutions_dir
from grader.questions import get_question
from grader.questions.alexnet_slips import NOTES_PRINTED_TOTAL, known_alexnet_totals
from grader.submission import load_module

REFERENCE_Q4 = load_module(solutions_dir(), get_question("q4")).namespace
REFERENCE_Q5 = load_module(solutions_dir(), get_question("q5")).namespace
REFERENCE_Q6 = load_module(solutions_dir(), get_question("q6")).namespace


def alexnet(*, conv1_padding_layer=True, dropout_rate=None, dropout_in_features=False):
    """An AlexNet builder with knobs for classic mistakes (None: use the dropout argument)."""

    def build_alexnet(input_shape=(224, 224, 3), num_classes=1000, dropout=0.5):
        rate = dropout if dropout_rate is None else dropout_rate
        stack = [keras.Input(input_shape)]
        if conv1_padding_layer:
            stack.append(layers.ZeroPadding2D(2))
        stack += [layers.Conv2D(64, 11, strides=4, activation="relu"), layers.MaxPooling2D(3, 2)]
        if dropout_in_features:
            stack.append(layers.Dropout(rate))
        stack += [
            layers.Conv2D(192, 5, padding="same", activation="relu"),
            layers.MaxPooling2D(3, 2),
            layers.Conv2D(384, 3, padding="same", activation="relu"),
            layers.Conv2D(256, 3, padding="same", activation="relu"),
            layers.Conv2D(256, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(3, 2),
            layers.Flatten(),
            layers.Dropout(rate),
            layers.Dense(4096, activation="relu"),
            layers.Dropout(rate),
            layers.Dense(4096, activation="relu"),
            layers.Dense(num_classes, activation="softmax"),
        ]
        return keras.Sequential(stack)

    return build_alexnet


def q4(builder, shapes=None):
    return grade("q4", build_alexnet=builder, layer_output_shapes=shapes or REFERENCE_Q4["layer_output_shapes"])


def test_alexnet_variant_with_same_padding_in_conv2_and_softmax_passes():
    result = q4(alexnet())
    assert failed(result) == {}
    assert result.score == result.max_score


def test_alexnet_conv1_without_padding_gets_the_zero_padding_hint():
    problems = failed(q4(alexnet(conv1_padding_layer=False)))
    message = problems["layer output shapes match AlexNet"]
    assert message.startswith("conv1 ")
    assert "54x54x64" in message and "55x55x64" in message
    assert "ZeroPadding2D(2)" in message and "padding='same' would not give 55x55" in message


def test_alexnet_dropout_mistakes():
    problems = failed(q4(alexnet(dropout_rate=0.5)))
    assert list(problems) == ["dropout argument, classifier only"]
    assert "rate [0.5]" in problems["dropout argument, classifier only"]

    problems = failed(q4(alexnet(dropout_in_features=True)))
    assert "dropout argument, classifier only" in problems
    assert "has 3 Dropout layers, expected 2" in problems["dropout argument, classifier only"]


def test_hard_coded_layer_output_shapes_fail_on_another_model():
    reference_shapes = REFERENCE_Q4["layer_output_shapes"](REFERENCE_Q4["build_alexnet"]())

    def layer_output_shapes(model, input_shape=(224, 224, 3)):
        for name, shape in reference_shapes:
            print(name, shape)
        return reference_shapes

    problems = failed(q4(alexnet(), shapes=layer_output_shapes))
    assert list(problems) == ["layer_output_shapes on another model"]
    assert "returned 16 entries; the model has 5 layers" in problems["layer_output_shapes on another model"]


def test_layer_output_shapes_without_batch_dimension_or_printing():
    def no_batch(model, input_shape=(224, 224, 3)):
        shapes = REFERENCE_Q4["layer_output_shapes"](model, input_shape)
        return [(name, shape[1:]) for name, shape in shapes]

    message = failed(q4(alexnet(), shapes=no_batch))["layer_output_shapes on AlexNet"]
    assert "'pad1' should report (1, 228, 228, 3)" in message and "keep the batch dimension" in message

    def silent(model, input_shape=(224, 224, 3)):
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):
            return REFERENCE_Q4["layer_output_shapes"](model, input_shape)

    message = failed(q4(alexnet(), shapes=silent))["layer_output_shapes on AlexNet"]
    assert "should also print" in message


def q5(**overrides):
    functions = {name: REFERENCE_Q5[name] for name in ("conv2d_params", "dense_params", "count_parameters")}
    functions.update(overrides)
    return grade("q5", **functions)


def test_known_wrong_alexnet_totals_are_explained():
    totals = known_alexnet_totals()
    assert set(totals) == {61_910_632, 61_935_976, 62_378_344}
    for total, explanation in totals.items():
        problems = failed(q5(count_parameters=lambda model, total=total: total))
        message = problems["count_parameters on AlexNet"]
        assert f"returned {total:,}, expected 61,100,840" in message
        assert explanation in message
    assert "addition slip" in totals[NOTES_PRINTED_TOTAL]
    assert "conv4 as 256->384" in totals[61_935_976]


def test_a_count_hard_coded_to_alexnets_total_passes_alexnet_only():
    """Returning the reference AlexNet's total for any model passes the public check, never the hidden one."""
    result = q5(count_parameters=lambda model: 61_100_840)
    problems = failed(result)
    assert "count_parameters on AlexNet" not in problems
    assert "returned 61,100,840" in problems["count_parameters on other models"]
    (check,) = [c for c in result.checks if c.name == "count_parameters on other models"]
    assert check.diagnosis == "count-hard-coded"


def test_trainable_only_count_gets_the_batch_norm_message():
    def count_parameters(model):
        return sum(int(keras.ops.size(w)) for w in model.trainable_weights)

    problems = failed(q5(count_parameters=count_parameters))
    assert list(problems) == ["count_parameters on other models"]
    assert "moving mean and variance" in problems["count_parameters on other models"]


def test_calling_count_params_is_caught():
    problems = failed(q5(count_parameters=lambda model: model.count_params()))
    assert list(problems) == ["count_parameters walks the layers"]
    assert "calls count_params()" in problems["count_parameters walks the layers"]


def test_formula_mistakes():
    def conv2d_params(in_channels, out_channels, kernel_size, use_bias=True):
        k = kernel_size if isinstance(kernel_size, int) else kernel_size[0]
        return k * k * in_channels * out_channels

    def dense_params(in_features, out_features, use_bias=True):
        return float(in_features * out_features + out_features)

    problems = failed(q5(conv2d_params=conv2d_params, dense_params=dense_params))
    assert "left out the biases" in problems["conv2d_params formula"]
    assert "returned float" in problems["dense_params formula"] and "an int" in problems["dense_params formula"]


def q6(**overrides):
    objects = {
        "classifier_parameter_fraction": REFERENCE_Q6["classifier_parameter_fraction"],
        "ANSWER": REFERENCE_Q6["ANSWER"],
    }
    objects.update(overrides)
    return grade("q6", **objects)


def test_q6_reference_figures():
    result = q6()
    assert failed(result) == {}
    assert "0.9596" in result.checks[0].message


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        ("YOUR ANSWER HERE", "still the stub"),
        ("Because the dense layers have most weights.", "has 7 words"),
        (42, "should be a string"),
    ],
)
def test_q6_answer_must_be_real(answer, words):
    problems = failed(q6(ANSWER=answer))
    assert list(problems) == ["written answer given"]
    assert words in problems["written answer given"]


def test_q6_percentage_and_complement_get_hints():
    percent = lambda model: 100 * REFERENCE_Q6["classifier_parameter_fraction"](model)  # noqa: E731
    assert (
        "not a percentage"
        in failed(q6(classifier_parameter_fraction=percent))["classifier parameter fraction of AlexNet"]
    )
    complement = lambda model: 1 - REFERENCE_Q6["classifier_parameter_fraction"](model)  # noqa: E731
    assert (
        "convolutional layers' share"
        in failed(q6(classifier_parameter_fraction=complement))["classifier parameter fraction of AlexNet"]
    )
