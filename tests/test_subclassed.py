"""Subclassed models and Lambda layers are graded like any other in the sandbox; a forged trace fails.

The grader cannot rebuild a subclassed `keras.Model` or a Lambda layer from its configuration, so
the child traces such a model and sends the trace as data (`grader.sandbox.traced`), which the
parent checks for consistency (`grader.structure.validated_trace`) before the usual comparisons.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from conftest import failed

from grader.checks import StudentCodeError, StudentSide
from grader.grading import grade_folder
from grader.paths import solutions_dir
from grader.questions import get_question
from grader.sandbox.traced import describe_model
from grader.structure import STRUCTURE_TRACED, validated_trace
from grader.tracing import trace

LENET_SHAPE = (28, 28, 1)

SUBCLASSED_LENET = """
import keras
from keras import layers


class LeNet5(keras.Model):
    def __init__(self, num_classes=10, c1_padding="same"):
        super().__init__()
        self.c1 = layers.Conv2D(6, 5, padding=c1_padding, activation="relu")
        self.s2 = layers.MaxPooling2D(2)
        self.c3 = layers.Conv2D(16, 5, activation="relu")
        self.s4 = layers.MaxPooling2D(2)
        self.flat = layers.Flatten()
        self.c5 = layers.Dense(120, activation="relu")
        self.f6 = layers.Dense(84, activation="relu")
        self.out = layers.Dense(num_classes, activation="softmax")

    def call(self, x):
        x = self.s4(self.c3(self.s2(self.c1(x))))
        return self.out(self.f6(self.c5(self.flat(x))))


def build_lenet5(input_shape=(28, 28, 1), num_classes=10):
    model = LeNet5(num_classes, c1_padding=C1_PADDING)
    model.build((None, *input_shape))
    return model
"""

SEQUENTIAL_LENET = """
import keras
from keras import layers


def build_lenet5(input_shape=(28, 28, 1), num_classes=10):
    return keras.Sequential([
        keras.Input(input_shape),
        layers.Conv2D(6, 5, padding=C1_PADDING, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(16, 5, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(120, activation="relu"),
        layers.Dense(84, activation="relu"),
        layers.Dense(num_classes, activation="softmax"),
    ])
"""

LAMBDA_LENET = SEQUENTIAL_LENET.replace(
    "keras.Input(input_shape),", "keras.Input(input_shape),\n        layers.Lambda(lambda x: x / 255.0),"
)

# A tampered child: the student's module replaces the grader's tracing function in its own process, and
# claims its C5 has the reference's 48,120 parameters (and the model's total to match) while its shapes say 30,840.
FORGER = """
import grader.sandbox.traced as _traced

_real = _traced.describe_model


def _forged(student, builder, input_shape, kwargs):
    data = _real(student, builder, input_shape, kwargs)
    for layer in data["layers"]:
        if layer["kind"] == "Dense" and layer["config"]["units"] == 120:
            data["total"] += 48_120 - layer["params"]
            layer["params"] = 48_120
    return data


_traced.describe_model = _forged
"""

SUBCLASSED_ALEXNET = """

class AlexNet(keras.Model):
    def __init__(self, num_classes=1000, dropout=0.5):
        super().__init__()
        self.features = [
            layers.ZeroPadding2D(2), layers.Conv2D(64, 11, strides=4, activation="relu"),
            layers.MaxPooling2D(3, strides=2), layers.ZeroPadding2D(2), layers.Conv2D(192, 5, activation="relu"),
            layers.MaxPooling2D(3, strides=2), layers.Conv2D(384, 3, padding="same", activation="relu"),
            layers.Conv2D(256, 3, padding="same", activation="relu"),
            layers.Conv2D(256, 3, padding="same", activation="relu"), layers.MaxPooling2D(3, strides=2),
            layers.Flatten(),
        ]
        self.classifier = [
            layers.Dropout(dropout), layers.Dense(4096, activation="relu"),
            layers.Dropout(dropout), layers.Dense(4096, activation="relu"), layers.Dense(num_classes),
        ]

    def call(self, x, training=False):
        for layer in self.features + self.classifier:
            x = layer(x, training=training) if isinstance(layer, layers.Dropout) else layer(x)
        return x


def build_alexnet(input_shape=(224, 224, 3), num_classes=1000, dropout=0.5):
    return AlexNet(num_classes, dropout)
"""


def grade_source(folder: Path, question: str, source: str):
    spec = get_question(question)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / spec.filename).write_text(textwrap.dedent(source))
    return grade_folder(spec, folder, isolated=True)


def lenet(template: str, padding: str = "same", extra: str = "") -> str:
    return f"C1_PADDING = {padding!r}\n{template}\n{extra}"


def assert_full_marks_traced(result) -> None:
    assert failed(result) == {}
    assert result.score == result.max_score
    assert result.meta["isolation"]["structure"] == STRUCTURE_TRACED


def test_subclassed_lenet_gets_full_marks_in_the_sandbox(tmp_path):
    assert_full_marks_traced(grade_source(tmp_path, "q1", lenet(SUBCLASSED_LENET)))


def test_lambda_layer_that_keeps_shapes_passes(tmp_path):
    assert_full_marks_traced(grade_source(tmp_path, "q1", lenet(LAMBDA_LENET)))


def test_subclassed_valid_padding_gets_the_message_of_its_sequential_twin(tmp_path):
    subclassed = grade_source(tmp_path / "a", "q1", lenet(SUBCLASSED_LENET, "valid"))
    sequential = grade_source(tmp_path / "b", "q1", lenet(SEQUENTIAL_LENET, "valid"))
    assert "structure" not in sequential.meta["isolation"]
    assert subclassed.meta["isolation"]["structure"] == STRUCTURE_TRACED
    assert failed(subclassed) == failed(sequential)
    assert "padding='same'" in failed(subclassed)["layer output shapes match LeNet-5"]
    assert subclassed.score == sequential.score < subclassed.max_score
    diagnoses = {c.name: c.diagnosis for c in subclassed.checks if not c.passed}
    assert diagnoses == {c.name: c.diagnosis for c in sequential.checks if not c.passed}


def test_forged_trace_fails_with_a_message(tmp_path):
    result = grade_source(tmp_path, "q1", lenet(SUBCLASSED_LENET, "valid", FORGER))
    messages = failed(result)
    shapes = messages["layer output shapes match LeNet-5"]
    assert "does not add up" in shapes
    assert "reports 48,120 parameters" in shapes and "has 30,840" in shapes
    assert messages["parameter count"] == shapes
    assert {c.diagnosis for c in result.checks if not c.passed} == {"traced-structure-inconsistent"}


@pytest.mark.slow
def test_subclassed_alexnet_gets_full_marks_in_the_sandbox(tmp_path):
    source = (solutions_dir() / "q4_alexnet.py").read_text() + SUBCLASSED_ALEXNET
    assert_full_marks_traced(grade_source(tmp_path, "q4", source))


# --- the parent's consistency checks, on traces made here -----------------------------------------------------------


def traced_data(build, shape=LENET_SHAPE) -> dict:
    """What the child sends for the model `build()` traced on `shape`."""
    return describe_model(StudentSide({"build": build}, None), "build", shape, {})


def sequential_lenet(padding: str = "same"):
    namespace: dict = {}
    exec(lenet(SEQUENTIAL_LENET, padding), namespace)  # noqa: S102 - the test's own source
    return namespace["build_lenet5"]()


def test_a_true_trace_reads_back_as_the_grader_would_trace_it():
    import keras
    from keras import layers

    def build():
        inputs = keras.Input((16, 16, 3))
        x = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(inputs)
        x = layers.BatchNormalization()(x)
        x = layers.SeparableConv2D(8, 3, strides=2, use_bias=False)(x)
        x = layers.LayerNormalization()(x)
        x = layers.Conv2D(4, 3, dilation_rate=2, padding="valid")(x)
        x = layers.AveragePooling2D(2, padding="same")(x)
        x = layers.GlobalMaxPooling2D()(x)
        x = layers.Reshape((2, 2))(x)
        x = layers.Conv1D(5, 2)(x)
        return keras.Model(inputs, layers.Dense(3)(layers.Flatten()(x)))

    model = build()
    data = traced_data(lambda: model, (16, 16, 3))
    assert validated_trace(data, (16, 16, 3), "the model") == trace(model, (16, 16, 3))
    assert data["total"] == model.count_params()


def forged(mutate, padding: str = "same") -> dict:
    data = traced_data(lambda: sequential_lenet(padding))
    mutate(data)
    return data


def rejected(data, *fragments: str) -> str:
    with pytest.raises(StudentCodeError) as caught:
        validated_trace(data, LENET_SHAPE, "the model from `build_lenet5()`")
    message = str(caught.value)
    assert caught.value.diagnosis == "traced-structure-inconsistent"
    for fragment in fragments:
        assert fragment in message
    return message


def test_a_trace_with_fewer_layers_than_the_model_holds_is_rejected():
    def drop_f6(data):
        del data["layers"][-2]
        data["layers"][-1]["input_shape"] = (120,)
        data["layers"][-1]["params"] = 121 * 10

    rejected(forged(drop_f6), "the model reports 61,706")


def test_a_dense_claiming_the_reference_count_on_the_wrong_input_is_rejected():
    def forge(data):  # C1 padding='valid': C5 sees 4x4x16 = 256 features, but claims the reference's 48,120
        c5 = data["layers"][5]
        data["total"] += 48_120 - c5["params"]
        c5["params"] = 48_120

    rejected(forged(forge, "valid"), "reports 48,120 parameters", "on a 256 input has 30,840")


def test_an_input_no_earlier_layer_produced_is_rejected():
    def forge(data):
        data["layers"][2]["input_shape"] = (12, 12, 6)

    rejected(forged(forge), "receives a 12x12x6 input")


def test_a_custom_layer_with_weights_is_rejected():
    def forge(data):
        data["layers"][0]["kind"] = "MyConv"

    rejected(forged(forge), "MyConv", "cannot recompute")


def test_an_output_shape_that_its_settings_do_not_give_is_rejected():
    def forge(data):
        data["layers"][1]["output_shape"] = (13, 13, 6)

    rejected(forged(forge), "reports a 13x13x6 output", "gives 14x14x6")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(total=True),
        lambda d: d.update(extra=1),
        lambda d: d.update(layers=d["layers"] * 100),
        lambda d: d["layers"][0].update(params=-1),
        lambda d: d["layers"][0].update(input_shape=(28, 28, True)),
        lambda d: d["layers"][0].update(output_shape=(1,) * 9),
        lambda d: d["layers"][0].update(name=["conv"]),
        lambda d: d["layers"][0].update(kind="Conv2D; rm -rf"),
        lambda d: d["layers"][0]["config"].update(secret=1),
        lambda d: d["layers"][0]["config"].update(filters=float("nan")),
        lambda d: d["layers"][0]["config"].update(kernel_size=((5,),)),
        lambda d: d["layers"][0].update(uid=999),
        lambda d: d["layers"][3].update(uid=0),
    ],
)
def test_malformed_traces_are_refused_as_the_students_problem(mutate):
    rejected(forged(mutate), "does not add up")


def test_batch_summary_lists_the_submissions_whose_structure_was_traced(tmp_path):
    from grader.batch.outputs import write_summary
    from grader.results import CheckResult, QuestionResult

    def result(isolation: dict) -> QuestionResult:
        check = CheckResult("builds a keras.Model", True, 1, 1, "ok")
        return QuestionResult("q1", "LeNet-5", [check], {"isolation": isolation})

    everything = {
        "ada": {"q1": result({"network": "off", "structure": STRUCTURE_TRACED})},
        "bob": {"q1": result({"network": "off"})},
    }
    text = write_summary(tmp_path, everything, ["q1"]).read_text()
    line = next(line for line in text.splitlines() if "structure traced" in line)
    assert "ada q1" in line and "bob" not in line


@pytest.mark.parametrize("weights", [False, True], ids=["architecture", "with-weights"])
def test_a_model_the_grader_cannot_load_carries_its_diagnosis_and_says_what_to_do(tmp_path, weights):
    import keras

    from grader.sandbox.codec import Codec

    model = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda x: x / 255.0), keras.layers.Dense(2)])
    codec = Codec(tmp_path, weights=weights)
    with pytest.raises(StudentCodeError) as caught:
        codec.decode(codec.encode(model))
    assert caught.value.diagnosis == "model-not-rebuildable"
    assert "keras.Sequential" in str(caught.value) or "built-in layers" in str(caught.value)
    if weights:  # a training question: the message says structural checks accept it, training needs a loadable one
        assert "trained or run" in str(caught.value) and "keras.Sequential or the functional API" in str(caught.value)
