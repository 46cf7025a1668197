"""Running a student's training function beside their code, under watch, and reading back what it did.

`run_student_training` (in the grader) draws the run's secrets, sends the model and the data
to `train_beside_student` (where the student's code runs: the sandboxed child when there is
one), which calls the student's function inside `watched_training`. The model comes back as
training left it, with snapshots of its weights after every epoch; the grader checks that
they form one training run from the weights it sent, measures every epoch itself, and refuses
every outcome it cannot grade with a message of its own. Its clock, not the child's, times it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import progress
from ..checks import CheckFailed, Context, StudentCodeError, StudentSide
from .data import Split
from .evaluation import evaluator_for, flat_weights, weights_changed, weights_finite, weights_snapshot
from .tiers import Tier
from .trajectory import (
    MeasuredCurve,
    RunSecret,
    Trajectory,
    check_trajectory,
    measure_curve,
    model_vector,
    trajectory_from,
)
from .watch import watched_training

HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")
MODEL_REPLACED = (
    "The model that `{function}` left behind is not the model it was given: train the model passed in "
    "(model.fit on it), do not rebuild or replace it."
)


@dataclasses.dataclass
class TrainingRun:
    """The outcome of a student's training call that finished, returned a history and trained the model sent.

    `split` holds this run's labels (class ids permuted by the run's secret); `curve` is the
    grader's own measurement of every epoch; nothing here was computed in the student's process
    except `history` (what the function returned) and the weights, which the grader checked.
    """

    function: str
    model: Any
    history: dict[str, list[float]]
    curve: MeasuredCurve
    trajectory: Trajectory
    wall_s: float
    tier: Tier
    split: Split

    @property
    def epochs(self) -> int:
        return self.curve.epochs


def ensure_model_came_back(function: str, trained: Any, sent_shapes: Sequence[tuple[int, ...]]) -> None:
    """Refuse a model handed back by the student's process unless it has the architecture the grader sent.

    `sent_shapes` is `comparator.weight_shapes` of the model sent; the grader only grades that architecture.
    """
    import keras

    from ..comparator import weight_shapes

    if not isinstance(trained, keras.Model) or weight_shapes(trained) != list(sent_shapes):
        raise CheckFailed(MODEL_REPLACED.format(function=function))


def train_beside_student(
    student: StudentSide, function: str, model: Any, *args: Any, time_limit_s: float
) -> dict[str, Any]:
    """Where the student's code runs (see `Context.run_with_student`): call `function(model, *args)` under watch.

    Returns what the call returned (or the message of what it raised), its printed output,
    the model as training left it, and the snapshots of the model's weights when each fit
    began, after every epoch and when it ended (`watch.TrainingWatch.trajectory_data`).
    """
    returned, raised, stdout = None, None, ""
    with watched_training(time_limit_s, given_model=model) as watch:
        try:
            outcome = student.call(function, model, *args)
            returned, stdout = outcome.value, outcome.stdout
        except StudentCodeError as error:
            raised, stdout = str(error), getattr(error, "stdout", "")
    if returned is not None and not isinstance(returned, Mapping):
        history = getattr(returned, "history", None)
        if isinstance(history, Mapping):
            returned = dict(history)  # a History object: its dict is what the contract asks for
    return {
        "returned": returned,
        "raised": raised,
        "stdout": stdout,
        "model": model,
        "trajectory": watch.trajectory_data(),
    }


def run_student_training(
    ctx: Context,
    function: str,
    model: Any,
    *extra_args: Any,
    tier: Tier,
    split: Split,
    seed: int,
) -> TrainingRun:
    """Call the student's `function(model, *extra_args, x_train, y_train, x_val, y_val)` and measure the outcome.

    The grader first draws the run's secrets (`RunSecret`): `model` gets fresh secret random
    weights and the labels sent carry permuted class ids. The call runs where the student's
    code runs (`Context.run_with_student`: the sandbox, when there is one), after seeding
    with `seed`. Raises `CheckFailed` with its own message for: the time limit (the grader's
    clock), an exception, a NaN loss, a return value that is not a history, a model returned
    untrained, and weights that did not come from training the weights sent in this run.
    """
    from ..comparator import weight_shapes

    secret = RunSecret.draw()
    secret.initialise(model, seed_after=seed)
    split = secret.relabel(split)
    data = [np.array(a) for a in (split.x_train, split.y_train, split.x_val, split.y_val)]  # writable copies
    before = weights_snapshot(model)
    sent = flat_weights(before)
    started = time.monotonic()
    with progress.task(f"{ctx.question.id} {function}", tier.time_limit_s):  # epochs shown live, never graded
        outcome = ctx.run_with_student(
            f"{__name__}:train_beside_student",
            function,
            model,
            *extra_args,
            *data,
            seed=seed,
            time_limit_s=tier.time_limit_s,
        )
    wall_s = time.monotonic() - started
    ctx.last_stdout = str(outcome.get("stdout") or "")  # shown (its end, cleaned) if this check fails
    trained = outcome["model"]
    ensure_model_came_back(function, trained, weight_shapes(model))
    trajectory = trajectory_from(outcome, trained)
    ctx.meta.update(wall_s=round(wall_s, 1), epochs=trajectory.epochs)
    _ensure_training_ended_well(trajectory, wall_s, tier, outcome.get("raised"), trained)

    returned = outcome["returned"]
    if not isinstance(returned, Mapping):
        raise StudentCodeError(
            f"`{function}` returned {type(returned).__name__}; it should return the dict of per-epoch metrics: "
            "`history = model.fit(...)` then `return history.history`."
        )
    history = clean_history(returned, function)
    if not weights_changed(before, trained):
        hint = (
            " You called fit on another model: train the model passed in (it is the one graded)."
            if trajectory.epochs
            else " Call model.fit on the model passed to your function."
        )
        raise CheckFailed(f"The model passed to `{function}` came back untrained: its weights did not change.{hint}")
    figures = check_trajectory(trajectory, sent, model_vector(trained), trained)
    ctx.meta.update({name: round(value, 4) for name, value in figures.items()})
    curve = measure_curve(trajectory, evaluator_for(trained, split.x_val), split)
    return TrainingRun(function, trained, history, curve, trajectory, wall_s, tier, split)


def _ensure_training_ended_well(trajectory: Trajectory, wall_s: float, tier: Tier, raised: Any, trained: Any) -> None:
    """Refuse training past the time limit (the grader's clock), with NaN weights, or stopped by an exception."""
    epochs = trajectory.epochs
    finished = f"{epochs} epoch{'s' if epochs != 1 else ''} finished"
    if wall_s > tier.time_limit_s:
        raise CheckFailed(
            f"Training stopped after the {tier.time_limit_s:g}-second time limit of the {tier.name} tier "
            f"(the grader's clock: {wall_s:.0f} s, {finished}). Train for fewer epochs, or stop once the validation "
            "loss has risen for a few epochs (keras.callbacks.EarlyStopping); `--time-limit` raises the limit on "
            "your own machine."
        )
    nan_epoch = trajectory.first_non_finite_epoch()
    if nan_epoch is not None or not weights_finite(trained):
        where = f" in epoch {nan_epoch}" if nan_epoch is not None else ""
        raise CheckFailed(
            f"The training loss became NaN{where}, so training was stopped: the weights blew up. "
            "Lower the learning rate (Adam's default 1e-3 works), check that the loss matches the output layer "
            "(softmax with sparse_categorical_crossentropy, or logits with from_logits=True), and do not rescale the "
            "inputs again: they are already in [0, 1]."
        )
    if raised is not None:
        progress = f" after {epochs} finished epoch{'s' if epochs != 1 else ''}" if epochs else ""
        raise StudentCodeError(f"Training failed{progress}: {raised}")


def clean_history(returned: Mapping[str, Any], function: str) -> dict[str, list[float]]:
    """The returned history as lists of floats with `HISTORY_KEYS`, one value per epoch, or why it is not one."""
    missing = [key for key in HISTORY_KEYS if key not in returned]
    if missing:
        hint = ""
        if not any(k.startswith("val_") for k in returned) and "val_loss" in missing:
            hint = " Pass validation_data=(x_val, y_val) to fit."
        if "accuracy" in missing and "val_loss" not in missing:
            hint = ' Compile with metrics=["accuracy"].'
        has = ", ".join(map(str, returned)) or "nothing"
        raise StudentCodeError(
            f"The history returned by `{function}` has no {', '.join(missing)} (it has: {has}).{hint}"
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
