"""q7 — transfer learning on the Oxford 102 flowers with a frozen pretrained backbone.

The checks run the student's `preprocess`, `split_indices` and `build_transfer_model` on
generated inputs (no data, no weights download: models are built with weights=None, and
"pretrained" is checked by handing the builder a local weights file and seeing it loaded).
The training check has two tiers, chosen by `ctx.options.tier`:

- quick (default, CPU, seconds): the student's whole pipeline on a small image folder
  (`options.data`, else one generated on the fly) with weights=None, 3 epochs: it must
  run end to end, the loss must fall, the backbone must not move;
- full (GPU, real data, ImageNet weights from `options.weights` or Keras's cache): test
  accuracy at least 0.85 after at most 10 epochs.

On both tiers every figure is the grader's own (`q7_integrity`): it checks the head's
weights after every epoch, measures each epoch and the returned model itself, compares the
returned history with that epoch by epoch, and fails a run in which validation images
reached the training (its secret marker class).

Student code is reached only through the `Context` seam (`q7_calls`), so q7 is graded in
the sandbox. The model checks are in `q7_model`; the code that runs where the student's
code runs is in `q7_beside`; the training run, measured on the grading side, in `q7_tiers`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..checks import Check, CheckFailed, Context, Question, Training
from ..flowers.backbones import backbone_module, backbone_preprocess_input
from ..flowers.data import NUM_CLASSES
from ..flowers.experiment import NAMES
from ..flowers.pipeline import RESIZE_TO
from .q7_calls import call_fresh, checked_split, run_preprocess_many, student_backbone
from .q7_geometry import PATTERN_SIZE, SIZE, best_window, centre, pattern_image, resize, rms, shorter_side_to
from .q7_model import backbone_frozen, backbone_pretrained, inference_mode, model_head, num_classes_used
from .q7_tiers import full_tier_limits, json_safe, run_measured

MODULE = "q7_flowers"
FULL_TARGET = 0.85
# Inputs of several sizes and aspect ratios: landscape, portrait, smaller than the crop, panoramic, square.
TEST_SIZES = ((300, 500), (500, 300), (120, 90), (256, 1000), (224, 224))


# --- preprocess ---------------------------------------------------------------------------------


def preprocess_shapes(ctx: Context) -> str:
    images, trainings = [], []
    for height, width in TEST_SIZES:
        image = np.random.default_rng(height + width).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        for training in (False, True):
            images.append(image)
            trainings.append(training)

    def check(index: int, out: np.ndarray) -> None:
        (height, width), training = images[index].shape[:2], trainings[index]
        call = f"preprocess(<image {height}x{width}x3>, training={training})"
        if out.dtype != np.float32:
            raise CheckFailed(
                f"`{call}` returned {out.dtype}, expected float32: "
                "cast the image (keras.ops.cast(image, 'float32')) before scaling it."
            )
        if not np.all(np.isfinite(out)):
            raise CheckFailed(f"`{call}` returned NaN or infinite values.")

    run_preprocess_many(ctx, images, trainings, check)
    sizes = ", ".join(f"{h}x{w}" for h, w in TEST_SIZES)
    return f"224x224x3 float32 for inputs of {sizes}"


def channel_affine(ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (offset, slope) of the student's pixel scaling, from black and white images."""

    def compute() -> tuple[np.ndarray, np.ndarray]:
        plain = [np.zeros(PATTERN_SIZE + (3,), np.uint8), np.full(PATTERN_SIZE + (3,), 255, np.uint8)]
        black, white = (out.mean(axis=(0, 1)) for out in run_preprocess_many(ctx, plain, [False, False]))
        return black.astype(np.float64), (white - black).astype(np.float64) / 255.0

    return ctx.cached("q7-affine", compute)


def preprocess_eval_centre(ctx: Context) -> str:
    image = pattern_image()
    first, second = run_preprocess_many(ctx, [image, image], [False, False])
    if not np.allclose(first, second, atol=1e-4):
        raise CheckFailed(
            "`preprocess(image, training=False)` gave two different results for the same image: the evaluation crop is "
            "random. When training is False, take the centre 224x224 crop and do not flip, so validation and test "
            "accuracy are reproducible."
        )
    offset, slope = channel_affine(ctx)
    if np.any(np.abs(slope) < 1e-6):
        raise CheckFailed(
            "`preprocess(image, training=False)` gives the same output for a black and a white image: "
            "it must keep the pixel values (scaled)."
        )
    recovered = ((first - offset) / slope).mean(axis=2)
    resized = shorter_side_to(image, RESIZE_TO)[..., 0]
    (top, left), error = best_window(resized, recovered)
    want_top, want_left = (resized.shape[0] - SIZE) // 2, (resized.shape[1] - SIZE) // 2
    height, width = PATTERN_SIZE
    if error < 6.0:
        if abs(top - want_top) <= 2 and abs(left - want_left) <= 2:
            return (
                "the evaluation crop is the centre 224x224 of the image resized to "
                f"{resized.shape[0]}x{resized.shape[1]}, and deterministic"
            )
        raise CheckFailed(
            f"With training=False your crop of a {height}x{width} image (resized to "
            f"{resized.shape[0]}x{resized.shape[1]}) starts at row {top}, column {left}; the centre crop starts at row "
            f"{want_top}, column {want_left}. Evaluate on the centre: top = (height - 224) // 2, left = (width - 224) "
            "// 2; random crops are for training only."
        )
    original = image[..., :1].astype(np.float64)
    squashed = resize(image, RESIZE_TO, RESIZE_TO)
    alternatives = {
        "resized straight to 224x224, which squashes the aspect ratio": resize(image, SIZE, SIZE),
        "resized the shorter side to 224 and cropped, skipping the 256 step": centre(shorter_side_to(image, SIZE)),
        "resized to 256x256 (squashing the aspect ratio) and then cropped the centre": centre(squashed),
        "cropped 224x224 out of the original image without resizing it first": centre(original),
    }
    errors = {what: rms(recovered, candidate[..., 0]) for what, candidate in alternatives.items()}
    what, closest = min(errors.items(), key=lambda item: item[1])
    if closest < 6.0:
        raise CheckFailed(
            f"With training=False your preprocess looks like it {what}. Expected: resize so the shorter side is 256 "
            f"(a {height}x{width} image becomes 256x{round(width * 256 / height)}), then take the centre 224x224."
        )
    raise CheckFailed(
        "With training=False your output does not match the centre 224x224 of the image resized to shorter side 256 "
        f"(mean difference {error:.0f} grey levels at best; flipped, rotated or re-coloured?). Expected: resize so the "
        "shorter side is 256 keeping the aspect ratio, crop the centre 224x224, scale the pixels as your backbone "
        "expects, nothing else."
    )


def preprocess_train_random(ctx: Context) -> str:
    image = pattern_image()
    outputs = run_preprocess_many(ctx, [image] * 4, [True] * 4)
    if all(np.allclose(outputs[0], other, atol=1e-4) for other in outputs[1:]):
        raise CheckFailed(
            "`preprocess(image, training=True)` gave the same output on 4 calls: when training, take a random 224x224 "
            "crop (random offsets from keras.random.randint, or keras.layers.RandomCrop) and optionally a random "
            "flip, so every epoch sees new views."
        )
    return "training crops differ from call to call"


def _triple(values: Any) -> str:
    return "(" + ", ".join(f"{x:.3g}" for x in values) + ")"


def preprocess_value_range(ctx: Context) -> str:
    import keras

    backbone = student_backbone(ctx)
    expected_fn = backbone_preprocess_input(backbone.name)
    module = backbone_module(backbone.name)
    if expected_fn is None:
        raise CheckFailed(
            f"Your backbone '{backbone.name}' is not one the grader knows from keras.applications, so the expected "
            "pixel scaling is unknown; use one of keras.applications' models."
        )
    colours = {"black": (0, 0, 0), "white": (255, 255, 255), "red": (255, 0, 0), "blue": (0, 0, 255)}
    images = [np.full(PATTERN_SIZE + (3,), rgb, np.uint8) for rgb in colours.values()]
    outputs = run_preprocess_many(ctx, images, [False] * len(images))
    got, want = {}, {}
    for (name, rgb), out in zip(colours.items(), outputs):
        got[name] = out.mean(axis=(0, 1))
        expected = expected_fn(np.full((1, 4, 4, 3), rgb, dtype=np.float32))
        want[name] = np.asarray(keras.ops.convert_to_numpy(expected), dtype=np.float64)[0].mean(axis=(0, 1))
    span = max(float(np.max(np.abs(want["white"] - want["black"]))), 1.0)
    if all(np.allclose(got[n], want[n], atol=0.02 * span) for n in colours):
        low, high = float(want["black"].min()), float(want["white"].max())
        return (
            f"pixels scaled as keras.applications.{module}.preprocess_input expects for '{backbone.name}' "
            f"(black -> {low:g}, white -> {high:g})"
        )
    lo, hi = float(got["black"].mean()), float(got["white"].mean())
    wlo, whi = float(want["black"].mean()), float(want["white"].mean())
    tolerance = 0.02 * span
    if np.allclose(got["red"], want["blue"], atol=tolerance) and np.allclose(got["blue"], want["red"], atol=tolerance):
        hint = "Your red and blue channels are swapped."
    elif abs(hi - lo - 1) < 0.05 and abs(whi - wlo - 255) < 5:
        hint = (
            f"You divide by 255, but '{backbone.name}' rescales inside the model and wants pixels in [0, 255]: "
            "do not divide."
        )
    elif abs(whi - wlo - 2) < 0.05:
        hint = "This backbone wants pixels in [-1, 1]: x / 127.5 - 1."
    else:
        hint = ""
    return_fix = (
        f" Simplest fix: return keras.applications.{module}.preprocess_input(crop) for the float32 crop in [0, 255]."
    )
    raise CheckFailed(
        f"For your backbone '{backbone.name}', keras.applications.{module}.preprocess_input maps black to "
        f"{_triple(want['black'])} and white to {_triple(want['white'])} (per channel); your preprocess gives "
        f"{_triple(got['black'])} and {_triple(got['white'])}. {hint}{return_fix}"
    )


# --- split ----------------------------------------------------------------------------------------


def flower_like_labels(seed: int = 0) -> np.ndarray:
    """102 classes of 40 to 120 images (about the flowers' 8,189), shuffled so order carries no class information."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(40, 121, size=NUM_CLASSES)
    return rng.permutation(np.repeat(np.arange(NUM_CLASSES), counts))


def _same_split(a: Any, b: Any) -> bool:
    return all(np.array_equal(np.sort(np.asarray(x)), np.sort(np.asarray(y))) for x, y in zip(a, b))


def split_is_stratified(ctx: Context) -> str:
    labels = flower_like_labels()
    parts = ctx.cached("q7-split", lambda: checked_split(ctx, labels))
    sizes = "/".join(f"{len(p):,}" for p in parts)
    return f"{sizes} of {len(labels):,} images, per class within one image of 50/25/25, disjoint and covering"


def split_is_reproducible(ctx: Context) -> str:
    labels = flower_like_labels()
    first = ctx.cached("q7-split", lambda: checked_split(ctx, labels))
    if not _same_split(first, call_fresh(ctx, "split_indices", labels, seed=0)):
        raise CheckFailed(
            "Two calls of split_indices(labels, seed=0) gave different splits: derive all randomness from the seed, "
            "e.g. rng = np.random.default_rng(seed) and rng.permutation(...), not the global np.random state or an "
            "unseeded shuffle."
        )
    if _same_split(first, call_fresh(ctx, "split_indices", labels, seed=1)):
        raise CheckFailed(
            "split_indices gives the same split for seed=0 and seed=1: the seed argument is ignored; "
            "seed your random generator with it."
        )
    return "the same split for the same seed, a different one for another seed"


def split_other_labels(ctx: Context) -> str:
    rng = np.random.default_rng(7)
    labels = rng.permutation(np.repeat(np.arange(7), [1, 2, 3, 4, 5, 9, 13]))
    checked_split(ctx, labels, seed=3)
    return "7 classes of 1 to 13 images split correctly"


# --- training: quick and full tiers -----------------------------------------------------------------


def training(ctx: Context) -> str:
    experiment, note, verdicts = run_measured(ctx)
    ctx.meta["q7"] = json_safe({k: v for k, v in experiment.to_dict().items() if k not in ("confusion", "class_names")})
    ctx.meta["q7"]["marker_probability"] = json_safe([round(p, 4) for p in verdicts.marker_probability])
    ctx.meta["q7"]["elsewhere_probability"] = json_safe([round(p, 4) for p in verdicts.elsewhere_probability])
    history = experiment.history
    if not history or "loss" not in history:
        raise CheckFailed(
            "`train_transfer` should return History.history, the dict that model.fit(...) returns in .history, "
            "with a 'loss' list per epoch."
        )
    if verdicts.epochs != experiment.epochs:
        raise CheckFailed(
            f"`train_transfer(..., epochs={experiment.epochs})` trained {verdicts.epochs} epochs (counted by the "
            "grader): pass epochs=epochs to model.fit, and call it once."
        )
    if experiment.backbone_drift > 1e-6:
        raise CheckFailed(
            "The backbone's weights or BatchNormalization statistics changed while train_transfer ran (by up to "
            f"{experiment.backbone_drift:.3g}): train only the head; keep base.trainable = False (do not set "
            "model.trainable = True) and call base(x, training=False)."
        )
    if verdicts.leak:
        raise CheckFailed(verdicts.leak)
    if verdicts.history:
        raise CheckFailed(verdicts.history)
    if ctx.options.tier == "full":
        if experiment.test_accuracy < FULL_TARGET:
            raise CheckFailed(
                f"Test accuracy {experiment.test_accuracy:.3f} after {experiment.epochs} epochs, expected at least "
                f"{FULL_TARGET}{note}. Check that the backbone has ImageNet weights, that preprocess scales pixels as "
                "the backbone expects, and the learning rate (1e-3 with Adam works)."
            )
        return (
            f"test accuracy {experiment.test_accuracy:.3f} (top-5 {experiment.test_top5:.3f}) after "
            f"{experiment.epochs} epochs on {experiment.data_origin}{note}"
        )
    before, after = experiment.train_loss_before, experiment.train_loss_after
    if not after < before:
        per_epoch = ", ".join(f"{v:.3f}" for v in experiment.curves["train_loss"])
        raise CheckFailed(
            f"The loss on the training images did not fall ({before:.3f} before train_transfer, {after:.3f} after; per "
            f"epoch, measured by the grader: {per_epoch}) on a small, easy data set: compile with an optimizer "
            "such as Adam(1e-3) and loss='sparse_categorical_crossentropy' (the labels are integers), and fit on "
            "train_ds."
        )
    generated = "generated " if experiment.data_kind == "synthetic" else ""
    return (
        f"quick tier: {experiment.split['images']} {generated}images, {experiment.epochs} epochs, "
        f"training loss {before:.3f} -> {after:.3f}, backbone untouched, validation set kept out of training, history "
        f"matches the grader's evaluation of every epoch{note} "
        "(full tier: grader check q7 --tier full, see the README)"
    )


QUESTION = Question(
    id="q7",
    title="Transfer learning on the Oxford 102 flowers",
    module=MODULE,
    names=NAMES,
    checks=(
        Check("preprocess gives 224x224x3 float32 for any input", 2, preprocess_shapes),
        Check("evaluation crop is centred and deterministic", 2, preprocess_eval_centre),
        Check("training crop is random", 1, preprocess_train_random),
        Check("pixels scaled as the backbone expects", 1, preprocess_value_range),
        Check("split is stratified 50/25/25, disjoint and covering", 2, split_is_stratified),
        Check("split is reproducible from the seed", 1, split_is_reproducible),
        Check("split works for other label sets", 1, split_other_labels, hidden=True),
        Check("head is pooling -> Dense(256, relu) -> Dense(num_classes, softmax)", 2, model_head),
        Check("backbone is frozen: only the head trains", 2, backbone_frozen),
        Check("backbone is a pretrained keras.applications network", 1, backbone_pretrained),
        Check("backbone runs in inference mode", 1, inference_mode),
        Check("num_classes is honoured", 1, num_classes_used, hidden=True),
        Check("train_transfer trains the head (quick: loss falls; full: test accuracy >= 0.85)", 3, training),
    ),
    time_limit_s=300.0,  # the quick tier preprocesses, builds and trains on generated flowers (about a minute)
    sandbox_limits=full_tier_limits,
    training=Training(notice=lambda options: None),
    report="grader.flowers.report:report_command",
)
