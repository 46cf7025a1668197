"""q5 — how many parameters does AlexNet have?

Course exercise 3. Work out the kernel size of every layer from its input and output
channels, and remember that every output channel of a convolution has a bias too; in a
dense layer every output neuron is connected to every input neuron, and each connection
is a parameter.

1. `conv2d_params`: the parameters of a Conv2D layer (kernel_size is an int or (kh, kw)).
2. `dense_params`: the parameters of a Dense layer.
3. `count_parameters`: do it automatically by walking over all layers of a model and
   adding up the sizes of their weights, without calling Keras's `count_params()`.
   It must agree with Keras on any model: BatchNormalization (its moving statistics
   count), layers with use_bias=False, models nested in models.

Check your work with `grader check q5`; AlexNet (q4) should come to 61,100,840.
"""

import keras


def conv2d_params(in_channels, out_channels, kernel_size, use_bias=True):
    """Return the number of parameters of a 2-D convolution layer."""
    raise NotImplementedError


def dense_params(in_features, out_features, use_bias=True):
    """Return the number of parameters of a fully connected layer."""
    raise NotImplementedError


def count_parameters(model):
    """Return the number of parameters of `model`, added up layer by layer."""
    raise NotImplementedError
