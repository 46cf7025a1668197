"""q7's training run, quick or full tier: the grader builds the model, the student's pipeline trains it, the grader
scores it.

The grader builds and calibrates the model it sends, keeps its own copy of the backbone's
weights, and scores the returned model on preprocessed images it asked for, with labels
that never leave it (test labels never cross to the student's process).
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..checks import CheckFailed, Context, StudentCodeError, explain_exception
from ..comparator import weight_shapes
from ..flowers.backbones import (
    IMAGENET,
    backbone_constructor,
    backbone_drift,
    backbone_snapshot,
    batch_norm_layers,
    calibrate_batch_norm,
    calibration_note,
    describe_model,
    find_backbone,
    looks_like_download_failure,
    weights_unavailable_message,
)
from ..flowers.data import DataUnavailable, FlowersData, Indices, load_flowers, load_folder, pack_images
from ..flowers.experiment import BATCH_SIZES, CALIBRATION_IMAGES, FULL_EPOCHS, QUICK_EPOCHS, Experiment, make_experiment
from ..flowers.recording import CURVE_KEYS, epoch_curves, history_dict, scores_from_probs
from ..flowers.synthetic import make_synthetic_flowers
from ..options import GradingOptions, Limits
from ..training.run import ensure_model_came_back
from .q7_beside import BUILD_TARGET, PIPELINE, TRAIN_TARGET
from .q7_calls import (
    TRAINING_SEED,
    applications_twin,
    built_with_backbone_weights,
    checked_split,
    run_preprocess_many,
    student_backbone,
    student_model,
)

EVAL_CHUNK = 256  # data images preprocessed per round trip to the student's process (~150 MB of float32)
FULL_SANDBOX_WALL_S = 3600.0  # the full tier's sandbox: 8,189 images preprocessed, 10 epochs on a GPU
FULL_SANDBOX_MEMORY_MB = 24_576


def full_tier_limits(limits: Limits, options: GradingOptions) -> Limits:
    """The full tier preprocesses 8,189 images and trains 10 epochs in the sandbox: more time and memory."""
    if options.tier != "full":
        return limits
    return limits.at_least(wall_s=FULL_SANDBOX_WALL_S, memory_mb=FULL_SANDBOX_MEMORY_MB)


@functools.lru_cache(maxsize=1)
def generated_flowers_dir() -> Path:
    """The quick tier's generated image folder, made once per process."""
    folder = Path(tempfile.mkdtemp(prefix="q7-quick-flowers-"))
    make_synthetic_flowers(folder)
    return folder


def quick_data(options: GradingOptions) -> FlowersData:
    """The quick tier's images: `options.data` when given, else the generated folder."""
    if options.data:
        return load_flowers(options.data)
    return load_folder(generated_flowers_dir(), kind="synthetic")


def usable_split(ctx: Context, labels: np.ndarray) -> tuple[list[np.ndarray], str]:
    """The student's split when it is valid, else the reference's (so one mistake is charged once)."""
    try:
        return list(checked_split(ctx, labels)), ""
    except CheckFailed:
        parts = ctx.reference_call("split_indices", labels, seed=0)
        return [np.asarray(p) for p in parts], " (your split_indices was not valid, so the reference split was used)"


def tier_settings(options: GradingOptions) -> tuple[FlowersData, Any, int, int]:
    """The tier's data, weights, epochs and batch size."""
    if options.tier == "full":
        try:
            data = load_flowers(options.data)
        except DataUnavailable as error:
            raise CheckFailed(f"Full tier: {error}") from None
        epochs = min(options.epochs or FULL_EPOCHS, FULL_EPOCHS)
        return data, options.weights or IMAGENET, epochs, BATCH_SIZES["full"]
    return quick_data(options), None, options.epochs or QUICK_EPOCHS, BATCH_SIZES["quick"]


def pretrained_model(ctx: Context, num_classes: int, weights: Any) -> Any:
    """The student's model with pretrained backbone weights (`weights`: 'imagenet' or a weights file).

    The grader loads the weights into its own keras.applications backbone of the student's
    kind, and hands them over as a local file (`q7_beside.build_beside_student`): the
    sandboxed child has no network, and no access to the grader's Keras cache or files.
    """
    skeleton = student_model(ctx, num_classes, weights_back=False)
    backbone = student_backbone(ctx, skeleton)
    constructor = backbone_constructor(backbone.name)
    if constructor is None:
        raise CheckFailed(
            f"Full tier: your backbone '{backbone.name}' is not a keras.applications network the grader recognises, so "
            "it cannot load its pretrained weights: build it with keras.applications.<Name>(include_top=False, "
            "weights=weights, input_shape=(224, 224, 3))."
        )
    try:
        reference = applications_twin(constructor, backbone, weights)
    except Exception as error:  # noqa: BLE001 - no network, a wrong file, ...: the grader's own set-up
        detail = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        if weights == IMAGENET and looks_like_download_failure(str(error)):
            raise CheckFailed(weights_unavailable_message(weights, detail)) from None
        raise CheckFailed(
            f"Full tier: the grader could not load weights={weights!r} into keras.applications.{constructor.__name__}: "
            f"{detail}"
        ) from None
    return built_with_backbone_weights(ctx, backbone, constructor, reference.get_weights(), num_classes)


def transfer_model(ctx: Context, data: FlowersData, weights: Any, tier: str) -> Any:
    """A fresh model to train, from the student's `build_transfer_model`, with its weights."""
    import keras

    call = f"build_transfer_model(num_classes={data.num_classes}, weights={'None' if weights is None else 'PATH'})"
    try:
        if weights is None:
            model = ctx.run_with_student(BUILD_TARGET, None, None, (), None, None, data.num_classes, seed=TRAINING_SEED)
        else:
            model = pretrained_model(ctx, data.num_classes, weights)
    except StudentCodeError as error:
        if tier == "full" and weights == IMAGENET and looks_like_download_failure(str(error)):
            raise CheckFailed(weights_unavailable_message(weights, str(error))) from None
        raise
    if not isinstance(model, keras.Model):
        raise StudentCodeError(f"`{call}` returned {type(model).__name__}; it should return a keras.Model.")
    return model


def eval_images(ctx: Context, data: FlowersData, indices: Indices) -> Iterator[np.ndarray]:
    """The student's evaluation-mode preprocess of the images `indices`, as arrays of at most EVAL_CHUNK images."""
    order = np.asarray(indices, dtype=np.int64)
    for start in range(0, len(order), EVAL_CHUNK):
        chunk = order[start : start + EVAL_CHUNK]
        outputs = run_preprocess_many(ctx, pack_images(data, chunk), [False] * len(chunk))
        yield np.stack(outputs).astype(np.float32)


def predict(model: Any, images: np.ndarray, batch_size: int) -> np.ndarray:
    """The grader's own predictions (inference mode) of `model` for preprocessed `images`."""
    try:
        return np.asarray(model.predict(images, batch_size=batch_size, verbose=0), dtype=np.float64)
    except Exception as error:  # noqa: BLE001 - e.g. a model whose output does not fit its input
        raise CheckFailed(explain_exception(PIPELINE, error)) from None


def measured_scores(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float, float, np.ndarray]:
    """`scores_from_probs`, failing the check when the model's output cannot be scored."""
    try:
        return scores_from_probs(probs, labels)
    except ValueError as error:
        raise CheckFailed(
            f"The trained model cannot be scored: {error}. Its last layer should be Dense(num_classes, "
            "activation='softmax')."
        ) from None


def run_tier(ctx: Context) -> tuple[Experiment, str]:
    """Run the student's pipeline once for the tier of `ctx.options` (cached); the experiment and a note on the split.

    The grader builds and calibrates the model, keeps its backbone's weights, and sends it
    to `train_beside_student`; it scores the model that comes back itself, on preprocessed
    images and with labels it holds (the test labels never reach the student's process).
    """
    tier = ctx.options.tier

    def compute() -> tuple[Experiment, str]:

        started = time.perf_counter()
        data, weights, epochs, batch = tier_settings(ctx.options)
        parts, note = usable_split(ctx, data.labels)
        # preprocess once directly first, in both modes, so its mistakes are reported from the student's own line
        run_preprocess_many(ctx, pack_images(data, parts[0][:1].repeat(2)), [True, False])
        model = transfer_model(ctx, data, weights, tier)
        described = describe_model(model)
        backbone = find_backbone(model)
        calibrate = weights is None and backbone is not None and bool(batch_norm_layers(backbone))
        train_eval = None
        if tier == "quick" or calibrate:
            train_part = parts[0] if tier == "quick" else parts[0][:CALIBRATION_IMAGES]
            train_eval = np.concatenate(list(eval_images(ctx, data, train_part)))
        notes = []
        if calibrate and train_eval is not None:
            images = train_eval[:CALIBRATION_IMAGES]
            try:
                calibrate_batch_norm(backbone, images)
            except Exception as error:  # noqa: BLE001 - the model cannot run on its images
                raise CheckFailed(explain_exception(PIPELINE, error)) from None
            notes.append(calibration_note(len(images)))
        frozen_before = backbone_snapshot(model)
        shapes_before = weight_shapes(model)
        train_labels = data.labels[parts[0]]

        def train_loss(trained: Any) -> float:
            if tier != "quick" or train_eval is None:
                return float("nan")
            return measured_scores(predict(trained, train_eval, batch), train_labels)[0]

        loss_before = train_loss(model)
        outcome = ctx.run_with_student(
            TRAIN_TARGET,
            model,
            pack_images(data, np.concatenate(parts)),
            data.labels[np.concatenate(parts[:2])],
            [len(p) for p in parts],
            num_classes=data.num_classes,
            epochs=epochs,
            batch_size=batch,
            shuffle_seed=TRAINING_SEED,
            seed=TRAINING_SEED,
        )
        trained = outcome.get("model") if isinstance(outcome, dict) else None
        ensure_model_came_back("train_transfer", trained, shapes_before)
        test_probs = np.concatenate([predict(trained, chunk, batch) for chunk in eval_images(ctx, data, parts[2])])
        test_labels = data.labels[parts[2]]
        loss_after = train_loss(trained)
        labels = {"validation": data.labels[parts[1]], "test": test_labels}
        try:  # what the student's process reports per epoch: shown in the report, never graded
            curves = epoch_curves(list(outcome["logs"]), dict(outcome["probs"]), labels)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            curves = {k: [] for k in CURVE_KEYS}
        try:
            history = history_dict(outcome.get("history"))
        except (TypeError, ValueError, AttributeError):
            history = {}
        measured_scores(test_probs, test_labels)
        experiment = make_experiment(
            described,
            data,
            parts,
            tier=tier,
            weights=weights,
            epochs=epochs,
            batch_size=batch,
            curves=curves,
            test_probs=test_probs,
            test_labels=test_labels,
            history=history,
            notes=notes,
            drift=backbone_drift(trained, frozen_before),
            loss_before=loss_before,
            loss_after=loss_after,
            seconds=time.perf_counter() - started,
        )
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
