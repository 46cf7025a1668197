"""q7 — transfer learning on the Oxford 102 flowers (reference solution).

Backbone: EfficientNetB0 from keras.applications, frozen, then global average pooling,
Dense(256, relu) and Dense(num_classes, softmax). Why this one: it must serve both tiers.
Its ImageNet top-1 (77%) is above ResNet-50's and MobileNetV2's, so its frozen features
should pass the full tier's 0.85 on the flowers' 50/25/25 split within 10 epochs (the
model answer's ResNet-152 and ConvNeXt-Large reached 90% and 94.6%, at about 10 and 40
times its compute), while with weights=None it builds in about two seconds and runs a
224x224 image in about 0.1 s on a CPU, which keeps the quick tier and the tests cheap. Its 4.0 million backbone parameters give F = 1280 features, so the head
has 256 x 1281 + 257 x 102 = 354,150 trainable parameters.

Keras's EfficientNet normalizes inside the model (Rescaling and Normalization layers), so
`preprocess` hands it float32 pixels in [0, 255]: that is what
keras.applications.efficientnet.preprocess_input (an identity) asks for.
"""

import keras
import numpy as np
from keras import layers, ops

IMAGE_SIZE = 224
RESIZE_TO = 256
_SEEDS = keras.random.SeedGenerator(1234)


def preprocess(image, training):
    """Resize the shorter side to 256, crop 224x224 (random and flipped when training, centred otherwise).

    Returns float32 pixels in [0, 255], as keras.applications.efficientnet expects.
    """
    image = ops.cast(ops.convert_to_tensor(image), "float32")
    height, width = int(image.shape[0]), int(image.shape[1])
    scale = RESIZE_TO / min(height, width)
    new_height = max(RESIZE_TO, round(height * scale))
    new_width = max(RESIZE_TO, round(width * scale))
    image = ops.image.resize(image, (new_height, new_width), interpolation="bilinear", antialias=True)
    if training:
        top = int(keras.random.randint((), 0, new_height - IMAGE_SIZE + 1, seed=_SEEDS))
        left = int(keras.random.randint((), 0, new_width - IMAGE_SIZE + 1, seed=_SEEDS))
    else:
        top, left = (new_height - IMAGE_SIZE) // 2, (new_width - IMAGE_SIZE) // 2
    image = image[top : top + IMAGE_SIZE, left : left + IMAGE_SIZE, :]
    if training and float(keras.random.uniform((), seed=_SEEDS)) < 0.5:
        image = ops.flip(image, axis=1)
    return keras.applications.efficientnet.preprocess_input(ops.clip(image, 0.0, 255.0))


def split_indices(labels, seed=0):
    """A stratified 50/25/25 split: each class's images are shuffled once and cut into three pieces."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts = ([], [], [])
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_train = int(round(0.5 * len(members)))
        n_val = int(round(0.25 * len(members)))
        parts[0].append(members[:n_train])
        parts[1].append(members[n_train : n_train + n_val])
        parts[2].append(members[n_train + n_val :])
    return tuple(np.sort(np.concatenate(part)).astype("int64") for part in parts)


def build_transfer_model(num_classes=102, weights="imagenet"):
    """EfficientNetB0 (frozen, run in inference mode) -> global average pooling -> Dense(256, relu) -> Dense(num_classes, softmax)."""
    backbone = keras.applications.EfficientNetB0(include_top=False, weights=weights, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3))
    backbone.trainable = False
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    features = backbone(inputs, training=False)
    x = layers.GlobalAveragePooling2D(name="pool")(features)
    x = layers.Dense(256, activation="relu", name="hidden")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="classes")(x)
    return keras.Model(inputs, outputs, name="flowers_efficientnetb0")


def train_transfer(model, train_ds, val_ds, epochs):
    """Train the head with Adam (learning rate 1e-3) on sparse labels; return History.history."""
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = model.fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=0)
    return history.history
