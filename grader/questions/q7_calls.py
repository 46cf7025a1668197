"""How q7's checks reach the student's functions (through the `Context` seam), with the answers checked for shape."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..checks import CheckFailed, Context, StudentCodeError
from ..flowers.backbones import find_backbone
from ..flowers.data import NUM_CLASSES
from ..flowers.split import split_problem
from ..options import Transfer
from .q7_beside import BUILD_TARGET, PREPROCESS_TARGET, image_call, not_an_image
from .q7_geometry import SIZE

TRAINING_SEED = 0  # seeds the student's process for the builds and the training run


def call_fresh(ctx: Context, name: str, *args: Any, **kwargs: Any) -> Any:
    """Call the student's `name` every time (functions that draw at random; Context.call caches)."""
    return ctx.call_with(name, args, kwargs, fresh=True).value


def run_preprocess_many(
    ctx: Context, images: Any, trainings: Sequence[bool], check: Callable[[int, np.ndarray], None] | None = None
) -> list[np.ndarray]:
    """The student's `preprocess` of each image (arrays, or a pack), in one round trip.

    Each output is checked in call order to be 224x224x3, then by `check(index, output)`;
    the first problem is raised, as if the calls had been made one by one.
    """
    result = ctx.run_with_student(PREPROCESS_TARGET, images, [bool(t) for t in trainings])
    if not isinstance(result, dict) or not isinstance(result.get("outputs"), list):
        raise StudentCodeError(
            "The grader's call of your preprocess came back unreadable: something in your code interfered with it."
        )
    shapes = result["shapes"] if isinstance(result.get("shapes"), list) else []
    outputs = []
    for index, (out, training) in enumerate(zip(result["outputs"], trainings)):
        shape = images[index].shape if isinstance(images, list) else (shapes[index] if index < len(shapes) else None)
        call = image_call(shape, bool(training))
        if not isinstance(out, np.ndarray) or out.dtype == object or not np.issubdtype(out.dtype, np.number):
            raise StudentCodeError(not_an_image(out, call))
        if out.shape != (SIZE, SIZE, 3):
            shape_text = "x".join(str(d) for d in out.shape)
            hint = (
                " Drop the batch axis: preprocess works on one image."
                if out.ndim == 4
                else " After resizing the shorter side to 256, crop 224x224 out of it."
            )
            raise CheckFailed(f"`{call}` returned shape {shape_text}, expected 224x224x3.{hint}")
        if check is not None:
            check(index, out)
        outputs.append(out)
    if result.get("failed"):
        raise StudentCodeError(str(result["failed"]))
    if len(outputs) != len(trainings):
        raise StudentCodeError(
            "The grader's call of your preprocess came back with missing images: something in your code interfered "
            "with it."
        )
    return outputs


def checked_split(ctx: Context, labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, ...]:
    """The student's `split_indices(labels, seed)`, failing the check unless it is a stratified 50/25/25 split."""
    parts = call_fresh(ctx, "split_indices", labels, seed=seed)
    problem = split_problem(labels, parts, call=f"split_indices(<{len(labels)} labels>, seed={seed})")
    if problem:
        raise CheckFailed(problem)
    return tuple(np.asarray(p, dtype=np.int64) for p in parts)


def student_model(ctx: Context, num_classes: int = NUM_CLASSES, *, weights_back: bool = True) -> Any:
    """The student's `build_transfer_model(num_classes, weights=None)` (one call, shared by the checks).

    From the sandbox it comes back with its weights by default: the inference-mode check
    needs real (random) weights, with which BatchNormalization statistics can move.
    """
    import keras

    transfer = Transfer.WEIGHTS_BACK if weights_back else Transfer.ARCHITECTURE
    kwargs = {"num_classes": num_classes, "weights": None}
    model = ctx.call_with("build_transfer_model", (), kwargs, transfer=transfer).value
    if not isinstance(model, keras.Model):
        raise StudentCodeError(
            f"`build_transfer_model(num_classes={num_classes}, weights=None)` returned {type(model).__name__}; "
            "it should return a keras.Model."
        )
    return model


def student_backbone(ctx: Context, model: Any | None = None) -> Any:
    """The backbone inside the student's model (`student_model` unless `model` is given)."""
    model = model if model is not None else student_model(ctx)
    backbone = find_backbone(model)
    if backbone is None:
        raise CheckFailed(
            "No backbone model was found inside your model. Build it as base = "
            "keras.applications.<Name>(include_top=False, weights=weights, input_shape=(224, 224, 3)) and call it as "
            "a layer, base(inputs, training=False), so the grader (and you) can find, freeze and inspect it."
        )
    return backbone


def backbone_shape(backbone: Any) -> tuple[tuple[int, ...], str | None]:
    """The input shape and pooling the student's backbone was built with (what a twin of it needs)."""
    return tuple(backbone.input_shape[1:]), "avg" if len(backbone.output.shape) == 2 else None


def applications_twin(constructor: Any, backbone: Any, weights: Any) -> Any:
    """keras.applications' own network of the student's backbone kind, shaped like it, with `weights`."""
    input_shape, pooling = backbone_shape(backbone)
    with contextlib.redirect_stdout(io.StringIO()):
        return constructor(include_top=False, weights=weights, input_shape=input_shape, pooling=pooling)


def built_with_backbone_weights(
    ctx: Context, backbone: Any, constructor: Any, weights: Sequence[np.ndarray], num_classes: int
) -> Any:
    """`build_transfer_model(num_classes, weights=PATH)` with PATH a local file holding `weights` for the backbone."""
    input_shape, pooling = backbone_shape(backbone)
    return ctx.run_with_student(
        BUILD_TARGET,
        constructor.__name__,
        f"{backbone.name}_notop.weights.h5",
        list(input_shape),
        pooling,
        list(weights),
        num_classes,
        seed=TRAINING_SEED,
    )
