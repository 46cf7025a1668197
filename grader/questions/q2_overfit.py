"""q2 — train LeNet-5 on Fashion-MNIST until it overfits.

The grader trains for real: it calls the student's `train_until_overfit` on a fresh
LeNet-5 (the student's own `build_lenet5` when it passes q1, otherwise the reference's,
so q2 is graded on its own) with secret random initial weights and secretly permuted
class ids, under the tier's time limit (the grader's clock), then

- checks that the weights snapshot after every epoch form one training run from the
  weights it sent to the model that came back (weights loaded from elsewhere fail);
- measures every epoch itself and checks that each epoch of the returned history matches
  (a made-up or edited history fails);
- reads the overfitting off its own per-epoch figures: the validation loss bottoms out well
  before the last epoch and ends clearly above its minimum while the loss on training
  images does not rise with it, and the train-validation accuracy gap is large;
- measures test accuracy on the official test images under the run's class ids.

Every threshold lives in `THRESHOLDS`, with the reference solution's measured figure
beside it (`solutions/q2_overfit.py`, seed 0); `tests/test_training.py` re-runs the
reference on the quick tier and checks that each threshold still leaves a margin.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..checks import Check, CheckFailed, Context, Question, Training
from ..training import (
    Bound,
    Generalization,
    TrainingRun,
    best_epoch,
    measured_generalization,
    slow_tier_notice,
    tier_from_options,
    train_fresh_lenet,
    training_sandbox_limits,
    verify_history,
    write_learning_curves,
)
from .q1_lenet import BUILDER as LENET_BUILDER
from .q1_lenet import QUESTION as LENET

FUNCTION = "train_until_overfit"
SEED = 0
# Where a run ends is read as the median of its last END_EPOCHS epochs (after the best one), and
# the training loss where the validation loss bottomed out as the median of the END_EPOCHS epochs
# up to the best one: one epoch's dip or spike (Adam's losses wander by a few percent from epoch
# to epoch, SGD with momentum jumps) neither makes nor breaks the verdict.
END_EPOCHS = 3


@dataclasses.dataclass(frozen=True)
class OverfitThresholds:
    """What counts as clear overfitting, and the test accuracy to reach (per tier)."""

    epochs_after_best: Bound  # epochs run after the lowest validation loss
    val_loss_rise: Bound  # last val_loss / lowest val_loss - 1
    train_loss_ratio: Bound  # loss on training images at the end / where val_loss was lowest (<= 1: did not rise)
    accuracy_gap: Bound  # train accuracy - validation accuracy, both measured by the grader
    test_accuracy: Bound  # on the official 10,000 test images


# `measured`: the reference (Adam 1e-3, batch 64, EarlyStopping on val_loss with patience 15,
# at most 40 epochs) graded as `grader check q2 --solutions` grades it, TensorFlow 2.21 / Keras
# 3.15 on a 2-core CPU, quick tier: the median of 10 runs. Every run starts from secret random
# weights with permuted class ids, so the figures vary from run to run: lowest validation loss
# in epoch 11-15 (once 19, on CI), 26-30 epochs, rise 0.16-0.35, training-loss ratio 0.56-0.77,
# gap 0.062-0.079, test 0.846-0.865. With patience 10 the rise was 0.05-0.22 (and 0.018 once, on
# CI): ten epochs past the minimum are not always clear overfitting. Every figure is the
# grader's own; the losses at either end are medians of END_EPOCHS epochs. `train_loss_ratio`
# is the loss on 2,000 training images in inference mode: after the minimum it falls only 2-3%
# per epoch, about as much as it wanders, so the rule asks only that it did not rise (a rule
# asking 5% more fall failed the reference once on CI, with a late minimum on a plateau of the
# training loss, and honest SGD runs cut short). Honest runs of a fixed 30 epochs with SGD
# (0.01, momentum 0.9) and RMSprop (1e-3) measured rise 0.21-0.61, ratio 0.50-0.71, gap
# 0.060-0.092, test 0.842-0.866 (3 + 2 runs); SGD at 0.02 with momentum jumps, and ends with its
# training loss at 0.90-0.99 of its level at the minimum (4 runs). Plain SGD at a fixed
# learning rate ends near 0.84-0.86 test accuracy: 0.82 leaves it room.
THRESHOLDS: dict[str, OverfitThresholds] = {
    "quick": OverfitThresholds(
        epochs_after_best=Bound(3, measured=15),
        val_loss_rise=Bound(0.05, measured=0.267),
        train_loss_ratio=Bound(1.0, measured=0.643, at_least=False),
        accuracy_gap=Bound(0.03, measured=0.072),
        test_accuracy=Bound(0.82, measured=0.853),
    ),
    # The full tier's thresholds are set from the issue (the reference must reach 0.89 on a
    # GPU); `bench/bench_training.py --tier full` measures the reference there.
    "full": OverfitThresholds(
        epochs_after_best=Bound(3, measured=None),
        val_loss_rise=Bound(0.05, measured=None),
        train_loss_ratio=Bound(1.0, measured=None, at_least=False),
        accuracy_gap=Bound(0.02, measured=None),
        test_accuracy=Bound(0.89, measured=0.896),  # bench/bench_training.py --tier full, 2-core CPU, 19 epochs
    ),
}


def thresholds_for(ctx: Context) -> OverfitThresholds:
    return THRESHOLDS[tier_from_options(ctx.options).name]


def training_run(ctx: Context) -> TrainingRun:
    """Train a fresh LeNet-5 with the student's function once per grading run."""

    def compute() -> TrainingRun:
        run = train_fresh_lenet(ctx, FUNCTION, lenet=LENET, builder=LENET_BUILDER, seed=SEED)
        ctx.meta["best_epoch"] = run.curve.best_epoch()
        title = f"q2: {FUNCTION} ({run.tier.name} tier, {ctx.meta['model']})"
        write_learning_curves(ctx, run, "q2_learning_curves", title)
        return run

    return ctx.cached("q2-run", compute)


def generalization(ctx: Context) -> Generalization:
    return measured_generalization(ctx, lambda: training_run(ctx))


def verification(ctx: Context) -> str:
    """The history check's pass message (cached), or its failure."""
    run = training_run(ctx)
    return ctx.cached("q2-verified", lambda: verify_history(run))


def trains_the_model(ctx: Context) -> str:
    run = training_run(ctx)
    return (
        f"trained {ctx.meta.get('model', 'LeNet-5')} from the grader's weights for {run.epochs} epochs in "
        f"{run.wall_s:.0f} s (the grader's clock) on {run.tier.train_size:,} images ({run.tier.name} tier)"
    )


def history_is_real(ctx: Context) -> str:
    return verification(ctx)


def overfitting_figures(history: dict[str, list[float]]) -> dict[str, float]:
    """Epochs after the best one, the validation loss's rise, and where the training loss went meanwhile.

    `history` is the grader's own measurement of every epoch (`run.curve.as_history()`). Both
    losses at the end are the median of the last `END_EPOCHS` epochs after the best one; the
    training loss at the best epoch is the median of the `END_EPOCHS` epochs up to it (on a
    plateau of the training loss, the best epoch may fall on a dip or a spike).
    """
    best = best_epoch(history)
    epochs = len(history["loss"])
    tail = max(1, min(END_EPOCHS, epochs - best))
    lowest = history["val_loss"][best - 1]
    train_at_best = float(np.median(history["loss"][max(0, best - END_EPOCHS) : best]))
    val_end = float(np.median(history["val_loss"][-tail:]))
    train_end = float(np.median(history["loss"][-tail:]))
    return {
        "epochs": epochs,
        "best_epoch": best,
        "epochs_after_best": epochs - best,
        "val_loss_rise": val_end / lowest - 1 if lowest > 0 else 0.0,
        "train_loss_ratio": train_end / train_at_best if train_at_best > 0 else 1.0,
    }


def overfitting_is_evident(ctx: Context) -> str:
    run = training_run(ctx)
    try:
        verification(ctx)
    except CheckFailed as failure:
        raise CheckFailed(f"Overfitting can only be read off a verified history: {failure}") from None
    limits = thresholds_for(ctx)
    figures = overfitting_figures(run.curve.as_history())
    ctx.meta.update({k: round(v, 4) for k, v in figures.items()})
    require_overfitting(figures, limits)
    gap = generalization(ctx).gap
    if not limits.accuracy_gap.holds(gap):
        raise CheckFailed(
            f"The accuracy gap between training and validation images is {gap:.3f} (measured by the grader), expected "
            f"at least {limits.accuracy_gap.value:g} for clear overfitting "
            f"(the reference: {limits.accuracy_gap.measured or 0:.3f})."
        )
    return (
        f"validation loss lowest in epoch {figures['best_epoch']} of {figures['epochs']}, then up "
        f"{figures['val_loss_rise']:.0%} while the training loss went to {figures['train_loss_ratio']:.0%} of its level "
        f"there (medians of {END_EPOCHS} epochs); accuracy gap {gap:.3f} (all measured by the grader)"
    )


def require_overfitting(figures: dict[str, float], limits: OverfitThresholds) -> None:
    """Raise CheckFailed naming the first sign of overfitting that `figures` (`overfitting_figures`) lack."""
    best, epochs = figures["best_epoch"], figures["epochs"]
    if not limits.epochs_after_best.holds(figures["epochs_after_best"]):
        where = "in the last epoch" if best == epochs else f"in epoch {best} of {epochs}"
        raise CheckFailed(
            f"The validation loss (measured by the grader) is lowest {where}: training stopped before overfitting "
            "showed. Keep training "
            f"at least {limits.epochs_after_best.value:g} epochs past the lowest validation loss (the reference's "
            f"minimum comes near epoch 10-17 on the quick tier; e.g. 30 epochs, or EarlyStopping with patience=15)."
        )
    if not limits.val_loss_rise.holds(figures["val_loss_rise"]):
        raise CheckFailed(
            f"Over the last {END_EPOCHS} epochs the validation loss sits only {figures['val_loss_rise']:.1%} above its "
            f"minimum (epoch {best}; the median of those epochs, measured by the grader); clear overfitting needs at "
            f"least {limits.val_loss_rise.value:.0%} (the reference: {limits.val_loss_rise.measured or 0:.0%}). Train "
            "longer past the minimum, without regularisation."
        )
    if not limits.train_loss_ratio.holds(figures["train_loss_ratio"]):
        raise CheckFailed(
            f"The loss on training images (measured by the grader) rose together with the validation loss after "
            f"epoch {best}: over the last {END_EPOCHS} epochs it sits at {figures['train_loss_ratio']:.0%} of its "
            f"level around that epoch (medians of {END_EPOCHS} epochs; expected at most "
            f"{limits.train_loss_ratio.value:.0%}). When both losses rise, training became unstable: that is not "
            "overfitting. Lower the learning rate (Adam's default 1e-3) so training converges."
        )


def test_accuracy(ctx: Context) -> str:
    limit = thresholds_for(ctx).test_accuracy
    figures = generalization(ctx)
    if not limit.holds(figures.test_accuracy):
        raise CheckFailed(
            f"Test accuracy {figures.test_accuracy:.4f} on the {len(training_run(ctx).split.y_test):,} held-out test "
            f"images, expected at least {limit.value:g} (the reference reaches {limit.measured or limit.value:g}). "
            "Use Adam (learning rate 1e-3), sparse_categorical_crossentropy and batches of 32-128; if the "
            "validation accuracy stalls early, train for more epochs."
        )
    return f"test accuracy {figures.test_accuracy:.4f} (threshold {limit.value:g})"


QUESTION = Question(
    id="q2",
    title="Train LeNet-5 until it overfits",
    module="q2_overfit",
    names=(FUNCTION,),
    checks=(
        Check("trains the model it is given", 2, trains_the_model),
        Check("history is real", 2, history_is_real),
        Check("overfitting is evident", 3, overfitting_is_evident),
        Check("test accuracy", 3, test_accuracy),
    ),
    sandbox_limits=training_sandbox_limits,  # the sandbox's wall clock covers the tier's training time
    training=Training(notice=slow_tier_notice, borrows=(LENET_BUILDER,)),
)
