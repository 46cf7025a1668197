"""q7 code that runs beside the student's code (`Context.run_with_student`: the sandboxed child, else here).

What these functions return is only as trustworthy as the student's process: the grading
side (`q7_calls`, `q7_tiers`) re-measures what it grades. Each is reached through its
dotted target below, never imported by the child's caller.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..checks import CheckFailed, StudentCodeError, StudentSide, explain_exception
from ..flowers.data import decode_image, packed_flowers, unpack_images
from ..flowers.pipeline import make_dataset
from ..flowers.recording import history_dict, watched_head
from ..progress import report_epoch

PREPROCESS_TARGET = "grader.questions.q7_beside:preprocess_beside_student"
BUILD_TARGET = "grader.questions.q7_beside:build_beside_student"
TRAIN_TARGET = "grader.questions.q7_beside:train_beside_student"
PIPELINE = "the training pipeline (preprocess inside tf.data, or the model on its batches)"


def image_call(shape: Sequence[int] | None, training: bool) -> str:
    """How a call of preprocess on an image of `shape` reads in a message."""
    image = f"<image {shape[0]}x{shape[1]}x3>" if shape is not None and len(shape) >= 2 else "<image>"
    return f"preprocess({image}, training={training})"


def not_an_image(value: Any, call: str) -> str:
    """The message for a preprocess `call` that returned `value`, which is not an image."""
    return (
        f"`{call}` returned {type(value).__name__}; it should return an image (a tensor or array of shape 224x224x3)."
    )


def preprocess_beside_student(student: StudentSide, images: Any, trainings: Sequence[bool]) -> dict[str, Any]:
    """`preprocess(image, training)` for each image (arrays, or a `flowers.data.pack_images` pack).

    Stops at the first failure; returns the outputs as arrays, the input shapes, and the
    failure's message (None when every call worked), so the grader reports problems in call order.
    """
    import keras

    if isinstance(images, dict):
        images = [decode_image(blob) for blob in unpack_images(images)]
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


def build_beside_student(
    student: StudentSide,
    constructor_name: str | None,
    file_name: str | None,
    input_shape: Sequence[int],
    pooling: str | None,
    weights: Sequence[np.ndarray] | None,
    num_classes: int,
) -> Any:
    """What `build_transfer_model(num_classes, weights=PATH)` builds (with its weights), PATH a local weights file
    of keras.applications.<constructor_name> holding `weights`; without `constructor_name`, what
    `build_transfer_model(num_classes, weights=None)` builds.

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
            shape = tuple(int(d) for d in input_shape)
            fresh = constructor(include_top=False, weights=None, input_shape=shape, pooling=pooling)
        fresh.set_weights([np.asarray(w) for w in weights or ()])
        path = str(folder / Path(str(file_name)).name)
        fresh.save_weights(path)
        del fresh
        return student.call("build_transfer_model", num_classes=num_classes, weights=path).value
    finally:
        shutil.rmtree(folder, ignore_errors=True)


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
    """Build the tf.data pipelines with the student's `preprocess` and call `train_transfer(model, train_ds, val_ds,
    epochs)`, snapshotting the model's head whenever a fit begins, after every epoch and when it ends.

    `images` packs the training and validation images, in that order (`counts` of each),
    with their `labels` as the grader sent them (the validation set holds the grader's marker
    images: see `q7_integrity`). The test images never come here with their labels. Returns
    the model as training left it, what `train_transfer` returned and the head's snapshots;
    the grader measures every snapshot itself.
    """
    n_train, n_val = (int(c) for c in counts)
    train_idx, val_idx = np.arange(n_train), np.arange(n_train, n_train + n_val)
    data = packed_flowers(images, np.asarray(labels, np.int64), num_classes)
    student.function("train_transfer")
    preprocess = student.function("preprocess")
    with watched_head(model, on_epoch=report_epoch) as snapshots:  # epochs shown live, never graded
        try:
            train_ds = make_dataset(
                data, train_idx, preprocess, training=True, batch_size=batch_size, shuffle_seed=shuffle_seed
            )
            val_ds = make_dataset(data, val_idx, preprocess, training=False, batch_size=batch_size, cache=True)
            with contextlib.redirect_stdout(io.StringIO()):
                returned = student.call("train_transfer", model, train_ds, val_ds, epochs).value
            history = history_dict(returned)
        except CheckFailed:
            raise
        except Exception as error:  # noqa: BLE001 - student code (or the data) failed somewhere in the pipeline
            raise CheckFailed(explain_exception(PIPELINE, error, student.source)) from None
    size = len(snapshots["points"][0]) if snapshots["points"] else 0
    points = np.stack(snapshots["points"]) if snapshots["points"] else np.zeros((0, size), np.float32)
    return {"model": model, "history": history, "trajectory": {"points": points, "kinds": list(snapshots["kinds"])}}
