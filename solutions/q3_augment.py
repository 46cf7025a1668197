"""q3 — data augmentation against overfitting (reference solution).

The augmentation is a Sequential of random Keras preprocessing layers. Each layer
transforms its input only when called with `training=True` (what `fit` does); with
`training=False`, in `predict` and in `evaluate` it passes images through unchanged.
Putting it *in front of* the model inside one Sequential therefore augments the training
batches only: validation and test images are never transformed.

A Fashion-MNIST garment stays the same class when mirrored left-right, shifted by a couple of
pixels; it would not when flipped upside down, so no vertical flip.
"""

import keras
from keras import layers

BATCH_SIZE = 64
EPOCHS = 20


def build_augmentation():
    """Random, label-preserving transforms, active only in training."""
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal"),
            layers.RandomTranslation(0.08, 0.08, fill_mode="constant"),
        ],
        name="augmentation",
    )


def train_with_augmentation(model, augmentation, x_train, y_train, x_val, y_val):
    """Train `model` on augmented training batches (validation untouched); return History.history."""
    augmented = keras.Sequential([keras.Input(x_train.shape[1:]), augmentation, model], name="augmented_model")
    augmented.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=16,
    )
    history = augmented.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=EPOCHS,
        batch_size=BATCH_SIZE,
        verbose=0,
    )
    return history.history
