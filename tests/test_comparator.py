"""grader.comparator on its own: the tracer, the layer alignment, the likely causes and the figures they quote.

The messages are prose for students; these tests pull the figures out of them with anchored regular
expressions (which layer, which shapes and parameter counts, how many pixels of padding) and check those.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from grader.checks import CheckFailed, StudentCodeError
from grader.comparator import (
    LayerTrace,
    _padding_hint,
    compare_structure,
    format_kernel,
    format_shape,
    likely_cause,
    significant_layers,
    squeeze,
    total_params,
    trace,
)
from grader.quiet import import_keras

REPO = Path(__file__).resolve().parent.parent
LENET_INPUT = (28, 28, 1)
ALEXNET_INPUT = (224, 224, 3)
LENET_NAMES = ["C1", "S2", "C3", "S4", "C5", "F6", "OUTPUT"]

# --- the messages of compare_structure / likely_cause, as patterns that capture their figures -------------------

COUNTS = r"Your model has (?P<actual>\d+) layers with weights or pooling, the reference (?P<expected>\d+)\."
WHERE = r"(?:after (?P<after>\w+)|at the start)"
MATCH = re.compile(r"all (?P<count>\d+) layers match \((?P<names>[\w, ]*)\)")
MISSING = re.compile(
    rf"Missing layer {WHERE}: the reference has (?P<name>\w+) \((?P<what>[^)]*)\)"
    rf"(?:; your model has your layer '(?P<theirs>[^']+)' \((?P<theirs_what>[^)]*)\) there)?\. {COUNTS}"
)
EXTRA = re.compile(
    rf"Extra layer {WHERE}: your layer '(?P<theirs>[^']+)' \((?P<what>[^)]*)\) has no counterpart in the reference "
    rf"\(which continues with (?P<next>\w+)\)\. {COUNTS}"
)
DIFFERENCE = re.compile(
    r"(?P<name>\w+) \(your layer '(?P<theirs>[^']+)'\) gives (?P<got>[\dx]+) with (?P<got_params>[\d,]+) parameters, "
    r"expected (?P<want>[\dx]+) with (?P<want_params>[\d,]+): (?P<cause>.+)"
)
DESCRIBE = re.compile(
    r"(?P<kind>\w+)(?: (?P<filters>\d+)@(?P<kernel>[\dx]+)| (?P<units>\d+))? -> (?P<shape>[\dx]+), "
    r"(?P<params>[\d,]+) parameters"
)
HINTS = {
    "same": r"use padding='same' on (?P<size>[\dx]+) input \(or zero-pad the input first\) so the output is "
    r"(?P<out>[\dx]+)",
    "zero-pad": r"on (?P<size>[\dx]+) input it needs (?P<pixels>\d+) pixels of zero padding on each side: put "
    r"keras\.layers\.ZeroPadding2D\((?P<pad>\d+)\) before it and keep padding='valid' "
    r"\(padding='same' would not give (?P<out>[\dx]+) here\)",
    "check": r"check the padding and strides: the output should be (?P<out>[\dx]+)",
}
PAIR = r"\((?P<{0}>\d+), \d+\)"
CAUSES = {
    "units": r"it has (?P<got>\d+) units, expected (?P<want>\d+)\.",
    "filters": r"it has (?P<got>\d+) filters, expected (?P<want>\d+)\.",
    "kernel": r"its kernel is (?P<got>[\dx]+), expected (?P<want>[\dx]+)\.",
    "strides": rf"its strides are {PAIR.format('got')}, expected {PAIR.format('want')}\.",
    "no bias": r"it has no bias: remove use_bias=False \(every output channel or unit has one bias\)\.",
    "extra bias": r"it has a bias where the reference has none \(use_bias=False\)\.",
    "fan-in": r"each output sees (?P<got>[\d,]+) inputs instead of (?P<want>[\d,]+): .+",
    "pooling": rf"check the pooling window and stride \(yours: pool_size={PAIR.format('got_pool')}, "
    rf"strides={PAIR.format('got_strides')}; expected pool_size={PAIR.format('want_pool')}, "
    rf"strides={PAIR.format('want_strides')}\)\.",
    "kind": r"expected a (?P<want>\w+) here, found a (?P<got>\w+)\.",
    **{f"padding: {kind}": rf"{pattern} \(yours: padding='(?P<yours>\w+)'\)\." for kind, pattern in HINTS.items()},
}


def parse(pattern: re.Pattern[str], text: str) -> dict[str, str | None]:
    found = pattern.fullmatch(text)
    assert found, f"{pattern.pattern!r} does not match {text!r}"
    return found.groupdict()


def classify(text: str, patterns: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The one pattern of `patterns` that `text` matches in full, and its figures."""
    hits = [(kind, m.groupdict()) for kind, p in patterns.items() if (m := re.fullmatch(p, text))]
    assert len(hits) == 1, f"{text!r} matches {[kind for kind, _ in hits]}"
    return hits[0]


def failure(reference, student) -> str:
    with pytest.raises(CheckFailed) as info:
        compare_structure(reference, student)
    assert type(info.value) is CheckFailed
    return str(info.value)


def load_solution(filename: str):
    spec = importlib.util.spec_from_file_location(f"solution_{Path(filename).stem}", REPO / "solutions" / filename)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- models -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lenet_model():
    return load_solution("q1_lenet.py").build_lenet5()


@pytest.fixture(scope="module")
def lenet_trace(lenet_model):
    return trace(lenet_model, LENET_INPUT)


@pytest.fixture(scope="module")
def alexnet_trace():
    return trace(load_solution("q4_alexnet.py").build_alexnet(), ALEXNET_INPUT)


def lenet(
    *, c1_padding="same", c1_bias=True, c3_kernel=5, f6_units=84, extra_dense=False, skip_f6=False, skip_s2=False
):
    """The student's LeNet-5, one knob per classic mistake; the layers are named my_<reference name>."""
    keras = import_keras()
    layers = keras.layers
    stack = [
        keras.Input(LENET_INPUT),
        layers.Conv2D(6, 5, padding=c1_padding, use_bias=c1_bias, activation="relu", name="my_c1"),
    ]
    if not skip_s2:
        stack.append(layers.MaxPooling2D(2, name="my_s2"))
    stack += [
        layers.Conv2D(16, c3_kernel, activation="relu", name="my_c3"),
        layers.MaxPooling2D(2, name="my_s4"),
        layers.Flatten(name="my_flatten"),
        layers.Dense(120, activation="relu", name="my_c5"),
    ]
    if not skip_f6:
        stack.append(layers.Dense(f6_units, activation="relu", name="my_f6"))
    if extra_dense:
        stack.append(layers.Dense(64, activation="relu", name="my_extra"))
    stack.append(layers.Dense(10, activation="softmax", name="my_output"))
    return keras.Sequential(stack)


def functional_lenet(num_classes=10):
    """LeNet-5 with separate activations, dropout, tanh and average pooling, and C5 as a 5x5 conv after padding."""
    keras = import_keras()
    layers = keras.layers
    inputs = keras.Input(LENET_INPUT)
    x = layers.ZeroPadding2D(2)(inputs)
    x = layers.Activation("tanh")(layers.Conv2D(6, 5)(x))
    x = layers.AveragePooling2D(2)(x)
    x = layers.ReLU()(layers.Conv2D(16, 5)(x))
    x = layers.MaxPooling2D()(x)
    x = layers.Dropout(0.3)(layers.Conv2D(120, 5, activation="tanh")(x))
    x = layers.Dense(84, activation="relu")(layers.Flatten()(x))
    return keras.Model(inputs, layers.Softmax()(layers.Dense(num_classes)(x)))


def subclassed_lenet(num_classes=10):
    keras = import_keras()
    layers = keras.layers

    class LeNet5(keras.Model):
        def __init__(self):
            super().__init__()
            self.c1 = layers.Conv2D(6, 5, padding="same", activation="relu")
            self.s2 = layers.MaxPooling2D()
            self.c3 = layers.Conv2D(16, 5, activation="relu")
            self.s4 = layers.MaxPooling2D()
            self.flatten = layers.Flatten()
            self.head = [layers.Dense(120, activation="relu"), layers.Dense(84, activation="relu")]
            self.out = layers.Dense(num_classes)

        def call(self, x):
            x = self.flatten(self.s4(self.c3(self.s2(self.c1(x)))))
            for layer in self.head:
                x = layer(x)
            return self.out(x)

    model = LeNet5()
    model.build((None, *LENET_INPUT))
    return model


# --- hand-made traces ---------------------------------------------------------------------------------------------


def conv(name, inp, out, params, *, kernel=(5, 5), strides=(1, 1), padding="valid", use_bias=True):
    config = {"filters": out[-1], "kernel_size": kernel, "strides": strides, "padding": padding, "use_bias": use_bias}
    return LayerTrace(name, "Conv2D", tuple(inp), tuple(out), params, config)


def dense(name, inp, units, params, *, use_bias=True):
    return LayerTrace(name, "Dense", (inp,), (units,), params, {"units": units, "use_bias": use_bias})


def pool(name, inp, out, *, size=(2, 2), strides=(2, 2), kind="MaxPooling2D"):
    config = {"pool_size": size, "strides": strides, "padding": "valid"}
    return LayerTrace(name, kind, tuple(inp), tuple(out), 0, config)


def plain(name, kind, shape):
    return LayerTrace(name, kind, tuple(shape), tuple(shape), 0, {})


A = conv("A", (28, 28, 1), (28, 28, 6), 156, padding="same")
P = pool("P", (28, 28, 6), (14, 14, 6))
D = dense("D", 1176, 10, 11_770)
X = dense("X", 10, 10, 110)


# --- the tracer ---------------------------------------------------------------------------------------------------


def test_trace_records_each_leaf_layer_of_the_reference_lenet(lenet_model, lenet_trace):
    assert [t.name for t in lenet_trace] == ["C1", "S2", "C3", "S4", "flatten", "C5", "F6", "OUTPUT"]
    assert [t.kind for t in lenet_trace] == ["Conv2D", "MaxPooling2D"] * 2 + ["Flatten"] + ["Dense"] * 3
    assert [t.output_shape for t in lenet_trace] == [
        (28, 28, 6),
        (14, 14, 6),
        (10, 10, 16),
        (5, 5, 16),
        (400,),
        (120,),
        (84,),
        (10,),
    ]
    assert [t.params for t in lenet_trace] == [156, 0, 2416, 0, 0, 48_120, 10_164, 850]
    assert [t.input_shape for t in lenet_trace[:3]] == [(28, 28, 1), (28, 28, 6), (14, 14, 6)]
    c1 = lenet_trace[0]
    assert (c1.config["kernel_size"], c1.config["strides"], c1.config["padding"]) == ((5, 5), (1, 1), "same")
    assert (c1.is_conv, c1.is_dense, lenet_trace[5].is_conv, lenet_trace[5].is_dense) == (True, False, False, True)
    assert total_params(lenet_trace) == lenet_model.count_params() == 61_706


def test_described_layers_quote_their_figures(lenet_trace):
    c1, s2, c5 = (parse(DESCRIBE, lenet_trace[i].describe()) for i in (0, 1, 5))
    assert c1 == {"kind": "Conv2D", "filters": "6", "kernel": "5x5", "units": None, "shape": "28x28x6", "params": "156"}
    assert s2 == dict(kind="MaxPooling2D", filters=None, kernel=None, units=None, shape="14x14x6", params="0")
    assert (c5["kind"], c5["units"], c5["shape"], c5["params"]) == ("Dense", "120", "120", "48,120")


@pytest.mark.parametrize("build", [functional_lenet, subclassed_lenet], ids=["functional", "subclassed"])
def test_functional_and_subclassed_models_trace_like_the_sequential_one(build, lenet_trace):
    traced = trace(build(), LENET_INPUT)
    significant = significant_layers(traced)
    assert [t.signature for t in significant] == [t.signature for t in significant_layers(lenet_trace)]
    assert all(t.kind != "LeNet5" and t.kind != "Functional" for t in traced)  # the model itself is no leaf
    skipped = [t.kind for t in traced if not t.significant]
    expected_skipped = {
        functional_lenet: ["ZeroPadding2D", "Activation", "ReLU", "Dropout", "Flatten", "Softmax"],
        subclassed_lenet: ["Flatten"],
    }[build]
    assert skipped == expected_skipped
    assert all(t.params == 0 for t in traced if not t.significant)


def test_nested_models_are_opened_and_composite_layers_count_as_one():
    keras = import_keras()
    layers = keras.layers

    class TwoDense(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.first, self.second = layers.Dense(8), layers.Dense(4)

        def call(self, x):
            return self.second(self.first(x))

    block = keras.Sequential([layers.Conv2D(3, 3, name="inner_conv"), layers.MaxPooling2D(name="inner_pool")])
    inputs = keras.Input((10, 10, 1))
    x = layers.Flatten(name="flat")(block(inputs))
    model = keras.Model(inputs, TwoDense(name="pair")(x))
    traced = trace(model, (10, 10, 1))
    assert [(t.name, t.output_shape, t.params) for t in traced] == [
        ("inner_conv", (8, 8, 3), 30),
        ("inner_pool", (4, 4, 3), 0),
        ("flat", (48,), 0),
        ("pair", (4,), 48 * 8 + 8 + 36),
    ]
    assert total_params(traced) == model.count_params()


def test_shared_layer_is_traced_per_call_and_counted_once():
    keras = import_keras()
    inputs = keras.Input((6,))
    shared = keras.layers.Dense(6, name="shared")
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(shared(shared(inputs))))
    traced = trace(model, (6,))
    assert [(t.name, t.params) for t in traced] == [("shared", 42), ("shared", 42), ("head", 14)]
    assert total_params(traced) == model.count_params() == 56


def test_trace_runs_in_inference_mode_and_restores_layer_call():
    keras = import_keras()
    seen = []

    class Spy(keras.layers.Layer):
        def call(self, x, training=None):
            seen.append(training)
            return x

    original = keras.layers.Layer.__call__
    model = keras.Sequential([keras.Input((3,)), Spy(name="spy")])
    seen.clear()
    traced = trace(model, (3,), batch=5)
    assert seen == [False]
    assert [(t.name, t.input_shape, t.output_shape) for t in traced] == [("spy", (3,), (3,))]
    assert keras.layers.Layer.__call__ is original


def test_model_that_cannot_run_raises_student_code_error_with_the_input_shape():
    keras = import_keras()
    original = keras.layers.Layer.__call__
    model = keras.Sequential([keras.layers.Reshape((7, 7))])
    with pytest.raises(StudentCodeError) as info:
        trace(model, LENET_INPUT, batch=3, call="the model from build_lenet5()")
    pattern = r"`(?P<call>.+) on an input of shape \((?P<shape>[\d, ]+)\)` raised (?P<error>\w+)"
    found = re.match(pattern, str(info.value))
    assert found, str(info.value)
    assert found["call"] == "the model from build_lenet5()"
    assert tuple(int(d) for d in found["shape"].split(", ")) == (3, 28, 28, 1)
    assert found["error"] == "ValueError"
    assert keras.layers.Layer.__call__ is original


def test_distinct_layers_with_the_same_name_are_all_counted():
    keras = import_keras()
    layers = keras.layers

    def block(filters):
        conv_layer = layers.Conv2D(filters, 3, padding="same", name="conv")
        return keras.Sequential([conv_layer, layers.MaxPooling2D(name="pool")])

    inputs = keras.Input((8, 8, 1))
    outputs = layers.Dense(2, name="out")(layers.Flatten()(block(8)(block(4)(inputs))))
    model = keras.Model(inputs, outputs)
    assert total_params(trace(model, (8, 8, 1))) == model.count_params() == 40 + 296 + 66


# --- small helpers --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "squeezed"),
    [((1, 1, 120), (120,)), ((5, 1, 3), (5, 3)), ((1, 1), (1,)), ((), (1,)), ((28, 28, 6), (28, 28, 6))],
)
def test_squeeze_drops_size_one_axes(shape, squeezed):
    assert squeeze(shape) == squeezed


def test_format_shape_and_kernel():
    assert format_shape((28, 28, 6)) == "28x28x6"
    assert format_shape([120]) == "120"
    assert format_shape(()) == ""
    assert format_kernel(5) == "5x5"
    assert format_kernel((3, 5)) == "3x5"
    assert format_kernel([11, 11]) == "11x11"


def test_significant_layers_keep_weights_and_pooling_only():
    layers = [
        plain("in", "InputLayer", (28, 28, 1)),
        plain("pad", "ZeroPadding2D", (32, 32, 1)),
        A,
        plain("act", "Activation", (28, 28, 6)),
        P,
        pool("avg", (14, 14, 6), (7, 7, 6), kind="AveragePooling2D"),
        LayerTrace("gap", "GlobalAveragePooling2D", (7, 7, 6), (6,), 0, {}),
        LayerTrace("bn", "BatchNormalization", (6,), (6,), 24, {}),
        plain("drop", "Dropout", (6,)),
        plain("flat", "Flatten", (6,)),
        X,
    ]
    assert [t.name for t in significant_layers(layers)] == ["A", "P", "avg", "gap", "bn", "X"]


def test_total_params_counts_each_name_once():
    assert total_params([A, P, A, D]) == 156 + 11_770
    assert total_params([]) == 0


# --- compare_structure on real models -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build", [functional_lenet, subclassed_lenet, lenet], ids=["functional", "subclassed", "sequential"]
)
def test_equivalent_spellings_of_lenet_match(build, lenet_trace):
    found = parse(MATCH, compare_structure(lenet_trace, trace(build(), LENET_INPUT)))
    assert int(found["count"]) == 7
    assert found["names"].split(", ") == LENET_NAMES


@pytest.mark.parametrize(
    ("knobs", "expected"),
    [
        (
            {"skip_f6": True},
            {"after": "C5", "name": "F6", "theirs": "my_output", "actual": "6", "expected": "7"},
        ),
        (
            {"skip_s2": True},
            {"after": "C1", "name": "S2", "theirs": "my_c3", "actual": "6", "expected": "7"},
        ),
    ],
    ids=["F6", "S2"],
)
def test_missing_layer_is_named(knobs, expected, lenet_trace):
    found = parse(MISSING, failure(lenet_trace, trace(lenet(**knobs), LENET_INPUT)))
    assert {key: found[key] for key in expected} == expected
    reference = {t.name: t for t in lenet_trace}[expected["name"]]
    described = parse(DESCRIBE, found["what"])
    assert (described["shape"], described["params"]) == (format_shape(reference.output_shape), f"{reference.params:,}")


def test_extra_layer_is_named(lenet_trace):
    found = parse(EXTRA, failure(lenet_trace, trace(lenet(extra_dense=True), LENET_INPUT)))
    assert (found["after"], found["theirs"], found["next"]) == ("F6", "my_extra", "OUTPUT")
    assert (found["actual"], found["expected"]) == ("8", "7")
    described = parse(DESCRIBE, found["what"])
    assert (described["kind"], described["units"], described["params"]) == ("Dense", "64", f"{84 * 64 + 64:,}")


@pytest.mark.parametrize(
    ("knobs", "layer", "got", "want", "cause"),
    [
        ({"f6_units": 64}, "F6", ("64", "7,744"), ("84", "10,164"), ("units", {"got": "64", "want": "84"})),
        (
            {"c3_kernel": 3},
            "C3",
            ("12x12x16", "880"),
            ("10x10x16", "2,416"),
            ("kernel", {"got": "3x3", "want": "5x5"}),
        ),
        ({"c1_bias": False}, "C1", ("28x28x6", "150"), ("28x28x6", "156"), ("no bias", {})),
        (
            {"c1_padding": "valid"},
            "C1",
            ("24x24x6", "156"),
            ("28x28x6", "156"),
            ("padding: same", {"size": "28x28", "out": "28x28", "yours": "valid"}),
        ),
    ],
    ids=["F6 units", "C3 kernel", "C1 bias", "C1 padding"],
)
def test_first_differing_layer_is_explained(knobs, layer, got, want, cause, lenet_trace):
    found = parse(DIFFERENCE, failure(lenet_trace, trace(lenet(**knobs), LENET_INPUT)))
    assert (found["name"], found["theirs"]) == (layer, f"my_{layer.lower()}")
    assert (found["got"], found["got_params"]) == got
    assert (found["want"], found["want_params"]) == want
    assert classify(found["cause"], CAUSES) == cause


def test_alexnet_reference_trace(alexnet_trace):
    assert [t.name for t in significant_layers(alexnet_trace)] == [
        "conv1",
        "pool1",
        "conv2",
        "pool2",
        "conv3",
        "conv4",
        "conv5",
        "pool3",
        "fc6",
        "fc7",
        "fc8",
    ]
    conv1 = next(t for t in alexnet_trace if t.name == "conv1")
    assert (conv1.input_shape, conv1.output_shape, conv1.params) == ((228, 228, 3), (55, 55, 64), 23_296)
    assert total_params(alexnet_trace) == 61_100_840


@pytest.mark.parametrize(("padding", "got"), [("valid", "54x54x64"), ("same", "56x56x64")])
def test_alexnet_conv1_without_zero_padding_gets_zero_padding_2(padding, got, alexnet_trace):
    keras = import_keras()
    layers = keras.layers
    student = keras.Sequential(
        [
            keras.Input(ALEXNET_INPUT),
            layers.Conv2D(64, 11, strides=4, padding=padding, activation="relu", name="my_conv1"),
            layers.MaxPooling2D(3, strides=2, name="my_pool1"),
        ]
    )
    traced = trace(student, ALEXNET_INPUT)
    features = alexnet_trace[: [t.name for t in alexnet_trace].index("pool1") + 1]  # pad1, conv1, pool1
    found = parse(DIFFERENCE, failure(features, traced))
    assert (found["name"], found["theirs"], found["got"], found["want"]) == ("conv1", "my_conv1", got, "55x55x64")
    assert found["got_params"] == found["want_params"] == "23,296"
    kind, figures = classify(found["cause"], CAUSES)
    assert kind == "padding: zero-pad"
    assert figures == {"size": "224x224", "pixels": "2", "pad": "2", "out": "55x55", "yours": padding}
    without_yours = {key: value for key, value in figures.items() if key != "yours"}
    assert classify(_padding_hint(traced[0], (55, 55)), HINTS) == ("zero-pad", without_yours)


# --- compare_structure on hand-made traces: the ends of the model ---------------------------------------------------


def test_missing_first_and_last_layers():
    found = parse(MISSING, failure([A, P, D], [P, D]))
    assert (found["after"], found["name"], found["theirs"], found["actual"], found["expected"]) == (
        None,
        "A",
        "P",
        "2",
        "3",
    )
    found = parse(MISSING, failure([A, P, D], [A, P]))
    assert (found["after"], found["name"], found["theirs"]) == ("P", "D", None)


def test_extra_first_and_last_layers():
    found = parse(EXTRA, failure([A, P, D], [X, A, P, D]))
    assert (found["after"], found["theirs"], found["next"], found["actual"], found["expected"]) == (
        None,
        "X",
        "A",
        "4",
        "3",
    )
    found = parse(EXTRA, failure([A, P, D], [A, P, D, X]))
    assert (found["after"], found["theirs"], found["next"]) == ("D", "X", "nothing")


def test_layers_without_weights_or_pooling_do_not_count():
    student = [
        plain("in", "InputLayer", (28, 28, 1)),
        A,
        plain("act", "ReLU", (28, 28, 6)),
        P,
        plain("flat", "Flatten", (1176,)),
        plain("drop", "Dropout", (1176,)),
        D,
    ]
    assert parse(MATCH, compare_structure([A, P, D], student)) == {"count": "3", "names": "A, P, D"}


def test_conv_c5_and_dense_c5_have_the_same_signature():
    c5_conv = conv("c5", (5, 5, 16), (1, 1, 120), 48_120)
    c5_dense = dense("c5", 400, 120, 48_120)
    assert c5_conv.signature == c5_dense.signature == ((120,), 48_120)
    assert parse(MATCH, compare_structure([c5_dense], [c5_conv])) == {"count": "1", "names": "c5"}
    found = parse(DIFFERENCE, failure([c5_dense], [conv("my_c5", (5, 5, 16), (1, 1, 100), 40_100)]))
    assert (found["name"], found["theirs"], found["got"], found["want"]) == ("c5", "my_c5", "1x1x100", "120")
    assert classify(found["cause"], CAUSES) == ("units", {"got": "100", "want": "120"})


# --- likely_cause and _padding_hint ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "actual", "cause"),
    [
        (A, conv("a", (28, 28, 1), (28, 28, 8), 208, padding="same"), ("filters", {"got": "8", "want": "6"})),
        (
            A,
            conv("a", (28, 28, 1), (14, 14, 6), 156, strides=(2, 2), padding="same"),
            ("strides", {"got": "2", "want": "1"}),
        ),
        (
            P,
            pool("p", (28, 28, 6), (26, 26, 6), size=(3, 3), strides=(1, 1)),
            ("pooling", {"got_pool": "3", "got_strides": "1", "want_pool": "2", "want_strides": "2"}),
        ),
        (A, pool("p", (28, 28, 1), (28, 28, 6)), ("kind", {"want": "Conv2D", "got": "MaxPooling2D"})),
        (dense("C5", 400, 120, 48_120), dense("c5", 576, 120, 69_240), ("fan-in", {"got": "576", "want": "400"})),
        (dense("F6", 120, 84, 10_164), dense("f6", 120, 84, 10_080, use_bias=False), ("no bias", {})),
        (dense("OUT", 84, 10, 840, use_bias=False), dense("out", 84, 10, 850), ("extra bias", {})),
        (A, conv("a", (28, 28, 3), (28, 28, 6), 456, padding="same"), ("fan-in", {"got": "75", "want": "25"})),
    ],
    ids=["filters", "strides", "pooling", "kind", "fan-in", "no bias", "extra bias", "input channels"],
)
def test_likely_cause(expected, actual, cause):
    assert classify(likely_cause(expected, actual), CAUSES) == cause


def pad(pixels: int) -> dict[str, str]:
    return {"pixels": str(pixels), "pad": str(pixels)}


@pytest.mark.parametrize(
    ("inp", "kernel", "strides", "want", "hint"),
    [
        ((224, 224), (11, 11), (4, 4), (55, 55), ("zero-pad", {"size": "224x224", **pad(2), "out": "55x55"})),
        ((28, 28), (5, 5), (1, 1), (32, 32), ("zero-pad", {"size": "28x28", **pad(4), "out": "32x32"})),
        ((27, 27), (5, 5), (1, 1), (27, 27), ("same", {"size": "27x27", "out": "27x27"})),
        ((224, 224), (11, 11), (4, 4), (56, 56), ("same", {"size": "224x224", "out": "56x56"})),
        ((27, 27), (3, 3), (2, 2), (14, 14), ("same", {"size": "27x27", "out": "14x14"})),  # 'same' rounds up
        ((10, 10), (4, 4), (1, 1), (12, 12), ("check", {"out": "12x12"})),  # 5 pixels in all: uneven
        ((28, 28), (5, 5), (1, 1), (32, 30), ("check", {"out": "32x30"})),  # 4 pixels on one axis, 3 on the other
        ((14, 14), (5, 5), (1, 1), (10, 10), ("check", {"out": "10x10"})),  # no padding at all gives it
    ],
)
def test_padding_hint_arithmetic(inp, kernel, strides, want, hint):
    actual = conv("c", (*inp, 3), (1, 1, 6), 0, kernel=kernel, strides=strides)
    assert classify(_padding_hint(actual, want), HINTS) == hint
