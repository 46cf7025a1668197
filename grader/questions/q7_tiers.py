"""q7's training run, quick or full tier: the grader builds the model, the student's pipeline trains it, the grader
measures it.

The grader builds and calibrates the model it sends, keeps its own copy of the backbone's
weights, and measures the head after every epoch and the returned model itself, on
preprocessed images it asked for, with labels that never leave it (see `q7_integrity`).
"""

from __future__ import annotations

import dataclasses
import functools
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import progress
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
from ..flowers.data import DataUnavailable, FlowersData, load_flowers, load_folder, pack_blobs, pack_images
from ..flowers.experiment import BATCH_SIZES, CALIBRATION_IMAGES, FULL_EPOCHS, QUICK_EPOCHS, Experiment, make_experiment
from ..flowers.recording import history_dict, scores_from_probs
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
from .q7_integrity import HeadMeasure, Markers, checked_trajectory, head_vector, history_problem, leak_problem, measure

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


def transfer_model(ctx: Context, num_classes: int, weights: Any, tier: str) -> Any:
    """A fresh model to train, from the student's `build_transfer_model(num_classes, ...)`, with its weights."""
    import keras

    call = f"build_transfer_model(num_classes={num_classes}, weights={'None' if weights is None else 'PATH'})"
    try:
        if weights is None:
            model = ctx.run_with_student(BUILD_TARGET, None, None, (), None, None, num_classes, seed=TRAINING_SEED)
        else:
            model = pretrained_model(ctx, num_classes, weights)
    except StudentCodeError as error:
        if tier == "full" and weights == IMAGENET and looks_like_download_failure(str(error)):
            raise CheckFailed(weights_unavailable_message(weights, str(error))) from None
        raise
    if not isinstance(model, keras.Model):
        raise StudentCodeError(f"`{call}` returned {type(model).__name__}; it should return a keras.Model.")
    return model


def eval_images(ctx: Context, blobs: Sequence[bytes]) -> Iterator[np.ndarray]:
    """The student's evaluation-mode preprocess of encoded images, as arrays of at most EVAL_CHUNK images."""
    for start in range(0, len(blobs), EVAL_CHUNK):
        chunk = list(blobs[start : start + EVAL_CHUNK])
        outputs = run_preprocess_many(ctx, pack_blobs(chunk), [False] * len(chunk))
        yield np.stack(outputs).astype(np.float32)


def on_its_images(compute: Any) -> Any:
    """`compute()`, failing the check when the model cannot run on its images or its output cannot be scored."""
    try:
        return compute()
    except CheckFailed:
        raise
    except ValueError as error:
        raise CheckFailed(
            f"The model's output cannot be scored: {error}. Its last layer should be Dense(num_classes, "
            "activation='softmax')."
        ) from None
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


@dataclasses.dataclass(frozen=True)
class Verdicts:
    """What the grader's own measurement of the run found wrong (None: nothing)."""

    leak: str | None
    history: str | None
    epochs: int  # epochs the grader saw model.fit train the model it sent
    marker_probability: list[float]
    elsewhere_probability: list[float]


def run_tier(ctx: Context) -> tuple[Experiment, str]:
    """Run the student's pipeline once for the tier of `ctx.options` (cached); the experiment and a note on the split."""
    experiment, note, _ = run_measured(ctx)
    return experiment, note


def run_measured(ctx: Context) -> tuple[Experiment, str, Verdicts]:
    """The tier's run (cached): the experiment, a note on the split, and the verdicts of the grader's own measurement.

    The grader builds and calibrates the model (with the marker class of `q7_integrity` at a
    secret id), keeps its backbone's weights, computes the backbone's features of the images
    it measures on, and sends the model with the training images and the validation images
    (markers mixed in) to `train_beside_student`. It checks the head's snapshots that come
    back, and measures every epoch and the returned model itself: the test labels, the
    markers kept back and the marker class's id never reach the student's process.
    """
    tier = ctx.options.tier

    def compute() -> tuple[Experiment, str, Verdicts]:
        started = time.perf_counter()
        data, weights, epochs, batch = tier_settings(ctx.options)
        parts, note = usable_split(ctx, data.labels)
        # preprocess once directly first, in both modes, so its mistakes are reported from the student's own line
        run_preprocess_many(ctx, pack_images(data, parts[0][:1].repeat(2)), [True, False])
        markers = Markers.draw(data.num_classes, len(parts[1]))
        model = transfer_model(ctx, data.num_classes + 1, weights, tier)  # the marker class too
        described = describe_model(model)
        backbone = find_backbone(model)
        probe = parts[0] if tier == "quick" else parts[0][:CALIBRATION_IMAGES]
        train_eval = np.concatenate(list(eval_images(ctx, [data.encoded_bytes(int(i)) for i in probe])))
        notes = []
        if weights is None and backbone is not None and bool(batch_norm_layers(backbone)):
            images = train_eval[:CALIBRATION_IMAGES]
            try:
                calibrate_batch_norm(backbone, images)
            except Exception as error:  # noqa: BLE001 - the model cannot run on its images
                raise CheckFailed(explain_exception(PIPELINE, error)) from None
            notes.append(calibration_note(len(images)))
        frozen_before = backbone_snapshot(model)
        shapes_before = weight_shapes(model)
        head = HeadMeasure(model)
        val_blobs = [data.encoded_bytes(int(i)) for i in parts[1]]
        test_blobs = [data.encoded_bytes(int(i)) for i in parts[2]]

        def features_of(blobs: Sequence[bytes]) -> np.ndarray:
            return on_its_images(lambda: np.concatenate([head.features(x, batch) for x in eval_images(ctx, blobs)]))

        features = {"validation": features_of(val_blobs), "test": features_of(test_blobs)}
        features["markers"] = features_of(markers.images)
        features["probe"] = on_its_images(lambda: head.features(train_eval, batch))
        n_val = len(val_blobs)
        features["sent"] = np.stack(
            [features["validation"][i] if i < n_val else features["markers"][i - n_val] for i in markers.order]
        )
        sent_blobs, sent_labels = markers.sent_validation(val_blobs, data.labels[parts[1]])
        labels = {
            "sent": sent_labels,
            "probe": data.labels[probe],
            "validation": data.labels[parts[1]],
            "test": data.labels[parts[2]],
        }
        sent = head_vector(model)
        limit_s = ctx.question.limits_for(Limits(), ctx.options).seconds
        with progress.task(f"{ctx.question.id} train_transfer", limit_s):  # epochs shown live, never graded
            outcome = ctx.run_with_student(
                TRAIN_TARGET,
                model,
                pack_blobs([data.encoded_bytes(int(i)) for i in parts[0]] + sent_blobs),
                np.concatenate([markers.relabel(data.labels[parts[0]]), sent_labels]),
                [len(parts[0]), len(sent_blobs)],
                num_classes=data.num_classes + 1,
                epochs=epochs,
                batch_size=batch,
                shuffle_seed=TRAINING_SEED,
                seed=TRAINING_SEED,
            )
        trained = outcome.get("model") if isinstance(outcome, dict) else None
        ensure_model_came_back("train_transfer", trained, shapes_before)
        trajectory = checked_trajectory(outcome, sent, trained)
        returned = head_vector(trained)
        vectors = [sent, *(trajectory.points[i] for i in trajectory.epoch_indices), returned]
        measured = on_its_images(lambda: measure(head, vectors, features, labels, markers, trajectory.fits()))
        test_probs = markers.real_probabilities(
            head.evaluate(returned, features["sent"], sent_labels, {"test": features["test"]})[2]["test"]
        )
        try:
            history = history_dict(outcome.get("history"))
        except (TypeError, ValueError, AttributeError):
            history = {}
        measured_scores(test_probs, labels["test"])
        curves = {key: values[1 : measured.epochs + 1] for key, values in measured.curves.items()}
        quick_loss = tier == "quick"
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
            test_labels=labels["test"],
            history=history,
            notes=notes,
            drift=backbone_drift(trained, frozen_before),
            loss_before=measured.curves["train_loss"][0] if quick_loss else float("nan"),
            loss_after=measured.curves["train_loss"][-1] if quick_loss else float("nan"),
            seconds=time.perf_counter() - started,
        )
        verdicts = Verdicts(
            leak_problem(measured),
            history_problem(history, measured),
            measured.epochs,
            measured.marker_probability,
            measured.elsewhere_probability,
        )
        return experiment, note, verdicts

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
