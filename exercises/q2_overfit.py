"""q2 — train LeNet-5 on Fashion-MNIST until it overfits.

Course exercise 1b: train your LeNet-5 on Fashion-MNIST and keep training until the
network clearly overfits: the training loss keeps falling while the validation loss,
after reaching its minimum, climbs again, and the training accuracy pulls away from the
validation accuracy.

The grader calls `train_until_overfit` with a fresh LeNet-5 (yours from q1 when it passes
q1, otherwise the reference's) and the data already prepared: float32 images in [0, 1]
of shape (N, 28, 28, 1) and integer labels 0-9. The model's last layer decides the loss:
the reference LeNet-5 ends in a softmax (probabilities), so use
keras.losses.SparseCategoricalCrossentropy(from_logits=False) (what the string
"sparse_categorical_crossentropy" gives); if your q1 model ends with raw scores (no
activation), use from_logits=True. Look at model.layers[-1].activation if unsure.
On the quick tier (the default, 10,000
training and 5,000 validation images) Adam with its default learning rate 1e-3 and
batches of 64 reaches the lowest validation loss near epoch 10-17; keep going well past
it (for instance 30 epochs, or keras.callbacks.EarlyStopping(monitor="val_loss",
patience=15)). Training must finish within the time limit (quick tier: 5 minutes).

What is graded (`grader check q2`):
- the returned dict is the history that model.fit recorded, and its last epoch matches
  the grader's own evaluation of the model (do not edit it);
- the validation loss is lowest at least 3 epochs before the end, and over the last 3
  epochs it sits at least 5% above that minimum while the training loss did not rise with
  it (medians of 3 epochs: one noisy epoch does not decide); the training-validation
  accuracy gap is at least 0.03;
- the trained model reaches 0.82 accuracy on the 10,000 test images (never shown to you).
The grader writes the learning curves to plots/q2_learning_curves.png.
"""

import keras


def train_until_overfit(model, x_train, y_train, x_val, y_val):
    """Compile and fit `model` until it clearly overfits; return the History.history dict.

    The dict must hold 'loss', 'accuracy', 'val_loss' and 'val_accuracy', one value per
    epoch: compile with metrics=["accuracy"] and pass validation_data=(x_val, y_val).
    """
    raise NotImplementedError
