"""q3 — data augmentation: random transforms in training only, and a smaller generalization gap.

The augmentation from `build_augmentation` is checked on real training images first:
at least two random transforms; shape, dtype and the [0, 1] range kept; different
images in training mode; exactly the identity with `training=False`, in `predict` and in
`evaluate` (the grader itself never calls a model without `training=False`).

Then `train_with_augmentation` trains a fresh LeNet-5 (the student's when it passes q1)
from the grader's secret initial weights, with secretly permuted class ids, under the
tier's time limit, and the grader checks what it measures itself (see `grader.training`):
that the model learnt from augmented batches (it is nearly as accurate on the grader's
own augmented copies of the validation images as on the clean ones; a model trained on
clean images only is not), that every epoch of the history matches its own evaluation
on clean validation images (validation data that went through the augmentation is
recognised and named), that the train-validation accuracy gap is clearly smaller than
the reference's without augmentation (q2), and the test accuracy. Nothing the student's
process reports about calls of the augmentation is read.

Thresholds live in `THRESHOLDS` with the reference's measured figures beside them
(`solutions/q3_augment.py`, seed 0); `tests/test_training.py` re-derives them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..checks import Check, CheckFailed, Context, Question, StudentCodeError, Training, explain_exception, require_type
from ..training import (
    Bound,
    Generalization,
    TrainingRun,
    measured_generalization,
    plot_augmentation_grid,
    save_figure,
    slow_tier_notice,
    split_for,
    tier_from_options,
    train_fresh_lenet,
    training_sandbox_limits,
    verify_history,
    write_learning_curves,
)
from . import q2_overfit
from .q1_lenet import BUILDER as LENET_BUILDER
from .q1_lenet import QUESTION as LENET

BUILD = "build_augmentation"
TRAIN = "train_with_augmentation"
SEED = 0
PROBE_IMAGES = 32
MIN_RANDOM_TRANSFORMS = 2


@dataclasses.dataclass(frozen=True)
class AugmentThresholds:
    """The generalization gap allowed with augmentation, and the test accuracy to reach (per tier)."""

    accuracy_gap: Bound  # train accuracy - validation accuracy (grader-measured), at most
    test_accuracy: Bound
    augmented_retained: Bound  # accuracy on augmented / on clean validation images (grader-measured), at least


# `measured`: the reference (horizontal flip, translation 0.08; Adam 1e-3, batch 64, 20
# epochs) graded by `grader check q3 --solutions`, TensorFlow on a 2-core CPU, quick tier,
# secret initial weights and class ids (seed-0 weights gave a gap of 0.008, test 0.854).
# Without augmentation the q2 reference ends with a gap of 0.056
# (q2_overfit.THRESHOLDS[tier].accuracy_gap.measured): at most 0.04 is clearly smaller.
# `augmented_retained`: LeNet-5 trained 8 epochs on clean images keeps 0.73-0.77 of its
# validation accuracy on the reference's augmented images (Adam, SGD with momentum, RMSprop;
# 0.77-0.82 on 1,000 images), trained with them 0.96-1.0: 0.88 lies between.
THRESHOLDS: dict[str, AugmentThresholds] = {
    "quick": AugmentThresholds(
        accuracy_gap=Bound(0.04, measured=0.011, at_least=False),
        test_accuracy=Bound(0.83, measured=0.850),
        augmented_retained=Bound(0.88, measured=0.977),
    ),
    "full": AugmentThresholds(
        accuracy_gap=Bound(0.03, measured=None, at_least=False),
        test_accuracy=Bound(0.87, measured=0.894),  # bench/bench_training.py --tier full, 2-core CPU
        augmented_retained=Bound(0.88, measured=None),
    ),
}


def thresholds_for(ctx: Context) -> AugmentThresholds:
    return THRESHOLDS[tier_from_options(ctx.options).name]


# --------------------------------------------------------------------------- the augmentation itself


def augmentation(ctx: Context) -> Any:
    import keras

    return require_type(ctx.call(BUILD), keras.layers.Layer, f"{BUILD}()", "a keras.Sequential of preprocessing layers")


def probe_images(ctx: Context) -> np.ndarray:
    split = split_for(tier_from_options(ctx.options))
    return np.array(split.x_train[:PROBE_IMAGES])


def apply(ctx: Context, layer: Any, images: np.ndarray, **kwargs: Any) -> np.ndarray:
    """Run the student's augmentation; its exceptions become a readable failure."""
    import keras

    try:
        return np.asarray(keras.ops.convert_to_numpy(layer(images, **kwargs)))
    except Exception as error:  # noqa: BLE001 - the student's layer may raise anything
        call = f"augmentation(images{', ' + ', '.join(f'{k}={v}' for k, v in kwargs.items()) if kwargs else ''})"
        raise StudentCodeError(explain_exception(call, error, ctx.source)) from None


def leaf_layers(layer: Any) -> list[Any]:
    """The innermost layers of `layer`: a Sequential's layers, a custom layer's sublayers, recursively."""
    import keras

    children = getattr(layer, "layers", None)
    if not children:
        children = [value for value in vars(layer).values() if isinstance(value, keras.layers.Layer)]
        if not children or is_random(layer):
            return [layer]
    return [leaf for child in children for leaf in leaf_layers(child)]


def is_random(layer: Any) -> bool:
    return type(layer).__name__.startswith("Random") or hasattr(layer, "seed_generator")


def random_transforms(ctx: Context) -> str:
    layer = augmentation(ctx)
    randoms = [leaf for leaf in leaf_layers(layer) if is_random(leaf)]
    if len(randoms) < MIN_RANDOM_TRANSFORMS:
        found = ", ".join(type(leaf).__name__ for leaf in leaf_layers(layer)) or "no layers"
        raise CheckFailed(
            f"Your augmentation has {len(randoms)} random transform(s) ({found}); use at least "
            f"{MIN_RANDOM_TRANSFORMS}, e.g. keras.layers.RandomFlip('horizontal'), RandomTranslation(0.1, 0.1), "
            "RandomZoom(0.1), RandomRotation(0.05) or RandomContrast(0.2)."
        )
    return f"{len(randoms)} random transforms: {', '.join(type(leaf).__name__ for leaf in randoms)}"


def keeps_shape_dtype_range(ctx: Context) -> str:
    images = probe_images(ctx)
    out = apply(ctx, augmentation(ctx), images, training=True)
    if out.shape != images.shape:
        raise CheckFailed(
            f"In training mode your augmentation turns a batch of shape {images.shape} into {out.shape}: "
            "augmentation must keep the image size "
            "(RandomCrop or Resizing change it; use RandomTranslation/RandomZoom)."
        )
    if out.dtype != np.float32:
        raise CheckFailed(f"Your augmentation returns {out.dtype} images for float32 input; it must keep float32.")
    low, high = float(out.min()), float(out.max())
    if low < -1e-3 or high > 1 + 1e-3:
        raise CheckFailed(
            f"Your augmentation produces values from {low:.3f} to {high:.3f} for images in [0, 1]: keep the range "
            "(RandomContrast/RandomBrightness need value_range=(0, 1); fill with fill_mode='constant' or 'nearest')."
        )
    return f"shape {images.shape[1:]}, float32, values in [{low:.2f}, {high:.2f}]"


def random_in_training(ctx: Context) -> str:
    images = probe_images(ctx)
    layer = augmentation(ctx)
    first = apply(ctx, layer, images, training=True)
    second = apply(ctx, layer, images, training=True)
    same_shape = first.shape == images.shape
    changed = float(np.mean(np.any(np.abs(first - images) > 1e-6, axis=(1, 2, 3)))) if same_shape else 1.0
    if same_shape and changed == 0:
        raise CheckFailed(
            "With training=True your augmentation returned the images unchanged: it transforms nothing. Use random "
            "preprocessing layers with non-zero factors, e.g. RandomTranslation(0.1, 0.1)."
        )
    if first.shape == second.shape and np.array_equal(first, second):
        raise CheckFailed(
            "Two calls with training=True gave identical images: the transforms are not random. Use Keras's Random* "
            "layers (a fixed transform, like a flip of every image, does not augment)."
        )
    return f"changes {changed:.0%} of the images in training mode, differently on each call"


def identity_at_inference(ctx: Context) -> str:
    import keras

    images = probe_images(ctx)
    layer = augmentation(ctx)

    def ensure_identity(output: np.ndarray, where: str) -> None:
        if output.shape != images.shape or not np.array_equal(output, images):
            difference = float(np.max(np.abs(output - images))) if output.shape == images.shape else float("nan")
            raise CheckFailed(
                f"{where} your augmentation changed the images (largest change {difference:.3f}): evaluation data "
                "must never be randomly transformed. Build it from Keras's Random* preprocessing layers, which are the "
                "identity unless called with training=True, and do not pass training=True inside it."
            )

    ensure_identity(apply(ctx, layer, images, training=False), "With training=False")
    try:
        probe = keras.Sequential([keras.Input(images.shape[1:]), layer], name="augmentation_probe")
        probe.compile(loss="mean_squared_error", jit_compile=False)
        predicted = np.asarray(probe.predict(images, batch_size=PROBE_IMAGES, verbose=0))
        error = float(probe.evaluate(images, images, batch_size=PROBE_IMAGES, verbose=0))
    except Exception as failure:  # noqa: BLE001 - the student's layer may raise anything
        call = "predict/evaluate of a model holding your augmentation"
        raise StudentCodeError(explain_exception(call, failure, ctx.source)) from None
    ensure_identity(predicted, "In model.predict")
    if error != 0.0:
        raise CheckFailed(
            f"In model.evaluate your augmentation changed the images (mean squared change {error:.2e}): evaluation "
            "data must never be randomly transformed. Use Keras's Random* layers, which are the identity in evaluate."
        )
    return "exactly the identity with training=False, in predict and in evaluate"


def write_augmentation_grid(ctx: Context) -> None:
    save_figure(
        ctx,
        "q3_augmentation_grid",
        lambda path: plot_augmentation_grid(
            augmentation(ctx),
            probe_images(ctx)[0],
            path,
            title="q3: one training image under random draws of your augmentation",
        ),
    )


# --------------------------------------------------------------------------- training with it


def training_run(ctx: Context) -> TrainingRun:
    def compute() -> TrainingRun:
        def augmentation_with_grid() -> tuple:
            layer = augmentation(ctx)
            write_augmentation_grid(ctx)
            return (layer,)

        run = train_fresh_lenet(
            ctx,
            TRAIN,
            lenet=LENET,
            builder=LENET_BUILDER,
            seed=SEED,
            extra_args=augmentation_with_grid,
        )
        title = f"q3: {TRAIN} ({run.tier.name} tier, {ctx.meta['model']})"
        write_learning_curves(ctx, run, "q3_learning_curves", title)
        return run

    return ctx.cached("q3-run", compute)


def augmented_retained(ctx: Context, run: TrainingRun) -> float:
    """The trained model's accuracy on augmented validation images over its accuracy on the clean ones.

    The grader augments the images itself (the student's layer, `training=True`) and measures
    the model it checked: evidence of training on augmented batches that the student's
    process does not report.
    """
    from ..training import evaluate

    augmented = apply(ctx, augmentation(ctx), np.array(run.split.x_val), training=True).astype(np.float32)
    clean = evaluate(run.model, run.split.x_val, run.split.y_val).accuracy
    on_augmented = evaluate(run.model, augmented, run.split.y_val).accuracy
    retained = on_augmented / clean if clean > 0 else 0.0
    ctx.meta["augmented_retained"] = round(retained, 4)
    return retained


def generalization(ctx: Context) -> Generalization:
    return measured_generalization(ctx, lambda: training_run(ctx))


def trains_with_augmentation(ctx: Context) -> str:
    run = training_run(ctx)
    message = ctx.cached("q3-verified", lambda: verify_history(run, augmentation=augmentation(ctx)))
    retained = augmented_retained(ctx, run)
    limit = thresholds_for(ctx).augmented_retained
    if not limit.holds(retained):
        raise CheckFailed(
            f"Your model was not trained on augmented images: on the grader's own augmented copies of the "
            f"validation images it keeps only {retained:.0%} of its accuracy on the clean ones (a model that "
            f"learnt from augmented batches keeps at least {limit.value:.0%}; the reference "
            f"{limit.measured or limit.value:.0%}). Put the augmentation in front of the model, e.g. "
            "keras.Sequential([augmentation, model]), and fit that, so that fit passes each training batch "
            "through it (with training=True). If it is, your transforms may be too strong to learn from."
        )
    return (
        f"learnt from augmented batches (keeps {retained:.0%} of its accuracy on augmented images), "
        f"{run.epochs} epochs in {run.wall_s:.0f} s; {message}"
    )


def smaller_gap(ctx: Context) -> str:
    run = training_run(ctx)
    try:
        ctx.cached("q3-verified", lambda: verify_history(run, augmentation=augmentation(ctx)))
    except CheckFailed as failure:
        raise CheckFailed(f"The gap can only be judged on a verified training run: {failure}") from None
    limit = thresholds_for(ctx).accuracy_gap
    without = q2_overfit.THRESHOLDS[run.tier.name].accuracy_gap.measured
    gap = generalization(ctx).gap
    compared = f" (without augmentation the reference's gap is {without:.3f})" if without else ""
    if not limit.holds(gap):
        raise CheckFailed(
            f"With your augmentation the accuracy gap between training and validation images is {gap:.3f}, expected "
            f"at most {limit.value:g}{compared}: the model still overfits. Use stronger or more transforms "
            "(a translation of about 0.1, a horizontal flip), and check that fit trains on augmented batches."
        )
    return f"accuracy gap {gap:.3f} (at most {limit.value:g}){compared}"


def test_accuracy(ctx: Context) -> str:
    limit = thresholds_for(ctx).test_accuracy
    figures = generalization(ctx)
    if not limit.holds(figures.test_accuracy):
        raise CheckFailed(
            f"Test accuracy {figures.test_accuracy:.4f} on the held-out test images, expected at least {limit.value:g} "
            f"(the reference reaches {limit.measured or limit.value:g}). Strong transforms need more epochs; "
            "milder ones (translation of about 0.1) learn faster. Do not use vertical flips: they change the garment."
        )
    return f"test accuracy {figures.test_accuracy:.4f} (threshold {limit.value:g})"


QUESTION = Question(
    id="q3",
    title="Data augmentation against overfitting",
    module="q3_augment",
    names=(BUILD, TRAIN),
    checks=(
        Check("at least two random transforms", 1, random_transforms),
        Check("keeps shape, dtype and value range", 1, keeps_shape_dtype_range),
        Check("random in training mode", 1, random_in_training),
        Check("identity at evaluation", 2, identity_at_inference),
        Check("trains with augmentation on training data only", 2, trains_with_augmentation),
        Check("smaller generalization gap", 2, smaller_gap),
        Check("test accuracy", 1, test_accuracy),
    ),
    sandbox_limits=training_sandbox_limits,  # the sandbox's wall clock covers the tier's training time
    training=Training(notice=slow_tier_notice, borrows=(LENET_BUILDER,)),
)
