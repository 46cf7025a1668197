"""Shared machinery of the training questions (q2, q3): tiers, data, a watched `fit`, verification.

A training question calls the student's function on real data while `watched_training`
is active: every `keras.Model.fit` started inside it gets two extra callbacks, one that
stops training at the tier's time limit and one that stops it when the loss turns NaN,
and the `History` each fit really produced is recorded. The grader then checks the
history the student returned against that record and against its own evaluation of the
model (always in inference mode: `predict`, never a bare `model(x)`, which would keep
augmentation layers active).

Tiers: `quick` (default) is a fixed, seeded 10,000 / 5,000 subset of the training images
for a laptop or CI CPU; `full` is the official 50,000 / 10,000 split, meant for a GPU.
Both test on the official 10,000 test images, which student code never sees.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .checks import CheckFailed, Context, StudentCodeError, StudentSide
from .patching import patched

TRAINING_QUESTIONS = ("q2", "q3")
DATA_SEED = 20240917
HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")
ACCURACY_TOLERANCE = 0.005  # the last epoch's val_accuracy vs the grader's own evaluation (5,000 images: 25 images)
LOSS_TOLERANCE = 0.05  # relative, for val_loss vs the grader's own cross-entropy
CHANCE_ACCURACY = 0.2  # 10 classes: a model below this after training learned (almost) nothing
EVAL_BATCH = 1024


@dataclasses.dataclass(frozen=True)
class Tier:
    """How much data a training question uses, and how long student training may run."""

    name: str
    train_size: int
    val_size: int
    test_size: int
    time_limit_s: float
    meant_for: str


TIERS: dict[str, Tier] = {
    "quick": Tier("quick", 10_000, 5_000, 10_000, 300.0, "a laptop or CI CPU"),
    "full": Tier("full", 50_000, 10_000, 10_000, 1800.0, "a GPU"),
}


def tier_from_options(options: Mapping[str, Any]) -> Tier:
    """The tier named in `options` ('tier', default quick), with 'time_limit' and data sizes overridden when given.

    'train_size', 'val_size' and 'test_size' exist for fast tests of failure modes; the
    thresholds of a question are only meaningful on the real tiers.
    """
    name = str(options.get("tier") or "quick").lower()
    if name not in TIERS:
        raise ValueError(f"unknown tier '{name}'; use one of {', '.join(TIERS)}")
    tier = TIERS[name]
    changes: dict[str, Any] = {}
    if options.get("time_limit") is not None:
        changes["time_limit_s"] = float(options["time_limit"])
    for key in ("train_size", "val_size", "test_size"):
        if options.get(key) is not None:
            changes[key] = int(options[key])
    return dataclasses.replace(tier, **changes) if changes else tier


@dataclasses.dataclass(frozen=True)
class Split:
    """Float32 images in [0, 1] of shape (N, 28, 28, 1) and integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@functools.lru_cache(maxsize=4)
def load_split(train_size: int, val_size: int, test_size: int = 10_000) -> Split:
    """A seeded train/validation split of Fashion-MNIST's training images, and the official test images."""
    from .datasets import load_fashion_mnist

    (x, y), (x_test, y_test) = load_fashion_mnist()
    if train_size + val_size > len(x):
        raise ValueError(f"{train_size} + {val_size} images asked for, the training set has {len(x)}")
    order = np.random.default_rng(DATA_SEED).permutation(len(x))
    train, val = order[:train_size], order[train_size : train_size + val_size]

    def scale(images: np.ndarray) -> np.ndarray:
        array = (images[..., None].astype(np.float32) / 255.0)
        array.setflags(write=False)  # the grader's copy; students get writable copies
        return array

    def labels(values: np.ndarray) -> np.ndarray:
        array = values.astype(np.int64)
        array.setflags(write=False)
        return array

    return Split(
        scale(x[train]), labels(y[train]), scale(x[val]), labels(y[val]),
        scale(x_test[:test_size]), labels(y_test[:test_size]),
    )


def split_for(tier: Tier) -> Split:
    return load_split(tier.train_size, tier.val_size, tier.test_size)


# --------------------------------------------------------------------------- device


@functools.lru_cache(maxsize=1)
def describe_device() -> str:
    """'CPU (2 cores)' or the GPU's name, without framework-specific calls."""
    import keras

    try:
        devices = [str(d).lower() for d in keras.distribution.list_devices()]
    except Exception:
        devices = []
    if any("gpu" in d or "cuda" in d for d in devices):
        name = "GPU"
        if shutil.which("nvidia-smi"):
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                    capture_output=True, text=True, timeout=10, check=False,
                ).stdout.strip().splitlines()
                name = f"GPU ({out[0].strip()})" if out else name
            except (OSError, subprocess.SubprocessError):
                pass
        return name
    return f"CPU ({os.cpu_count()} cores)"


def has_gpu() -> bool:
    return describe_device().startswith("GPU")


def slow_tier_notice(tier: Tier) -> str | None:
    """What to tell a user who runs the full tier without a GPU (None otherwise)."""
    if tier.name == "full" and not has_gpu():
        return (
            f"note: the full tier ({tier.train_size:,} training images) is meant for a GPU; on this "
            f"{describe_device()} it will be slow (up to {tier.time_limit_s / 60:g} minutes per question)."
        )
    return None


# What a training question's sandbox needs beyond the student's training time: the data
# sent both ways, the grader's checks and evaluations between the calls (measured: under a minute).
SANDBOX_OVERHEAD_S = 240.0


def training_sandbox_limits(limits: Any, options: Mapping[str, Any]) -> Any:
    """A training question's sandbox limits: its wall clock covers the tier's training time and the checks around it."""
    tier = tier_from_options(options)
    return dataclasses.replace(limits, wall_s=max(limits.wall_s, tier.time_limit_s * 1.05 + SANDBOX_OVERHEAD_S))


def base_meta(tier: Tier) -> dict[str, Any]:
    import keras

    return {
        "tier": tier.name,
        "device": describe_device(),
        "backend": keras.backend.backend(),
        "train_size": tier.train_size,
        "val_size": tier.val_size,
        "test_size": tier.test_size,
        "time_limit_s": tier.time_limit_s,
    }


# --------------------------------------------------------------------------- the watched fit


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

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def out_of_time(self) -> bool:
        return self.elapsed > self.time_limit_s

    def to_json(self) -> dict[str, Any]:
        """Plain data (crosses the sandbox boundary; `time.monotonic` values become elapsed seconds)."""
        data = dataclasses.asdict(self)
        data["started"] = None
        data["elapsed_s"] = self.elapsed
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "TrainingWatch":
        """The watch as recorded where the student's code ran; raises `CheckFailed` if it is not one."""
        try:
            fits = [FitRecord(**{k: record[k] for k in ("history", "restores_best_weights", "used_validation_split", "trains_given_model")})
                    for record in data["fits"]]
            watch = cls(
                time_limit_s=float(data["time_limit_s"]), started=time.monotonic() - float(data["elapsed_s"]), fits=fits,
                epochs_run=int(data["epochs_run"]), time_limit_hit=bool(data["time_limit_hit"]),
                nan_epoch=None if data["nan_epoch"] is None else int(data["nan_epoch"]),
                epoch_end_times=[float(t) for t in data["epoch_end_times"]],
            )
            for record in fits:
                record.history = {str(k): [float(v) for v in values] for k, values in dict(record.history).items()}
        except (KeyError, TypeError, ValueError, AttributeError):
            raise CheckFailed("The record of your training could not be read back: something in your code interfered with the grader's watch of model.fit.") from None
        return watch

    def recorded_history(self) -> dict[str, list[float]]:
        """The fits' histories run one after the other (a student may call fit several times)."""
        merged: dict[str, list[float]] = {}
        for record in self.fits:
            for key, values in record.history.items():
                merged.setdefault(key, []).extend(values)
        return merged


def _guard_callback(watch: TrainingWatch, extra_epoch_end: Sequence[Any] = ()) -> Any:
    """A Keras callback that stops training at the time limit or on a NaN loss, and counts epochs."""
    import keras

    class TrainingGuard(keras.callbacks.Callback):
        async_safe = True  # reads no logs per batch: keeps Keras's asynchronous, sync-free batch loop

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
            for hook in extra_epoch_end:
                hook(self.model, watch)

    return TrainingGuard()


@contextlib.contextmanager
def watched_training(time_limit_s: float, extra_epoch_end: Sequence[Any] = (), given_model: Any = None) -> Iterator[TrainingWatch]:
    """Within the block, every `keras.Model.fit` is watched (time limit, NaN) and its History recorded.

    `extra_epoch_end` holds functions `hook(model, watch)` called after every epoch (the
    benchmark uses one to time when the test-accuracy threshold is first met). With
    `given_model`, each record says whether fit trained it (or a model holding its weights).
    """
    import keras

    watch = TrainingWatch(time_limit_s=time_limit_s)
    original_fit = keras.Model.fit

    def fit(model, *args, callbacks=None, **kwargs):
        given = list(callbacks or [])
        restores = any(getattr(c, "restore_best_weights", False) for c in given)
        history = original_fit(model, *args, callbacks=[*given, _guard_callback(watch, extra_epoch_end)], **kwargs)
        values = getattr(history, "history", {}) or {}
        watch.fits.append(
            FitRecord(
                history={k: [float(v) for v in vs] for k, vs in values.items()},
                restores_best_weights=restores,
                used_validation_split=bool(kwargs.get("validation_split")),
                trains_given_model=given_model is None or model is given_model or _shares_weights(given_model, model),
            )
        )
        return history

    fit.__doc__ = original_fit.__doc__
    with patched([keras.Model], "fit", fit):
        yield watch


# --------------------------------------------------------------------------- evaluation


def predict_probabilities(model: Any, x: np.ndarray) -> np.ndarray:
    """Class probabilities in inference mode (`predict`: augmentation and dropout off)."""
    outputs = np.asarray(model.predict(x, batch_size=EVAL_BATCH, verbose=0), dtype=np.float64)
    outputs = outputs.reshape(len(x), -1)
    looks_like_probabilities = (
        np.all(outputs >= -1e-6) and np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3)
    )
    if not looks_like_probabilities:  # logits
        shifted = outputs - outputs.max(axis=1, keepdims=True)
        outputs = np.exp(shifted)
        outputs /= outputs.sum(axis=1, keepdims=True)
    return outputs


@dataclasses.dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float


def evaluate(model: Any, x: np.ndarray, y: np.ndarray) -> Evaluation:
    """Cross-entropy and accuracy of `model` on (x, y), computed by the grader in inference mode."""
    probabilities = predict_probabilities(model, x)
    if not np.all(np.isfinite(probabilities)):
        return Evaluation(float("nan"), float(np.mean(np.argmax(np.nan_to_num(probabilities), axis=1) == y)))
    picked = np.clip(probabilities[np.arange(len(y)), y], 1e-7, 1.0)
    return Evaluation(float(-np.mean(np.log(picked))), float(np.mean(np.argmax(probabilities, axis=1) == y)))


def weights_snapshot(model: Any) -> list[np.ndarray]:
    import keras

    return [np.array(keras.ops.convert_to_numpy(w.value)) for w in model.weights]


def weights_changed(before: Sequence[np.ndarray], model: Any) -> bool:
    after = weights_snapshot(model)
    return len(after) != len(before) or any(not np.array_equal(a, b) for a, b in zip(before, after))


def weights_finite(model: Any) -> bool:
    return all(np.all(np.isfinite(w)) for w in weights_snapshot(model) if np.issubdtype(w.dtype, np.floating))


# --------------------------------------------------------------------------- running student training


@dataclasses.dataclass
class TrainingRun:
    """The outcome of a student's training call that finished and returned a usable history."""

    function: str
    model: Any
    history: dict[str, list[float]]
    watch: TrainingWatch
    wall_s: float
    tier: Tier
    split: Split
    layer_calls: list[Any] = dataclasses.field(default_factory=list)  # `training` flags of a watched layer's calls

    @property
    def epochs(self) -> int:
        return len(self.history["loss"])


@contextlib.contextmanager
def counting_calls(target: Any) -> Iterator[list[Any]]:
    """Record the `training` argument of every call of the layer `target` (traced calls inside fit included)."""
    import keras

    calls: list[Any] = []
    if target is None:
        yield calls
        return
    original = keras.layers.Layer.__call__

    def counting_call(layer, *args, **kwargs):
        if layer is target:
            calls.append(kwargs.get("training"))
        return original(layer, *args, **kwargs)

    with patched([keras.layers.Layer], "__call__", counting_call):
        yield calls


def train_beside_student(
    student: StudentSide, function: str, model: Any, *args: Any, time_limit_s: float, watch_layer_arg: int | None = None
) -> dict[str, Any]:
    """Where the student's code runs (see `Context.run_with_student`): call `function(model, *args)` under watch.

    Returns plain data and the model as training left it: what the call returned (or
    the message of what it raised), its printed output, the watch's record of every fit,
    and, with `watch_layer_arg`, the `training` flag of every call of the layer `args[i]`.
    """
    layer = args[watch_layer_arg] if watch_layer_arg is not None else None
    returned, raised, stdout = None, None, ""
    with watched_training(time_limit_s, given_model=model) as watch, counting_calls(layer) as calls:
        try:
            outcome = student.call(function, model, *args)
            returned, stdout = outcome.value, outcome.stdout
        except StudentCodeError as error:
            raised, stdout = str(error), getattr(error, "stdout", "")
    if returned is not None and not isinstance(returned, Mapping) and isinstance(getattr(returned, "history", None), Mapping):
        returned = dict(returned.history)  # a History object: its dict is what the contract asks for
    return {"returned": returned, "raised": raised, "stdout": stdout, "model": model, "watch": watch.to_json(), "layer_calls": calls}


def run_student_training(
    ctx: Context,
    function: str,
    model: Any,
    *extra_args: Any,
    tier: Tier,
    split: Split,
    seed: int,
    watch_layer_arg: int | None = None,
) -> TrainingRun:
    """Call the student's `function(model, *extra_args, x_train, y_train, x_val, y_val)` under watch.

    The call runs where the student's code runs (`Context.run_with_student`: the sandbox,
    when there is one), after seeding with `seed`; the model comes back trained and the
    grader measures it itself. Raises `CheckFailed` with its own message for: the time
    limit, an exception, a NaN loss, a return value that is not a history, and a model
    returned untrained. `run.layer_calls` lists the `training` flags of the calls of
    `extra_args[watch_layer_arg]` while training.
    """
    import keras

    from .comparator import weight_shapes

    data = [np.array(a) for a in (split.x_train, split.y_train, split.x_val, split.y_val)]  # writable copies
    before = weights_snapshot(model)
    started = time.monotonic()
    outcome = ctx.run_with_student(
        "grader.training:train_beside_student", function, model, *extra_args, *data, seed=seed,
        time_limit_s=tier.time_limit_s, watch_layer_arg=watch_layer_arg,
    )
    wall_s = time.monotonic() - started
    watch = TrainingWatch.from_json(outcome["watch"])
    trained = outcome["model"]
    ctx.meta.update(wall_s=round(wall_s, 1), epochs=watch.epochs_run)
    if not isinstance(trained, keras.Model) or weight_shapes(trained) != weight_shapes(model):
        raise CheckFailed(
            f"The model that `{function}` left behind is not the model it was given: train the model passed in "
            "(model.fit on it), do not rebuild or replace it."
        )

    if watch.time_limit_hit or watch.elapsed > tier.time_limit_s * 1.05:
        where = f" during epoch {watch.epochs_run + 1}" if watch.time_limit_hit else ""
        raise CheckFailed(
            f"Training stopped after the {tier.time_limit_s:g}-second time limit of the {tier.name} tier{where} "
            f"({watch.epochs_run} epoch{'s' if watch.epochs_run != 1 else ''} finished). Train for fewer epochs, or stop once the validation loss has "
            f"risen for a few epochs (keras.callbacks.EarlyStopping); `--time-limit` raises the limit on your own machine."
        )
    if watch.nan_epoch is not None:
        raise CheckFailed(
            f"The training loss became NaN in epoch {watch.nan_epoch}, so training was stopped: the weights blew up. "
            "Lower the learning rate (Adam's default 1e-3 works), check that the loss matches the output layer "
            "(softmax with sparse_categorical_crossentropy, or logits with from_logits=True), and do not rescale the "
            "inputs again: they are already in [0, 1]."
        )
    if outcome["raised"] is not None:
        count = watch.epochs_run
        progress = f" after {count} finished epoch{'s' if count != 1 else ''}" if count else ""
        raise StudentCodeError(f"Training failed{progress}: {outcome['raised']}")

    returned = outcome["returned"]
    if not isinstance(returned, Mapping):
        raise StudentCodeError(
            f"`{function}` returned {type(returned).__name__}; it should return the dict of per-epoch metrics: "
            "`history = model.fit(...)` then `return history.history`."
        )
    history = _clean_history(returned, function)
    if not all(math.isfinite(v) for key in ("loss", "val_loss") for v in history[key]) or not weights_finite(trained):
        raise CheckFailed(
            "The loss is NaN or infinite in your history (or the model's weights are): the weights blew up. "
            "Lower the learning rate (Adam's default 1e-3 works) and make the loss match the output layer."
        )
    if not weights_changed(before, trained):
        hint = (
            " You called fit on another model: train the model passed in (it is the one graded)."
            if any(not record.trains_given_model for record in watch.fits)
            else " Call model.fit on the model passed to your function."
        )
        raise CheckFailed(f"The model passed to `{function}` came back untrained: its weights did not change.{hint}")
    return TrainingRun(function, trained, history, watch, wall_s, tier, split, list(outcome.get("layer_calls") or []))


def _clean_history(returned: Mapping[str, Any], function: str) -> dict[str, list[float]]:
    missing = [key for key in HISTORY_KEYS if key not in returned]
    if missing:
        hint = ""
        if any(k.startswith("val_") for k in returned) is False and "val_loss" in missing:
            hint = " Pass validation_data=(x_val, y_val) to fit."
        if "accuracy" in missing and "val_loss" not in missing:
            hint = ' Compile with metrics=["accuracy"].'
        raise StudentCodeError(
            f"The history returned by `{function}` has no {', '.join(missing)} (it has: {', '.join(map(str, returned)) or 'nothing'}).{hint}"
        )
    history: dict[str, list[float]] = {}
    for key in HISTORY_KEYS:
        try:
            history[key] = [float(v) for v in returned[key]]
        except (TypeError, ValueError):
            raise StudentCodeError(f"history['{key}'] should be a list of numbers, one per epoch.") from None
    lengths = {len(v) for v in history.values()}
    if len(lengths) != 1 or 0 in lengths:
        raise StudentCodeError(
            f"The history's lists should all have one value per epoch; their lengths are "
            f"{', '.join(f'{k}: {len(v)}' for k, v in history.items())}."
        )
    return history


# --------------------------------------------------------------------------- is the history real?


def verify_history(run: TrainingRun, *, augmentation: Any = None) -> str:
    """The returned history is what fit recorded, and its last epoch matches the grader's evaluation of the model.

    Raises `CheckFailed` naming the first difference. With `augmentation`, a validation
    set that went through it is recognised and named.
    """
    history, watch = run.history, run.watch
    if not watch.fits:
        raise CheckFailed(
            f"`{run.function}` returned a history, but model.fit was never called: the history must be the one "
            "that model.fit returns (`return history.history`)."
        )
    recorded = watch.recorded_history()
    candidates = [recorded] + [record.history for record in watch.fits]  # all fits run in order, or one of them
    if not any(_same_history(history, candidate) for candidate in candidates):
        raise CheckFailed(_describe_history_edit(history, recorded))

    fit_record = next(
        (record for record in reversed(watch.fits) if _same_history(history, record.history)), watch.fits[-1]
    )
    measured = evaluate(run.model, run.split.x_val, run.split.y_val)
    epochs_to_match = [len(history["loss"]) - 1]
    if fit_record.restores_best_weights:  # EarlyStopping put back the best epoch's weights (by loss or accuracy)
        epochs_to_match += [int(np.argmin(history["val_loss"])), int(np.argmax(history["val_accuracy"]))]
    for epoch in epochs_to_match:
        if _matches(history, epoch, measured):
            return (
                f"{len(history['loss'])} epochs, as recorded by fit; epoch {epoch + 1}'s val_accuracy "
                f"{history['val_accuracy'][epoch]:.4f} matches the grader's evaluation ({measured.accuracy:.4f})"
            )
    last = epochs_to_match[0]
    reported = f"val_accuracy {history['val_accuracy'][last]:.4f}, val_loss {history['val_loss'][last]:.4f}"
    actual = f"val_accuracy {measured.accuracy:.4f}, val_loss {measured.loss:.4f}"
    if fit_record.used_validation_split:
        cause = "You used validation_split, which validates on part of the training data: pass validation_data=(x_val, y_val)."
    elif augmentation is not None and _validation_was_augmented(run, augmentation, history["val_accuracy"][last], measured):
        cause = (
            "Your validation images went through the augmentation: evaluation data must never be randomly "
            "transformed. Pass validation_data=(x_val, y_val) as given, and put the augmentation where only "
            "training batches pass through it (in front of the model, where fit calls it with training=True)."
        )
    elif not fit_record.trains_given_model:
        cause = "The model you trained is not the model passed in: train the model you were given."
    else:
        cause = (
            "Validate on x_val, y_val exactly as given (do not rescale or transform them), and if you restore the "
            "best weights, use EarlyStopping(restore_best_weights=True) so the grader knows."
        )
    raise CheckFailed(
        f"The last epoch of your history reports {reported}, but the model evaluated by the grader on the "
        f"validation set gives {actual}. {cause}"
    )


def _same_history(a: Mapping[str, list[float]], b: Mapping[str, list[float]]) -> bool:
    for key in HISTORY_KEYS:
        if key not in b or len(a[key]) != len(b[key]):
            return False
        if not np.allclose(a[key], b[key], rtol=1e-5, atol=1e-7, equal_nan=True):
            return False
    return True


def _describe_history_edit(history: Mapping[str, list[float]], recorded: Mapping[str, list[float]]) -> str:
    head = "The history you returned is not the one model.fit recorded"
    fix = "Return history.history exactly as fit returns it: the grader re-checks it against the training it watched."
    missing = [key for key in HISTORY_KEYS if key not in recorded]
    if missing:
        return f"{head}: fit recorded no {', '.join(missing)}. Compile with metrics=['accuracy'] and pass validation_data. {fix}"
    if len(history["loss"]) != len(recorded["loss"]):
        return f"{head}: it has {len(history['loss'])} epochs, fit ran {len(recorded['loss'])}. {fix}"
    for key in HISTORY_KEYS:
        for epoch, (mine, theirs) in enumerate(zip(history[key], recorded[key])):
            if not np.isclose(mine, theirs, rtol=1e-5, atol=1e-7):
                return f"{head}: epoch {epoch + 1}'s {key} is {mine:.4f} in your dict, fit recorded {theirs:.4f}. {fix}"
    return f"{head}. {fix}"


def _matches(history: Mapping[str, list[float]], epoch: int, measured: Evaluation) -> bool:
    accuracy_ok = abs(history["val_accuracy"][epoch] - measured.accuracy) <= ACCURACY_TOLERANCE
    loss = history["val_loss"][epoch]
    loss_ok = math.isfinite(measured.loss) and abs(loss - measured.loss) <= LOSS_TOLERANCE * measured.loss + 0.01
    return accuracy_ok and loss_ok


def _validation_was_augmented(run: TrainingRun, augmentation: Any, reported_accuracy: float, clean: Evaluation) -> bool:
    """Is the reported val_accuracy closer to the model's accuracy on augmented validation images?"""
    try:
        augmented = np.asarray(augmentation(run.split.x_val, training=True))
    except Exception:
        return False
    on_augmented = evaluate(run.model, augmented.astype(np.float32), run.split.y_val)
    return abs(reported_accuracy - on_augmented.accuracy) < abs(reported_accuracy - clean.accuracy)


def _shares_weights(a: Any, b: Any) -> bool:
    ids = {id(w) for w in getattr(b, "weights", [])}
    return bool(ids) and all(id(w) in ids for w in a.weights)


# --------------------------------------------------------------------------- figures


def best_epoch(history: Mapping[str, Sequence[float]]) -> int:
    """The 1-based epoch with the lowest validation loss: where overfitting starts."""
    return int(np.argmin(history["val_loss"])) + 1


@dataclasses.dataclass(frozen=True)
class Generalization:
    """Accuracy measured by the grader on training, validation and test images, and the gap."""

    train_accuracy: float
    val_accuracy: float
    test_accuracy: float

    @property
    def gap(self) -> float:
        return self.train_accuracy - self.val_accuracy


def measure_generalization(run: TrainingRun) -> Generalization:
    split = run.split
    return Generalization(
        train_accuracy=evaluate(run.model, split.x_train, split.y_train).accuracy,
        val_accuracy=evaluate(run.model, split.x_val, split.y_val).accuracy,
        test_accuracy=evaluate(run.model, split.x_test, split.y_test).accuracy,
    )


def measured_generalization(ctx: Context, question: str, run: Any) -> Generalization:
    """`measure_generalization` of the question's training run (`run()`), once per grading, recorded in meta."""

    def compute() -> Generalization:
        figures = measure_generalization(run())
        ctx.meta.update(
            train_accuracy=round(figures.train_accuracy, 4),
            val_accuracy=round(figures.val_accuracy, 4),
            test_accuracy=round(figures.test_accuracy, 4),
            accuracy_gap=round(figures.gap, 4),
        )
        return figures

    return ctx.cached(f"{question}-generalization", compute)


def plots_dir(options: Mapping[str, Any]) -> Path | None:
    """Where PNGs go: options['plots'] (default ./plots); False or '' turns them off."""
    value = options.get("plots", "plots")
    if value in (None, False, ""):
        return None
    return Path(value)


# --------------------------------------------------------------------------- thresholds


@dataclasses.dataclass(frozen=True)
class Bound:
    """A threshold with the reference solution's measured figure beside it.

    `at_least=True`: the student's figure must be >= value; otherwise <= value.
    `measured` is what the reference measured on the tier (None: not measured there yet).
    """

    value: float
    measured: float | None
    at_least: bool = True

    def holds(self, figure: float) -> bool:
        return figure >= self.value if self.at_least else figure <= self.value

    def margin_to(self, figure: float) -> float:
        """How far `figure` is on the passing side of the threshold (negative: it fails)."""
        return figure - self.value if self.at_least else self.value - figure

    def describe(self) -> str:
        return f"{'>=' if self.at_least else '<='} {self.value:g}"


def train_fresh_lenet(
    ctx: Context, function: str, *, seed: int, extra_args: Callable[[], tuple] = tuple, watch_layer_arg: int | None = None
) -> TrainingRun:
    """Train a fresh LeNet-5 (`reference_lenet`) with the student's `function` on the tier's data.

    `extra_args()` gives the arguments passed after the model (built once the tier is in
    the meta); the model in use is named in `ctx.meta["model"]`.
    """
    tier = tier_from_options(ctx.options)
    ctx.meta.update(base_meta(tier))
    split = split_for(tier)
    extra = extra_args()
    model, which = reference_lenet(ctx, seed)
    ctx.meta["model"] = which
    return run_student_training(ctx, function, model, *extra, tier=tier, split=split, seed=seed, watch_layer_arg=watch_layer_arg)


def build_student_lenet(student: StudentSide) -> dict[str, Any]:
    """Where the student's code runs: the student's `build_lenet5()` (from this file, else from q1_lenet.py), or why not."""
    if "build_lenet5" in student.namespace or not student.source:
        builder_side, why = student, "no build_lenet5 found"
    else:
        from .questions import get_question
        from .submission import load_module

        loaded = load_module(Path(student.source).parent, get_question("q1"))
        builder_side = StudentSide(loaded.namespace, str(loaded.path))
        why = "q1_lenet.py could not be loaded" if loaded.error else "no build_lenet5 found"
    if "build_lenet5" not in builder_side.namespace:
        return {"model": None, "why": why}
    try:
        return {"model": builder_side.call("build_lenet5").value, "why": ""}
    except StudentCodeError:
        return {"model": None, "why": "your build_lenet5() raised"}


def reference_lenet(ctx: Context, seed: int) -> tuple[Any, str]:
    """A fresh LeNet-5 to train: the student's own `build_lenet5` when it matches q1, else the reference's.

    Returns the model and a phrase naming which one it is, so q2/q3 are graded on their
    own. The student's builder runs where student code runs; the grader checks the model.
    """
    import keras

    from .comparator import compare_structure, trace

    try:
        built = ctx.run_with_student("grader.training:build_student_lenet", seed=seed)
        model, why = built["model"], built["why"]
    except CheckFailed as failure:  # e.g. a model the grader cannot load back from the sandbox
        model, why = None, f"your build_lenet5() could not be used: {failure}"
    if isinstance(model, keras.Model):
        try:
            compare_structure(trace(ctx.reference["build_lenet5"](), (28, 28, 1)), trace(model, (28, 28, 1)))
            return model, "your build_lenet5()"
        except CheckFailed:
            why = "your build_lenet5() does not pass q1 yet"
        except Exception:
            why = "your build_lenet5() could not be run on a 28x28 image"
    elif model is not None:
        why = "your build_lenet5() did not return a keras.Model"
    keras.utils.set_random_seed(seed)
    return ctx.reference["build_lenet5"](), f"the reference LeNet-5 ({why})"


def write_learning_curves(ctx: Context, run: TrainingRun, name: str, title: str) -> None:
    """Write the learning-curve PNG (if plots are on) and list it in the result's meta."""
    folder = plots_dir(ctx.options)
    if folder is None:
        return
    from .plots import plot_learning_curves

    try:
        path = plot_learning_curves(run.history, folder / f"{name}.png", title=title)
        ctx.meta.setdefault("plots", []).append(str(path))
    except Exception as error:  # a figure must never cost points
        ctx.meta["plot_error"] = f"{type(error).__name__}: {error}"
