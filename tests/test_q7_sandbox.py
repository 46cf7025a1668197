"""q7 in the sandbox: the reference passes, mistakes fail with their messages, and forged training earns nothing.

Each test grades a q7_flowers.py with `grade_folder(..., isolated=True)` (quick tier): the
file is imported and called only in a sandboxed child; the grader scores what comes back.
"""

from __future__ import annotations

import dataclasses

from conftest import failed

from grader.grading import grade_folder
from grader.options import GradingOptions, Limits
from grader.paths import solutions_dir
from grader.questions import get_question

QUESTION = get_question("q7")
REFERENCE = (solutions_dir() / "q7_flowers.py").read_text()
LIMITS = Limits(wall_s=240, memory_mb=4096)
TRAINING = "train_transfer trains the head (quick: loss falls; full: test accuracy >= 0.85)"


def grade(folder, source: str, question=QUESTION, **options):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / QUESTION.filename).write_text(source)
    return grade_folder(question, folder, isolated=True, limits=LIMITS, options=GradingOptions(tier="quick", **options))


def test_reference_passes_every_check_in_the_sandbox():
    result = grade_folder(QUESTION, solutions_dir(), isolated=True, limits=LIMITS, options=GradingOptions(tier="quick"))
    assert result.meta["isolation"]["process"] is True
    assert failed(result) == {}
    assert result.score == result.max_score == 20
    meta = result.meta["q7"]
    assert meta["weights"] == "None" and meta["train_loss_after"] < meta["train_loss_before"]
    assert len(meta["curves"]["test_accuracy"]) == meta["epochs"] and meta["backbone_drift"] == 0.0


def test_classic_mistakes_fail_in_the_sandbox_with_their_messages(tmp_path):
    source = (
        REFERENCE.replace(
            "    if training:\n        top =",
            "    training = True  # random crops, even for evaluation\n    if training:\n        top =",
            1,
        )
        .replace("rng = np.random.default_rng(seed)", "rng = np.random.default_rng(0)", 1)
        .replace("    backbone.trainable = False\n", "", 1)
        .replace("features = backbone(inputs, training=False)", "features = backbone(inputs)", 1)
    )
    assert source.count("training = True  #") == 1 and "backbone.trainable = False" not in source
    result = grade(tmp_path / "s", source, epochs=1)
    messages = failed(result)
    assert set(messages) == {
        "evaluation crop is centred and deterministic",
        "split is reproducible from the seed",
        "backbone is frozen: only the head trains",
        "backbone runs in inference mode",
        TRAINING,
    }, messages
    assert "the evaluation crop is random" in messages["evaluation crop is centred and deterministic"]
    assert "seed argument is ignored" in messages["split is reproducible from the seed"]
    assert "which should be frozen" in messages["backbone is frozen: only the head trains"]
    assert "moving mean" in messages["backbone runs in inference mode"]
    assert "backbone's weights or BatchNormalization statistics changed" in messages[TRAINING]


HOSTILE = '''
import keras
import numpy as np


def train_transfer(model, train_ds, val_ds, epochs):
    """Train nothing; patch everything the grader could use to measure the training, and forge a history."""
    import grader.flowers.backbones as backbones
    import grader.flowers.experiment as experiment
    import grader.flowers.recording as recording
    import grader.questions.q7_tiers as tiers

    forged = lambda *a, **k: (0.0, 1.0, 1.0, np.asarray(a[1] if len(a) > 1 else []))
    for module in (recording, experiment, tiers):
        for name in ("scores", "scores_from_probs", "measured_scores", "backbone_drift"):
            if hasattr(module, name):
                setattr(module, name, (lambda *a, **k: 0.0) if name == "backbone_drift" else forged)
    backbones.backbone_drift = lambda *a, **k: 0.0
    keras.Model.evaluate = lambda self, *a, **k: [0.0, 1.0]
    keras.Model.predict = lambda self, x, *a, **k: np.full((8, 4), 0.25, "float32")
    return {"loss": [3.0, 2.0, 1.0], "accuracy": [0.5, 0.9, 1.0], "val_loss": [3.0, 2.0, 1.0], "val_accuracy": [0.5, 0.9, 1.0]}
'''


def test_forged_training_does_not_get_the_training_check(tmp_path):
    source = REFERENCE.split("\ndef train_transfer(")[0] + HOSTILE
    only_training = dataclasses.replace(QUESTION, checks=tuple(c for c in QUESTION.checks if c.name == TRAINING))
    result = grade(tmp_path / "s", source, question=only_training)
    message = failed(result)[TRAINING]
    assert "left the head's weights exactly as the grader sent them" in message, message
