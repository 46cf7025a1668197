"""What the grader measures of a training run itself: per-run secrets, the weight trajectory, the curves.

Everything that comes back from the student's process (the model, the history, the weight
snapshots) is under the student's control. The grader therefore

- gives every run secrets drawn in the grading process (`RunSecret`): the model starts from
  fresh random weights nobody knew before the run, and the class ids of the training and
  validation labels are permuted (no class keeps its id), so weights learnt offline (on
  the public test set, say) neither start the run nor score under this run's labels;
- reads back only the weights of the model it sent, snapshot when each fit began, after
  every epoch and when it ended (`Trajectory`), and checks that they form one training
  run from the weights it sent to the model that came back (`check_trajectory`): every
  epoch changes the weights, gradually, and nothing replaces them in between;
- measures every epoch itself (`measure_curve`): validation loss and accuracy as Keras
  computes them, and loss and accuracy on training images, all in inference mode. The
  checks judge overfitting on these figures, and compare the returned history with them.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..checks import CheckFailed
from .data import Split
from .evaluation import Evaluator, flat_weights, unflatten, weights_snapshot

NUM_CLASSES = 10
TRAIN_PROBE = 2000  # training images the grader measures after every epoch (the training-loss curve)
MIN_STEP_CORRELATION = 0.5  # each layer's weights vs the previous snapshot (honest epochs: above 0.9)
MIN_INIT_CORRELATION = 0.1  # the largest layer's trained weights vs the weights sent (honest: above 0.5)
MIN_CORRELATED_SIZE = 100  # layers with fewer weights are not compared (biases, tiny kernels)


@dataclasses.dataclass(frozen=True)
class RunSecret:
    """Drawn in the grading process for one run: the seed of the initial weights and the class-id permutation."""

    init_seed: int
    permutation: np.ndarray  # new id of class c is permutation[c]; no class keeps its id

    @classmethod
    def draw(cls) -> RunSecret:
        rng = np.random.default_rng(secrets.randbits(128))
        while True:
            permutation = rng.permutation(NUM_CLASSES)
            if not np.any(permutation == np.arange(NUM_CLASSES)):
                break
        return cls(int(rng.integers(2**31 - 1)), permutation)

    def relabel(self, split: Split) -> Split:
        """The split with this run's class ids (images untouched)."""

        def labels(values: np.ndarray) -> np.ndarray:
            if len(values) and (values.min() < 0 or values.max() >= NUM_CLASSES):
                raise ValueError("labels outside 0..9")
            array = self.permutation[values].astype(np.int64)
            array.setflags(write=False)
            return array

        return dataclasses.replace(
            split, y_train=labels(split.y_train), y_val=labels(split.y_val), y_test=labels(split.y_test)
        )

    def initialise(self, model: Any, seed_after: int) -> None:
        """Give `model` fresh random weights from its own initialisers, drawn with the secret seed.

        Keras's global seed is set to `seed_after` afterwards, so that what follows is as
        reproducible as before.
        """
        import keras

        keras.utils.set_random_seed(self.init_seed)
        try:
            fresh = keras.models.clone_model(model)
            model.set_weights(fresh.get_weights())
        except Exception:  # noqa: BLE001 - a model Keras cannot clone keeps its weights, plus secret noise
            rng = np.random.default_rng(self.init_seed)
            model.set_weights([w + rng.normal(0, 0.01, w.shape).astype(w.dtype) for w in model.get_weights()])
        keras.utils.set_random_seed(seed_after)


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """The snapshots of the sent model's weights, as the student's process sent them back (to be checked)."""

    points: np.ndarray  # (snapshots, weights) float32
    kinds: tuple[str, ...]  # "begin" | "epoch" | "end" per snapshot

    @classmethod
    def from_outcome(cls, data: Any, size: int) -> Trajectory:
        """Read the snapshots back; `CheckFailed` if they are not what the grader's recorder sends."""
        try:
            points = np.asarray(data["points"])
            kinds = tuple(str(kind) for kind in data["kinds"])
            if not kinds and points.size == 0:  # fit never ran on the model sent
                points = np.zeros((0, size), np.float32)
            valid = (
                points.ndim == 2
                and points.shape == (len(kinds), size)
                and np.issubdtype(points.dtype, np.floating)
                and set(kinds) <= {"begin", "epoch", "end"}
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            valid = False
        if not valid:
            raise CheckFailed(
                "The grader's record of your training (the model's weights after every epoch) could not be read "
                "back: something in your code interfered with the grader's watch of model.fit."
            )
        return cls(points.astype(np.float32, copy=False), kinds)

    @property
    def epoch_indices(self) -> list[int]:
        return [i for i, kind in enumerate(self.kinds) if kind == "epoch"]

    @property
    def epochs(self) -> int:
        return len(self.epoch_indices)

    def fits(self) -> list[list[int]]:
        """Each fit's epoch numbers (0-based, over the whole run)."""
        groups: list[list[int]] = []
        epoch = 0
        for kind in self.kinds:
            if kind == "begin":
                groups.append([])
            elif kind == "epoch":
                if not groups:
                    groups.append([])
                groups[-1].append(epoch)
                epoch += 1
        return [group for group in groups if group]

    def first_non_finite_epoch(self) -> int | None:
        """The 1-based epoch after which the weights were first NaN or infinite."""
        for number, index in enumerate(self.epoch_indices, start=1):
            if not np.all(np.isfinite(self.points[index])):
                return number
        return None


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64) - a.mean()
    b = b.astype(np.float64) - b.mean()
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norms) if norms > 0 else (1.0 if np.array_equal(a, b) else 0.0)


def _layer_slices(shapes: Sequence[tuple[int, ...]], names: Sequence[str]) -> list[tuple[str, slice]]:
    """The flat ranges of the layers' kernels large enough to compare."""
    slices, start = [], 0
    for shape, name in zip(shapes, names):
        size = int(np.prod(shape))
        if len(shape) >= 2 and size >= MIN_CORRELATED_SIZE:
            slices.append((name, slice(start, start + size)))
        start += size
    return slices


def check_trajectory(
    trajectory: Trajectory, sent: np.ndarray, returned: np.ndarray, model: Any, *, learnt: str | None = None
) -> dict[str, float]:
    """The snapshots form one training run from the weights the grader sent to the model that came back.

    Raises `CheckFailed` saying what was seen: weights loaded before or between fits, an
    epoch that did not train, weights that jumped, weights changed after fit; `learnt` ends
    each message (default: how the grader's secret weights and labels make this matter).
    Returns the figures it judged: the lowest layer correlation between successive epochs,
    and the largest layer's correlation with the weights sent.
    """
    shapes = [tuple(w.shape) for w in model.weights]
    names = [str(getattr(w, "path", None) or getattr(w, "name", f"weights {i}")) for i, w in enumerate(model.weights)]
    layers = _layer_slices(shapes, names)
    learnt = learnt or (
        "The grader starts every run from fresh random weights of its own (secret, different each run) and relabels "
        "the classes for the run, so it grades only weights learnt from them by fit in this run."
    )
    if not trajectory.epochs:
        raise CheckFailed(
            "The model's weights changed, but the grader saw no epoch of model.fit train it: the weights were set "
            f"some other way (set_weights, load_weights, assignments). {learnt}"
        )
    previous, fit_number, epoch = sent, 0, 0
    lowest_step = 1.0
    fit_epochs: list[np.ndarray] = []
    for point, kind in zip(trajectory.points, trajectory.kinds):
        if kind == "begin":
            fit_number += 1
            if not np.array_equal(point, previous):
                where = (
                    "When model.fit began, the model did not hold the weights the grader sent: they were replaced "
                    "before training (set_weights or load_weights of weights computed elsewhere, e.g. pasted in "
                    "your file)"
                    if fit_number == 1
                    else f"Call {fit_number} of model.fit began from weights the previous call did not leave: they were "
                    "replaced between the calls"
                )
                raise CheckFailed(f"{where}. {learnt}")
            fit_epochs = []
        elif kind == "epoch":
            epoch += 1
            if np.array_equal(point, previous):
                raise CheckFailed(
                    f"Epoch {epoch} did not change the model's weights at all (a learning rate of 0, or every layer "
                    f"frozen?): nothing was learnt in it. {learnt}"
                )
            for name, part in layers:
                step = _correlation(point[part], previous[part])
                lowest_step = min(lowest_step, step)
                if step < MIN_STEP_CORRELATION:
                    raise CheckFailed(
                        f"In epoch {epoch} the weights of {name} jumped to values unrelated to the previous ones "
                        f"(correlation {step:.2f}; an epoch of training keeps it above {MIN_STEP_CORRELATION:g}): "
                        f"weights were loaded during training, not learnt. {learnt}"
                    )
            fit_epochs.append(point)
        elif kind == "end" and not np.array_equal(point, previous):
            if not any(np.array_equal(point, earlier) for earlier in fit_epochs):  # restore_best_weights is fine
                raise CheckFailed(
                    f"When call {fit_number} of model.fit ended, the model held weights that none of its epochs "
                    f"produced: they were replaced at the end of training. {learnt}"
                )
        previous = point
    if not np.array_equal(returned, previous):
        raise CheckFailed(
            "The model came back with weights that model.fit did not leave: they were changed after training "
            f"(set_weights, load_weights or assignments after fit). {learnt}"
        )
    kept = 1.0
    if layers:
        name, largest = max(layers, key=lambda item: item[1].stop - item[1].start)
        kept = _correlation(returned[largest], sent[largest])
        if kept < MIN_INIT_CORRELATION:
            raise CheckFailed(
                f"The trained weights of {name} have nothing left of the weights the grader sent (correlation "
                f"{kept:.3f}; training from them keeps it above {MIN_INIT_CORRELATION:g}): they were not learnt "
                f"from them in this run. {learnt}"
            )
    return {"lowest_step_correlation": lowest_step, "init_correlation": kept}


@dataclasses.dataclass(frozen=True)
class MeasuredCurve:
    """The grader's figures for every epoch (inference mode): training-image loss/accuracy, validation loss/accuracy."""

    loss: list[float]
    accuracy: list[float]
    val_loss: list[float]
    val_accuracy: list[float]
    fits: list[list[int]]  # each fit's epochs (0-based)

    @property
    def epochs(self) -> int:
        return len(self.val_loss)

    def as_history(self) -> dict[str, list[float]]:
        return {
            "loss": self.loss,
            "accuracy": self.accuracy,
            "val_loss": self.val_loss,
            "val_accuracy": self.val_accuracy,
        }

    def best_epoch(self) -> int:
        """The 1-based epoch with the lowest validation loss measured by the grader."""
        values = np.asarray(self.val_loss, dtype=np.float64)
        return int(np.argmin(np.where(np.isfinite(values), values, np.inf))) + 1


def measure_curve(trajectory: Trajectory, evaluator: Evaluator, split: Split) -> MeasuredCurve:
    """Evaluate every epoch's weights on the validation images and on `TRAIN_PROBE` training images."""
    x_probe, y_probe = split.x_train[:TRAIN_PROBE], split.y_train[:TRAIN_PROBE]
    columns: dict[str, list[float]] = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
    for index in trajectory.epoch_indices:
        weights = unflatten(trajectory.points[index], evaluator.shapes)
        val = evaluator.measure(split.x_val, split.y_val, weights)
        train = evaluator.measure(x_probe, y_probe, weights)
        columns["val_loss"].append(val.loss)
        columns["val_accuracy"].append(val.accuracy)
        columns["loss"].append(train.loss)
        columns["accuracy"].append(train.accuracy)
    evaluator.load(None)
    return MeasuredCurve(**columns, fits=trajectory.fits())


def model_vector(model: Any) -> np.ndarray:
    return flat_weights(weights_snapshot(model))


def trajectory_from(outcome: Mapping[str, Any], model: Any) -> Trajectory:
    size = sum(int(np.prod(w.shape)) for w in model.weights)
    return Trajectory.from_outcome(outcome.get("trajectory"), size)
