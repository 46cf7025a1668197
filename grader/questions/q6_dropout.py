"""q6 — why AlexNet drops out only in its classifier.

The share of parameters in Dense layers is computed from the reference AlexNet
(`solutions/q4_alexnet.py`): 58,631,144 of 61,100,840, i.e. 0.9596. The written answer is
graded by hand; the grader only checks that one was given.
"""

from __future__ import annotations

from typing import Any

from ..checks import Check, CheckFailed, Context, Question, WrittenAnswer, describe_call, require_type
from ..comparator import ensure
from ..diagnoses import Diagnosis
from ..slips import SHARE_SLIPS, Slip, layer_params, leaf_layers, params_of, share_slip

FRACTION = "classifier_parameter_fraction"
ANSWER = "ANSWER"
MIN_WORDS = 20
TOLERANCE = 1e-3
FRACTION_WRONG = Diagnosis("dense-fraction-wrong", "the Dense layers' share of the parameters is wrong (no known slip)")
ANSWER_MISSING = Diagnosis("answer-missing", "the written answer is missing, still the stub, or not a string")
ANSWER_TOO_SHORT = Diagnosis("answer-too-short", "the written answer is too short to grade")
FRACTION_DIAGNOSES = (*SHARE_SLIPS, FRACTION_WRONG)
GROUPS = {"part_label": "the Dense layers", "rest_label": "the convolutional layers"}  # for the slips' messages
MANUAL_POINTS = 5  # the hand-graded written answer in the nbgrader notebook (grader.nbgrader)
RUBRIC = """\
Award up to {points} points:

- **2 points**: most of AlexNet's parameters sit in its Dense layers (about 96%, the
  fraction computed above; fc6 alone has ~37.8M of 61.1M).
- **2 points**: overfitting grows with the number of free parameters, so regularising the
  classifier is where dropout pays; dropout stops the huge dense layers co-adapting and
  memorising the training set.
- **1 point**: the convolutions share few weights across positions (few parameters, less
  overfitting); dropping their activations mostly adds noise to spatially correlated maps.

Half points for a vague but correct idea; 0 for an answer that does not address parameters."""


def dense_fraction(model: Any) -> float:
    """The true share of `model`'s parameters held by Dense layers (nested models included)."""
    import keras

    def layers(m):
        for layer in m.layers:
            if isinstance(layer, keras.Model):
                yield from layers(layer)
            else:
                yield layer

    dense = sum(layer.count_params() for layer in layers(model) if isinstance(layer, keras.layers.Dense))
    return dense / model.count_params()


def _check_fraction(ctx: Context, model: Any, label: str) -> str:
    call = describe_call(FRACTION, (model,))
    value = require_type(ctx.call(FRACTION, model), (float, int), call, "a float between 0 and 1")
    expected = dense_fraction(model)
    if abs(value - expected) > TOLERANCE:
        slip = _slip(model, value)
        hint, diagnosis = ("", FRACTION_WRONG) if slip is None else (f" {slip.message}", slip.diagnosis)
        raise CheckFailed(
            f"On {label} `{FRACTION}` returned {value:.4f}, expected {expected:.4f}.{hint}", diagnosis=diagnosis.id
        )
    return f"{value:.4f} on {label}"


def _slip(model: Any, value: float) -> Slip | None:
    """The slip (`grader.slips`) that gives `value` as the Dense layers' share of `model`, if one does."""
    import keras

    dense = [params_of(layer) for layer in leaf_layers(model) if isinstance(layer, keras.layers.Dense)]
    return share_slip(dense, layer_params(model), value, tolerance=TOLERANCE, **GROUPS)


def fraction_of_alexnet(ctx: Context) -> str:
    return _check_fraction(ctx, ctx.reference_call("build_alexnet"), "the reference AlexNet")


def fraction_of_lenet(ctx: Context) -> str:
    return _check_fraction(ctx, ctx.reference_call("build_lenet5", num_classes=5), "a LeNet-5")


def stub_answer() -> str:
    """The placeholder that the shipped stub assigns to ANSWER."""
    from ..paths import exercises_dir
    from ..submission import load_module

    value = load_module(exercises_dir(), QUESTION).namespace.get(ANSWER, "")
    return value if isinstance(value, str) else ""


def written_answer(ctx: Context) -> str:
    answer = ctx.student(ANSWER)
    ensure(
        isinstance(answer, str),
        f"{ANSWER} should be a string with your explanation, not a {type(answer).__name__}.",
        diagnosis=ANSWER_MISSING.id,
    )
    ensure(
        answer.strip() not in ("", stub_answer().strip()),
        f"{ANSWER} is still the stub: write your explanation in {ctx.question.filename}.",
        diagnosis=ANSWER_MISSING.id,
    )
    words = len(answer.split())
    ensure(
        words >= MIN_WORDS,
        f"{ANSWER} has {words} words; explain in at least {MIN_WORDS} (it is graded by hand).",
        diagnosis=ANSWER_TOO_SHORT.id,
    )
    return f"{words} words (graded by hand)"


QUESTION = Question(
    id="q6",
    title="Dropout only in the classifier",
    module="q6_dropout",
    names=(FRACTION, ANSWER),
    checks=(
        Check("classifier parameter fraction of AlexNet", 2, fraction_of_alexnet, diagnoses=FRACTION_DIAGNOSES),
        Check(
            "classifier parameter fraction of another model",
            1,
            fraction_of_lenet,
            hidden=True,
            diagnoses=FRACTION_DIAGNOSES,
        ),
        Check(
            "written answer given",
            0,  # a screen, not a grade: the answer's points (MANUAL_POINTS) are graded by hand everywhere
            written_answer,
            screens_answer=ANSWER,
            diagnoses=(ANSWER_MISSING, ANSWER_TOO_SHORT),
        ),
    ),
    written_answers=(WrittenAnswer(ANSWER, MANUAL_POINTS, RUBRIC),),
)
