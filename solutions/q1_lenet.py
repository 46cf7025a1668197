"""q1 — LeNet-5 for Fashion-MNIST (reference solution).

LeNet-5 (LeCun et al., 1998) as in the course notes, with ReLU and max pooling as modern
replacements for tanh and subsampling:

    input 28x28x1
    C1  conv 6@5x5, padding='same'  -> 28x28x6      156 parameters
    S2  max pool 2x2                -> 14x14x6
    C3  conv 16@5x5                 -> 10x10x16   2,416 parameters
    S4  max pool 2x2                -> 5x5x16
        flatten                     -> 400
    C5  dense 120                   -> 120       48,120 parameters
    F6  dense 84                    -> 84        10,164 parameters
    OUTPUT dense 10, softmax        -> 10           850 parameters
                                             total 61,706

The original network read 32x32 images; on 28x28 Fashion-MNIST, padding='same' in C1
(equivalently, zero-padding the input to 32x32) keeps every later shape as in the paper.
C5 is a 5x5 convolution over a 5x5 map, i.e. a fully connected layer on 400 features.
"""

import keras
from keras import layers


def build_lenet5(input_shape=(28, 28, 1), num_classes=10):
    """Return LeNet-5 as a Sequential model whose output is a softmax over `num_classes`."""
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(6, 5, padding="same", activation="relu", name="C1"),
            layers.MaxPooling2D(2, name="S2"),
            layers.Conv2D(16, 5, activation="relu", name="C3"),
            layers.MaxPooling2D(2, name="S4"),
            layers.Flatten(name="flatten"),
            layers.Dense(120, activation="relu", name="C5"),
            layers.Dense(84, activation="relu", name="F6"),
            layers.Dense(num_classes, activation="softmax", name="OUTPUT"),
        ],
        name="lenet5",
    )
