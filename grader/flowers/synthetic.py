"""Generated "flowers": a tiny image folder of easily told apart classes, for the quick tier and the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import FlowersData, load_folder

SYNTHETIC_NAMES = (
    "sun-disc",
    "blue-ring",
    "red-stripes",
    "green-cross",
    "violet-dots",
    "orange-grid",
    "teal-star",
    "pink-wave",
)
QUICK_CLASSES = 4  # the quick tier's generated folder: 4 classes of 8 images
QUICK_PER_CLASS = 8


def make_synthetic_flowers(
    folder: Path, *, num_classes: int = QUICK_CLASSES, per_class: int = QUICK_PER_CLASS, seed: int = 0
) -> Path:
    """Write a tiny image folder (one sub-folder per class) of easily told apart "flowers".

    Each class has its own colours and pattern; sizes and aspect ratios vary (40 to 96
    pixels a side), so the shorter-side resize and the crops are exercised.
    """
    import keras

    rng = np.random.default_rng(seed)
    folder = Path(folder)
    for c in range(num_classes):
        name = SYNTHETIC_NAMES[c] if c < len(SYNTHETIC_NAMES) else f"class-{c}"
        target = folder / f"{c:02d}-{name}"
        target.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = synthetic_image(c, num_classes, rng)
            keras.utils.save_img(str(target / f"{i:03d}.png"), pixels, scale=False)
    return folder


def synthetic_image(c: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """One uint8 image of generated class `c` (of `num_classes`): its colours and stripes, noise, 40-96 px a side."""
    hue = np.array([np.cos(2 * np.pi * (c / num_classes + shift)) for shift in (0, 1 / 3, 2 / 3)])
    colour = 127.5 + 110 * hue
    h, w = (int(v) for v in rng.integers(40, 97, size=2))
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    pattern = 0.5 + 0.5 * np.sin(2 * np.pi * (c + 1) * (xx if c % 2 else yy) * 2)
    image = colour[None, None, :] * (0.6 + 0.4 * pattern[..., None])
    image += rng.normal(0, 12, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def marker_images(count: int, seed: int) -> list[bytes]:
    """`count` PNG-encoded images of one generated look no quick-tier class has (the leak check's marker class)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    return [
        bytes(tf.io.encode_png(synthetic_image(QUICK_CLASSES, QUICK_CLASSES + 1, rng)).numpy()) for _ in range(count)
    ]


def synthetic_flowers(
    folder: Path, *, num_classes: int = QUICK_CLASSES, per_class: int = QUICK_PER_CLASS
) -> FlowersData:
    """Generate (once) and load a generated image folder."""
    folder = Path(folder)
    if not any(folder.glob("*/*.png")):
        make_synthetic_flowers(folder, num_classes=num_classes, per_class=per_class)
    return load_folder(folder, kind="synthetic")
