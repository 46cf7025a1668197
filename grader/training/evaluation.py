"""The grader's own measurements of a model: loss and accuracy as Keras computes them, for any weights.

The grader compiles its own copy of the model (`Evaluator`) with sparse categorical
cross-entropy and accuracy, and runs Keras's `evaluate` on it: the loss is then computed
exactly as `fit` computes `val_loss` on the backend in use (on TensorFlow from the softmax's
logits, elsewhere from clipped probabilities), always in inference mode (augmentation and
dropout off). Any weights can be loaded into the copy: the per-epoch snapshots of training
are measured the same way as the returned model.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

EVAL_BATCH = 1024
PROBE_IMAGES = 16  # images whose outputs tell probabilities from logits


@dataclasses.dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float


def predict_probabilities(model: Any, x: np.ndarray) -> np.ndarray:
    """Class probabilities in inference mode (`predict`: augmentation and dropout off)."""
    outputs = np.asarray(model.predict(x, batch_size=EVAL_BATCH, verbose=0), dtype=np.float64)
    outputs = outputs.reshape(len(x), -1)
    if not _look_like_probabilities(outputs):  # logits
        shifted = outputs - outputs.max(axis=1, keepdims=True)
        outputs = np.exp(shifted)
        outputs /= outputs.sum(axis=1, keepdims=True)
    return outputs


def _look_like_probabilities(outputs: np.ndarray) -> bool:
    return bool(np.all(outputs >= -1e-6) and np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3))


class Evaluator:
    """The grader's compiled copy of `model`: `measure(x, y, weights)` for the model's or any given weights."""

    def __init__(self, model: Any, probe: np.ndarray) -> None:
        import keras

        self.source = weakref.ref(model)
        try:
            copy = keras.models.clone_model(model)
            copy.set_weights(model.get_weights())
        except Exception:  # noqa: BLE001 - a model Keras cannot clone is measured as it is (after training)
            copy = model
        self.model = copy
        self.shapes = [tuple(w.shape) for w in copy.weights]
        probe = probe[:PROBE_IMAGES]
        outputs = np.asarray(copy.predict(probe, verbose=0), dtype=np.float64).reshape(len(probe), -1)
        self.from_logits = not _look_like_probabilities(outputs)
        copy.compile(
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=self.from_logits),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            jit_compile=False,  # XLA evaluates LeNet 2-3x slower on a CPU; the figures agree to float precision
        )

    def load(self, weights: Sequence[np.ndarray] | np.ndarray | None) -> None:
        """Put `weights` (a list, or one flat vector as `flat_weights` gives) into the copy; None: the model's own."""
        if weights is None:
            source = self.source()
            weights = source.get_weights() if source is not None else None
            if weights is None or source is self.model:
                return
        elif isinstance(weights, np.ndarray) and weights.ndim == 1:
            weights = unflatten(weights, self.shapes)
        self.model.set_weights(list(weights))

    def measure(
        self, x: np.ndarray, y: np.ndarray, weights: Sequence[np.ndarray] | np.ndarray | None = None
    ) -> Evaluation:
        self.load(weights)
        if not all(np.all(np.isfinite(w)) for w in self.model.get_weights()):
            return Evaluation(float("nan"), self._accuracy_of_broken(x, y))
        figures = self.model.evaluate(x, np.asarray(y), batch_size=EVAL_BATCH, verbose=0, return_dict=True)
        return Evaluation(float(figures["loss"]), float(figures["accuracy"]))

    def _accuracy_of_broken(self, x: np.ndarray, y: np.ndarray) -> float:
        outputs = np.nan_to_num(np.asarray(self.model.predict(x, batch_size=EVAL_BATCH, verbose=0)))
        return float(np.mean(np.argmax(outputs.reshape(len(x), -1), axis=1) == y))


_EVALUATORS: weakref.WeakKeyDictionary[Any, Evaluator] = weakref.WeakKeyDictionary()


def evaluator_for(model: Any, probe: np.ndarray) -> Evaluator:
    """The grader's compiled copy of `model` (one per model object)."""
    try:
        return _EVALUATORS[model]
    except (KeyError, TypeError):
        evaluator = Evaluator(model, probe)
        try:
            _EVALUATORS[model] = evaluator
        except TypeError:
            pass
        return evaluator


def evaluate(model: Any, x: np.ndarray, y: np.ndarray) -> Evaluation:
    """Cross-entropy and accuracy of `model` on (x, y), computed by the grader as Keras computes them."""
    return evaluator_for(model, x).measure(x, y)


def weights_snapshot(model: Any) -> list[np.ndarray]:
    """Copies of the model's weights, in order."""
    import keras

    return [np.array(keras.ops.convert_to_numpy(w.value)) for w in model.weights]


def flat_weights(weights: Sequence[np.ndarray]) -> np.ndarray:
    """All weights as one float32 vector (the form in which the per-epoch snapshots travel)."""
    if not weights:
        return np.zeros(0, np.float32)
    return np.concatenate([np.asarray(w, dtype=np.float32).ravel() for w in weights])


def unflatten(vector: np.ndarray, shapes: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
    out, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        out.append(vector[start : start + size].reshape(shape))
        start += size
    return out


def weights_changed(before: Sequence[np.ndarray], model: Any) -> bool:
    after = weights_snapshot(model)
    return len(after) != len(before) or any(not np.array_equal(a, b) for a, b in zip(before, after))


def weights_finite(model: Any) -> bool:
    return all(np.all(np.isfinite(w)) for w in weights_snapshot(model) if np.issubdtype(w.dtype, np.floating))
