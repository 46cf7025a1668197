"""A fresh LeNet-5 for a training question: the student's own (when it passes the LeNet question) or the reference's.

The training questions grade training on its own: they train the student's `build_lenet5`
when that model matches the reference LeNet-5, and the reference's otherwise. The question
that grades the LeNet itself is passed in by the training question (this package never
imports the question registry); what crosses to the student's side is only its module's name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..checks import CheckFailed, Context, Question, StudentCodeError, StudentSide
from .data import IMAGE_SHAPE, split_for
from .run import TrainingRun, run_student_training
from .tiers import base_meta, tier_from_options


def train_fresh_lenet(
    ctx: Context,
    function: str,
    *,
    lenet: Question,
    builder: str,
    seed: int,
    extra_args: Callable[[], tuple] = tuple,
) -> TrainingRun:
    """Train a fresh LeNet-5 (`fresh_lenet`) with the student's `function` on the tier's data.

    `lenet` is the question that grades the LeNet-5 builder `builder`. `extra_args()` gives
    the arguments passed after the model (built once the tier is in the meta); the model in
    use is named in `ctx.meta["model"]`.
    """
    tier = tier_from_options(ctx.options)
    ctx.meta.update(base_meta(tier))
    split = split_for(tier)
    extra = extra_args()
    model, which = fresh_lenet(ctx, seed, lenet=lenet, builder=builder)
    ctx.meta["model"] = which
    return run_student_training(ctx, function, model, *extra, tier=tier, split=split, seed=seed)


def fresh_lenet(ctx: Context, seed: int, *, lenet: Question, builder: str) -> tuple[Any, str]:
    """A fresh LeNet-5 to train: the student's own `builder` when it matches the reference, else the reference's.

    Returns the model and a phrase naming which one it is, so a training question is graded
    on its own. The student's builder runs where student code runs; the grader checks the model.
    """
    import keras

    from ..comparator import compare_structure, trace, trace_reference
    from ..references import fresh_reference

    try:
        built = ctx.run_with_student(f"{__name__}:build_student_lenet", lenet.module, builder, seed=seed)
        model, why = built["model"], built["why"]
    except CheckFailed as failure:  # e.g. a model the grader cannot load back from the sandbox
        model, why = None, f"your {builder}() could not be used: {failure}"
    if isinstance(model, keras.Model):
        try:
            compare_structure(trace_reference(ctx, builder, IMAGE_SHAPE), trace(model, IMAGE_SHAPE))
            return model, f"your {builder}()"
        except CheckFailed:
            why = f"your {builder}() does not pass {lenet.id} yet"
        except Exception:  # noqa: BLE001 - the student's model may raise anything
            why = f"your {builder}() could not be run on a 28x28 image"
    elif model is not None:
        why = f"your {builder}() did not return a keras.Model"
    keras.utils.set_random_seed(seed)
    # In a student package the reference LeNet-5 is rebuilt from the layers a release recorded.
    return fresh_reference(ctx.reference, builder), f"the reference LeNet-5 ({why})"


def build_student_lenet(student: StudentSide, module: str, builder: str) -> dict[str, Any]:
    """Where the student's code runs: the student's `builder()` (from this file, else from `module`.py), or why not."""
    if builder in student.namespace or not student.source:
        builder_side, why = student, f"no {builder} found"
    else:
        from ..submission import load_module

        # `load_module` reads only the file's module name off the question it is given.
        owner = Question(id=module, title=module, module=module, names=(builder,), checks=())
        loaded = load_module(Path(student.source).parent, owner)
        builder_side = StudentSide(loaded.namespace, str(loaded.path))
        why = f"{owner.filename} could not be loaded" if loaded.error else f"no {builder} found"
    if builder not in builder_side.namespace:
        return {"model": None, "why": why}
    try:
        return {"model": builder_side.call(builder).value, "why": ""}
    except StudentCodeError:
        return {"model": None, "why": f"your {builder}() raised"}
