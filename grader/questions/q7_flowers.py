"""q7 — transfer learning on the Oxford 102 flowers with a frozen pretrained backbone.

The checks run the student's `preprocess`, `split_indices` and `build_transfer_model` on
generated inputs (no data, no weights download: models are built with weights=None, and
"pretrained" is checked by handing the builder a local weights file and seeing it loaded).
The training check has two tiers, chosen by `options["tier"]` or `$CNN_GRADER_TIER`:

- quick (default, CPU, seconds): the student's whole pipeline on a small image folder
  (`options["data"]`/`$CNN_GRADER_FLOWERS`, else one generated on the fly) with
  weights=None, 3 epochs: it must run end to end, the loss must fall, the backbone must not move;
- full (GPU, real data, ImageNet weights from `options["weights"]`/`$CNN_GRADER_WEIGHTS`
  or Keras's cache): test accuracy at least 0.85 after at most 10 epochs.

Student code is reached only through the `Context` seam, so q7 is graded in the sandbox
(`grade_folder(..., isolated=True)`). The functions named `*_beside_student` run where the
student's code runs (`Context.run_with_student`: the sandboxed child, else this process):
they call `preprocess` on images sent to them, build the model with backbone weights the
grader sends (the child has no network and no files of the grader's), and train it with
the student's pipeline. What they return is only as trustworthy as the student's process,
so the grading side measures what it grades itself: it builds and calibrates the model it
sends, keeps its own copy of the backbone's weights, and scores the returned model on the
returned preprocessed images with labels that never leave it (test labels never cross).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import flowers
from ..checks import Check, CheckFailed, Context, Question, StudentCodeError, StudentSide, explain_exception
from ..comparator import weight_shapes

MODULE = "q7_flowers"
NAMES = ("preprocess", "split_indices", "build_transfer_model", "train_transfer")
SIZE = flowers.IMAGE_SIZE
HEAD_UNITS = 256
FULL_TARGET = 0.85
FULL_MAX_EPOCHS = 10
QUICK_EPOCHS = 3
TRAINING_SEED = 0
# Inputs of several sizes and aspect ratios: landscape, portrait, smaller than the crop, panoramic, square.
TEST_SIZES = ((300, 500), (500, 300), (120, 90), (256, 1000), (224, 224))
PATTERN_SIZE = (300, 500)
EVAL_CHUNK = 256  # data images preprocessed per round trip to the student's process (~150 MB of float32)
FULL_SANDBOX_WALL_S = 3600.0  # the full tier's sandbox: 8,189 images preprocessed, 10 epochs on a GPU
FULL_SANDBOX_MEMORY_MB = 24_576
HERE = "grader.questions.q7_flowers"


def call_fresh(ctx: Context, name: str, *args: Any, **kwargs: Any) -> Any:
    """Call the student's `name` every time (functions that draw at random; Context.call caches)."""
    return ctx.call_with(name, args, kwargs, fresh=True).value


def image_call(shape: Sequence[int] | None, training: bool) -> str:
    image = f"<image {shape[0]}x{shape[1]}x3>" if shape is not None and len(shape) >= 2 else "<image>"
    return f"preprocess({image}, training={training})"


def preprocess_beside_student(student: StudentSide, images: Any, trainings: Sequence[bool]) -> dict[str, Any]:
    """Where the student's code runs: `preprocess(image, training)` for each image (arrays, or a `flowers.pack_images` pack).

    Stops at the first failure; returns the outputs as arrays, the input shapes, and the
    failure's message (None when every call worked), so the grader reports problems in call order.
    """
    import keras

    if isinstance(images, dict):
        images = [flowers.decode_image(blob) for blob in flowers.unpack_images(images)]
    outputs: list[np.ndarray] = []
    shapes = [list(np.shape(image)) for image in images]
    for image, training in zip(images, trainings):
        call = image_call(np.shape(image), bool(training))
        try:
            value = student.call("preprocess", image, bool(training)).value
        except StudentCodeError as error:
            return {"outputs": outputs, "shapes": shapes, "failed": str(error)}
        try:
            out = np.asarray(keras.ops.convert_to_numpy(value))
            if out.dtype == object:
                raise TypeError("not numbers")
        except Exception:  # noqa: BLE001 - whatever the student returned
            return {"outputs": outputs, "shapes": shapes, "failed": not_an_image(value, call)}
        outputs.append(out)
    return {"outputs": outputs, "shapes": shapes, "failed": None}


def not_an_image(value: Any, call: str) -> str:
    return f"`{call}` returned {type(value).__name__}; it should return an image (a tensor or array of shape 224x224x3)."


def run_preprocess_many(
    ctx: Context, images: Any, trainings: Sequence[bool], check: Callable[[int, np.ndarray], None] | None = None
) -> list[np.ndarray]:
    """The student's `preprocess` of each image (arrays, or a pack), in one round trip.

    Each output is checked in call order to be 224x224x3, then by `check(index, output)`;
    the first problem is raised, as if the calls had been made one by one.
    """
    result = ctx.run_with_student(f"{HERE}:preprocess_beside_student", images, [bool(t) for t in trainings])
    if not isinstance(result, dict) or not isinstance(result.get("outputs"), list):
        raise StudentCodeError("The grader's call of your preprocess came back unreadable: something in your code interfered with it.")
    shapes = result.get("shapes") if isinstance(result.get("shapes"), list) else []
    outputs = []
    for index, (out, training) in enumerate(zip(result["outputs"], trainings)):
        shape = images[index].shape if isinstance(images, list) else (shapes[index] if index < len(shapes) else None)
        call = image_call(shape, bool(training))
        if not isinstance(out, np.ndarray) or out.dtype == object or not np.issubdtype(out.dtype, np.number):
            raise StudentCodeError(not_an_image(out, call))
        if out.shape != (SIZE, SIZE, 3):
            shape_text = "x".join(str(d) for d in out.shape)
            hint = " Drop the batch axis: preprocess works on one image." if out.ndim == 4 else " After resizing the shorter side to 256, crop 224x224 out of it."
            raise CheckFailed(f"`{call}` returned shape {shape_text}, expected 224x224x3.{hint}")
        if check is not None:
            check(index, out)
        outputs.append(out)
    if result.get("failed"):
        raise StudentCodeError(str(result["failed"]))
    if len(outputs) != len(trainings):
        raise StudentCodeError("The grader's call of your preprocess came back with missing images: something in your code interfered with it.")
    return outputs


def run_preprocess(ctx: Context, image: np.ndarray, training: bool) -> np.ndarray:
    return run_preprocess_many(ctx, [image], [training])[0]


def pattern_image(height: int = PATTERN_SIZE[0], width: int = PATTERN_SIZE[1]) -> np.ndarray:
    """A smooth grey image whose every 224x224 window looks different (so a crop's position can be found)."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    grey = 127.5 + 55 * np.sin(rows / 19.0) + 45 * np.sin(cols / 27.0 + rows / 53.0) + 20 * np.cos(cols / 11.0 - rows / 71.0)
    return np.repeat(np.clip(grey, 0, 255)[..., None], 3, axis=2).astype(np.uint8)


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    import keras

    out = keras.ops.image.resize(image.astype(np.float32), (height, width), interpolation="bilinear", antialias=True)
    return np.asarray(keras.ops.convert_to_numpy(out), dtype=np.float64)


def shorter_side_to(image: np.ndarray, side: int) -> np.ndarray:
    height, width = image.shape[:2]
    scale = side / min(height, width)
    return resize(image, max(side, round(height * scale)), max(side, round(width * scale)))


def centre(image: np.ndarray) -> np.ndarray:
    top, left = (image.shape[0] - SIZE) // 2, (image.shape[1] - SIZE) // 2
    return image[top : top + SIZE, left : left + SIZE]


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
        if out.dtype != np.float32:
            raise CheckFailed(
                f"`preprocess(<image {height}x{width}x3>, training={training})` returned {out.dtype}, expected float32: "
                "cast the image (keras.ops.cast(image, 'float32')) before scaling it."
            )
        if not np.all(np.isfinite(out)):
            raise CheckFailed(f"`preprocess(<image {height}x{width}x3>, training={training})` returned NaN or infinite values.")

    run_preprocess_many(ctx, images, trainings, check)
    sizes = ", ".join(f"{h}x{w}" for h, w in TEST_SIZES)
    return f"224x224x3 float32 for inputs of {sizes}"


def channel_affine(ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (offset, slope) of the student's pixel scaling, from black and white images."""

    def compute() -> tuple[np.ndarray, np.ndarray]:
        black, white = (
            out.mean(axis=(0, 1))
            for out in run_preprocess_many(ctx, [np.zeros(PATTERN_SIZE + (3,), np.uint8), np.full(PATTERN_SIZE + (3,), 255, np.uint8)], [False, False])
        )
        return black.astype(np.float64), (white - black).astype(np.float64) / 255.0

    return ctx.cached("q7-affine", compute)


def preprocess_eval_centre(ctx: Context) -> str:
    image = pattern_image()
    first, second = run_preprocess_many(ctx, [image, image], [False, False])
    if not np.allclose(first, second, atol=1e-4):
        raise CheckFailed(
            "`preprocess(image, training=False)` gave two different results for the same image: the evaluation crop is random. "
            "When training is False, take the centre 224x224 crop and do not flip, so validation and test accuracy are reproducible."
        )
    offset, slope = channel_affine(ctx)
    if np.any(np.abs(slope) < 1e-6):
        raise CheckFailed("`preprocess(image, training=False)` gives the same output for a black and a white image: it must keep the pixel values (scaled).")
    recovered = ((first - offset) / slope).mean(axis=2)
    resized = shorter_side_to(image, flowers.RESIZE_TO)[..., 0]
    (top, left), error = best_window(resized, recovered)
    want_top, want_left = (resized.shape[0] - SIZE) // 2, (resized.shape[1] - SIZE) // 2
    if error < 6.0:
        if abs(top - want_top) <= 2 and abs(left - want_left) <= 2:
            return f"the evaluation crop is the centre 224x224 of the image resized to {resized.shape[0]}x{resized.shape[1]}, and deterministic"
        raise CheckFailed(
            f"With training=False your crop of a {PATTERN_SIZE[0]}x{PATTERN_SIZE[1]} image (resized to {resized.shape[0]}x{resized.shape[1]}) "
            f"starts at row {top}, column {left}; the centre crop starts at row {want_top}, column {want_left}. "
            "Evaluate on the centre: top = (height - 224) // 2, left = (width - 224) // 2; random crops are for training only."
        )
    grey = image[..., 0].astype(np.float64)
    alternatives = {
        "resized straight to 224x224, which squashes the aspect ratio": resize(image, SIZE, SIZE)[..., 0],
        "resized the shorter side to 224 and cropped, skipping the 256 step": centre(shorter_side_to(image, SIZE))[..., 0],
        "resized to 256x256 (squashing the aspect ratio) and then cropped the centre": centre(resize(image, flowers.RESIZE_TO, flowers.RESIZE_TO))[..., 0],
        "cropped 224x224 out of the original image without resizing it first": centre(grey[..., None])[..., 0],
    }
    errors = {what: rms(recovered, candidate) for what, candidate in alternatives.items()}
    what, closest = min(errors.items(), key=lambda item: item[1])
    if closest < 6.0:
        raise CheckFailed(
            f"With training=False your preprocess looks like it {what}. Expected: resize so the shorter side is 256 "
            f"(a {PATTERN_SIZE[0]}x{PATTERN_SIZE[1]} image becomes 256x{round(PATTERN_SIZE[1] * 256 / PATTERN_SIZE[0])}), then take the centre 224x224."
        )
    raise CheckFailed(
        f"With training=False your output does not match the centre 224x224 of the image resized to shorter side 256 "
        f"(mean difference {error:.0f} grey levels at best; flipped, rotated or re-coloured?). Expected: resize so the shorter "
        "side is 256 keeping the aspect ratio, crop the centre 224x224, scale the pixels as your backbone expects, nothing else."
    )


def rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def best_window(big: np.ndarray, small: np.ndarray, step: int = 4) -> tuple[tuple[int, int], float]:
    """Where the 224x224 `small` best matches a window of `big` (RMS over a subsampled grid)."""
    sample = small[::step, ::step]
    best, where = np.inf, (0, 0)
    for top in range(big.shape[0] - SIZE + 1):
        for left in range(big.shape[1] - SIZE + 1):
            window = big[top : top + SIZE : step, left : left + SIZE : step]
            error = float(np.mean((window - sample) ** 2))
            if error < best:
                best, where = error, (top, left)
    return where, float(np.sqrt(best))


def preprocess_train_random(ctx: Context) -> str:
    image = pattern_image()
    outputs = run_preprocess_many(ctx, [image] * 4, [True] * 4)
    if all(np.allclose(outputs[0], other, atol=1e-4) for other in outputs[1:]):
        raise CheckFailed(
            "`preprocess(image, training=True)` gave the same output on 4 calls: when training, take a random 224x224 crop "
            "(random offsets from keras.random.randint, or keras.layers.RandomCrop) and optionally a random flip, so every epoch sees new views."
        )
    return "training crops differ from call to call"


# --- the backbone and the value range -----------------------------------------------------------


def student_model(ctx: Context, num_classes: int = flowers.NUM_CLASSES, *, weights_back: bool = True) -> Any:
    """The student's `build_transfer_model(num_classes, weights=None)` (one call, shared by the checks).

    From the sandbox it comes back with its weights by default: the inference-mode check
    needs real (random) weights, with which BatchNormalization statistics can move.
    """
    import keras

    model = ctx.call_with("build_transfer_model", (), {"num_classes": num_classes, "weights": None}, weights_back=weights_back).value
    if not isinstance(model, keras.Model):
        raise StudentCodeError(f"`build_transfer_model(num_classes={num_classes}, weights=None)` returned {type(model).__name__}; it should return a keras.Model.")
    return model


def student_backbone(ctx: Context, model: Any | None = None) -> Any:
    model = model if model is not None else student_model(ctx)
    backbone = flowers.find_backbone(model)
    if backbone is None:
        raise CheckFailed(
            "No backbone model was found inside your model. Build it as base = keras.applications.<Name>(include_top=False, "
            "weights=weights, input_shape=(224, 224, 3)) and call it as a layer, base(inputs, training=False), so the grader "
            "(and you) can find, freeze and inspect it."
        )
    return backbone


def preprocess_value_range(ctx: Context) -> str:
    backbone = student_backbone(ctx)
    expected_fn = flowers.backbone_preprocess_input(backbone.name)
    module = flowers.backbone_module(backbone.name)
    if expected_fn is None:
        raise CheckFailed(f"Your backbone '{backbone.name}' is not one the grader knows from keras.applications, so the expected pixel scaling is unknown; use one of keras.applications' models.")
    import keras

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
        return f"pixels scaled as keras.applications.{module}.preprocess_input expects for '{backbone.name}' (black -> {low:g}, white -> {high:g})"
    fmt = lambda v: "(" + ", ".join(f"{x:.3g}" for x in v) + ")"  # noqa: E731
    lo, hi = float(got["black"].mean()), float(got["white"].mean())
    wlo, whi = float(want["black"].mean()), float(want["white"].mean())
    if np.allclose(got["red"], want["blue"], atol=0.02 * span) and np.allclose(got["blue"], want["red"], atol=0.02 * span):
        hint = "Your red and blue channels are swapped."
    elif abs(hi - lo - 1) < 0.05 and abs(whi - wlo - 255) < 5:
        hint = f"You divide by 255, but '{backbone.name}' rescales inside the model and wants pixels in [0, 255]: do not divide."
    elif abs(whi - wlo - 2) < 0.05:
        hint = "This backbone wants pixels in [-1, 1]: x / 127.5 - 1."
    else:
        hint = ""
    return_fix = f" Simplest fix: return keras.applications.{module}.preprocess_input(crop) for the float32 crop in [0, 255]."
    raise CheckFailed(
        f"For your backbone '{backbone.name}', keras.applications.{module}.preprocess_input maps black to {fmt(want['black'])} "
        f"and white to {fmt(want['white'])} (per channel); your preprocess gives {fmt(got['black'])} and {fmt(got['white'])}. {hint}{return_fix}"
    )


# --- split ----------------------------------------------------------------------------------------


def flower_like_labels(seed: int = 0) -> np.ndarray:
    """102 classes of 40 to 120 images (about as many as the flowers' 8,189), shuffled so order carries no class information."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(40, 121, size=flowers.NUM_CLASSES)
    return rng.permutation(np.repeat(np.arange(flowers.NUM_CLASSES), counts))


def checked_split(ctx: Context, labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, ...]:
    parts = call_fresh(ctx, "split_indices", labels, seed=seed)
    problem = flowers.split_problem(labels, parts, call=f"split_indices(<{len(labels)} labels>, seed={seed})")
    if problem:
        raise CheckFailed(problem)
    return tuple(np.asarray(p, dtype=np.int64) for p in parts)


def split_is_stratified(ctx: Context) -> str:
    labels = flower_like_labels()
    parts = ctx.cached("q7-split", lambda: checked_split(ctx, labels))
    sizes = "/".join(f"{len(p):,}" for p in parts)
    return f"{sizes} of {len(labels):,} images, per class within one image of 50/25/25, disjoint and covering"


def split_is_reproducible(ctx: Context) -> str:
    labels = flower_like_labels()
    first = ctx.cached("q7-split", lambda: checked_split(ctx, labels))
    again = call_fresh(ctx, "split_indices", labels, seed=0)
    if not all(np.array_equal(np.sort(np.asarray(a)), np.sort(np.asarray(b))) for a, b in zip(first, again)):
        raise CheckFailed(
            "Two calls of split_indices(labels, seed=0) gave different splits: derive all randomness from the seed, "
            "e.g. rng = np.random.default_rng(seed) and rng.permutation(...), not the global np.random state or an unseeded shuffle."
        )
    other = call_fresh(ctx, "split_indices", labels, seed=1)
    if all(np.array_equal(np.sort(np.asarray(a)), np.sort(np.asarray(b))) for a, b in zip(first, other)):
        raise CheckFailed("split_indices gives the same split for seed=0 and seed=1: the seed argument is ignored; seed your random generator with it.")
    return "the same split for the same seed, a different one for another seed"


def split_other_labels(ctx: Context) -> str:
    rng = np.random.default_rng(7)
    labels = rng.permutation(np.repeat(np.arange(7), [1, 2, 3, 4, 5, 9, 13]))
    checked_split(ctx, labels, seed=3)
    return "7 classes of 1 to 13 images split correctly"


# --- the model ------------------------------------------------------------------------------------


def _activation(layer: Any) -> str | None:
    import keras

    if isinstance(layer, keras.layers.ReLU):
        return "relu"
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    config = layer.get_config()
    activation = config.get("activation")
    if isinstance(activation, dict):
        activation = activation.get("config", {}).get("name") or activation.get("class_name")
    return str(activation).lower() if activation is not None else None


def head_problem(model: Any, backbone: Any, num_classes: int) -> str | None:
    """What is wrong with the layers after the backbone, or None."""
    import keras

    if any(layer.name == "predictions" for layer in backbone.layers):
        return (
            f"Your backbone '{backbone.name}' still has its ImageNet classifier (a 'predictions' layer with 1000 outputs): "
            "build it with include_top=False, so your head replaces it."
        )
    head = model.layers[model.layers.index(backbone) + 1 :]
    pooled = len(backbone.output.shape) == 2
    dense: list[tuple[Any, str]] = []
    for layer in head:
        kind = type(layer).__name__
        if isinstance(layer, keras.layers.Dense):
            if not pooled:
                return "Your head uses Dense layers on the backbone's 7x7 feature map: add keras.layers.GlobalAveragePooling2D() right after the backbone (or build it with pooling='avg')."
            dense.append((layer, _activation(layer) or "linear"))
        elif kind.startswith("Global") and "Pooling" in kind:
            pooled = True
        elif isinstance(layer, keras.layers.Flatten):
            return (
                "Your head flattens the backbone's feature map (7x7xF values) instead of pooling it: use GlobalAveragePooling2D, "
                "which gives F features and keeps Dense(256) small."
            )
        elif isinstance(layer, (keras.layers.Activation, keras.layers.ReLU, keras.layers.Softmax)):
            if dense and dense[-1][1] == "linear":
                dense[-1] = (dense[-1][0], _activation(layer) or "linear")
        elif isinstance(layer, (keras.layers.Dropout, keras.layers.InputLayer)):
            continue
        elif layer.weights:
            return f"Your head has a {kind} layer ('{layer.name}') with weights; the head should be global pooling, Dense(256, relu), Dense(num_classes, softmax) only."
    units = [int(layer.units) for layer, _ in dense]
    if len(dense) != 2:
        return (
            f"Your head has {len(dense)} Dense layer(s) ({', '.join(str(u) for u in units) or 'none'} units), expected exactly two: "
            f"Dense(256, activation='relu') then Dense(num_classes, activation='softmax')."
        )
    (hidden, hidden_act), (output, output_act) = dense
    if units[0] != HEAD_UNITS:
        return f"Your first Dense layer has {units[0]} units, expected 256: Dense(256, activation='relu')."
    if hidden_act != "relu":
        return f"Your Dense(256) uses activation '{hidden_act}', expected 'relu': Dense(256, activation='relu')."
    if units[1] != num_classes:
        return f"With num_classes={num_classes} your last Dense layer has {units[1]} units: use Dense(num_classes, ...) with the argument, not a fixed number."
    if output_act != "softmax":
        return f"Your last Dense layer uses activation '{output_act}', expected 'softmax' (the model should output class probabilities): Dense(num_classes, activation='softmax')."
    return None


def model_head(ctx: Context) -> str:
    model = student_model(ctx)
    backbone = student_backbone(ctx, model)
    problem = head_problem(model, backbone, flowers.NUM_CLASSES)
    if problem:
        raise CheckFailed(problem)
    return f"{backbone.name} -> global pooling -> Dense(256, relu) -> Dense(102, softmax)"


def head_params(feature_dim: int, num_classes: int) -> int:
    return HEAD_UNITS * (feature_dim + 1) + (HEAD_UNITS + 1) * num_classes


def count(variables: Any) -> int:
    return int(sum(int(np.prod(v.shape)) for v in variables))


def backbone_frozen(ctx: Context) -> str:
    model = student_model(ctx)
    backbone = student_backbone(ctx, model)
    features = int(backbone.output.shape[-1])
    expected = head_params(features, flowers.NUM_CLASSES)
    trainable = count(model.trainable_weights)
    formula = f"256 x ({features:,} + 1) + 257 x 102 = {expected:,}"
    if trainable == expected:
        return f"{trainable:,} trainable parameters = {formula}; {count(backbone.weights):,} frozen in '{backbone.name}'"
    in_backbone = count(backbone.trainable_weights)
    if in_backbone:
        norm = sum(count(layer.trainable_weights) for layer in flowers.batch_norm_layers(backbone))
        detail = (
            f" All {in_backbone:,} are BatchNormalization scales and offsets: freeze the whole backbone, base.trainable = False."
            if norm == in_backbone
            else " Freeze it with base.trainable = False before compiling (recompile after changing trainable)."
        )
        raise CheckFailed(
            f"Your model has {trainable:,} trainable parameters, expected {formula} (the head's only): "
            f"{in_backbone:,} of them are in the backbone '{backbone.name}', which should be frozen.{detail}"
        )
    raise CheckFailed(
        f"Your backbone is frozen, but the model has {trainable:,} trainable parameters, expected {formula} for its "
        f"F = {features:,} features: the difference ({trainable - expected:+,}) is in the head (see the head check)."
    )


def build_beside_student(
    student: StudentSide, constructor_name: str | None, file_name: str | None, input_shape: Sequence[int], pooling: str | None,
    weights: Sequence[np.ndarray] | None, num_classes: int,
) -> Any:
    """Where the student's code runs: write `weights` as a local weights file of keras.applications.<constructor_name>
    and return what `build_transfer_model(num_classes, weights=PATH)` builds (with its weights); without
    `constructor_name`, what `build_transfer_model(num_classes, weights=None)` builds.

    The file is written here because the sandboxed child sees none of the grader's files
    (and has no network for weights='imagenet').
    """
    import keras

    if constructor_name is None:
        return student.call("build_transfer_model", num_classes=num_classes, weights=None).value
    constructor = getattr(keras.applications, str(constructor_name), None)
    if constructor is None or not str(constructor_name)[:1].isupper() or not callable(constructor):
        raise ValueError(f"{constructor_name!r} is not a keras.applications network")
    folder = Path(tempfile.mkdtemp(prefix="q7-weights-"))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            fresh = constructor(include_top=False, weights=None, input_shape=tuple(int(d) for d in input_shape), pooling=pooling)
        fresh.set_weights([np.asarray(w) for w in weights])
        path = str(folder / Path(str(file_name)).name)
        fresh.save_weights(path)
        del fresh
        return student.call("build_transfer_model", num_classes=num_classes, weights=path).value
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def backbone_shape(backbone: Any) -> tuple[tuple[int, ...], str | None]:
    """The input shape and pooling the student's backbone was built with (what a twin of it needs)."""
    return tuple(backbone.input_shape[1:]), "avg" if len(backbone.output.shape) == 2 else None


def applications_twin(constructor: Any, backbone: Any, weights: Any) -> Any:
    """keras.applications' own network of the student's backbone kind, shaped like it, with `weights`."""
    input_shape, pooling = backbone_shape(backbone)
    with contextlib.redirect_stdout(io.StringIO()):
        return constructor(include_top=False, weights=weights, input_shape=input_shape, pooling=pooling)


def built_with_backbone_weights(ctx: Context, backbone: Any, constructor: Any, weights: Sequence[np.ndarray], num_classes: int) -> Any:
    """`build_transfer_model(num_classes, weights=PATH)` with PATH a local file holding `weights` for the backbone."""
    input_shape, pooling = backbone_shape(backbone)
    return ctx.run_with_student(
        f"{HERE}:build_beside_student", constructor.__name__, f"{backbone.name}_notop.weights.h5", list(input_shape),
        pooling, list(weights), num_classes, seed=TRAINING_SEED,
    )


def backbone_pretrained(ctx: Context) -> str:
    backbone = student_backbone(ctx)
    constructor = flowers.backbone_constructor(backbone.name)
    if constructor is None:
        raise CheckFailed(
            f"Your backbone '{backbone.name}' is not a keras.applications network the grader recognises: build it with "
            "keras.applications.<Name>(include_top=False, weights=weights, input_shape=(224, 224, 3)) and keep its name."
        )
    fresh = applications_twin(constructor, backbone, None)
    if count(fresh.weights) != count(backbone.weights):
        raise CheckFailed(
            f"Your backbone is called '{backbone.name}' but has {count(backbone.weights):,} parameters; "
            f"keras.applications.{constructor.__name__}(include_top=False) has {count(fresh.weights):,}. Use the network as keras.applications builds it."
        )
    rng = np.random.default_rng(0)
    marked = [w + rng.normal(0, 0.01, size=w.shape).astype(w.dtype) if w.size else w for w in fresh.get_weights()]
    name = constructor.__name__
    try:
        loaded = built_with_backbone_weights(ctx, backbone, constructor, marked, flowers.NUM_CLASSES)
    except StudentCodeError as error:
        raise CheckFailed(
            f"build_transfer_model(weights=PATH) failed with a local weights file for {name}: {error} "
            f"Pass the argument straight on: keras.applications.{name}(include_top=False, weights=weights, ...)."
        ) from None
    other = flowers.find_backbone(loaded)
    same = other is not None and len(other.weights) == len(marked) and all(
        np.shape(a) == np.shape(b) and np.allclose(a.numpy(), b) for a, b in zip(other.weights, marked)
    )
    if not same:
        raise CheckFailed(
            f"build_transfer_model(weights=PATH) did not load the backbone's weights from PATH: pass the weights argument on, "
            f"keras.applications.{name}(include_top=False, weights=weights, ...), so weights='imagenet' gives the pretrained network "
            "and a local file works on an offline machine."
        )
    return f"keras.applications.{name}, and the weights argument is passed on (a local weights file was loaded)"


def inference_mode(ctx: Context) -> str:
    import keras

    model = student_model(ctx)
    backbone = student_backbone(ctx, model)
    norms = flowers.batch_norm_layers(backbone)
    if not norms:
        return f"'{backbone.name}' has no BatchNormalization layers, so no statistics can drift"
    before = [v.numpy() for v in model.weights]
    stats = [(layer, layer.moving_mean.numpy(), layer.moving_variance.numpy()) for layer in norms]
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, size=(4, SIZE, SIZE, 3)).astype(np.float32)
    y = np.arange(4) % flowers.NUM_CLASSES
    try:
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy", run_eagerly=True)
        model.train_on_batch(x, y)
        moved = [(layer.name, float(np.max(np.abs(layer.moving_mean.numpy() - mean)))) for layer, mean, _ in stats]
        moved = [(name, delta) for name, delta in moved if delta > 1e-6]
    finally:
        model.set_weights(before)
    if moved:
        name, delta = moved[0]
        raise CheckFailed(
            f"After one training step of the head, the moving mean of {len(moved)} of the backbone's {len(norms)} "
            f"BatchNormalization layers changed (first: '{name}', by {delta:.3g}): the backbone runs in training mode and its "
            "ImageNet statistics drift. Freeze it (base.trainable = False: a frozen BatchNormalization runs in inference mode in Keras 3) "
            "and call it as base(inputs, training=False), which keeps it in inference mode even when you later unfreeze it to fine-tune."
        )
    return f"the moving statistics of all {len(norms)} BatchNormalization layers stay put while the head trains"


def num_classes_used(ctx: Context) -> str:
    model = student_model(ctx, num_classes=5, weights_back=False)
    problem = head_problem(model, student_backbone(ctx, model), 5)
    if problem:
        raise CheckFailed(f"With num_classes=5: {problem}")
    return "num_classes=5 gives a 5-way softmax"


# --- training: quick and full tiers -----------------------------------------------------------------


def setting(ctx: Context, key: str, env: str, default: Any = None) -> Any:
    value = ctx.options.get(key)
    return value if value not in (None, "") else os.environ.get(env, default)


@functools.lru_cache(maxsize=1)
def generated_flowers_dir() -> Path:
    """The quick tier's generated image folder (4 classes x 8 images), made once per process."""
    folder = Path(tempfile.mkdtemp(prefix="q7-quick-flowers-"))
    flowers.make_synthetic_flowers(folder, num_classes=4, per_class=8)
    return folder


def quick_data(ctx: Context) -> flowers.FlowersData:
    source = setting(ctx, "data", "CNN_GRADER_FLOWERS")
    if source:
        return flowers.load_flowers(source)
    return flowers.load_folder(generated_flowers_dir(), kind="synthetic")


def usable_split(ctx: Context, labels: np.ndarray) -> tuple[list[np.ndarray], str]:
    """The student's split when it is valid, else the reference's (so one mistake is charged once)."""
    try:
        return list(checked_split(ctx, labels)), ""
    except CheckFailed:
        parts = ctx.reference_call("split_indices", labels, seed=0)
        return [np.asarray(p) for p in parts], " (your split_indices was not valid, so the reference split was used)"


def tier_settings(ctx: Context, tier: str) -> tuple[flowers.FlowersData, Any, int, int]:
    """The tier's data, weights, epochs and batch size."""
    if tier == "full":
        try:
            data = flowers.load_flowers(setting(ctx, "data", "CNN_GRADER_FLOWERS"))
        except flowers.DataUnavailable as error:
            raise CheckFailed(f"Full tier: {error}") from None
        weights = setting(ctx, "weights", "CNN_GRADER_WEIGHTS", "imagenet")
        epochs = min(int(setting(ctx, "epochs", "CNN_GRADER_EPOCHS", FULL_MAX_EPOCHS)), FULL_MAX_EPOCHS)
        return data, weights, epochs, 32
    return quick_data(ctx), None, int(setting(ctx, "epochs", "CNN_GRADER_EPOCHS", QUICK_EPOCHS)), 8


def pretrained_model(ctx: Context, num_classes: int, weights: Any) -> Any:
    """The student's model with pretrained backbone weights (`weights`: 'imagenet' or a weights file).

    The grader loads the weights into its own keras.applications backbone of the student's
    kind, and hands them over as a local file (`build_beside_student`): the sandboxed child
    has no network, and no access to the grader's Keras cache or files.
    """
    skeleton = student_model(ctx, num_classes, weights_back=False)
    backbone = student_backbone(ctx, skeleton)
    constructor = flowers.backbone_constructor(backbone.name)
    if constructor is None:
        raise CheckFailed(
            f"Full tier: your backbone '{backbone.name}' is not a keras.applications network the grader recognises, so it cannot "
            "load its pretrained weights: build it with keras.applications.<Name>(include_top=False, weights=weights, input_shape=(224, 224, 3))."
        )
    try:
        reference = applications_twin(constructor, backbone, weights)
    except Exception as error:  # no network, a wrong file, ...: the grader's own set-up
        detail = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        if weights == "imagenet" and flowers.looks_like_download_failure(str(error)):
            raise CheckFailed(flowers.weights_unavailable_message(weights, detail)) from None
        raise CheckFailed(f"Full tier: the grader could not load weights={weights!r} into keras.applications.{constructor.__name__}: {detail}") from None
    return built_with_backbone_weights(ctx, backbone, constructor, reference.get_weights(), num_classes)


def transfer_model(ctx: Context, data: flowers.FlowersData, weights: Any, tier: str) -> Any:
    """A fresh model to train, from the student's `build_transfer_model`, with its weights."""
    import keras

    call = f"build_transfer_model(num_classes={data.num_classes}, weights={'None' if weights is None else 'PATH'})"
    try:
        if weights is None:
            model = ctx.run_with_student(f"{HERE}:build_beside_student", None, None, (), None, None, data.num_classes, seed=TRAINING_SEED)
        else:
            model = pretrained_model(ctx, data.num_classes, weights)
    except StudentCodeError as error:
        if tier == "full" and weights == "imagenet" and flowers.looks_like_download_failure(str(error)):
            raise CheckFailed(flowers.weights_unavailable_message(weights, str(error))) from None
        raise
    if not isinstance(model, keras.Model):
        raise StudentCodeError(f"`{call}` returned {type(model).__name__}; it should return a keras.Model.")
    return model


def train_beside_student(
    student: StudentSide,
    model: Any,
    images: dict[str, np.ndarray],
    labels: np.ndarray,
    counts: Sequence[int],
    *,
    num_classes: int,
    epochs: int,
    batch_size: int,
    shuffle_seed: int,
) -> dict[str, Any]:
    """Where the student's code runs: build the tf.data pipelines with the student's `preprocess` and call
    `train_transfer(model, train_ds, val_ds, epochs)`, recording each epoch's logs and predictions.

    `images` packs the training, validation and test images, in that order (`counts` of
    each); `labels` are the training and validation labels only: the test images come
    without theirs (their dataset carries zeros), and are only predicted for the curves.
    Returns the model as training left it, the history and the per-epoch record.
    """
    n_train, n_val, n_test = (int(c) for c in counts)
    train_idx, val_idx = np.arange(n_train), np.arange(n_train, n_train + n_val)
    test_idx = np.arange(n_train + n_val, n_train + n_val + n_test)
    data = flowers.packed_flowers(images, np.concatenate([np.asarray(labels, np.int64), np.zeros(n_test, np.int64)]), num_classes)
    student.function("train_transfer")
    preprocess = student.function("preprocess")

    def train(*args: Any) -> Any:
        return student.call("train_transfer", *args).value

    try:
        train_ds = flowers.make_dataset(data, train_idx, preprocess, training=True, batch_size=batch_size, shuffle_seed=shuffle_seed)
        val_ds = flowers.make_dataset(data, val_idx, preprocess, training=False, batch_size=batch_size, cache=True)
        test_ds = flowers.make_dataset(data, test_idx, preprocess, training=False, batch_size=batch_size, cache=True)
        with contextlib.redirect_stdout(io.StringIO()):
            record = flowers.train_recording_epochs(train, model, train_ds, val_ds, epochs, {"validation": val_ds, "test": test_ds})
        history = flowers.history_dict(record.returned)
    except CheckFailed:
        raise
    except Exception as error:  # student code (or the data) failed somewhere in the pipeline
        raise CheckFailed(explain_exception(PIPELINE, error, student.source)) from None
    return {"model": model, "history": history, "logs": record.logs, "probs": record.probs}


PIPELINE = "the training pipeline (preprocess inside tf.data, or the model on its batches)"


def eval_images(ctx: Context, data: flowers.FlowersData, indices: Sequence[int]) -> Any:
    """The student's evaluation-mode preprocess of the images `indices`, as arrays of at most EVAL_CHUNK images."""
    indices = np.asarray(indices, dtype=np.int64)
    for start in range(0, len(indices), EVAL_CHUNK):
        chunk = indices[start : start + EVAL_CHUNK]
        outputs = run_preprocess_many(ctx, flowers.pack_images(data, chunk), [False] * len(chunk))
        yield np.stack(outputs).astype(np.float32)


def predict(model: Any, images: np.ndarray, batch_size: int) -> np.ndarray:
    """The grader's own predictions (inference mode) of `model` for preprocessed `images`."""
    try:
        return np.asarray(model.predict(images, batch_size=batch_size, verbose=0), dtype=np.float64)
    except Exception as error:  # e.g. a model whose output does not fit its input
        raise CheckFailed(explain_exception(PIPELINE, error)) from None


def measured_scores(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float, float, np.ndarray]:
    try:
        return flowers.scores_from_probs(probs, labels)
    except ValueError as error:
        raise CheckFailed(f"The trained model cannot be scored: {error}. Its last layer should be Dense(num_classes, activation='softmax').") from None


def run_tier(ctx: Context, tier: str) -> tuple[flowers.Experiment, str]:
    """Run the student's pipeline once for the tier (cached for the report).

    The grader builds and calibrates the model, keeps its backbone's weights, and sends it
    to `train_beside_student`; it scores the model that comes back itself, on preprocessed
    images and with labels it holds (the test labels never reach the student's process).
    """

    def compute() -> tuple[flowers.Experiment, str]:
        import time

        import keras

        started = time.perf_counter()
        data, weights, epochs, batch = tier_settings(ctx, tier)
        parts, note = usable_split(ctx, data.labels)
        # preprocess once directly first, in both modes, so its mistakes are reported from the student's own line
        run_preprocess_many(ctx, flowers.pack_images(data, parts[0][:1].repeat(2)), [True, False])
        model = transfer_model(ctx, data, weights, tier)
        described = flowers.describe_model(model)
        backbone = flowers.find_backbone(model)
        calibrate = weights is None and backbone is not None and bool(flowers.batch_norm_layers(backbone))
        train_eval = np.concatenate(list(eval_images(ctx, data, parts[0] if tier == "quick" else parts[0][:64]))) if tier == "quick" or calibrate else None
        notes = []
        if calibrate:
            images = train_eval[:64]
            try:
                flowers.calibrate_batch_norm(backbone, images)
            except Exception as error:  # the model cannot run on its images
                raise CheckFailed(explain_exception(PIPELINE, error)) from None
            notes.append(flowers.calibration_note(len(images)))
        frozen_before = flowers.backbone_snapshot(model)
        shapes_before = weight_shapes(model)
        train_labels = data.labels[parts[0]]
        loss_before = measured_scores(predict(model, train_eval, batch), train_labels)[0] if tier == "quick" else float("nan")
        order = np.concatenate(parts)
        outcome = ctx.run_with_student(
            f"{HERE}:train_beside_student", model, flowers.pack_images(data, order),
            data.labels[np.concatenate(parts[:2])], [len(p) for p in parts],
            num_classes=data.num_classes, epochs=epochs, batch_size=batch, shuffle_seed=TRAINING_SEED, seed=TRAINING_SEED,
        )
        trained = outcome.get("model") if isinstance(outcome, dict) else None
        if not isinstance(trained, keras.Model) or weight_shapes(trained) != shapes_before:
            raise CheckFailed(
                "The model that train_transfer left behind is not the model it was given: train the model passed in "
                "(model.fit on it), do not rebuild or replace it."
            )
        test_probs = np.concatenate([predict(trained, chunk, batch) for chunk in eval_images(ctx, data, parts[2])])
        test_labels = data.labels[parts[2]]
        loss_after = measured_scores(predict(trained, train_eval, batch), train_labels)[0] if tier == "quick" else float("nan")
        labels = {"validation": data.labels[parts[1]], "test": test_labels}
        try:  # what the student's process reports per epoch: shown in the report, never graded
            curves = flowers.epoch_curves(list(outcome["logs"]), dict(outcome["probs"]), labels)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            curves = {k: [] for k in flowers.CURVE_KEYS}
        try:
            history = flowers.history_dict(outcome.get("history"))
        except (TypeError, ValueError, AttributeError):
            history = {}
        measured_scores(test_probs, test_labels)
        experiment = flowers.make_experiment(
            described, data, parts, tier=tier, weights=weights, epochs=epochs, batch_size=batch, curves=curves,
            test_probs=test_probs, test_labels=test_labels, history=history, notes=notes,
            drift=flowers.backbone_drift(trained, frozen_before), loss_before=loss_before, loss_after=loss_after,
            seconds=time.perf_counter() - started,
        )
        return experiment, note

    return ctx.cached(("q7-experiment", tier), compute)


def sandbox_limits(limits: Any, options: dict[str, Any]) -> Any:
    """The sandbox of the full tier preprocesses 8,189 images and trains 10 epochs: more time and memory (read by grader.isolation)."""
    tier = str(options.get("tier") or os.environ.get("CNN_GRADER_TIER") or "quick").lower()
    if tier != "full":
        return limits
    return dataclasses.replace(limits, wall_s=max(limits.wall_s, FULL_SANDBOX_WALL_S), memory_mb=max(limits.memory_mb, FULL_SANDBOX_MEMORY_MB))


def json_safe(value: Any) -> Any:
    """NaN and infinities as None (strict JSON has no NaN), recursively."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def training(ctx: Context) -> str:
    tier = str(setting(ctx, "tier", "CNN_GRADER_TIER", "quick")).lower()
    if tier not in ("quick", "full"):
        raise CheckFailed(f"Unknown tier '{tier}': use 'quick' (CPU, generated data) or 'full' (GPU, the real flowers).")
    experiment, note = run_tier(ctx, tier)
    ctx.meta["q7"] = json_safe({k: v for k, v in experiment.to_dict().items() if k not in ("confusion", "class_names")})
    history = experiment.history
    if not history or "loss" not in history:
        raise CheckFailed("`train_transfer` should return History.history, the dict that model.fit(...) returns in .history, with a 'loss' list per epoch.")
    losses = history["loss"]
    if len(losses) != experiment.epochs:
        raise CheckFailed(f"`train_transfer(..., epochs={experiment.epochs})` trained {len(losses)} epochs: pass epochs=epochs to model.fit.")
    if experiment.backbone_drift > 1e-6:
        raise CheckFailed(
            f"The backbone's weights or BatchNormalization statistics changed while train_transfer ran (by up to {experiment.backbone_drift:.3g}): "
            "train only the head; keep base.trainable = False (do not set model.trainable = True) and call base(x, training=False)."
        )
    if tier == "full":
        if experiment.test_accuracy < FULL_TARGET:
            raise CheckFailed(
                f"Test accuracy {experiment.test_accuracy:.3f} after {experiment.epochs} epochs, expected at least {FULL_TARGET}{note}. "
                "Check that the backbone has ImageNet weights, that preprocess scales pixels as the backbone expects, and the learning rate (1e-3 with Adam works)."
            )
        return f"test accuracy {experiment.test_accuracy:.3f} (top-5 {experiment.test_top5:.3f}) after {experiment.epochs} epochs on {experiment.data_origin}{note}"
    before, after = experiment.train_loss_before, experiment.train_loss_after
    if not after < before:
        raise CheckFailed(
            f"The loss on the training images did not fall ({before:.3f} before train_transfer, {after:.3f} after; per epoch: "
            f"{', '.join(f'{v:.3f}' for v in losses)}) on a small, easy data set: compile with an optimizer such as Adam(1e-3) and "
            "loss='sparse_categorical_crossentropy' (the labels are integers), and fit on train_ds."
        )
    return (
        f"quick tier: {experiment.split['images']} {'generated ' if experiment.data_kind == 'synthetic' else ''}images, {experiment.epochs} epochs, "
        f"training loss {before:.3f} -> {after:.3f}, backbone untouched{note} (full tier: grader check q7 --tier full, see the README)"
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
)
