"""The tf.data input pipelines: batches of (preprocess(image, training), label) for some images."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from typing import Any

import numpy as np

from .data import FlowersData, Indices

IMAGE_SIZE = 224  # the side of the square crop every image is preprocessed to
RESIZE_TO = 256  # the shorter side the image is resized to before cropping


def make_dataset(
    data: FlowersData,
    indices: Indices,
    preprocess: Callable[[Any, bool], Any],
    *,
    training: bool,
    batch_size: int = 32,
    shuffle_seed: int | None = None,
    cache: bool = False,
) -> Any:
    """Batches of (preprocess(image, training), label) for the images `indices`.

    The student's `preprocess` is traced into the tf.data graph when it can be (TensorFlow
    ops); otherwise (Keras ops with static sizes, NumPy) it runs eagerly through
    `tf.py_function`, which is slower but accepts any code. `cache` keeps the preprocessed
    evaluation images in memory: their centre crop never changes.
    """
    import tensorflow as tf

    dataset = data.encoded_dataset(indices)
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(indices), seed=shuffle_seed, reshuffle_each_iteration=True)
    size = (IMAGE_SIZE, IMAGE_SIZE, 3)

    def eager(image: Any) -> Any:
        out = preprocess(image, training)
        if tf.is_tensor(out):
            return tf.cast(out, tf.float32)
        return tf.convert_to_tensor(np.asarray(out, dtype=np.float32))

    def in_graph(image: Any, label: Any) -> tuple[Any, Any]:
        return tf.ensure_shape(tf.cast(preprocess(image, training), tf.float32), size), label

    def through_python(image: Any, label: Any) -> tuple[Any, Any]:
        out = tf.py_function(eager, [image], tf.float32)
        return tf.ensure_shape(out, size), label

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            mapped = dataset.map(in_graph, num_parallel_calls=tf.data.AUTOTUNE)
    except Exception:  # noqa: BLE001 - not traceable: run it eagerly
        mapped = dataset.map(through_python)
    if cache:
        mapped = mapped.cache()
    return mapped.batch(batch_size).prefetch(tf.data.AUTOTUNE)
