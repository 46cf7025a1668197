"""q5 — how many parameters does AlexNet have? (reference solution)

A convolution with a kh x kw kernel from C_in to C_out channels has kh*kw*C_in*C_out
weights plus C_out biases; a dense layer from N_in to N_out has N_in*N_out weights plus
N_out biases. For the course's AlexNet (see q4):

    conv1  11*11*3*64    +   64 =     23,296
    conv2   5*5*64*192   +  192 =    307,392
    conv3   3*3*192*384  +  384 =    663,936
    conv4   3*3*384*256  +  256 =    884,992
    conv5   3*3*256*256  +  256 =    590,080
    fc6     9216*4096    + 4096 = 37,752,832
    fc7     4096*4096    + 4096 = 16,781,312
    fc8     4096*1000    + 1000 =  4,097,000
                          total   61,100,840

The course notes' total of 61,910,632 is for the 2012 paper's 96-filter network and
contains an addition slip; that network really has 62,378,344 parameters.
"""

import math


def conv2d_params(in_channels, out_channels, kernel_size, use_bias=True):
    """Weights and biases of a 2-D convolution; `kernel_size` is an int or (kh, kw)."""
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    return kh * kw * in_channels * out_channels + (out_channels if use_bias else 0)


def dense_params(in_features, out_features, use_bias=True):
    """Weights and biases of a fully connected layer."""
    return in_features * out_features + (out_features if use_bias else 0)


def _leaf_layers(layer):
    """Every layer that holds its own weights, descending into nested models."""
    children = getattr(layer, "layers", None)
    if children is None:
        yield layer
        return
    for child in children:
        yield from _leaf_layers(child)


def count_parameters(model):
    """Sum the sizes of all weight tensors (trainable or not) of every layer of `model`."""
    return sum(math.prod(weight.shape) for layer in _leaf_layers(model) for weight in layer.weights)
