"""Shared machinery of the questions that train a network on Fashion-MNIST (LeNet-5 until it overfits, augmentation).

A training question calls the student's function on real data while `watch.watched_training`
is active: every `keras.Model.fit` started inside it is stopped at the tier's time limit or
on a NaN loss, and the weights of the model the grader sent are snapshot after every epoch.
Nothing computed in the student's process is believed: the grader starts each run from
secret random weights with secretly permuted class ids (`trajectory.RunSecret`), checks
that the snapshots form one training run from those weights to the model that came back,
measures every epoch itself, times the run on its own clock, and checks the returned
history against its own figures.

    tiers          how much data and time a tier gives, on which device; the sandbox limits that follow
    data           the seeded Fashion-MNIST split
    watch          the watched `fit` and its weight snapshots (runs beside the student's code)
    evaluation     the grader's own loss/accuracy (as Keras computes them, inference mode) for any weights
    trajectory     per-run secrets, the weight snapshots and their checks, the per-epoch curves the grader measures
    run            calling the student's training function beside their code, and refusing bad outcomes
    verification   does every epoch of the returned history match the grader's measurement of it?
    generalization accuracies on train/validation/test, and the epoch where overfitting starts
    thresholds     `Bound`: a threshold beside the reference's measured figure
    lenet          the fresh LeNet-5 a question trains (the student's own when it passes)
    plots          learning curves and augmentation grids as PNGs

This package never imports `grader.questions`: a question passes in what it needs.
"""

from __future__ import annotations

from .data import Split, load_split, split_for
from .evaluation import (
    Evaluation,
    Evaluator,
    evaluate,
    evaluator_for,
    predict_probabilities,
    weights_changed,
    weights_finite,
    weights_snapshot,
)
from .generalization import Generalization, best_epoch, measure_generalization, measured_generalization
from .lenet import train_fresh_lenet
from .plots import plot_augmentation_grid, plot_learning_curves, save_figure, write_learning_curves
from .run import MODEL_REPLACED, TrainingRun, ensure_model_came_back, run_student_training
from .thresholds import Bound
from .tiers import TIERS, Tier, describe_device, has_gpu, slow_tier_notice, tier_from_options, training_sandbox_limits
from .trajectory import MeasuredCurve, RunSecret, Trajectory, check_trajectory, measure_curve
from .verification import verify_history
from .watch import FitRecord, TrainingWatch, watched_training

__all__ = [
    "MODEL_REPLACED",
    "TIERS",
    "Bound",
    "Evaluation",
    "Evaluator",
    "MeasuredCurve",
    "RunSecret",
    "Trajectory",
    "FitRecord",
    "Generalization",
    "Split",
    "Tier",
    "TrainingRun",
    "TrainingWatch",
    "best_epoch",
    "check_trajectory",
    "describe_device",
    "ensure_model_came_back",
    "evaluate",
    "evaluator_for",
    "has_gpu",
    "load_split",
    "measure_curve",
    "measure_generalization",
    "measured_generalization",
    "plot_augmentation_grid",
    "plot_learning_curves",
    "predict_probabilities",
    "run_student_training",
    "save_figure",
    "slow_tier_notice",
    "split_for",
    "tier_from_options",
    "train_fresh_lenet",
    "training_sandbox_limits",
    "verify_history",
    "watched_training",
    "weights_changed",
    "weights_finite",
    "weights_snapshot",
    "write_learning_curves",
]
