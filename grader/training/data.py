"""The Fashion-MNIST data of the training questions: a seeded train/validation split and the official test images."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from .tiers import Tier

DATA_SEED = 20240917
IMAGE_SHAPE = (28, 28, 1)


@dataclasses.dataclass(frozen=True)
class Split:
    """Float32 images in [0, 1] of shape (N, 28, 28, 1) and integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@functools.lru_cache(maxsize=4)
def load_split(train_size: int, val_size: int, test_size: int = 10_000) -> Split:
    """A seeded train/validation split of Fashion-MNIST's training images, and the official test images."""
    from ..datasets import load_fashion_mnist

    (x, y), (x_test, y_test) = load_fashion_mnist()
    if train_size + val_size > len(x):
        raise ValueError(f"{train_size} + {val_size} images asked for, the training set has {len(x)}")
    order = np.random.default_rng(DATA_SEED).permutation(len(x))
    train, val = order[:train_size], order[train_size : train_size + val_size]

    def scale(images: np.ndarray) -> np.ndarray:
        array = images[..., None].astype(np.float32) / 255.0
        array.setflags(write=False)  # the grader's copy; students get writable copies
        return array

    def labels(values: np.ndarray) -> np.ndarray:
        array = values.astype(np.int64)
        array.setflags(write=False)
        return array

    return Split(
        scale(x[train]),
        labels(y[train]),
        scale(x[val]),
        labels(y[val]),
        scale(x_test[:test_size]),
        labels(y_test[:test_size]),
    )


def split_for(tier: Tier) -> Split:
    """The data of `tier`."""
    return load_split(tier.train_size, tier.val_size, tier.test_size)
