"""q7 — transfer learning on the Oxford 102 flowers with a frozen pretrained backbone.

Take a network pretrained on ImageNet from keras.applications (your choice: EfficientNetB0,
MobileNetV2, ResNet50, ConvNeXtTiny, ...), freeze it, and train a new head on the 8,189
flower images of 102 classes, split 50/25/25 into train/validation/test:

    image -> preprocess -> frozen backbone -> global average pooling
          -> Dense(256, relu) -> Dense(num_classes, softmax)

1. `preprocess(image, training)`: one HxWx3 image (uint8, any size and aspect ratio) ->
   resize so the *shorter* side is 256 (keep the aspect ratio), then a 224x224 crop:
   random (and optionally flipped) when `training`, the centre crop otherwise. Return
   float32 scaled as your backbone expects: keras.applications.<module>.preprocess_input
   does it (EfficientNet and ConvNeXt want [0, 255], MobileNetV2 [-1, 1], ResNet50 BGR
   minus the ImageNet mean). keras.ops.image.resize and slicing are all you need.
2. `split_indices(labels, seed=0)`: three integer index arrays (train, val, test) into
   `labels`, 50/25/25 *per class* (stratified), disjoint, together covering every image,
   the same for the same seed (use np.random.default_rng(seed)).
3. `build_transfer_model(num_classes=102, weights="imagenet")`: the backbone with
   include_top=False and weights=weights (pass the argument on: the grader and the tests
   use weights=None or a local file), frozen with `base.trainable = False` and called as
   `base(inputs, training=False)` so its BatchNormalization statistics never drift; then
   the head. Only the head trains: 256 x (F + 1) + 257 x num_classes parameters for F
   backbone features (F = 1280 for EfficientNetB0 and MobileNetV2, 2048 for ResNet50).
4. `train_transfer(model, train_ds, val_ds, epochs)`: compile (Adam(1e-3) and
   sparse_categorical_crossentropy work well), fit for `epochs` with validation_data=val_ds,
   return `history.history`.

Check your work with `grader check q7` (CPU, about a minute, generated images). On a GPU with the
data and ImageNet weights: `grader check q7 --tier full` (test accuracy >= 0.85 within 10
epochs) and `grader report q7 --tier full` for the report. See the README.
"""

import keras
import numpy as np
from keras import layers, ops


def preprocess(image, training):
    """Resize the shorter side to 256, crop 224x224 (random if training, centred if not), scale for the backbone."""
    raise NotImplementedError


def split_indices(labels, seed=0):
    """Return (train_idx, val_idx, test_idx): a stratified 50/25/25 split of range(len(labels))."""
    raise NotImplementedError


def build_transfer_model(num_classes=102, weights="imagenet"):
    """Return a keras.Model: frozen keras.applications backbone -> pooling -> Dense(256, relu) -> Dense(num_classes, softmax)."""
    raise NotImplementedError


def train_transfer(model, train_ds, val_ds, epochs):
    """Compile and fit `model` on `train_ds` for `epochs`, validating on `val_ds`; return History.history."""
    raise NotImplementedError
