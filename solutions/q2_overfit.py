"""q2 — train LeNet-5 on Fashion-MNIST until it overfits (reference solution).

Adam at its default learning rate (1e-3) on mini-batches of 64 fits LeNet-5's 61,706
parameters to a 10,000-image subset within a few epochs; from then on the training loss
keeps falling while the validation loss, after its minimum (near epoch 10-15 on the quick
tier), climbs again: the network memorises the training images. Training stops once the
validation loss has not improved for `PATIENCE` epochs, which leaves the overfitting in
plain sight, and the weights of the last (overfitted) epoch are kept on purpose. Ten epochs
past the minimum are not always enough: Adam's validation loss wanders by a few percent from
epoch to epoch, and some runs end only 2-8% above the minimum; fifteen end 16-36% above it
(6 runs on the quick tier, measured by the grader). `MAX_EPOCHS` only guards the time limit:
the minimum comes in epoch 11-15, now and then as late as 19, and a run capped at 30 epochs
then ends with too few epochs past it for the overfitting to show.

The data stay in memory as NumPy arrays; `steps_per_execution` runs several batches per
call into the backend, so a GPU is not held up by Python between steps.
"""

import keras

BATCH_SIZE = 64
MAX_EPOCHS = 40
PATIENCE = 15


def train_until_overfit(model, x_train, y_train, x_val, y_val):
    """Fit `model` with Adam until the validation loss has risen for PATIENCE epochs; return History.history."""
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=16,
    )
    stop_when_overfitting = keras.callbacks.EarlyStopping(monitor="val_loss", patience=PATIENCE)
    history = model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=MAX_EPOCHS,
        batch_size=BATCH_SIZE,
        callbacks=[stop_when_overfitting],
        verbose=0,
    )
    return history.history
