"""A wrong parameter count or share caused by a recognisable slip gets a message that names it (q5, q6).

Each wrong answer comes from a real wrong submission, graded like any other.
"""

from __future__ import annotations

import math

import keras
from conftest import grade

from grader.paths import solutions_dir
from grader.questions import get_question
from grader.slips import LayerParams, count_slip, share_slip
from grader.submission import load_module

REFERENCE_Q5 = load_module(solutions_dir(), get_question("q5")).namespace
REFERENCE_Q6 = load_module(solutions_dir(), get_question("q6")).namespace


def sizes(layer, biases: bool = True) -> int:
    return sum(math.prod(w.shape) for w in layer.weights if biases or w.name != "bias")


def leaves(model):
    for layer in model.layers:
        yield from leaves(layer) if hasattr(layer, "layers") else (layer,)


def failure(result, check: str) -> tuple[str, str | None]:
    """(message, diagnosis) of `check`, which must have failed."""
    (found,) = [c for c in result.checks if c.name == check]
    assert not found.passed, found.message
    return found.message, found.diagnosis


def q5(count_parameters):
    functions = {name: REFERENCE_Q5[name] for name in ("conv2d_params", "dense_params")}
    return grade("q5", count_parameters=count_parameters, **functions)


def q6(classifier_parameter_fraction):
    return grade("q6", classifier_parameter_fraction=classifier_parameter_fraction, ANSWER=REFERENCE_Q6["ANSWER"])


def test_count_without_biases_names_the_slip():
    def count_parameters(model):  # kernels only
        return sum(sizes(layer, biases=False) for layer in leaves(model))

    message, diagnosis = failure(q5(count_parameters), "count_parameters on AlexNet")
    assert "returned 61,090,496, expected 61,100,840" in message
    assert "without the 10,344 biases" in message and diagnosis == "biases-omitted"


def test_count_of_the_last_layer_only_names_the_slip():
    def count_parameters(model):
        total = 0
        for layer in leaves(model):
            total = sizes(layer)  # `=` where `+=` is meant
        return total

    message, diagnosis = failure(q5(count_parameters), "count_parameters on AlexNet")
    assert "one layer only, 'fc8' (Dense, 4,097,000 parameters)" in message and "`total += ...`" in message
    assert diagnosis == "one-layer-only"


def test_count_with_a_layer_twice_names_the_slip():
    def count_parameters(model):
        layers = list(leaves(model))
        return sum(sizes(layer) for layer in layers) + sizes(layers[-1])  # the output layer added again

    result = q5(count_parameters)
    message, diagnosis = failure(result, "count_parameters on AlexNet")
    assert "4,097,000 too many, exactly layer 'fc8'" in message and "counted twice" in message
    assert diagnosis == "layer-counted-twice"
    message, diagnosis = failure(result, "count_parameters walks the layers")
    assert "counted twice" in message and diagnosis == "layer-counted-twice"


def test_share_of_the_convolutions_names_the_complement():
    def classifier_parameter_fraction(model):  # sums the Conv2D layers instead of the Dense ones
        convs = sum(sizes(layer) for layer in leaves(model) if isinstance(layer, keras.layers.Conv2D))
        return convs / sum(sizes(layer) for layer in leaves(model))

    message, diagnosis = failure(q6(classifier_parameter_fraction), "classifier parameter fraction of AlexNet")
    assert "returned 0.0404, expected 0.9596" in message
    assert "the convolutional layers' share; the question asks for the Dense layers'" in message
    assert diagnosis == "complement-returned"


def test_share_of_one_dense_layer_names_the_slip():
    def classifier_parameter_fraction(model):
        dense = 0
        for layer in leaves(model):
            if isinstance(layer, keras.layers.Dense):
                dense = sizes(layer)  # `=` where `+=` is meant
        return dense / sum(sizes(layer) for layer in leaves(model))

    message, diagnosis = failure(q6(classifier_parameter_fraction), "classifier parameter fraction of AlexNet")
    assert "one layer only, 'fc8'" in message and diagnosis == "one-layer-only"


def test_share_with_a_layer_twice_names_the_slip():
    def classifier_parameter_fraction(model):
        layers = list(leaves(model))
        layers.append(layers[-1])  # the output layer walked twice
        dense = sum(sizes(layer) for layer in layers if isinstance(layer, keras.layers.Dense))
        return dense / sum(sizes(layer) for layer in layers)

    message, diagnosis = failure(q6(classifier_parameter_fraction), "classifier parameter fraction of AlexNet")
    assert "'fc8' (Dense, 4,097,000 parameters) counted twice" in message and diagnosis == "layer-counted-twice"


def test_no_slip_is_claimed_for_a_right_or_unexplained_number():
    layers = [LayerParams("c", "Conv2D", 150, 6), LayerParams("d", "Dense", 840, 10)]
    assert count_slip(layers, 1006) is None  # right
    assert count_slip(layers, 1005) is None  # wrong, by no known slip
    assert count_slip(layers, 990).diagnosis.id == "biases-omitted"
    labels = {"tolerance": 1e-3, "part_label": "the Dense layers", "rest_label": "the others"}
    share = 850 / 1006
    assert share_slip(layers[1:], layers, share, **labels) is None  # right
    assert share_slip(layers[1:], layers, 0.5, **labels) is None  # wrong, by no known slip
    assert share_slip(layers[1:], layers, 100 * share + 0.05, **labels).diagnosis.id == "percentage-not-fraction"
    assert share_slip(layers[1:], layers, 1 - share, **labels).message == (
        "That is the others' share; the question asks for the Dense layers'."
    )
