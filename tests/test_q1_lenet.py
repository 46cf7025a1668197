"""q1: every legitimate spelling of LeNet-5 passes, every classic mistake fails with its own message."""

from __future__ import annotations

import keras
import pytest
from conftest import failed, grade, grade_source
from keras import layers


def lenet(
    *,
    c1_padding="same",
    c1_bias=True,
    c3_kernel=5,
    f6_units=84,
    extra_dense=False,
    skip_f6=False,
    hard_classes=False,
    hard_input=False,
    activation="relu",
    pool=layers.MaxPooling2D,
    output_activation="softmax",
):
    """A LeNet-5 builder with one knob per classic mistake."""

    def build_lenet5(input_shape=(28, 28, 1), num_classes=10):
        stack = [
            keras.Input((28, 28, 1) if hard_input else input_shape),
            layers.Conv2D(6, 5, padding=c1_padding, activation=activation, use_bias=c1_bias),
            pool(2),
            layers.Conv2D(16, c3_kernel, activation=activation),
            pool(2),
            layers.Flatten(),
            layers.Dense(120, activation=activation),
        ]
        if not skip_f6:
            stack.append(layers.Dense(f6_units, activation=activation))
        if extra_dense:
            stack.append(layers.Dense(64, activation=activation))
        stack.append(layers.Dense(10 if hard_classes else num_classes, activation=output_activation))
        return keras.Sequential(stack)

    return build_lenet5


def assert_full_marks(result):
    assert failed(result) == {}
    assert result.score == result.max_score == 10


def test_tanh_average_pooling_and_logits_pass():
    assert_full_marks(
        grade("q1", build_lenet5=lenet(activation="tanh", pool=layers.AveragePooling2D, output_activation=None))
    )


def test_functional_model_with_separate_activations_passes():
    def build_lenet5(input_shape=(28, 28, 1), num_classes=10):
        inputs = keras.Input(input_shape)
        x = layers.Conv2D(6, 5, padding="same")(inputs)
        x = layers.Activation("tanh")(x)
        x = layers.MaxPooling2D()(x)
        x = layers.Conv2D(16, 5)(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
        x = layers.Flatten()(x)
        x = layers.Dropout(0.1)(x)
        x = layers.Dense(120)(x)
        x = layers.Activation("relu")(x)
        x = layers.Dense(84, activation="relu")(x)
        outputs = layers.Softmax()(layers.Dense(num_classes)(x))
        return keras.Model(inputs, outputs)

    assert_full_marks(grade("q1", build_lenet5=build_lenet5))


def test_zero_padding_to_32_and_conv_c5_pass():
    def build_lenet5(input_shape=(28, 28, 1), num_classes=10):
        return keras.Sequential(
            [
                keras.Input(input_shape),
                layers.ZeroPadding2D(2),
                layers.Conv2D(6, 5, activation="tanh"),
                layers.AveragePooling2D(2),
                layers.Conv2D(16, 5, activation="tanh"),
                layers.AveragePooling2D(2),
                layers.Conv2D(120, 5, activation="tanh"),
                layers.Flatten(),
                layers.Dense(84, activation="tanh"),
                layers.Dense(num_classes, activation="softmax"),
            ]
        )

    assert_full_marks(grade("q1", build_lenet5=build_lenet5))


def test_subclassed_model_passes():
    class LeNet5(keras.Model):
        def __init__(self, num_classes):
            super().__init__()
            self.c1 = layers.Conv2D(6, 5, padding="same", activation="relu")
            self.s2 = layers.MaxPooling2D()
            self.c3 = layers.Conv2D(16, 5, activation="relu")
            self.s4 = layers.MaxPooling2D()
            self.flatten = layers.Flatten()
            self.head = [
                layers.Dense(120, activation="relu"),
                layers.Dense(84, activation="relu"),
                layers.Dense(num_classes),
            ]

        def call(self, x):
            x = self.flatten(self.s4(self.c3(self.s2(self.c1(x)))))
            for layer in self.head:
                x = layer(x)
            return x

    def build_lenet5(input_shape=(28, 28, 1), num_classes=10):
        model = LeNet5(num_classes)
        model.build((None, *input_shape))
        return model

    assert_full_marks(grade("q1", build_lenet5=build_lenet5))


def test_valid_padding_in_c1_is_named():
    problems = failed(grade("q1", build_lenet5=lenet(c1_padding="valid")))
    message = problems["layer output shapes match LeNet-5"]
    assert message.startswith("C1 ")
    assert "24x24x6" in message and "28x28x6" in message
    assert "padding='valid'" in message and "padding='same'" in message
    assert set(problems) == {"layer output shapes match LeNet-5", "parameter count"}


@pytest.mark.parametrize(
    ("knob", "expected_words"),
    [
        ({"skip_f6": True}, ["Missing layer after C5", "F6"]),
        ({"extra_dense": True}, ["Extra layer after F6", "Dense 64"]),
        ({"f6_units": 64}, ["F6", "64 units, expected 84"]),
        ({"c3_kernel": 3}, ["C3", "12x12x16", "10x10x16"]),
        ({"c1_bias": False}, ["C1", "no bias"]),
    ],
)
def test_structural_mistakes_are_explained(knob, expected_words):
    problems = failed(grade("q1", build_lenet5=lenet(**knob)))
    message = problems["layer output shapes match LeNet-5"]
    for words in expected_words:
        assert words in message, message
    assert "61,706" in problems["parameter count"]
    assert set(problems) == {"layer output shapes match LeNet-5", "parameter count"}  # charged once


def test_hard_coded_class_count_fails():
    problems = failed(grade("q1", build_lenet5=lenet(hard_classes=True)))
    assert list(problems) == ["num_classes is honoured"]
    assert "num_classes=7" in problems["num_classes is honoured"]
    assert "hard-coded" in problems["num_classes is honoured"]


def test_ignored_input_shape_fails_only_the_hidden_check():
    problems = failed(grade("q1", build_lenet5=lenet(hard_input=True)))
    assert list(problems) == ["input_shape is honoured"]
    assert "input_shape is honoured" in problems
    assert "(2, 28, 28, 3)" in problems["input_shape is honoured"]


def test_wrong_return_type_and_exceptions_are_reported():
    result = grade("q1", build_lenet5=lambda input_shape=(28, 28, 1), num_classes=10: None)
    assert result.score == 0
    assert "returned NoneType" in result.checks[0].message and "keras.Model" in result.checks[0].message

    def build_lenet5(input_shape=(28, 28, 1), num_classes=10):
        return keras.Sequential([keras.Input(input_shape), layers.Dense(num_classes)(None)])

    result = grade("q1", build_lenet5=build_lenet5)
    assert result.score == 0
    assert "raised" in result.checks[0].message


def test_model_that_cannot_run_is_reported(tmp_path):
    source = (
        "import keras\n"
        "def build_lenet5(input_shape=(28, 28, 1), num_classes=10):\n"
        "    return keras.Sequential([keras.layers.Reshape((7, 7))])\n"
    )
    result = grade_source(tmp_path, "q1", source)
    assert result.score == 1  # it is a keras.Model, but nothing else works
    message = failed(result)["layer output shapes match LeNet-5"]
    assert "on an input of shape (2, 28, 28, 1)" in message
    assert "The total size of the tensor must be unchanged" in message


def test_syntax_error_and_missing_file(tmp_path):
    result = grade_source(tmp_path, "q1", "def build_lenet5(:\n")
    assert result.score == 0
    assert all("syntax error on line 1" in c.message for c in result.checks)
    other = tmp_path / "empty"
    other.mkdir()
    from grader.grading import grade_folder
    from grader.questions import get_question

    result = grade_folder(get_question("q1"), other)
    assert all("q1_lenet.py was not found" in c.message for c in result.checks)
