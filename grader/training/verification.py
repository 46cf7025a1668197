"""Is the history real? Every epoch of the returned history matches the grader's own measurement of that epoch.

The grader measures the model after every epoch itself (`trajectory.measure_curve`, from
the weight snapshots it checked); the returned history must agree with it epoch by epoch.
A made-up or edited history fails here, naming the first difference, and so does one
validated on other data (augmented, rescaled, `validation_split`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..checks import CheckFailed
from .evaluation import unflatten
from .run import TrainingRun

ACCURACY_TOLERANCE = 0.005  # val_accuracy vs the grader's measurement (5,000 images: 25 images)
LOSS_TOLERANCE = 0.05  # relative, for val_loss vs the grader's cross-entropy (computed as Keras computes it)
FIX = "Return history.history exactly as fit returns it: the grader measures the model after every epoch itself."


def verify_history(run: TrainingRun, *, augmentation: Any = None) -> str:
    """Every epoch's val_loss and val_accuracy in the returned history match the grader's measurement of that epoch.

    The history may cover every epoch the grader saw (all fits in order) or one fit's.
    Raises `CheckFailed` naming the first difference. With `augmentation`, a validation
    set that went through it is recognised and named.
    """
    history, curve = run.history, run.curve
    epochs = len(history["loss"])
    candidates = [list(range(curve.epochs))] + [fit for fit in reversed(curve.fits) if len(curve.fits) > 1]
    same_length = [epochs_seen for epochs_seen in candidates if len(epochs_seen) == epochs]
    if not same_length:
        raise CheckFailed(
            f"The history you returned has {epochs} epoch{'s' if epochs != 1 else ''}, but the grader saw model.fit "
            f"train the model you were given for {curve.epochs} epoch{'s' if curve.epochs != 1 else ''}"
            f"{_per_fit(curve.fits)}. {FIX}"
        )
    first_difference = None
    for epochs_seen in same_length:
        difference = _first_difference(history, curve.val_loss, curve.val_accuracy, epochs_seen)
        if difference is None:
            largest = max(abs(history["val_accuracy"][i] - curve.val_accuracy[e]) for i, e in enumerate(epochs_seen))
            return (
                f"{epochs} epochs; every epoch's val_loss and val_accuracy match the grader's own measurement of the "
                f"model after that epoch (accuracies within {largest:.4f})"
            )
        first_difference = first_difference or (difference, epochs_seen)
    assert first_difference is not None
    (position, key), epochs_seen = first_difference
    epoch = epochs_seen[position]
    reported = f"val_accuracy {history['val_accuracy'][position]:.4f}, val_loss {history['val_loss'][position]:.4f}"
    actual = f"val_accuracy {curve.val_accuracy[epoch]:.4f}, val_loss {curve.val_loss[epoch]:.4f}"
    reported_accuracy = history["val_accuracy"][position]
    if augmentation is not None and _validation_was_augmented(run, augmentation, epoch, reported_accuracy):
        cause = (
            "Your validation images went through the augmentation: evaluation data must never be randomly "
            "transformed. Pass validation_data=(x_val, y_val) as given, and put the augmentation where only "
            "training batches pass through it (in front of the model, where fit calls it with training=True)."
        )
    else:
        cause = (
            f"The first difference is in {key}. Validate on x_val, y_val exactly as given "
            "(validation_data=(x_val, y_val), not validation_split; do not rescale or transform them). " + FIX
        )
    raise CheckFailed(
        f"Epoch {position + 1} of your history reports {reported}, but the grader's evaluation of the model as it was "
        f"after that epoch on the validation set gives {actual}. {cause}"
    )


def _per_fit(fits: Sequence[Sequence[int]]) -> str:
    return f" (in {len(fits)} calls of fit: {', '.join(str(len(fit)) for fit in fits)})" if len(fits) > 1 else ""


def _first_difference(
    history: Mapping[str, list[float]], val_loss: Sequence[float], val_accuracy: Sequence[float], epochs: Sequence[int]
) -> tuple[int, str] | None:
    for position, epoch in enumerate(epochs):
        if abs(history["val_accuracy"][position] - val_accuracy[epoch]) > ACCURACY_TOLERANCE:
            return position, "val_accuracy"
        loss, measured = history["val_loss"][position], val_loss[epoch]
        finite = math.isfinite(loss) and math.isfinite(measured)
        if not finite or abs(loss - measured) > LOSS_TOLERANCE * measured + 0.01:
            return position, "val_loss"
    return None


def _validation_was_augmented(run: TrainingRun, augmentation: Any, epoch: int, reported_accuracy: float) -> bool:
    """Is the reported val_accuracy closer to that epoch's accuracy on augmented validation images?"""
    from .evaluation import evaluator_for

    try:
        augmented = np.asarray(augmentation(run.split.x_val, training=True)).astype(np.float32)
    except Exception:  # noqa: BLE001 - the student's layer may raise anything
        return False
    evaluator = evaluator_for(run.model, run.split.x_val)
    weights = unflatten(run.trajectory.points[run.trajectory.epoch_indices[epoch]], evaluator.shapes)
    on_augmented = evaluator.measure(augmented, run.split.y_val, weights)
    evaluator.load(None)
    clean = run.curve.val_accuracy[epoch]
    return abs(reported_accuracy - on_augmented.accuracy) < abs(reported_accuracy - clean)
