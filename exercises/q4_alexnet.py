"""q4 — AlexNet layer by layer.

Course exercise 2: pass a random sample of the expected size (a 224x224 colour image)
through AlexNet, printing the shape of the tensor after every layer.

Build the course's AlexNet (torchvision's layout) in Keras, channels last:

    conv 64@11x11, stride 4, padding 2   -> 55x55x64
    max pool 3x3, stride 2               -> 27x27x64
    conv 192@5x5, padding 2              -> 27x27x192
    max pool 3x3, stride 2               -> 13x13x192
    conv 384@3x3, padding 1              -> 13x13x384
    conv 256@3x3, padding 1              -> 13x13x256
    conv 256@3x3, padding 1              -> 13x13x256
    max pool 3x3, stride 2               -> 6x6x256
    flatten                              -> 9216
    dropout, dense 4096, ReLU
    dropout, dense 4096, ReLU
    dense num_classes (raw class scores)

Every convolution is followed by ReLU. The model has 61,100,840 parameters. Keras has no
`padding=2`: use keras.layers.ZeroPadding2D, and remember O = floor((W - K + 2P) / S) + 1.

Check your work with `grader check q4`.
"""

import numpy as np

import keras
from keras import layers


def build_alexnet(input_shape=(224, 224, 3), num_classes=1000, dropout=0.5):
    """Return AlexNet as a keras.Sequential; `dropout` is the rate of both Dropout layers."""
    raise NotImplementedError


def layer_output_shapes(model, input_shape=(224, 224, 3)):
    """Pass one random sample (batch of 1) through `model` layer by layer.

    Print each layer's name and output shape, and return a list of
    (layer_name, shape) pairs with the batch dimension, e.g. ("conv2d", (1, 55, 55, 64)).
    Must work for any Sequential model (hint: iterate over model.layers).
    """
    raise NotImplementedError
