"""What the grader measures of q7's training run itself: the head after every epoch, and validation images leaking in.

Everything that comes back from the student's process (the model, the returned history, the
snapshots of the head's weights) is under the student's control, so the grader:

- cuts the model it sent at its backbone (`HeadMeasure`): the frozen backbone's features of
  the training-probe, validation, marker and test images are computed once, in the grading
  process, with the backbone weights the grader sent; the head is then evaluated on them for
  the weights of every epoch, as Keras computes loss and accuracy (a compiled copy of the head);
- checks that the head's snapshots form one training run from the weights it sent to the
  model that came back (`training.trajectory.check_trajectory`), then measures every epoch
  from them: the curves, the test accuracy and "history is real" (`history_problem`) are the
  grader's figures, never numbers computed where the student's code runs.

**The leak check (marker class).** Before each run the grading process draws a secret
(`Markers.draw`): the model is built with one class more than the data has, at a secret id;
the real classes take the other ids. The grader's marker images (a generated look no real
class has) are mixed into the validation set it sends, labelled with that id, at secret
positions; as many again are kept back and never sent. No training image carries the id,
so honest training only ever pushes its probability down: on the marker images it falls
epoch after epoch (the reference: from about 0.2 to 0.05 in the quick tier). Training on the
validation set in any form (the dataset itself, or data built from it: concatenated, mapped,
unbatched, cached into arrays) teaches the model that markers are that class, and their
probability rises (`LEAK_RATIO`, `LEAK_MARGIN`): also on the markers kept back, which the
student's process never saw. The
grader reads that probability off its own evaluation of the weights sent and of every
epoch's snapshot, so a record kept in the child cannot hide it. What it cannot catch: code
written to recognise the marker class (the one id no training label has) and drop it before
training on the rest of the validation set.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
import types
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..checks import CheckFailed
from ..flowers.backbones import find_backbone
from ..flowers.recording import head_variables, scores_from_probs
from ..flowers.synthetic import marker_images
from ..training.evaluation import Evaluator, flat_weights
from ..training.trajectory import Trajectory, check_trajectory
from ..training.verification import ACCURACY_TOLERANCE, LOSS_TOLERANCE

MARKERS_SENT = 8  # marker images mixed into the validation set sent to the student's process
MARKERS_KEPT = 4  # marker images of the same look the grader keeps back
# A leak: after some epoch the markers' probability is at least LEAK_RATIO times, and LEAK_MARGIN above, its lowest
# value before (the weights sent or an earlier epoch). Honest quick-tier runs only lower it, every epoch (the reference:
# 0.19-0.23 -> 0.05-0.06); training on the validation set raised it (to 0.24-0.49).
LEAK_RATIO = 1.25
LEAK_MARGIN = 0.03
ACCURACY_KEYS = ("val_accuracy", "val_acc", "val_sparse_categorical_accuracy")
LEAK_FIX = (
    "Validation images are for measuring the model, never for training it: pass train_ds alone to fit as the "
    "training data and val_ds only as validation_data=val_ds (do not concatenate, map, unbatch or cache val_ds into "
    "the training data)."
)


@dataclasses.dataclass(frozen=True)
class Markers:
    """One run's secret: the marker class's id, the marker images, and where the sent ones sit in the validation set."""

    marker_id: int  # in 0..num_classes; real class c gets id c, or c + 1 from marker_id on
    num_classes: int  # real classes
    images: list[bytes]  # MARKERS_SENT sent, then MARKERS_KEPT kept back
    order: np.ndarray  # validation set as sent: entry i < n_val is validation image i, else marker i - n_val

    @classmethod
    def draw(cls, num_classes: int, n_val: int) -> Markers:
        rng = np.random.default_rng(secrets.randbits(128))
        images = marker_images(MARKERS_SENT + MARKERS_KEPT, seed=int(rng.integers(2**31 - 1)))
        order = rng.permutation(n_val + MARKERS_SENT)
        return cls(int(rng.integers(num_classes + 1)), num_classes, images, order)

    def relabel(self, labels: np.ndarray) -> np.ndarray:
        """Real class ids as the model sent sees them (the marker's id skipped)."""
        labels = np.asarray(labels, dtype=np.int64)
        return labels + (labels >= self.marker_id)

    def sent_validation(self, val_blobs: Sequence[bytes], val_labels: np.ndarray) -> tuple[list[bytes], np.ndarray]:
        """The validation images and labels sent: the real ones with the sent markers at the secret positions."""
        n_val, relabelled = len(val_blobs), self.relabel(val_labels)
        blobs = [val_blobs[i] if i < n_val else self.images[i - n_val] for i in self.order]
        labels = np.array([relabelled[i] if i < n_val else self.marker_id for i in self.order], dtype=np.int64)
        return blobs, labels

    def real_probabilities(self, probs: np.ndarray) -> np.ndarray:
        """Predictions over the real classes only, in their own ids (the marker's column dropped, renormalised)."""
        real = np.delete(np.asarray(probs, dtype=np.float64), self.marker_id, axis=1)
        return real / np.maximum(real.sum(axis=1, keepdims=True), 1e-12)


class HeadMeasure:
    """The model cut at its backbone: features once (the grader's copy of the backbone), the head for any weights."""

    def __init__(self, model: Any) -> None:
        import keras

        backbone = find_backbone(model)
        try:
            if backbone is None:
                raise ValueError("no backbone")
            (node,) = backbone._inbound_nodes
            cut = node.output_tensors[0]
            self.features_model = keras.Model(model.inputs, cut)
            head = keras.Model(cut, model.outputs)
            snapshot_ids = [id(w) for w in head_variables(model)]
            sizes = [int(np.prod(w.shape)) for w in head_variables(model)]
            starts = np.cumsum([0, *sizes])
            where = {key: (int(starts[i]), int(starts[i + 1])) for i, key in enumerate(snapshot_ids)}
            self.slices = [where[id(w)] for w in head.weights]
        except (ValueError, KeyError, AttributeError, TypeError, IndexError):
            raise CheckFailed(
                "The grader could not find your backbone inside the model to measure the head after every epoch: "
                "build a functional or Sequential model that calls a keras.applications backbone once, x = "
                "base(inputs, training=False), followed by the head."
            ) from None
        self.head = head
        self.evaluator: Evaluator | None = None
        self.shapes = [tuple(w.shape) for w in head.weights]

    def features(self, images: np.ndarray, batch_size: int) -> np.ndarray:
        """The backbone's output for preprocessed `images` (inference mode, the weights sent)."""
        return np.asarray(self.features_model.predict(images, batch_size=batch_size, verbose=0), dtype=np.float32)

    def weights(self, vector: np.ndarray) -> list[np.ndarray]:
        """The head's weights (in the head's order) out of a snapshot vector (in `head_variables` order)."""
        return [vector[a:b].reshape(shape) for (a, b), shape in zip(self.slices, self.shapes)]

    def evaluate(
        self, vector: np.ndarray, features: np.ndarray, labels: np.ndarray, parts: Mapping[str, np.ndarray]
    ) -> tuple[float, float, dict[str, np.ndarray]]:
        """Loss and accuracy (as Keras computes them) on (features, labels), and predictions for each of `parts`."""
        if self.evaluator is None:
            self.evaluator = Evaluator(self.head, features)
        figures = self.evaluator.measure(features, labels, self.weights(vector))
        probs = {}
        for name, x in parts.items():
            out = np.asarray(self.evaluator.model.predict(x, batch_size=1024, verbose=0), dtype=np.float64)
            out = out.reshape(len(x), -1)
            if self.evaluator.from_logits:
                out = np.exp(out - out.max(axis=1, keepdims=True))
                out /= out.sum(axis=1, keepdims=True)
            probs[name] = out
        return figures.loss, figures.accuracy, probs


@dataclasses.dataclass
class Measured:
    """The grader's own figures for the weights sent (index 0), after every epoch (1..epochs) and returned (last)."""

    epochs: int
    val_sent_loss: list[float]  # on the validation set as sent (markers included): what fit's val_loss measures
    val_sent_accuracy: list[float]
    marker_probability: list[float]  # mean probability of the marker class on every marker image
    elsewhere_probability: list[float]  # ... and on the real validation and test images (the control)
    curves: dict[str, list[float]]  # CURVE_KEYS, per epoch (training probe, real validation images, test)
    fits: list[list[int]]


def head_vector(model: Any) -> np.ndarray:
    """The head's weights of `model` as one float32 vector (the form of the snapshots)."""
    import keras

    return flat_weights([np.array(keras.ops.convert_to_numpy(w.value)) for w in head_variables(model)])


def checked_trajectory(outcome: Mapping[str, Any], sent: np.ndarray, trained: Any) -> Trajectory:
    """The head's snapshots from the student's process, checked to be one training run from `sent` to `trained`."""
    variables = head_variables(trained)
    trajectory = Trajectory.from_outcome(outcome.get("trajectory"), int(sum(np.prod(w.shape) for w in variables)))
    returned = head_vector(trained)
    if np.array_equal(returned, sent) and not trajectory.epochs:
        raise CheckFailed(
            "`train_transfer` left the head's weights exactly as the grader sent them: call model.fit on the model "
            "passed in (it is the one graded), with train_ds, for `epochs` epochs."
        )
    learnt = "The grader grades only a head that model.fit trained, in this run, from the weights it sent."
    check_trajectory(trajectory, sent, returned, types.SimpleNamespace(weights=variables), learnt=learnt)
    return trajectory


def measure(
    measure_head: HeadMeasure,
    vectors: Sequence[np.ndarray],
    features: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    markers: Markers,
    fits: list[list[int]],
) -> Measured:
    """Evaluate the head for each weight vector (sent, every epoch's, returned): the validation set as sent, the
    curves, the markers' probability.

    `features`/`labels` hold "sent" (the validation set as sent, sent labels), "probe"
    (training images, real labels; may be empty), "validation" and "test" (real labels), and
    `features["markers"]` every marker image.
    """
    from ..flowers.recording import CURVE_KEYS

    out = Measured(len(vectors) - 2, [], [], [], [], {key: [] for key in CURVE_KEYS}, fits)
    parts = {name: features[name] for name in ("probe", "validation", "test", "markers")}
    for vector in vectors:
        loss, accuracy, probs = measure_head.evaluate(vector, features["sent"], labels["sent"], parts)
        out.val_sent_loss.append(loss)
        out.val_sent_accuracy.append(accuracy)
        markers_probs = probs["markers"]
        out.marker_probability.append(float(np.mean(markers_probs[:, markers.marker_id])) if len(markers_probs) else 0)
        real = np.concatenate([probs["validation"], probs["test"]])
        out.elsewhere_probability.append(float(np.mean(real[:, markers.marker_id])) if len(real) else 0.0)
        for name, prefix in (("probe", "train"), ("validation", "val"), ("test", "test")):
            if len(labels[name]):
                loss_, accuracy_, top5, _ = scores_from_probs(markers.real_probabilities(probs[name]), labels[name])
            else:
                loss_, accuracy_, top5 = (float("nan"),) * 3
            out.curves[f"{prefix}_loss"].append(loss_)
            out.curves[f"{prefix}_accuracy"].append(accuracy_)
            if prefix == "test":
                out.curves["test_top5"].append(top5)
    return out


def leak_problem(measured: Measured) -> str | None:
    """The leak check's message when the marker class's probability rose during training, else None."""
    values = measured.marker_probability[: measured.epochs + 1]
    for epoch in range(1, len(values)):
        lowest = min(values[:epoch])
        if values[epoch] >= LEAK_RATIO * lowest and values[epoch] >= lowest + LEAK_MARGIN:
            return (
                "Validation images reached the training: the grader mixes marker images of a class no training image "
                "has into the validation set (and keeps more of them back), so training on train_ds alone only lowers "
                f"that class's probability. After epoch {epoch} your model gave it {values[epoch]:.0%} on the marker "
                f"images, up from {lowest:.0%}: it was taught from the validation set. {LEAK_FIX}"
            )
    return None


def history_problem(history: Mapping[str, Sequence[float]], measured: Measured) -> str | None:
    """Does every epoch's val_loss (and val_accuracy) in the returned history match the grader's measurement?"""
    fix = (
        "Return history.history exactly as model.fit returns it, with validation_data=val_ds: the grader measures "
        "the model after every epoch itself."
    )
    epochs = measured.epochs
    if "val_loss" not in history:
        return f"The history you returned has no val_loss: pass validation_data=val_ds to model.fit. {fix}"
    reported = len(history["val_loss"])
    candidates = [list(range(epochs))] + ([fit for fit in measured.fits] if len(measured.fits) > 1 else [])
    candidates = [c for c in candidates if len(c) == reported]
    if not candidates:
        return (
            f"The history you returned has {reported} epochs of val_loss, but the grader saw model.fit train the model "
            f"for {epochs}. {fix}"
        )
    accuracy_key = next((key for key in ACCURACY_KEYS if key in history), None)
    first = None
    for epochs_seen in candidates:
        for position, epoch in enumerate(epochs_seen):
            loss, measured_loss = float(history["val_loss"][position]), measured.val_sent_loss[epoch + 1]
            if accuracy_key is not None:
                accuracy, measured_accuracy = (
                    float(history[accuracy_key][position]),
                    measured.val_sent_accuracy[epoch + 1],
                )
                if not abs(accuracy - measured_accuracy) <= ACCURACY_TOLERANCE:
                    first = first or (position, f"{accuracy_key} {accuracy:.4f}", f"{measured_accuracy:.4f}")
                    break
            finite = math.isfinite(loss) and math.isfinite(measured_loss)
            if not finite or abs(loss - measured_loss) > LOSS_TOLERANCE * measured_loss + 0.01:
                first = first or (position, f"val_loss {loss:.4f}", f"{measured_loss:.4f}")
                break
        else:
            return None
    assert first is not None
    position, said, actual = first
    return (
        f"Epoch {position + 1} of your history reports {said}, but the grader's own evaluation of the model as it was "
        f"after that epoch, on the validation set it gave train_transfer, gives {actual}. {fix}"
    )
