"""q2/q3: the reference passes on the real quick tier; each way of cheating or failing has its own message.

The reference runs once per test session (a session-scoped fixture, about a minute per
question on 2 CPU cores). The failure modes use cheap student functions on a tiny data
subset (options `train_size`/`val_size`/`test_size`), so they take seconds.
"""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import failed
from keras import layers

from grader.checks import QuestionResult
from grader.grading import grade_folder, grade_namespace
from grader.options import GradingOptions, Limits
from grader.paths import solutions_dir
from grader.questions import get_question, q2_overfit, q3_augment
from grader.training import Bound, load_split, tier_from_options

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REPO_EXERCISES = Path(__file__).resolve().parent.parent / "exercises"
TINY_SIZES = {"train_size": 1000, "val_size": 500, "test_size": 500}
TINY = GradingOptions(**TINY_SIZES)


def grade_tiny(question: str, tmp_path: Path, **objects) -> QuestionResult:
    """Grade student objects on a tiny subset (thresholds are not meaningful there; messages are)."""
    return grade_namespace(get_question(question), objects, options=TINY.replace(plots=tmp_path / "plots"))


# --------------------------------------------------------------------------- the reference, real quick tier


@pytest.fixture(scope="session")
def reference_runs(tmp_path_factory) -> dict[str, QuestionResult]:
    """The reference solutions graded on the real quick tier, once per session, sandboxed as `grader check` does."""
    plots = tmp_path_factory.mktemp("plots")
    results = {}
    for question in ("q2", "q3"):
        started = time.monotonic()
        result = grade_folder(
            get_question(question),
            solutions_dir(),
            options=GradingOptions(tier="quick", plots=plots),
            isolated=True,
            limits=Limits(threads=os.cpu_count() or 1),
        )
        result.meta["test_wall_s"] = time.monotonic() - started
        results[question] = result
    return results


@pytest.mark.slow
@pytest.mark.parametrize("question", ["q2", "q3"])
def test_reference_passes_quick_tier(reference_runs, question):
    result = reference_runs[question]
    assert failed(result) == {}
    assert result.score == result.max_score == 10
    meta = result.meta
    assert meta["tier"] == "quick" and meta["train_size"] == 10_000 and meta["val_size"] == 5_000
    assert meta["test_size"] == 10_000
    assert meta["backend"] == keras.backend.backend()
    assert meta["device"].startswith(("CPU", "GPU"))
    assert meta["epochs"] >= 10 and meta["wall_s"] > 0
    assert 0.8 < meta["test_accuracy"] < 1
    names = {Path(p).name for p in meta["plots"]}
    expected = {f"{question}_learning_curves.png"} | ({"q3_augmentation_grid.png"} if question == "q3" else set())
    assert names == expected
    for path in meta["plots"]:
        assert Path(path).read_bytes()[:8] == PNG_MAGIC


# Minimum distance between the reference's figure and the threshold, per figure.
MARGINS = {
    "epochs_after_best": 2,
    "val_loss_rise": 0.03,
    "train_loss_ratio": 0.05,
    "accuracy_gap": 0.01,
    "test_accuracy": 0.01,
    "augmented_retained": 0.03,
}


def assert_margins(thresholds, measured: dict[str, float]) -> None:
    for name, margin in MARGINS.items():
        bound = getattr(thresholds, name, None)
        if bound is None:
            continue
        assert isinstance(bound, Bound)
        assert bound.measured is not None, f"{name}: the reference's figure is not recorded beside the threshold"
        assert bound.margin_to(bound.measured) >= margin, (
            f"{name}: recorded figure {bound.measured} too close to {bound.describe()}"
        )
        assert bound.margin_to(measured[name]) >= margin, (
            f"{name}: the reference now measures {measured[name]:.4f}, which leaves less than {margin} "
            f"against the threshold {bound.describe()}: re-derive the threshold"
        )


@pytest.mark.slow
def test_q2_thresholds_leave_margin_against_the_reference(reference_runs):
    assert_margins(q2_overfit.THRESHOLDS["quick"], reference_runs["q2"].meta)


@pytest.mark.slow
def test_q3_thresholds_leave_margin_against_the_reference(reference_runs):
    meta = reference_runs["q3"].meta
    assert_margins(q3_augment.THRESHOLDS["quick"], meta)
    without = reference_runs["q2"].meta["accuracy_gap"]
    assert meta["accuracy_gap"] <= without / 2 + 0.005, "augmentation should clearly shrink the reference's gap"
    assert q3_augment.THRESHOLDS["quick"].accuracy_gap.value < q2_overfit.THRESHOLDS["quick"].accuracy_gap.measured


# --------------------------------------------------------------------------- tiers and options


def test_tiers_and_overrides():
    quick, full = tier_from_options(GradingOptions()), tier_from_options(GradingOptions(tier="full"))
    sizes = ("name", "train_size", "val_size", "test_size", "time_limit_s")
    assert tuple(getattr(quick, key) for key in sizes) == ("quick", 10_000, 5_000, 10_000, 300)
    assert tuple(getattr(full, key) for key in sizes) == ("full", 50_000, 10_000, 10_000, 1800)
    assert tier_from_options(GradingOptions(time_limit=12)).time_limit_s == 12
    assert tier_from_options(TINY).train_size == 1000
    with pytest.raises(ValueError, match="unknown tier"):
        GradingOptions(tier="huge")


def test_training_questions_declare_their_limits_notice_and_borrowed_builder():
    options = GradingOptions(time_limit=1000)
    for question in (get_question("q2"), get_question("q3")):
        assert question.training is not None and question.training.borrows == ("build_lenet5",)
        assert question.limits_for(Limits(wall_s=60), options).wall_s == 1000 * 1.05 + 240
        assert question.limits_for(Limits(wall_s=5000), options).wall_s == 5000
        assert question.training.notice(GradingOptions()) is None  # the quick tier is never slow


def test_the_training_package_knows_no_question():
    import ast
    import re

    import grader.training as training

    for path in Path(training.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree) if _has_docstring(node)}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert not any("questions" in name for name in names), f"{path.name} imports {names}"
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                assert not re.search(r"\bq[1-7]", node.value), f"{path.name} names a question: {node.value!r}"


def _has_docstring(node) -> bool:
    import ast

    body = getattr(node, "body", None)
    return (
        isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
        and isinstance(body, list)
        and bool(body)
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
    )


def test_split_is_seeded_disjoint_and_scaled():
    split = load_split(1000, 500, 500)
    again = load_split.__wrapped__(1000, 500, 500)
    assert np.array_equal(split.x_train, again.x_train)
    assert split.x_train.shape == (1000, 28, 28, 1) and split.x_train.dtype == np.float32
    assert 0.0 <= split.x_train.min() and split.x_train.max() <= 1.0
    train = {row.tobytes() for row in split.x_train}
    assert not any(row.tobytes() in train for row in split.x_val)


# --------------------------------------------------------------------------- q2 failure modes


def fit_briefly(model, x_train, y_train, x_val, y_val, epochs=1, **compile_args):
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"], **compile_args)
    return model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=epochs, batch_size=100, verbose=0)


def test_fabricated_history_fails(tmp_path):
    def train_until_overfit(model, x_train, y_train, x_val, y_val):
        fit_briefly(model, x_train, y_train, x_val, y_val)
        epochs = np.arange(20)
        return {
            "loss": list(1 / (1 + epochs)),
            "accuracy": list(0.7 + epochs / 100),
            "val_loss": list(0.5 + (epochs - 8) ** 2 / 200),
            "val_accuracy": list(0.8 - (epochs - 8) ** 2 / 2000),
        }

    problems = failed(grade_tiny("q2", tmp_path, train_until_overfit=train_until_overfit))
    message = problems["history is real"]
    assert "has 20 epochs, but the grader saw model.fit train the model you were given for 1 epoch" in message
    assert "Overfitting can only be read off a verified history" in problems["overfitting is evident"]
    assert "trains the model it is given" not in problems


def test_edited_history_fails_with_the_epoch_and_value(tmp_path):
    def train_until_overfit(model, x_train, y_train, x_val, y_val):
        history = fit_briefly(model, x_train, y_train, x_val, y_val, epochs=2).history
        history["val_loss"][-1] += 0.5
        return history

    message = failed(grade_tiny("q2", tmp_path, train_until_overfit=train_until_overfit))["history is real"]
    assert message.startswith("Epoch 2 of your history reports") and "The first difference is in val_loss" in message
    assert "the grader's evaluation of the model as it was after that epoch" in message


def test_model_changed_after_fit_fails(tmp_path):
    def train_until_overfit(model, x_train, y_train, x_val, y_val):
        history = fit_briefly(model, x_train, y_train, x_val, y_val)
        model.set_weights([w + np.random.default_rng(1).normal(0, 0.5, w.shape) for w in model.get_weights()])
        return history.history

    problems = failed(grade_tiny("q2", tmp_path, train_until_overfit=train_until_overfit))
    assert set(problems) == {c.name for c in get_question("q2").checks}
    assert "weights that model.fit did not leave: they were changed after training" in problems["history is real"]


def test_untrained_model_fails(tmp_path):
    def train_until_overfit(model, x_train, y_train, x_val, y_val):
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return {"loss": [1.0, 0.5], "accuracy": [0.6, 0.8], "val_loss": [0.9, 1.0], "val_accuracy": [0.7, 0.7]}

    problems = failed(grade_tiny("q2", tmp_path, train_until_overfit=train_until_overfit))
    assert set(problems) == {c.name for c in get_question("q2").checks}
    assert "came back untrained: its weights did not change" in problems["trains the model it is given"]
    assert "Call model.fit on the model passed" in problems["trains the model it is given"]


def test_training_another_model_is_named(tmp_path):
    def train_until_overfit(model, x_train, y_train, x_val, y_val):
        other = keras.models.clone_model(model)
        return fit_briefly(other, x_train, y_train, x_val, y_val).history

    message = failed(grade_tiny("q2", tmp_path, train_until_overfit=train_until_overfit))[
        "trains the model it is given"
    ]
    assert "untrained" in message and "You called fit on another model" in message


def test_nan_loss_fails_with_its_own_message(tmp_path):
    def train_until_overfit(model, x_train, y_train, x_val, y_val):
        x_train[:5] = np.nan
        return fit_briefly(model, x_train, y_train, x_val, y_val, epochs=3).history

    message = failed(grade_tiny("q2", tmp_path, train_until_overfit=train_until_overfit))[
        "trains the model it is given"
    ]
    assert "loss became NaN in epoch 1" in message and "learning rate" in message


def test_exception_mid_training_fails_with_its_own_message(tmp_path):
    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("disk full while saving a checkpoint")

    def train_until_overfit(model, x_train, y_train, x_val, y_val):
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model.fit(
            x_train, y_train, validation_data=(x_val, y_val), epochs=5, callbacks=[Crash()], verbose=0
        ).history

    message = failed(grade_tiny("q2", tmp_path, train_until_overfit=train_until_overfit))[
        "trains the model it is given"
    ]
    assert message.startswith("Training failed after 1 finished epoch:")
    assert "RuntimeError" in message and "disk full while saving a checkpoint" in message


def test_time_limit_stops_training_with_its_own_message(tmp_path):
    class Slow(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            time.sleep(0.05)

    def train_until_overfit(model, x_train, y_train, x_val, y_val):
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model.fit(
            x_train, y_train, validation_data=(x_val, y_val), epochs=500, batch_size=10, callbacks=[Slow()], verbose=0
        ).history

    started = time.monotonic()
    result = grade_namespace(
        get_question("q2"), {"train_until_overfit": train_until_overfit}, options=TINY.replace(time_limit=2, plots=None)
    )
    assert time.monotonic() - started < 120  # stopped long before 500 epochs
    message = failed(result)["trains the model it is given"]
    assert message.startswith("Training stopped after the 2-second time limit of the quick tier")
    assert "--time-limit" in message


def test_missing_metrics_and_short_training_are_explained(tmp_path):
    def train_until_overfit(model, x_train, y_train, x_val, y_val):
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        return model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=1, verbose=0).history

    message = failed(grade_tiny("q2", tmp_path, train_until_overfit=train_until_overfit))[
        "trains the model it is given"
    ]
    assert "has no accuracy, val_accuracy" in message and 'metrics=["accuracy"]' in message

    def train_until_overfit(model, x_train, y_train, x_val, y_val):
        return fit_briefly(model, x_train, y_train, x_val, y_val)  # a History object, one epoch

    result = grade_tiny("q2", tmp_path, train_until_overfit=train_until_overfit)
    problems = failed(result)
    assert "trains the model it is given" not in problems and "history is real" not in problems
    assert "is lowest in the last epoch" in problems["overfitting is evident"]
    assert "Test accuracy" in problems["test accuracy"] and "expected at least 0.82" in problems["test accuracy"]
    assert Path(result.meta["plots"][0]).read_bytes()[:8] == PNG_MAGIC


def test_the_stub_says_it_is_not_implemented(repo):
    from grader.grading import grade_folder

    result = grade_folder(get_question("q2"), repo / "exercises", options=TINY.replace(plots=None))
    assert result.score == 0
    assert all("not implemented yet" in c.message for c in result.checks)


# --------------------------------------------------------------------------- q3 failure modes


def reference_augmentation():
    return q3_augment_solution().build_augmentation()


def q3_augment_solution():
    from grader.submission import load_module

    return type("Solution", (), load_module(solutions_dir(), get_question("q3")).namespace)


def train_augmented(model, augmentation, x_train, y_train, x_val, y_val):
    """The reference's way, for 2 epochs."""
    augmented = keras.Sequential([keras.Input(x_train.shape[1:]), augmentation, model])
    return fit_briefly(augmented, x_train, y_train, x_val, y_val, epochs=2).history


class AlwaysOn(layers.Layer):
    """A student's wrapper that forces its transform on, even at evaluation."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.shift = layers.RandomTranslation(0.2, 0.2, fill_mode="constant")

    def call(self, x, training=None):
        return self.shift(x, training=True)


def test_augmentation_active_at_evaluation_fails(tmp_path):
    def build_augmentation():
        return keras.Sequential([layers.RandomFlip("horizontal"), AlwaysOn()])

    problems = failed(
        grade_tiny("q3", tmp_path, build_augmentation=build_augmentation, train_with_augmentation=train_augmented)
    )
    assert "With training=False your augmentation changed the images" in problems["identity at evaluation"]
    assert "at least two random transforms" not in problems


def test_augmented_validation_data_fails(tmp_path):
    def build_augmentation():
        return keras.Sequential(
            [layers.RandomTranslation(0.25, 0.25, fill_mode="constant"), layers.RandomZoom(0.3, fill_mode="constant")]
        )

    def train_with_augmentation(model, augmentation, x_train, y_train, x_val, y_val):
        x_val_augmented = np.asarray(augmentation(x_val))  # training defaults to True: the slip
        augmented = keras.Sequential([keras.Input(x_train.shape[1:]), augmentation, model])
        augmented.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return augmented.fit(x_train, y_train, validation_data=(x_val_augmented, y_val), epochs=3, verbose=0).history

    problems = failed(
        grade_tiny(
            "q3", tmp_path, build_augmentation=build_augmentation, train_with_augmentation=train_with_augmentation
        )
    )
    message = problems["trains with augmentation on training data only"]
    assert "validation images went through the augmentation" in message
    assert "identity at evaluation" not in problems


NOT_AUGMENTED = "Your model was not trained on augmented images: on the grader's own augmented copies"


def test_no_augmentation_in_training_fails(tmp_path):
    def train_with_augmentation(model, augmentation, x_train, y_train, x_val, y_val):
        return fit_briefly(model, x_train, y_train, x_val, y_val, epochs=3).history

    problems = failed(
        grade_tiny(
            "q3", tmp_path, build_augmentation=reference_augmentation, train_with_augmentation=train_with_augmentation
        )
    )
    assert NOT_AUGMENTED in problems["trains with augmentation on training data only"]
    for name in (
        "at least two random transforms",
        "keeps shape, dtype and value range",
        "random in training mode",
        "identity at evaluation",
    ):
        assert name not in problems


def test_too_few_transforms_and_range_are_explained(tmp_path):
    def build_augmentation():
        return keras.Sequential([layers.Rescaling(2.0), layers.RandomFlip("horizontal")])

    problems = failed(
        grade_tiny("q3", tmp_path, build_augmentation=build_augmentation, train_with_augmentation=train_augmented)
    )
    assert "has 1 random transform(s) (Rescaling, RandomFlip)" in problems["at least two random transforms"]
    assert "produces values from 0.000 to 2.000" in problems["keeps shape, dtype and value range"]


def test_reference_augmentation_and_training_path_pass_their_checks(tmp_path):
    result = grade_tiny(
        "q3", tmp_path, build_augmentation=reference_augmentation, train_with_augmentation=train_augmented
    )
    problems = failed(result)
    # 2 epochs on 1,000 images: the figures are noise there (the real quick tier's margins are tested above), but
    # the history must verify: the augmentation check may fail only on its retained-accuracy figure.
    retained = problems.pop("trains with augmentation on training data only", None)
    assert retained is None or retained.startswith("Your model was not trained on augmented images: on the grader's")
    assert set(problems) <= {"smaller generalization gap", "test accuracy"}
    assert {Path(p).name for p in result.meta["plots"]} == {"q3_augmentation_grid.png", "q3_learning_curves.png"}


# --------------------------------------------------------------------------- command line and notebook


def test_cli_passes_tier_plots_and_time_limit(tmp_path, repo):
    import json
    import os
    import subprocess
    import sys

    command = [
        sys.executable,
        "-m",
        "grader",
        "check",
        "q2",
        "--json",
        "--tier",
        "full",
        "--plots",
        str(tmp_path),
        "--time-limit",
        "42",
    ]
    done = subprocess.run(
        command, cwd=repo / "exercises", capture_output=True, text=True, env=os.environ.copy(), timeout=600
    )
    assert done.returncode == 1
    report = json.loads(done.stdout)  # stdout stays pure JSON: the CPU notice goes to stderr
    assert report["meta"]["tier"] == "full" and report["meta"]["train_size"] == 50_000
    assert report["meta"]["time_limit_s"] == 42
    assert all("not implemented yet" in c["message"] for c in report["checks"])
    if report["meta"]["device"].startswith("CPU"):
        assert "meant for a GPU" in done.stderr and "slow" in done.stderr


def test_notebook_check_takes_options_and_prints_figures_to_stdout_only(tmp_path, capfd):
    from grader.notebook import check

    def train_until_overfit(model, x_train, y_train, x_val, y_val):
        return fit_briefly(model, x_train, y_train, x_val, y_val, epochs=2).history

    score = check("q2", train_until_overfit, plots=tmp_path, time_limit=120, **TINY_SIZES)
    out, err = capfd.readouterr()
    assert err == ""
    assert 2 <= score < 10  # trained and verified, but no overfitting in 2 epochs
    assert "history is real" in out and f"figures: {tmp_path / 'q2_learning_curves.png'}" in out
    assert (tmp_path / "q2_learning_curves.png").read_bytes()[:8] == PNG_MAGIC


def test_restored_best_weights_are_accepted(tmp_path):
    def train_until_overfit(model, x_train, y_train, x_val, y_val):
        model.compile(
            optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
        )
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
        return model.fit(
            x_train, y_train, validation_data=(x_val, y_val), epochs=25, callbacks=[stop], verbose=0
        ).history

    problems = failed(grade_tiny("q2", tmp_path, train_until_overfit=train_until_overfit))
    assert "history is real" not in problems and "trains the model it is given" not in problems


# --------------------------------------------------------------------------- in the sandbox


def grade_in_sandbox(question: str, tmp_path: Path, source: str, **options) -> QuestionResult:
    """Write `source` as the question's file and grade it sandboxed, as `grader check` and `grader batch` do."""
    spec = get_question(question)
    (tmp_path / spec.filename).write_text(source)
    grading = TINY.replace(plots=None, **options)
    result = grade_folder(spec, tmp_path, isolated=True, options=grading, limits=Limits(threads=2))
    assert result.meta["isolation"]["process"] is True
    return result


FIT_BRIEFLY = """
import keras
import numpy as np


def fit_briefly(model, x_train, y_train, x_val, y_val, epochs=1):
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=epochs, batch_size=100, verbose=0)


def fabricated(epochs=20):
    steps = np.arange(epochs)
    return {
        "loss": list(1 / (1 + steps)),
        "accuracy": list(0.7 + steps / 100),
        "val_loss": list(0.5 + (steps - 8) ** 2 / 200),
        "val_accuracy": list(0.8 - (steps - 8) ** 2 / 2000),
    }
"""


def test_sandboxed_training_is_graded_by_the_parent_and_patching_the_grader_reaches_nothing(tmp_path):
    source = FIT_BRIEFLY + textwrap.dedent("""
    import grader.training.evaluation as evaluation
    import grader.training.verification as verification

    verification.verify_history = lambda *args, **kwargs: "verified"  # the child's copy of the grader only
    evaluation.evaluate = lambda *args, **kwargs: evaluation.Evaluation(0.0, 1.0)
    print("q2: 10/10, all checks passed")


    def train_until_overfit(model, x_train, y_train, x_val, y_val):
        fit_briefly(model, x_train, y_train, x_val, y_val)
        return fabricated()
    """)
    problems = failed(grade_in_sandbox("q2", tmp_path, source))
    assert "trains the model it is given" not in problems  # it did train the model it was given, in the child
    assert (
        "has 20 epochs, but the grader saw model.fit train the model you were given for 1 epoch"
        in problems["history is real"]
    )
    assert "Test accuracy" in problems["test accuracy"]  # measured by the grader, not by the patched copy


FORGED_RECORDER = """
import grader.training.watch as watch

_real_to_json = watch.TrainingWatch.to_json


def forged_record(self):
    return {**_real_to_json(self), "fits": [{"history": fabricated(), "restores_best_weights": True,
            "used_validation_split": False, "trains_given_model": True}], "epochs_run": 20, "elapsed_s": 0.0,
            "time_limit_hit": True, "nan_epoch": 3}


watch.TrainingWatch.to_json = forged_record
watch.TrainingWatch.recorded_history = lambda self: fabricated()
watch.TrainingWatch.out_of_time = lambda self: False
"""


def test_sandboxed_verdicts_do_not_depend_on_the_childs_recorder(tmp_path):
    # Everything the child records besides the weight snapshots (fits, histories, epochs, elapsed time,
    # time-limit and NaN flags) is forged here: the grader's verdicts stay those of the honest run.
    honest = FIT_BRIEFLY + textwrap.dedent("""
    def train_until_overfit(model, x_train, y_train, x_val, y_val):
        return fit_briefly(model, x_train, y_train, x_val, y_val, epochs=2).history
    """)
    verdicts = {}
    for name, source in (("honest", honest), ("forged", honest + textwrap.dedent(FORGED_RECORDER))):
        (tmp_path / name).mkdir()
        result = grade_in_sandbox("q2", tmp_path / name, source)
        verdicts[name] = {check.name: check.passed for check in result.checks}
    assert verdicts["forged"] == verdicts["honest"]
    assert verdicts["honest"]["trains the model it is given"] and verdicts["honest"]["history is real"]


def test_sandboxed_exits_and_stubs_fail_with_their_own_messages(tmp_path):
    exits = FIT_BRIEFLY + textwrap.dedent("""
    def train_until_overfit(model, x_train, y_train, x_val, y_val):
        fit_briefly(model, x_train, y_train, x_val, y_val)
        import sys
        sys.exit(0)
    """)
    message = failed(grade_in_sandbox("q2", tmp_path, exits))["trains the model it is given"]
    assert message.startswith("Training failed after 1 finished epoch:") and "called sys.exit(0)" in message

    kills = exits.replace("import sys", "import os").replace("sys.exit(0)", "os._exit(0)")
    problems = failed(grade_in_sandbox("q2", tmp_path, kills))
    assert set(problems) == {c.name for c in get_question("q2").checks}
    assert "ended the process it ran in (exit code 0)" in problems["trains the model it is given"]

    stub = (REPO_EXERCISES / "q2_overfit.py").read_text()
    problems = failed(grade_in_sandbox("q2", tmp_path, stub))
    assert all("not implemented yet" in message for message in problems.values()) and len(problems) == 4


def test_sandboxed_q3_trains_with_the_augmentation_and_uses_the_students_lenet(tmp_path):
    (tmp_path / "q1_lenet.py").write_text((solutions_dir() / "q1_lenet.py").read_text())
    # Enough epochs that the model has learnt what the augmentation check measures (the accuracy it keeps
    # on augmented images), few enough to stay cheap on 1,000 images.
    source = (solutions_dir() / "q3_augment.py").read_text().replace("EPOCHS = 20", "EPOCHS = 6")
    result = grade_in_sandbox("q3", tmp_path, source)
    problems = failed(result)
    assert set(problems) <= {"smaller generalization gap", "test accuracy"}  # 6 epochs on 1,000 images
    assert result.meta["model"] == "your build_lenet5()" and result.meta["epochs"] == 6

    without = source.replace(
        'keras.Sequential([keras.Input(x_train.shape[1:]), augmentation, model], name="augmented_model")', "model"
    )
    assert without != source
    problems = failed(grade_in_sandbox("q3", tmp_path, without))
    assert NOT_AUGMENTED in problems["trains with augmentation on training data only"]


def test_sandboxed_model_swapped_for_another_is_refused(tmp_path):
    # The student's process could hand back any model: the grader only grades the architecture it sent.
    source = FIT_BRIEFLY + textwrap.dedent("""
    import grader.training.run as training

    _real = training.train_beside_student


    def swapped(student, function, model, *args, **kwargs):
        outcome = _real(student, function, model, *args, **kwargs)
        other = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
        fit_briefly(other, *args)
        outcome["model"] = other
        return outcome


    training.train_beside_student = swapped


    def train_until_overfit(model, x_train, y_train, x_val, y_val):
        return fit_briefly(model, x_train, y_train, x_val, y_val).history
    """)
    problems = failed(grade_in_sandbox("q2", tmp_path, source))
    assert set(problems) == {c.name for c in get_question("q2").checks}
    assert "left behind is not the model it was given" in problems["trains the model it is given"]


# --------------------------------------------------------------------------- weights learnt elsewhere


@pytest.fixture(scope="module")
def pasted_weights() -> str:
    """LeNet-5 weights trained offline on the tiny tier's training images and on the public test images, as base64.

    What a student can compute before the run: the subset follows from the seed, the test set is public.
    """
    import base64
    import io

    from grader.training import evaluate

    split = load_split(**TINY_SIZES)
    keras.utils.set_random_seed(7)
    model = q1_lenet_solution().build_lenet5()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.concatenate([split.x_train, split.x_test])
    y = np.concatenate([split.y_train, split.y_test])
    model.fit(x, y, epochs=25, batch_size=50, verbose=0)
    assert (
        evaluate(model, split.x_test, split.y_test).accuracy > 0.9
    )  # memorised (honest here: ~0.7): the attack is real
    buffer = io.BytesIO()
    np.savez(buffer, *model.get_weights())
    return base64.b64encode(buffer.getvalue()).decode()


def q1_lenet_solution():
    from grader.submission import load_module

    return type("Solution", (), load_module(solutions_dir(), get_question("q1")).namespace)


PASTED = """
import base64
import io

import keras
import numpy as np

PASTED = "{weights}"


def pasted():
    stored = np.load(io.BytesIO(base64.b64decode(PASTED)))
    return [stored[f"arr_{{i}}"] for i in range(len(stored.files))]


class RewriteHistory(keras.callbacks.Callback):
    def on_train_end(self, logs=None):
        history, epochs = self.model.history.history, len(self.model.history.history["loss"])
        for epoch in range(epochs - 1):  # a textbook overfitting curve; the last epoch is left as measured
            history["loss"][epoch] = 1.0 / (1 + epoch)
            history["accuracy"][epoch] = 0.7 + epoch / 100
            history["val_loss"][epoch] = history["val_loss"][-1] * (0.8 + (epoch - 5) ** 2 / 400)
            history["val_accuracy"][epoch] = history["val_accuracy"][-1] - 0.01


def train_until_overfit(model, x_train, y_train, x_val, y_val):
    model.set_weights(pasted())
    model.compile(optimizer=keras.optimizers.Adam(0.0), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=15, batch_size=100, verbose=0,
                        callbacks=[RewriteHistory()])
    return history.history
"""

NOT_FROM_SENT = "When model.fit began, the model did not hold the weights the grader sent"


def test_sandboxed_pasted_weights_fail_every_check_saying_what_was_seen(tmp_path, pasted_weights):
    problems = failed(grade_in_sandbox("q2", tmp_path, PASTED.format(weights=pasted_weights)))
    assert set(problems) == {c.name for c in get_question("q2").checks}
    for name in ("history is real", "test accuracy"):
        assert problems[name].startswith(NOT_FROM_SENT) and "set_weights or load_weights" in problems[name]
        assert "secret" in problems[name]


def _pasted(weights: str) -> list[np.ndarray]:
    import base64
    import io

    stored = np.load(io.BytesIO(base64.b64decode(weights)))
    return [stored[f"arr_{i}"] for i in range(len(stored.files))]


def test_one_real_epoch_then_pasted_weights_fails(tmp_path, pasted_weights):
    def train_until_overfit(model, x_train, y_train, x_val, y_val):
        history = fit_briefly(model, x_train, y_train, x_val, y_val)
        model.set_weights(_pasted(pasted_weights))
        return history.history

    problems = failed(grade_tiny("q2", tmp_path, train_until_overfit=train_until_overfit))
    assert set(problems) == {c.name for c in get_question("q2").checks}
    for name in ("history is real", "test accuracy"):
        assert "came back with weights that model.fit did not leave" in problems[name]


def test_weights_pasted_during_training_or_adapted_to_the_labels_fail(tmp_path, pasted_weights):
    class PasteAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                self.model.set_weights(_pasted(pasted_weights))

    def pasted_mid_training(model, x_train, y_train, x_val, y_val):
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model.fit(
            x_train,
            y_train,
            validation_data=(x_val, y_val),
            epochs=3,
            batch_size=100,
            verbose=0,
            callbacks=[PasteAfterFirstEpoch()],
        ).history

    message = failed(grade_tiny("q2", tmp_path, train_until_overfit=pasted_mid_training))["history is real"]
    assert "In epoch 2 the weights of" in message and "jumped to values unrelated to the previous ones" in message

    def adapted_to_the_permutation(model, x_train, y_train, x_val, y_val):
        weights = _pasted(pasted_weights)
        model.set_weights(weights)
        predicted = np.argmax(model.predict(x_train, verbose=0), axis=1)  # original ids -> this run's ids
        mapping = [np.bincount(y_train[predicted == c], minlength=10).argmax() for c in range(10)]
        kernel, bias = weights[-2].copy(), weights[-1].copy()
        kernel[:, mapping], bias[mapping] = weights[-2], weights[-1]
        model.set_weights([*weights[:-2], kernel, bias])
        return fit_briefly(model, x_train, y_train, x_val, y_val, epochs=2).history

    problems = failed(grade_tiny("q2", tmp_path, train_until_overfit=adapted_to_the_permutation))
    assert problems["test accuracy"].startswith(NOT_FROM_SENT)

    def learning_rate_zero(model, x_train, y_train, x_val, y_val):
        model.compile(optimizer=keras.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        history = model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=2, verbose=0).history
        model.set_weights(_pasted(pasted_weights))
        return history

    message = failed(grade_tiny("q2", tmp_path, train_until_overfit=learning_rate_zero))["trains the model it is given"]
    assert "Epoch 1 did not change the model's weights at all" in message


def test_labels_are_permuted_per_run_and_test_accuracy_is_measured_under_them(tmp_path):
    seen = []

    def train_until_overfit(model, x_train, y_train, x_val, y_val):
        seen.append((np.array(y_train[:50]), np.array(y_val[:50])))
        return fit_briefly(model, x_train, y_train, x_val, y_val).history

    grade_tiny("q2", tmp_path, train_until_overfit=train_until_overfit)
    grade_tiny("q2", tmp_path, train_until_overfit=train_until_overfit)
    split = load_split(**TINY_SIZES)
    for y_train, y_val in seen:
        mapping = {original: given for original, given in zip(split.y_train[:50], y_train)}
        assert all(mapping[a] == b for a, b in zip(split.y_train[:50], y_train))  # a relabelling of the classes
        assert not any(original == given for original, given in mapping.items())  # no class keeps its id
        assert all(mapping.get(a, b) == b for a, b in zip(split.y_val[:50], y_val))  # the same one for validation
    assert not np.array_equal(seen[0][0], seen[1][0])  # a new secret each run


# --------------------------------------------------------------------------- the grader's clock and counters


def test_forged_augmentation_calls_fail(tmp_path):
    def train_with_augmentation(model, augmentation, x_train, y_train, x_val, y_val):
        for _ in range(20):  # the calls a recorder of the layer would have counted
            augmentation(x_train[:64], training=True)
        return fit_briefly(model, x_train, y_train, x_val, y_val, epochs=3).history

    problems = failed(
        grade_tiny(
            "q3", tmp_path, build_augmentation=reference_augmentation, train_with_augmentation=train_with_augmentation
        )
    )
    assert NOT_AUGMENTED in problems["trains with augmentation on training data only"]


def test_augmented_batches_made_by_hand_over_several_fits_pass(tmp_path):
    def train_with_augmentation(model, augmentation, x_train, y_train, x_val, y_val):
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        merged = {}
        for _ in range(3):
            augmented = np.asarray(augmentation(x_train, training=True))
            history = model.fit(augmented, y_train, validation_data=(x_val, y_val), epochs=1, batch_size=64, verbose=0)
            for key, values in history.history.items():
                merged.setdefault(key, []).extend(values)
        return merged

    problems = failed(
        grade_tiny(
            "q3", tmp_path, build_augmentation=reference_augmentation, train_with_augmentation=train_with_augmentation
        )
    )
    assert set(problems) <= {"smaller generalization gap", "test accuracy"}


def test_verdicts_do_not_depend_on_the_recorder(tmp_path, monkeypatch):
    import grader.training.watch as watch

    def train_until_overfit(model, x_train, y_train, x_val, y_val):
        return fit_briefly(model, x_train, y_train, x_val, y_val, epochs=2).history

    honest = {c.name: c.passed for c in grade_tiny("q2", tmp_path, train_until_overfit=train_until_overfit).checks}
    forged = {"fits": [], "epochs_run": 99, "time_limit_hit": True, "nan_epoch": 1, "elapsed_s": 1e6}
    monkeypatch.setattr(watch.TrainingWatch, "to_json", lambda self: forged)
    monkeypatch.setattr(watch.TrainingWatch, "recorded_history", lambda self: {"loss": [float("nan")]})
    monkeypatch.setattr(watch.TrainingWatch, "out_of_time", lambda self: False)
    again = {c.name: c.passed for c in grade_tiny("q2", tmp_path, train_until_overfit=train_until_overfit).checks}
    assert again == honest and honest["history is real"]


def test_time_limit_is_the_graders_clock(tmp_path, monkeypatch):
    import grader.training.watch as watch

    monkeypatch.setattr(watch.TrainingWatch, "out_of_time", lambda self: False)  # the child's guard never stops it

    def train_until_overfit(model, x_train, y_train, x_val, y_val):
        history = fit_briefly(model, x_train, y_train, x_val, y_val)
        time.sleep(3)
        return history.history

    result = grade_namespace(
        get_question("q2"), {"train_until_overfit": train_until_overfit}, options=TINY.replace(time_limit=2, plots=None)
    )
    message = failed(result)["trains the model it is given"]
    assert message.startswith("Training stopped after the 2-second time limit") and "the grader's clock" in message


# --------------------------------------------------------------------------- the loss, as Keras computes it


def test_grader_loss_matches_keras_val_loss_on_an_over_confident_model():
    from grader.training import evaluate
    from grader.training.verification import LOSS_TOLERANCE

    split = load_split(**TINY_SIZES)
    keras.utils.set_random_seed(3)
    model = q1_lenet_solution().build_lenet5()
    fit_briefly(model, split.x_train, split.y_train, split.x_val, split.y_val, epochs=3)
    weights = model.get_weights()
    model.set_weights([*weights[:-2], weights[-2] * 60, weights[-1] * 60])  # saturated softmax: over-confident
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    keras_val_loss = model.fit(
        split.x_train[:10], split.y_train[:10], validation_data=(split.x_val, split.y_val), epochs=1, verbose=0
    ).history["val_loss"][0]
    graders = evaluate(model, split.x_val, split.y_val).loss
    assert abs(graders - keras_val_loss) <= 1e-3 * keras_val_loss
    probabilities = np.asarray(model.predict(split.x_val, verbose=0), dtype=np.float64)
    clipped = -np.mean(np.log(np.clip(probabilities[np.arange(len(split.y_val)), split.y_val], 1e-7, 1.0)))
    if keras.backend.backend() == "tensorflow":  # from the logits: clipped probabilities would blame the student
        assert abs(clipped - keras_val_loss) > LOSS_TOLERANCE * keras_val_loss + 0.01


# --------------------------------------------------------------------------- honest optimizers, real quick tier

HONEST_OPTIMIZER = """
import keras


def train_until_overfit(model, x_train, y_train, x_val, y_val):
    model.compile(optimizer={optimizer}, loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  steps_per_execution=16)
    return model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=30, batch_size=64, verbose=0).history
"""


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["keras.optimizers.SGD(0.01, momentum=0.9)", "keras.optimizers.RMSprop(1e-3)"])
def test_honest_optimizers_pass_the_quick_tier(optimizer):
    # Adam with EarlyStopping is the reference (above); these train the stub's other suggestion, a fixed 30 epochs.
    # Margins are printed: `pytest -s` shows how close each run came.
    namespace: dict = {}
    exec(compile(HONEST_OPTIMIZER.format(optimizer=optimizer), "q2_overfit.py", "exec"), namespace)
    result = grade_namespace(get_question("q2"), namespace, options=GradingOptions(tier="quick", plots=None))
    thresholds = q2_overfit.THRESHOLDS["quick"]
    margins = {
        name: round(getattr(thresholds, name).margin_to(result.meta[name]), 4)
        for name in MARGINS
        if hasattr(thresholds, name) and name in result.meta
    }
    print(f"{optimizer}: {result.meta.get('epochs')} epochs in {result.meta.get('wall_s')} s, margins {margins}")
    assert failed(result) == {}, margins
