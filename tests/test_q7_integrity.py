"""q7's training check rests on the grader's own measurements: validation leaks and forged histories fail, the
reference passes (quick tier, generated flowers, in this process)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from grader.checks import CheckFailed, Context
from grader.flowers.experiment import NAMES
from grader.grading import reference_namespace
from grader.options import GradingOptions
from grader.questions import get_question
from grader.questions import q7_flowers as q7
from grader.questions import q7_integrity as integrity
from grader.questions.q7_tiers import run_measured

QUESTION = get_question("q7")
REFERENCE = reference_namespace(QUESTION)
LEAK = "Validation images reached the training"


def training(train_transfer):
    """The training check on the reference's pipeline with this `train_transfer`: (passed, message, verdicts).

    (The reference itself is graded in tests/test_q7_flowers.py, which also checks the markers' probability.)
    """
    namespace = {name: REFERENCE[name] for name in NAMES} | {"train_transfer": train_transfer}
    ctx = Context(QUESTION, namespace, REFERENCE, options=GradingOptions(tier="quick"))
    try:
        return True, q7.training(ctx), run_measured(ctx)[2]
    except CheckFailed as failure:
        return False, str(failure), None


def compiled(model):
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.mark.slow
def test_training_on_the_validation_set_fails_naming_the_leak():
    def train_transfer(model, train_ds, val_ds, epochs):
        return compiled(model).fit(val_ds, validation_data=val_ds, epochs=epochs, verbose=0).history

    passed, message, _ = training(train_transfer)
    assert not passed and message.startswith(LEAK) and "do not concatenate" in message, message


@pytest.mark.slow
def test_training_on_train_and_validation_concatenated_fails_naming_the_leak():
    def train_transfer(model, train_ds, val_ds, epochs):
        both = train_ds.concatenate(val_ds.unbatch().batch(8))
        return compiled(model).fit(both, validation_data=val_ds, epochs=epochs, verbose=0).history

    passed, message, _ = training(train_transfer)
    assert not passed and message.startswith(LEAK), message


@pytest.mark.slow
def test_forged_history_fails_with_the_graders_own_figure():
    def train_transfer(model, train_ds, val_ds, epochs):
        history = compiled(model).fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=0).history
        history["val_accuracy"] = [0.6 + 0.1 * epoch for epoch in range(epochs)]  # a nicer curve
        return history

    passed, message, _ = training(train_transfer)
    assert not passed, message
    assert "Epoch 1 of your history reports val_accuracy 0.6000" in message and "grader's own evaluation" in message


def measured(marker_probability, val_loss=(1.0, 0.9, 0.8), val_accuracy=(0.2, 0.5, 0.75)):
    epochs = len(marker_probability) - 1
    curves = {key: [] for key in ("train_loss",)}
    return integrity.Measured(
        epochs,
        [*val_loss, val_loss[-1]][: epochs + 2],
        [*val_accuracy, val_accuracy[-1]][: epochs + 2],
        [*marker_probability, marker_probability[-1]],
        [0.1] * (epochs + 2),
        curves,
        [list(range(epochs))],
    )


def test_leak_rule_reads_a_rise_of_the_marker_class_and_ignores_a_fall():
    assert integrity.leak_problem(measured([0.2, 0.12, 0.06])) is None
    assert "up from 12%" in integrity.leak_problem(measured([0.2, 0.12, 0.2]))
    assert integrity.leak_problem(measured([0.01, 0.005, 0.02])) is None  # tiny wobbles stay below the margin


def test_history_rule_compares_every_epoch_and_names_the_first_difference():
    figures = measured([0.2, 0.1, 0.05])
    honest = {"loss": [1.0, 0.5], "val_loss": [0.9, 0.8], "val_accuracy": [0.5, 0.75]}
    assert integrity.history_problem(honest, figures) is None
    message = integrity.history_problem({**honest, "val_loss": [0.9, 0.4]}, figures)
    assert "Epoch 2 of your history reports val_loss 0.4000" in message and "0.8000" in message
    assert "has 3 epochs" in integrity.history_problem({"loss": [1] * 3, "val_loss": [1] * 3}, figures)
    assert "no val_loss" in integrity.history_problem({"loss": [1.0, 0.5]}, figures)


def test_markers_are_secret_mixed_in_and_relabel_the_real_classes_around_their_id():
    first, second = integrity.Markers.draw(4, 8), integrity.Markers.draw(4, 8)
    assert len(first.images) == integrity.MARKERS_SENT + integrity.MARKERS_KEPT
    assert sorted(first.order.tolist()) == list(range(8 + integrity.MARKERS_SENT))
    assert first.order.tolist() != second.order.tolist() or first.marker_id != second.marker_id
    ids = first.relabel(np.arange(4))
    assert first.marker_id not in ids.tolist() and sorted({*ids.tolist(), first.marker_id}) == list(range(5))
    blobs, labels = first.sent_validation([b"v"] * 8, np.arange(8) % 4)
    assert len(blobs) == len(labels) == 8 + integrity.MARKERS_SENT
    assert (labels == first.marker_id).sum() == integrity.MARKERS_SENT
    probs = np.full((2, 5), 0.2)
    assert np.allclose(first.real_probabilities(probs), 0.25)
