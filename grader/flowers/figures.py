"""The figures of the transfer-learning report, as PNG bytes: sample images, preprocessing, per-epoch curves."""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .data import FlowersData


def _png(figure: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def samples_figure(data: FlowersData, parts: Sequence[np.ndarray], per_row: int = 10) -> bytes:
    """One training image per class (every class, up to 102), titled with the class name."""
    plt = _pyplot()
    train = np.asarray(parts[0])
    classes = list(range(data.num_classes))
    rows = (len(classes) + per_row - 1) // per_row
    cols = min(per_row, len(classes))
    figure, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.75 * rows), squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    for axis, c in zip(axes.ravel(), classes):
        members = train[data.labels[train] == c]
        if members.size:
            axis.imshow(data.image(int(members[0])))
        axis.set_title(f"{c}: {data.class_names[c]}"[:22], fontsize=7)
    return _png(figure)


def _viewable(image: Any) -> np.ndarray:
    import keras

    array = np.asarray(keras.ops.convert_to_numpy(image), dtype=np.float64)
    low, high = array.min(), array.max()
    return (array - low) / (high - low) if high > low else np.zeros_like(array)


def preprocessing_figure(data: FlowersData, index: int, preprocess: Callable[[Any, bool], Any]) -> bytes:
    """An original image, its evaluation crop and three training crops (min-max scaled for display)."""
    plt = _pyplot()
    original = data.image(index)
    size = "x".join(str(d) for d in original.shape[:2])
    panels = [(f"original {size}", original / 255.0), ("evaluation (centre)", _viewable(preprocess(original, False)))]
    panels += [(f"training crop {i + 1}", _viewable(preprocess(original, True))) for i in range(3)]
    figure, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.8))
    for axis, (title, image) in zip(axes, panels):
        axis.imshow(np.clip(image, 0, 1))
        axis.set_title(title, fontsize=9)
        axis.axis("off")
    return _png(figure)


def curves_figure(curves: Mapping[str, Sequence[float]]) -> bytes:
    plt = _pyplot()
    epochs = np.arange(1, len(curves.get("test_accuracy", [])) + 1)
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for split, style in (("train", "-o"), ("val", "-s"), ("test", "-^")):
        label = {"val": "validation"}.get(split, split)
        left.plot(epochs, curves.get(f"{split}_accuracy", []), style, label=label)
        right.plot(epochs, curves.get(f"{split}_loss", []), style, label=label)
    for axis, name in ((left, "accuracy"), (right, "loss (cross-entropy)")):
        axis.set_xlabel("epoch")
        axis.set_ylabel(name)
        axis.grid(alpha=0.3)
        axis.legend()
        if len(epochs):
            axis.set_xticks(epochs)
    left.set_ylim(0, 1.02)
    return _png(figure)
