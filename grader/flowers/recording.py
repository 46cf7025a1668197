"""Measuring a training run: scores of predictions, and what every epoch of `model.fit` gave."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

CURVE_KEYS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy", "test_top5")


def scores_from_probs(probs: Any, labels: np.ndarray) -> tuple[float, float, float, np.ndarray]:
    """(loss, accuracy, top-5 accuracy, predicted classes) of predictions `probs` (N x classes) for `labels`."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if probs.ndim != 2 or len(probs) != len(labels) or (labels.size and labels.max() >= probs.shape[1]):
        raise ValueError(f"the model gave predictions of shape {probs.shape} for {len(labels)} images")
    if not (np.all(probs >= -1e-6) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-3)):  # logits: softmax them
        probs = np.exp(probs - probs.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
    picked = probs[np.arange(len(labels)), labels]
    loss = float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0))))
    predicted = probs.argmax(axis=1)
    k = min(5, probs.shape[1])
    top5 = np.argsort(-probs, axis=1)[:, :k]
    return loss, float(np.mean(predicted == labels)), float(np.mean((top5 == labels[:, None]).any(axis=1))), predicted


def scores(model: Any, dataset: Any, labels: np.ndarray) -> tuple[float, float, float, np.ndarray]:
    """`scores_from_probs` of `model` on `dataset` (or an array of images), computed here, not by compile()."""
    return scores_from_probs(model.predict(dataset, verbose=0), labels)


def labels_of(dataset: Any) -> np.ndarray:
    """Every label of a batched dataset of (images, labels), in order."""
    return np.concatenate([np.asarray(y) for _, y in dataset.as_numpy_iterator()]).astype(np.int64)


@dataclasses.dataclass
class TrainingRecord:
    """What `train_recording_epochs` saw: what train returned, each epoch's logs and predictions."""

    returned: Any
    logs: list[dict[str, float]]
    probs: dict[str, list[np.ndarray]]


def train_recording_epochs(
    train: Callable[..., Any],
    model: Any,
    train_ds: Any,
    val_ds: Any,
    epochs: int,
    eval_sets: dict[str, Any],
    on_epoch: Callable[[int, TrainingRecord], None] | None = None,
) -> TrainingRecord:
    """Call `train(model, train_ds, val_ds, epochs)` with a callback added to the `model.fit` calls it makes.

    After every epoch the callback records fit's logs and the model's predictions on each
    dataset of `eval_sets` (the student's code does not need to know), then calls `on_epoch`.
    """
    import keras

    record = TrainingRecord(None, [], {name: [] for name in eval_sets})

    class Curves(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            record.logs.append({str(k): float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0})
            for name, dataset in eval_sets.items():
                record.probs[name].append(np.asarray(self.model.predict(dataset, verbose=0), dtype=np.float32))
            if on_epoch is not None:
                on_epoch(epoch, record)

    recorder = Curves()
    original_fit = model.fit

    def fit_with_curves(*args: Any, **kwargs: Any) -> Any:
        kwargs["callbacks"] = [*list(kwargs.get("callbacks") or []), recorder]
        return original_fit(*args, **kwargs)

    model.fit = fit_with_curves
    try:
        record.returned = train(model, train_ds, val_ds, epochs)
    finally:
        with contextlib.suppress(Exception):
            del model.fit
    return record


def epoch_curves(
    logs: Sequence[Mapping[str, Any]], probs: Mapping[str, Sequence[Any]], labels: Mapping[str, np.ndarray]
) -> dict[str, list[float]]:
    """Per-epoch train/val/test figures from fit's logs and the predictions on the validation and test images."""
    curves: dict[str, list[float]] = {k: [] for k in CURVE_KEYS}
    for epoch, entry in enumerate(logs):
        curves["train_loss"].append(float(entry.get("loss", np.nan)))
        accuracy = [v for k, v in entry.items() if "acc" in k and not k.startswith("val_")]
        curves["train_accuracy"].append(float(accuracy[0]) if accuracy else float("nan"))
        loss, acc, _, _ = scores_from_probs(probs["validation"][epoch], labels["validation"])
        curves["val_loss"].append(loss)
        curves["val_accuracy"].append(acc)
        loss, acc, top5, _ = scores_from_probs(probs["test"][epoch], labels["test"])
        curves["test_loss"].append(loss)
        curves["test_accuracy"].append(acc)
        curves["test_top5"].append(top5)
    return curves


def history_dict(history: Any) -> dict[str, list[float]]:
    """What the training function returned as {metric: per-epoch floats}; empty unless a dict (History.history)."""
    if not isinstance(history, dict):
        return {}
    return {str(key): [float(v) for v in values] for key, values in history.items()}


MAX_HEAD_SNAPSHOTS = 200  # head snapshots kept (each fit: begin, every epoch, end); more epochs are not graded


def head_variables(model: Any) -> list[Any]:
    """The weights of `model` outside its backbone (the head, in `model.weights` order): what training may change."""
    from .backbones import find_backbone

    backbone = find_backbone(model)
    frozen = {id(w) for w in backbone.weights} if backbone is not None else set()
    return [w for w in model.weights if id(w) not in frozen]


@contextlib.contextmanager
def watched_head(model: Any, on_epoch: Callable[[int, int, Any, Any], None] | None = None) -> Iterator[dict[str, Any]]:
    """Within the block, every `keras.Model.fit` snapshots the head of `model` when it begins, after every epoch and
    when it ends; the block yields {"points": [flat float32 vectors], "kinds": ["begin" | "epoch" | "end"]}.
    `on_epoch(fit, epoch, epochs, logs)` (1-based numbers) is called after every epoch (the live display).

    Runs beside the student's code: the grader checks the snapshots against the weights it
    sent and the model that came back (`training.trajectory.check_trajectory`).
    """
    import keras

    from ..patching import patched
    from ..training.evaluation import flat_weights

    variables = head_variables(model)
    record: dict[str, Any] = {"points": [], "kinds": []}

    def snapshot(kind: str) -> None:
        if len(record["kinds"]) < MAX_HEAD_SNAPSHOTS:
            record["points"].append(flat_weights([np.array(keras.ops.convert_to_numpy(w.value)) for w in variables]))
            record["kinds"].append(kind)

    class HeadSnapshots(keras.callbacks.Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            snapshot("begin")

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            snapshot("epoch")
            if on_epoch is not None:
                on_epoch(record["kinds"].count("begin"), epoch + 1, (self.params or {}).get("epochs"), logs)

        def on_train_end(self, logs: Any = None) -> None:
            snapshot("end")

    original_fit = keras.Model.fit

    def fit(self: Any, *args: Any, callbacks: Any = None, **kwargs: Any) -> Any:
        return original_fit(self, *args, callbacks=[*list(callbacks or []), HeadSnapshots()], **kwargs)

    fit.__doc__ = original_fit.__doc__
    with patched([keras.Model], "fit", fit):
        yield record
