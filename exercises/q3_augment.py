"""q3 — data augmentation against overfitting.

Course exercise 1c: add data-augmentation transforms to the training of q2 and train
again. Did the network still overfit?

1. `build_augmentation()` returns a keras.Sequential of at least two random,
   label-preserving Keras preprocessing layers: RandomFlip("horizontal"),
   RandomTranslation, RandomZoom, RandomRotation, RandomContrast... A garment mirrored
   left-right or shifted by a few pixels is still the same garment; one turned upside
   down is not, so no vertical flip. The images must keep their shape (28, 28, 1), dtype
   (float32) and range [0, 1].
2. `train_with_augmentation(...)` trains the model with the augmentation in the training
   path only. Random preprocessing layers transform their input only when called with
   training=True, which is what fit does; with training=False, in predict and in
   evaluate they are the identity. Validation and test images must never be augmented:
   pass validation_data=(x_val, y_val) unchanged. The simplest way is
   `keras.Sequential([augmentation, model])`, compiled and fitted like in q2.
   Beware: calling a model as `model(x)` without training=False keeps augmentation on.
   The model you are handed is a fresh LeNet-5 (yours from q1 when it passes q1,
   otherwise the reference's, which ends in a softmax and outputs probabilities):
   compile with SparseCategoricalCrossentropy(from_logits=False) (the string
   "sparse_categorical_crossentropy") for softmax outputs, from_logits=True if your q1
   model ends with raw scores (no activation on its last layer).

What is graded (`grader check q3`): the transforms above; that the augmentation really
ran on the training batches and never on the validation data; that the training-
validation accuracy gap ends clearly smaller than without augmentation (quick tier: at
most 0.04, where the q2 reference ends near 0.06); and 0.83 test accuracy. The reference
trains for 20 epochs with Adam 1e-3 and batches of 64. The grader writes
plots/q3_learning_curves.png and plots/q3_augmentation_grid.png.
"""

import keras
from keras import layers


def build_augmentation():
    """Return a keras.Sequential of random, label-preserving preprocessing layers."""
    raise NotImplementedError


def train_with_augmentation(model, augmentation, x_train, y_train, x_val, y_val):
    """Train `model` with `augmentation` applied to the training batches only; return History.history."""
    raise NotImplementedError
