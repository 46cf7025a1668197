"""One transfer-learning experiment: split, preprocess, build and train with the four functions; what it measured."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .backbones import (
    backbone_drift,
    backbone_snapshot,
    batch_norm_layers,
    calibrate_batch_norm,
    calibration_note,
    describe_model,
    find_backbone,
)
from .data import FlowersData
from .pipeline import make_dataset
from .recording import (
    TrainingRecord,
    epoch_curves,
    history_dict,
    labels_of,
    scores,
    scores_from_probs,
    train_recording_epochs,
)
from .split import split_sizes

# The functions an experiment is run with (the names q7's students define).
NAMES = ("preprocess", "split_indices", "build_transfer_model", "train_transfer")
QUICK_EPOCHS = 3  # quick tier: a small image folder, weights=None, CPU
FULL_EPOCHS = 10  # full tier: the flowers with ImageNet weights; the most epochs allowed for the target
BATCH_SIZES = {"quick": 8, "full": 32}
CALIBRATION_IMAGES = 64  # training images whose statistics calibrate a random backbone's BatchNormalization


@dataclasses.dataclass
class Experiment:
    """What one run of the pipeline produced: the model's make-up, per-epoch curves, final test figures."""

    backbone: str
    feature_dim: int
    trainable_params: int
    frozen_params: int
    head: list[str]
    tier: str
    weights: str
    epochs: int
    batch_size: int
    data_origin: str
    data_kind: str
    class_names: list[str]
    split: dict[str, Any]
    curves: dict[str, list[float]]
    test_accuracy: float
    test_top5: float
    confusion: np.ndarray
    seconds: float
    history: dict[str, list[float]]
    notes: list[str] = dataclasses.field(default_factory=list)
    backbone_drift: float = 0.0  # largest change of any backbone weight or BatchNorm statistic during training
    train_loss_before: float = float("nan")  # loss on the training images (centre crops) before and after training
    train_loss_after: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["confusion"] = self.confusion.tolist()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Experiment:
        data = dict(data)
        data["confusion"] = np.asarray(data["confusion"], dtype=np.int64)
        return cls(**data)


def make_experiment(
    described: dict[str, Any],
    data: FlowersData,
    parts: Sequence[np.ndarray],
    *,
    tier: str,
    weights: Any,
    epochs: int,
    batch_size: int,
    curves: dict[str, list[float]],
    test_probs: Any,
    test_labels: np.ndarray,
    history: dict[str, list[float]],
    notes: list[str],
    drift: float,
    loss_before: float,
    loss_after: float,
    seconds: float,
) -> Experiment:
    """The `Experiment` of a run, from what was measured (the final test figures from `test_probs`)."""
    notes = list(notes)
    if not curves["test_accuracy"]:
        notes.append(
            "train_transfer did not call model.fit, so no per-epoch curves were recorded; "
            "only the final test figures are shown."
        )
    _, acc, top5, predicted = scores_from_probs(test_probs, test_labels)
    k = data.num_classes
    confusion = np.bincount(np.asarray(test_labels, dtype=np.int64) * k + predicted, minlength=k * k).reshape(k, k)
    return Experiment(
        backbone=described["backbone"],
        feature_dim=described["feature_dim"],
        trainable_params=described["trainable_params"],
        frozen_params=described["frozen_params"],
        head=described["head"],
        tier=tier,
        weights="None" if weights is None else str(weights),
        epochs=int(epochs),
        batch_size=batch_size,
        data_origin=data.origin,
        data_kind=data.kind,
        class_names=list(data.class_names),
        split=split_sizes(data.labels, parts),
        curves=curves,
        test_accuracy=acc,
        test_top5=top5,
        confusion=confusion,
        seconds=seconds,
        history=history,
        notes=notes,
        backbone_drift=drift,
        train_loss_before=loss_before,
        train_loss_after=loss_after,
    )


def run_experiment(
    functions: Mapping[str, Callable[..., Any]],
    data: FlowersData,
    *,
    tier: str,
    weights: Any,
    epochs: int,
    batch_size: int = 32,
    seed: int = 0,
    split: Sequence[np.ndarray] | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[Experiment, Any]:
    """Split, preprocess, build and train with the four functions (`NAMES`), in this process; record the curves.

    The test set is evaluated after every epoch by a callback that is added to the
    `model.fit` call inside `train_transfer` (the student's code does not need to know).
    Returns the experiment and the trained model. Exceptions from the functions propagate.
    Used by `grader report q7`; grading runs the same parts with the student's code in
    the sandbox (`grader.questions.q7_tiers`).
    """

    def say(message: str) -> None:
        if log is not None:
            log(message)

    started = time.perf_counter()
    parts = split if split is not None else functions["split_indices"](data.labels, seed=seed)
    parts = [np.asarray(p, dtype=np.int64) for p in parts]
    preprocess = functions["preprocess"]
    train_ds = make_dataset(data, parts[0], preprocess, training=True, batch_size=batch_size, shuffle_seed=seed)
    val_ds = make_dataset(data, parts[1], preprocess, training=False, batch_size=batch_size, cache=True)
    test_ds = make_dataset(data, parts[2], preprocess, training=False, batch_size=batch_size, cache=True)
    labels = {"validation": labels_of(val_ds), "test": labels_of(test_ds)}
    say(f"split {len(parts[0])}/{len(parts[1])}/{len(parts[2])}; building the model")
    model = functions["build_transfer_model"](num_classes=data.num_classes, weights=weights)
    described = describe_model(model)
    backbone = find_backbone(model)
    notes = []
    if weights is None and backbone is not None and batch_norm_layers(backbone):
        few = parts[0][:CALIBRATION_IMAGES]
        calibration = make_dataset(data, few, preprocess, training=False, batch_size=CALIBRATION_IMAGES)
        images = next(iter(calibration))[0]
        calibrate_batch_norm(backbone, images)
        notes.append(calibration_note(int(images.shape[0])))
    frozen_before = backbone_snapshot(model)
    train_eval, train_labels = None, None
    if tier == "quick":
        train_eval = make_dataset(data, parts[0], preprocess, training=False, batch_size=batch_size, cache=True)
        train_labels = labels_of(train_eval)

    def train_loss() -> float:
        if train_eval is None or train_labels is None:
            return float("nan")
        return scores(model, train_eval, train_labels)[0]

    loss_before = train_loss()

    def progress(epoch: int, record: TrainingRecord) -> None:
        curves = epoch_curves(record.logs, record.probs, labels)
        say(
            f"epoch {epoch + 1}: loss {curves['train_loss'][-1]:.3f}, val accuracy {curves['val_accuracy'][-1]:.3f}, "
            f"test accuracy {curves['test_accuracy'][-1]:.3f}"
        )

    eval_sets = {"validation": val_ds, "test": test_ds}
    record = train_recording_epochs(functions["train_transfer"], model, train_ds, val_ds, epochs, eval_sets, progress)
    experiment = make_experiment(
        described,
        data,
        parts,
        tier=tier,
        weights=weights,
        epochs=epochs,
        batch_size=batch_size,
        curves=epoch_curves(record.logs, record.probs, labels),
        test_probs=model.predict(test_ds, verbose=0),
        test_labels=labels["test"],
        history=history_dict(record.returned),
        notes=notes,
        drift=backbone_drift(model, frozen_before),
        loss_before=loss_before,
        loss_after=train_loss(),
        seconds=time.perf_counter() - started,
    )
    return experiment, model
