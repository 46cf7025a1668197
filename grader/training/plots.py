"""PNG figures of the training questions: learning curves and an augmentation grid (matplotlib, Agg).

`save_figure` writes one into the run's plots folder (`GradingOptions.plots`; None: no PNGs)
and lists it in the result's meta. A figure never costs points: a failure is only recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..checks import Context
from .generalization import best_epoch
from .run import TrainingRun


def save_figure(ctx: Context, name: str, draw: Callable[[Path], Path]) -> None:
    """`draw(path)` the PNG `name` into the plots folder (if plots are on) and list it in the result's meta."""
    folder = ctx.options.plots
    if folder is None:
        return
    try:
        path = draw(folder / f"{name}.png")
        ctx.meta.setdefault("plots", []).append(str(path))
    except Exception as error:  # noqa: BLE001 - a figure must never cost points
        ctx.meta["plot_error"] = f"{type(error).__name__}: {error}"


def write_learning_curves(ctx: Context, run: TrainingRun, name: str, title: str) -> None:
    """Write the run's learning curves as the grader measured them (PNG `name`, if plots are on), listed in meta."""
    save_figure(ctx, name, lambda path: plot_learning_curves(run.curve.as_history(), path, title=title, measured=True))


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(
    history: Mapping[str, Sequence[float]],
    path: Path,
    *,
    title: str,
    mark_overfitting: bool = True,
    measured: bool = False,
) -> Path:
    """Train vs validation loss and accuracy per epoch; the epoch of lowest validation loss is marked.

    `measured`: the figures are the grader's (training images in inference mode), labelled so.
    """
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = np.arange(1, len(history["loss"]) + 1)
    best = best_epoch(history)
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=100)
    for axis, key, label in ((loss_axis, "loss", "loss"), (accuracy_axis, "accuracy", "accuracy")):
        training = f"training {label} (grader, inference mode)" if measured else f"training {label}"
        axis.plot(epochs, history[key], "o-", markersize=3, label=training)
        axis.plot(epochs, history[f"val_{key}"], "o-", markersize=3, label=f"validation {label}")
        if mark_overfitting:
            axis.axvline(best, color="grey", linestyle="--", linewidth=1)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    if mark_overfitting:
        lowest = f"lowest validation loss (epoch {best})"
        loss_axis.plot([best], [history["val_loss"][best - 1]], "r*", markersize=12, label=lowest)
        if best < len(epochs):
            loss_axis.axvspan(best, epochs[-1], color="red", alpha=0.06, label="overfitting")
    loss_axis.legend(fontsize=8)
    accuracy_axis.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_augmentation_grid(
    augmentation: Any, image: np.ndarray, path: Path, *, draws: int = 11, title: str = ""
) -> Path:
    """One image, then `draws` random draws of `augmentation` in training mode."""
    plt = _pyplot()
    batch = np.repeat(image[None].astype(np.float32), draws, axis=0)
    augmented = np.asarray(augmentation(batch, training=True))
    columns = 6
    rows = int(np.ceil((draws + 1) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.7 * rows), dpi=100)
    axes = np.atleast_1d(axes).ravel()
    panels = [(image, "original")] + [(augmented[i], f"draw {i + 1}") for i in range(draws)]
    for axis, (picture, label) in zip(axes, panels):
        axis.imshow(np.squeeze(picture), cmap="gray", vmin=0.0, vmax=1.0)
        axis.set_title(label, fontsize=8)
    for axis in axes:
        axis.axis("off")
    figure.suptitle(title or "one training image under random draws of the augmentation", fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
