"""The watched `fit`: every `keras.Model.fit` run by student code is time-limited, stopped on NaN, and recorded.

Within `watched_training`, each `fit` gets one extra callback (the last one) that stops
training at the time limit or when the loss turns NaN, and, given the model the grader
sent, snapshots that model's weights when each fit begins, after every epoch and when it
ends (`TrainingWatch.points`). The snapshots are the only thing the grader reads back from
this record: it measures them itself and checks that they form one training run (see
`trajectory`); everything else here (the fits' histories, epoch counts, elapsed time, the
fit records) is computed in the student's process and only serves the
benchmark and the stopping of training; after every epoch the callback also reports the
epoch and its losses to the live display (`grader.progress.report_epoch`), which no check reads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from ..patching import patched
from ..progress import report_epoch
from .evaluation import flat_weights, weights_snapshot

# A function called after every epoch of a watched fit (e.g. the benchmark's test accuracy per epoch).
EpochHook = Callable[[Any, "TrainingWatch"], None]

MAX_SNAPSHOTS = 400  # weight snapshots kept (each fit: begin, every epoch, end); more epochs are not graded


@dataclasses.dataclass
class FitRecord:
    """One call of `fit` made by student code: what its History really holds, and how it was called."""

    history: dict[str, list[float]]
    restores_best_weights: bool
    used_validation_split: bool
    trains_given_model: bool = True  # fit ran on the model passed in (or on a model holding its weights)


@dataclasses.dataclass
class TrainingWatch:
    """What happened during student training: each fit, epochs run, time limit, NaN."""

    time_limit_s: float
    started: float = dataclasses.field(default_factory=time.monotonic)
    fits: list[FitRecord] = dataclasses.field(default_factory=list)
    epochs_run: int = 0
    time_limit_hit: bool = False
    nan_epoch: int | None = None  # 1-based epoch in which the loss was first not finite
    epoch_end_times: list[float] = dataclasses.field(default_factory=list)
    points: list[np.ndarray] = dataclasses.field(default_factory=list)  # flat weights of the given model
    point_kinds: list[str] = dataclasses.field(default_factory=list)  # "begin", "epoch" or "end", one per point

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def out_of_time(self) -> bool:
        return self.elapsed > self.time_limit_s

    def to_json(self) -> dict[str, Any]:
        """Plain data (crosses the sandbox boundary; `time.monotonic` values become elapsed seconds)."""
        data = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        data["fits"] = [dataclasses.asdict(record) for record in self.fits]
        data.pop("points")
        data.pop("point_kinds")
        data["started"] = None
        data["elapsed_s"] = self.elapsed
        return data

    def trajectory_data(self) -> dict[str, Any]:
        """The weight snapshots as one (points, weights) float32 array and their kinds (crosses the boundary)."""
        size = len(self.points[0]) if self.points else 0
        points = np.stack(self.points) if self.points else np.zeros((0, size), np.float32)
        return {"points": points, "kinds": list(self.point_kinds)}

    def snapshot(self, model: Any, kind: str) -> None:
        if len(self.points) < MAX_SNAPSHOTS:
            self.points.append(flat_weights(weights_snapshot(model)))
            self.point_kinds.append(kind)

    def recorded_history(self) -> dict[str, list[float]]:
        """The fits' histories run one after the other (a student may call fit several times)."""
        merged: dict[str, list[float]] = {}
        for record in self.fits:
            for key, values in record.history.items():
                merged.setdefault(key, []).extend(values)
        return merged


def _guard_callback(watch: TrainingWatch, extra_epoch_end: Sequence[EpochHook] = (), given_model: Any = None) -> Any:
    """A Keras callback that stops training at the time limit or on a NaN loss, counts epochs, snapshots weights."""
    import keras

    class TrainingGuard(keras.callbacks.Callback):
        async_safe = True  # reads no logs per batch: keeps Keras's asynchronous, sync-free batch loop

        def on_train_begin(self, logs=None):
            if given_model is not None:
                watch.snapshot(given_model, "begin")

        def on_train_end(self, logs=None):
            if given_model is not None:
                watch.snapshot(given_model, "end")

        def on_train_batch_begin(self, batch, logs=None):  # every steps_per_execution batches; no device sync
            if watch.out_of_time():
                watch.time_limit_hit = True
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            watch.epochs_run += 1
            watch.epoch_end_times.append(watch.elapsed)
            loss = (logs or {}).get("loss")
            try:
                finite = loss is None or math.isfinite(float(loss))
            except (TypeError, ValueError):
                finite = True
            if not finite and watch.nan_epoch is None:
                watch.nan_epoch = watch.epochs_run
                self.model.stop_training = True
            if watch.out_of_time():
                watch.time_limit_hit = True
                self.model.stop_training = True
            if given_model is not None:
                watch.snapshot(given_model, "epoch")
            for hook in extra_epoch_end:
                hook(self.model, watch)
            # the live display (`grader.progress`): this fit's number, its epoch and losses; never graded
            report_epoch(len(watch.fits) + 1, epoch + 1, (self.params or {}).get("epochs"), logs)

    return TrainingGuard()


@contextlib.contextmanager
def watched_training(
    time_limit_s: float, extra_epoch_end: Sequence[EpochHook] = (), given_model: Any = None
) -> Iterator[TrainingWatch]:
    """Within the block, every `keras.Model.fit` is watched (time limit, NaN) and its History recorded.

    `extra_epoch_end` holds functions `hook(model, watch)` called after every epoch (the
    benchmark uses one to time when the test-accuracy threshold is first met). With
    `given_model`, its weights are snapshot when each fit begins, after every epoch and when
    it ends, and each record says whether fit trained it (or a model holding its weights).
    """
    import keras

    watch = TrainingWatch(time_limit_s=time_limit_s)
    original_fit = keras.Model.fit

    def fit(model, *args, callbacks=None, **kwargs):
        given = list(callbacks or [])
        restores = any(getattr(c, "restore_best_weights", False) for c in given)
        guard = _guard_callback(watch, extra_epoch_end, given_model)
        history = original_fit(model, *args, callbacks=[*given, guard], **kwargs)
        values = getattr(history, "history", {}) or {}
        watch.fits.append(
            FitRecord(
                history={k: [float(v) for v in vs] for k, vs in values.items()},
                restores_best_weights=restores,
                used_validation_split=bool(kwargs.get("validation_split")),
                trains_given_model=given_model is None or model is given_model or shares_weights(given_model, model),
            )
        )
        return history

    fit.__doc__ = original_fit.__doc__
    with patched([keras.Model], "fit", fit):
        yield watch


def shares_weights(a: Any, b: Any) -> bool:
    """Does model `b` hold every weight variable of model `a` (e.g. `a` wrapped in a Sequential)?"""
    ids = {id(w) for w in getattr(b, "weights", [])}
    return bool(ids) and all(id(w) in ids for w in a.weights)
