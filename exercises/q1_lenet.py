"""q1 — LeNet-5 for Fashion-MNIST.

Course exercise 1a: implement the LeNet-5 architecture (LeCun et al., 1998) as a Keras
model. You may replace tanh with a modern activation such as ReLU and subsampling with
max pooling.

    C1  convolution, 6 filters of 5x5      -> 28x28x6
    S2  pooling 2x2                        -> 14x14x6
    C3  convolution, 16 filters of 5x5     -> 10x10x16
    S4  pooling 2x2                        -> 5x5x16
        flatten                            -> 400
    C5  dense 120  (or a 5x5 conv with 120 filters, giving 1x1x120)
    F6  dense 84
    OUTPUT  dense num_classes (softmax, or raw scores)

LeNet-5 was designed for 32x32 images; Fashion-MNIST images are 28x28, so C1 needs
padding='same' (or pad the input to 32x32 first) to keep the shapes above. The model
then has (5*5+1)*6 + (6*5*5+1)*16 + (5*5*16+1)*120 + (120+1)*84 + (84+1)*10 = 61,706
parameters.

Check your work with `grader check q1`.
"""

import keras
from keras import layers


def build_lenet5(input_shape=(28, 28, 1), num_classes=10):
    """Return LeNet-5 as a keras.Model for images of `input_shape` and `num_classes` classes."""
    raise NotImplementedError
