"""How a trained model generalizes: the epoch where overfitting starts, and accuracies measured by the grader."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ..checks import Context
from .evaluation import evaluate
from .run import TrainingRun


def best_epoch(history: Mapping[str, Sequence[float]]) -> int:
    """The 1-based epoch with the lowest validation loss: where overfitting starts."""
    return int(np.argmin(history["val_loss"])) + 1


@dataclasses.dataclass(frozen=True)
class Generalization:
    """Accuracy measured by the grader on training, validation and test images, and the gap."""

    train_accuracy: float
    val_accuracy: float
    test_accuracy: float

    @property
    def gap(self) -> float:
        return self.train_accuracy - self.val_accuracy


def measure_generalization(run: TrainingRun) -> Generalization:
    """The trained model's accuracy on the run's training, validation and test images."""
    split = run.split
    return Generalization(
        train_accuracy=evaluate(run.model, split.x_train, split.y_train).accuracy,
        val_accuracy=evaluate(run.model, split.x_val, split.y_val).accuracy,
        test_accuracy=evaluate(run.model, split.x_test, split.y_test).accuracy,
    )


def measured_generalization(ctx: Context, run: Callable[[], TrainingRun]) -> Generalization:
    """`measure_generalization` of the question's training run (`run()`), once per grading, recorded in meta."""

    def compute() -> Generalization:
        figures = measure_generalization(run())
        ctx.meta.update(
            train_accuracy=round(figures.train_accuracy, 4),
            val_accuracy=round(figures.val_accuracy, 4),
            test_accuracy=round(figures.test_accuracy, 4),
            accuracy_gap=round(figures.gap, 4),
        )
        return figures

    return ctx.cached(f"{ctx.question.id}-generalization", compute)
