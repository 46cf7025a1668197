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
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .. import flowers
from ..checks import Check, CheckFailed, Context, Question, StudentCodeError, describe_call, explain_exception

MODULE = "q7_flowers"
# The checks hand the student's preprocess to tf.data and train the student's model in place,
# so q7 is graded in the grader's process (grader.isolation would need a remote training seam).
ISOLATION_READY = False
NAMES = ("preprocess", "split_indices", "build_transfer_model", "train_transfer")
SIZE = flowers.IMAGE_SIZE
HEAD_UNITS = 256
FULL_TARGET = 0.85
FULL_MAX_EPOCHS = 10
QUICK_EPOCHS = 3
# Inputs of several sizes and aspect ratios: landscape, portrait, smaller than the crop, panoramic, square.
TEST_SIZES = ((300, 500), (500, 300), (120, 90), (256, 1000), (224, 224))
PATTERN_SIZE = (300, 500)


# --- calling student code without the cache (random and repeated calls) -----------------------


def call_fresh(ctx: Context, name: str, *args: Any, **kwargs: Any) -> Any:
    """Call the student's `name` every time (Context.call caches by repr, which numpy abbreviates)."""
    function = ctx.student(name)
    if not callable(function):
        raise StudentCodeError(f"`{name}` should be a function, but it is a {type(function).__name__}.")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return function(*args, **kwargs)
    except Exception as error:  # student code may raise anything
        raise StudentCodeError(explain_exception(describe_call(name, args, kwargs), error, ctx.source)) from None


def to_array(value: Any, call: str) -> np.ndarray:
    """A returned image as a NumPy array (tensors of any backend accepted)."""
    import keras

    try:
        return np.asarray(keras.ops.convert_to_numpy(value))
    except Exception:
        raise StudentCodeError(f"`{call}` returned {type(value).__name__}; it should return an image (a tensor or array of shape 224x224x3).") from None


def run_preprocess(ctx: Context, image: np.ndarray, training: bool) -> np.ndarray:
    call = f"preprocess(<image {image.shape[0]}x{image.shape[1]}x3>, training={training})"
    out = to_array(call_fresh(ctx, "preprocess", image, training), call)
    if out.shape != (SIZE, SIZE, 3):
        shape = "x".join(str(d) for d in out.shape)
        hint = " Drop the batch axis: preprocess works on one image." if out.ndim == 4 else " After resizing the shorter side to 256, crop 224x224 out of it."
        raise CheckFailed(f"`{call}` returned shape {shape}, expected 224x224x3.{hint}")
    return out


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
    for height, width in TEST_SIZES:
        image = np.random.default_rng(height + width).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        for training in (False, True):
            out = run_preprocess(ctx, image, training)
            if out.dtype != np.float32:
                raise CheckFailed(
                    f"`preprocess(<image {height}x{width}x3>, training={training})` returned {out.dtype}, expected float32: "
                    "cast the image (keras.ops.cast(image, 'float32')) before scaling it."
                )
            if not np.all(np.isfinite(out)):
                raise CheckFailed(f"`preprocess(<image {height}x{width}x3>, training={training})` returned NaN or infinite values.")
    sizes = ", ".join(f"{h}x{w}" for h, w in TEST_SIZES)
    return f"224x224x3 float32 for inputs of {sizes}"


def channel_affine(ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (offset, slope) of the student's pixel scaling, from black and white images."""

    def compute() -> tuple[np.ndarray, np.ndarray]:
        black = run_preprocess(ctx, np.zeros(PATTERN_SIZE + (3,), np.uint8), False).mean(axis=(0, 1))
        white = run_preprocess(ctx, np.full(PATTERN_SIZE + (3,), 255, np.uint8), False).mean(axis=(0, 1))
        return black.astype(np.float64), (white - black).astype(np.float64) / 255.0

    return ctx.cached("q7-affine", compute)


def preprocess_eval_centre(ctx: Context) -> str:
    image = pattern_image()
    first = run_preprocess(ctx, image, False)
    second = run_preprocess(ctx, image, False)
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
    outputs = [run_preprocess(ctx, image, True) for _ in range(4)]
    if all(np.allclose(outputs[0], other, atol=1e-4) for other in outputs[1:]):
        raise CheckFailed(
            "`preprocess(image, training=True)` gave the same output on 4 calls: when training, take a random 224x224 crop "
            "(random offsets from keras.random.randint, or keras.layers.RandomCrop) and optionally a random flip, so every epoch sees new views."
        )
    return "training crops differ from call to call"


# --- the backbone and the value range -----------------------------------------------------------


def student_model(ctx: Context, num_classes: int = flowers.NUM_CLASSES) -> Any:
    import keras

    model = ctx.call("build_transfer_model", num_classes=num_classes, weights=None)
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
    colours = {"black": (0, 0, 0), "white": (255, 255, 255), "red": (255, 0, 0), "blue": (0, 0, 255)}
    got, want = {}, {}
    for name, rgb in colours.items():
        image = np.empty(PATTERN_SIZE + (3,), np.uint8)
        image[...] = rgb
        got[name] = run_preprocess(ctx, image, False).mean(axis=(0, 1))
        expected = expected_fn(np.full((1, 4, 4, 3), rgb, dtype=np.float32))
        import keras

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


def backbone_pretrained(ctx: Context) -> str:
    backbone = student_backbone(ctx)
    constructor = flowers.backbone_constructor(backbone.name)
    if constructor is None:
        raise CheckFailed(
            f"Your backbone '{backbone.name}' is not a keras.applications network the grader recognises: build it with "
            "keras.applications.<Name>(include_top=False, weights=weights, input_shape=(224, 224, 3)) and keep its name."
        )
    pooling = "avg" if len(backbone.output.shape) == 2 else None
    with contextlib.redirect_stdout(io.StringIO()):
        fresh = constructor(include_top=False, weights=None, input_shape=tuple(backbone.input_shape[1:]), pooling=pooling)
    if count(fresh.weights) != count(backbone.weights):
        raise CheckFailed(
            f"Your backbone is called '{backbone.name}' but has {count(backbone.weights):,} parameters; "
            f"keras.applications.{constructor.__name__}(include_top=False) has {count(fresh.weights):,}. Use the network as keras.applications builds it."
        )
    folder = Path(tempfile.mkdtemp(prefix="q7-weights-"))
    path = str(folder / f"{backbone.name}_notop.weights.h5")
    rng = np.random.default_rng(0)
    fresh.set_weights([w + rng.normal(0, 0.01, size=w.shape).astype(w.dtype) if w.size else w for w in fresh.get_weights()])
    fresh.save_weights(path)
    name = constructor.__name__
    try:
        try:
            loaded = ctx.call("build_transfer_model", num_classes=flowers.NUM_CLASSES, weights=path)
        except StudentCodeError as error:
            raise CheckFailed(
                f"build_transfer_model(weights=PATH) failed with a local weights file for {name}: {error} "
                f"Pass the argument straight on: keras.applications.{name}(include_top=False, weights=weights, ...)."
            ) from None
        other = flowers.find_backbone(loaded)
        same = other is not None and len(other.weights) == len(fresh.weights) and all(
            np.allclose(a.numpy(), b.numpy()) for a, b in zip(other.weights, fresh.weights)
        )
    finally:
        for file in folder.iterdir():
            file.unlink()
        folder.rmdir()
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
    model = student_model(ctx, num_classes=5)
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


def explained(ctx: Context, name: str, function: Any) -> Any:
    """`function`, with what it raises turned into a StudentCodeError that points at the student's line."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Exception as error:  # student code may raise anything
            raise StudentCodeError(explain_exception(describe_call(name, args, kwargs), error, ctx.source)) from None

    return wrapper


def student_functions(ctx: Context) -> dict[str, Any]:
    functions = {}
    for name in NAMES:
        function = ctx.student(name)
        if not callable(function):
            raise StudentCodeError(f"`{name}` should be a function, but it is a {type(function).__name__}.")
        functions[name] = function
    return functions


def run_tier(ctx: Context, tier: str) -> tuple[flowers.Experiment, str]:
    """Run the student's pipeline once for the tier (cached for the report)."""

    def compute() -> tuple[flowers.Experiment, str]:
        if tier == "full":
            try:
                data = flowers.load_flowers(setting(ctx, "data", "CNN_GRADER_FLOWERS"))
            except flowers.DataUnavailable as error:
                raise CheckFailed(f"Full tier: {error}") from None
            weights = setting(ctx, "weights", "CNN_GRADER_WEIGHTS", "imagenet")
            epochs = min(int(setting(ctx, "epochs", "CNN_GRADER_EPOCHS", FULL_MAX_EPOCHS)), FULL_MAX_EPOCHS)
            batch = 32
        else:
            data = quick_data(ctx)
            weights, epochs, batch = None, int(setting(ctx, "epochs", "CNN_GRADER_EPOCHS", QUICK_EPOCHS)), 8
        parts, note = usable_split(ctx, data.labels)
        functions = student_functions(ctx)
        # Call each function once directly first, so a mistake is reported from the student's own line
        # (inside tf.data or fit, the traceback no longer points there).
        sample = data.image(int(parts[0][0]))
        for training in (True, False):
            call_fresh(ctx, "preprocess", sample, training)
        try:
            model = call_fresh(ctx, "build_transfer_model", num_classes=data.num_classes, weights=weights)
        except StudentCodeError as error:
            if tier == "full" and weights == "imagenet" and flowers.looks_like_download_failure(str(error)):
                raise CheckFailed(flowers.weights_unavailable_message(weights, str(error))) from None
            raise
        functions["build_transfer_model"] = lambda **kwargs: model
        functions["train_transfer"] = explained(ctx, "train_transfer", functions["train_transfer"])
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                experiment, _ = flowers.run_experiment(functions, data, tier=tier, weights=weights, epochs=epochs, batch_size=batch, split=parts)
        except CheckFailed:
            raise
        except Exception as error:  # student code (or the data) failed somewhere in the pipeline
            raise CheckFailed(explain_exception("the training pipeline (preprocess inside tf.data, or the model on its batches)", error, ctx.source)) from None
        return experiment, note

    return ctx.cached(("q7-experiment", tier), compute)


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
