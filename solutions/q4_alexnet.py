"""q4 — AlexNet layer by layer (reference solution).

The course's AlexNet is torchvision's layout (not the 2012 paper's 96-filter network on
227x227 input). Output sizes follow O = floor((W - K + 2P) / S) + 1:

    input 224x224x3
    conv1 64@11x11, stride 4, pad 2   -> 55x55x64       23,296 parameters
    pool1 max 3x3, stride 2           -> 27x27x64
    conv2 192@5x5, pad 2              -> 27x27x192     307,392
    pool2 max 3x3, stride 2           -> 13x13x192
    conv3 384@3x3, pad 1              -> 13x13x384     663,936
    conv4 256@3x3, pad 1              -> 13x13x256     884,992
    conv5 256@3x3, pad 1              -> 13x13x256     590,080
    pool3 max 3x3, stride 2           -> 6x6x256
    flatten                           -> 9216
    dropout, fc6 dense 4096           -> 4096       37,752,832
    dropout, fc7 dense 4096           -> 4096       16,781,312
    fc8 dense 1000 (logits)           -> 1000        4,097,000
                                               total 61,100,840

Padding 2 on a 224 input gives (224 - 11 + 4) / 4 + 1 = 55.25, floored to 55, exactly as
PyTorch does; Keras's padding='same' would give 56, hence the explicit ZeroPadding2D.
"""

import numpy as np

import keras
from keras import layers


def build_alexnet(input_shape=(224, 224, 3), num_classes=1000, dropout=0.5):
    """Return AlexNet (torchvision layout); the output is raw class scores (logits)."""
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.ZeroPadding2D(2, name="pad1"),
            layers.Conv2D(64, 11, strides=4, activation="relu", name="conv1"),
            layers.MaxPooling2D(3, strides=2, name="pool1"),
            layers.ZeroPadding2D(2, name="pad2"),
            layers.Conv2D(192, 5, activation="relu", name="conv2"),
            layers.MaxPooling2D(3, strides=2, name="pool2"),
            layers.Conv2D(384, 3, padding="same", activation="relu", name="conv3"),
            layers.Conv2D(256, 3, padding="same", activation="relu", name="conv4"),
            layers.Conv2D(256, 3, padding="same", activation="relu", name="conv5"),
            layers.MaxPooling2D(3, strides=2, name="pool3"),
            layers.Flatten(name="flatten"),
            layers.Dropout(dropout, name="dropout6"),
            layers.Dense(4096, activation="relu", name="fc6"),
            layers.Dropout(dropout, name="dropout7"),
            layers.Dense(4096, activation="relu", name="fc7"),
            layers.Dense(num_classes, name="fc8"),
        ],
        name="alexnet",
    )


def layer_output_shapes(model, input_shape=(224, 224, 3)):
    """Pass one random sample through `model` layer by layer; print and return each output shape."""
    x = np.random.default_rng(0).random((1, *input_shape), dtype=np.float32)
    shapes = []
    for layer in model.layers:
        x = layer(x)
        shape = tuple(int(d) for d in x.shape)
        print(f"{layer.name:<10} {shape}")
        shapes.append((layer.name, shape))
    return shapes
