"""q6 — why does AlexNet use Dropout only in its classifier? (reference solution)"""

import keras


def classifier_parameter_fraction(model):
    """Share of the model's parameters that sit in Dense layers (0.9596 for AlexNet)."""

    def weights_in(layer, dense_only):
        if isinstance(layer, keras.Model):
            return sum(weights_in(child, dense_only) for child in layer.layers)
        if dense_only and not isinstance(layer, keras.layers.Dense):
            return 0
        return sum(int(keras.ops.size(w)) for w in layer.weights)

    return weights_in(model, dense_only=True) / weights_in(model, dense_only=False)


ANSWER = """\
About 96% of AlexNet's 61.1 million parameters sit in its three fully connected layers
(fc6 alone has 37.8 million), against 2.5 million in all five convolutions. Overfitting
grows with the number of free parameters, so that is where regularisation pays: dropout
keeps the huge dense layers from co-adapting and memorising the training set. The
convolutional layers share a few weights across every position of the image, so they
have far fewer parameters and overfit much less; dropping out their activations would
mostly add noise to spatially correlated feature maps and slow training while barely
regularising. (Later networks replaced the big dense head with global average pooling
and stopped needing dropout at all.)
"""
