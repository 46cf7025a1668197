"""q7: the reference passes, every classic mistake fails with its own message, the data loaders work offline."""

from __future__ import annotations

import tarfile
import time

import keras
import numpy as np
import pytest
from conftest import REPO, failed, grade_source
from keras import layers

from grader.checks import CheckFailed, Context, UserFacingError, resolve_grader_function
from grader.flowers.backbones import batch_norm_layers
from grader.flowers.data import DataUnavailable, load_flowers
from grader.flowers.experiment import NAMES, QUICK_EPOCHS
from grader.flowers.pipeline import make_dataset
from grader.flowers.report import ReportError
from grader.flowers.synthetic import make_synthetic_flowers
from grader.grading import grade_folder, reference_namespace
from grader.options import GradingOptions, Limits
from grader.questions import get_question, q7_beside, q7_model
from grader.questions import q7_flowers as q7

QUESTION = get_question("q7")
REFERENCE = reference_namespace(QUESTION)


def run(check, **objects):
    """Run one check function on the objects given (the reference fills in the rest): (passed, message)."""
    namespace = {name: REFERENCE[name] for name in NAMES}
    namespace.update(objects)
    ctx = Context(QUESTION, namespace, REFERENCE, options=GradingOptions(tier="quick"))
    try:
        return True, check(ctx)
    except CheckFailed as failure:
        return False, str(failure)


def fails(check, **objects) -> str:
    passed, message = run(check, **objects)
    assert not passed, f"{check.__name__} passed unexpectedly: {message}"
    return message


# --- the reference and the stub ------------------------------------------------------------------------


def test_reference_passes_every_check_quick_tier_within_budget():
    started = time.process_time()  # CPU seconds of all threads: robust to other jobs sharing the machine
    result = grade_folder(QUESTION, REPO / "solutions")
    elapsed = time.process_time() - started
    assert failed(result) == {}
    assert result.score == result.max_score == 20
    meta = result.meta["q7"]
    assert meta["tier"] == "quick" and meta["weights"] == "None"
    assert meta["train_loss_after"] < meta["train_loss_before"]
    assert len(meta["curves"]["test_accuracy"]) == meta["epochs"] == QUICK_EPOCHS
    markers = meta["marker_probability"][: QUICK_EPOCHS + 1]  # the leak check's marker class: only ever falls
    assert all(later < earlier for earlier, later in zip(markers, markers[1:])), markers
    assert elapsed < 180, f"the quick tier took {elapsed:.0f} CPU seconds"


def test_stub_fails_every_check_with_not_implemented(tmp_path):
    result = grade_source(tmp_path, "q7", (REPO / "exercises" / "q7_flowers.py").read_text())
    assert result.score == 0
    messages = failed(result)
    assert len(messages) == len(QUESTION.checks)
    assert all("not implemented yet" in m for m in messages.values()), messages


# --- preprocess ------------------------------------------------------------------------------------------

reference_preprocess = REFERENCE["preprocess"]


def resize_shorter(image, side=256):
    h, w = image.shape[:2]
    s = side / min(h, w)
    return keras.ops.image.resize(np.asarray(image, "float32"), (max(side, round(h * s)), max(side, round(w * s))))


def test_random_evaluation_crop_fails():
    def preprocess(image, training):
        return reference_preprocess(image, True)  # random crop and flip, always

    assert "evaluation crop is random" in fails(q7.preprocess_eval_centre, preprocess=preprocess)


def test_top_left_evaluation_crop_fails_naming_the_offset():
    def preprocess(image, training):
        return resize_shorter(image)[:224, :224, :]

    message = fails(q7.preprocess_eval_centre, preprocess=preprocess)
    assert "starts at row 0, column 0" in message and "row 16, column 101" in message


def test_squashing_resize_fails_with_its_own_message():
    def preprocess(image, training):
        return keras.ops.image.resize(np.asarray(image, "float32"), (224, 224))

    assert "resized straight to 224x224" in fails(q7.preprocess_eval_centre, preprocess=preprocess)


def test_skipping_the_256_step_fails():
    def preprocess(image, training):
        image = resize_shorter(image, 224)
        top, left = (image.shape[0] - 224) // 2, (image.shape[1] - 224) // 2
        return image[top : top + 224, left : left + 224]

    assert "skipping the 256 step" in fails(q7.preprocess_eval_centre, preprocess=preprocess)


def test_wrong_output_size_fails():
    def preprocess(image, training):
        return resize_shorter(image)  # no crop

    assert "expected 224x224x3" in fails(q7.preprocess_shapes, preprocess=preprocess)


def test_float64_output_fails():
    def preprocess(image, training):
        return np.asarray(reference_preprocess(image, training), dtype=np.float64)

    assert "expected float32" in fails(q7.preprocess_shapes, preprocess=preprocess)


def test_deterministic_training_crop_fails():
    def preprocess(image, training):
        return reference_preprocess(image, False)

    assert "same output on 4 calls" in fails(q7.preprocess_train_random, preprocess=preprocess)


def test_dividing_by_255_for_efficientnet_fails():
    def preprocess(image, training):
        return reference_preprocess(image, training) / 255.0

    message = fails(q7.preprocess_value_range, preprocess=preprocess)
    assert "do not divide" in message and "efficientnet" in message


def test_value_range_follows_the_students_backbone():
    """MobileNetV2 wants [-1, 1]: the reference's [0, 255] fails for it, x / 127.5 - 1 passes."""

    def build_transfer_model(num_classes=102, weights="imagenet"):
        return mobilenet_model(keras.applications.MobileNetV2, num_classes, weights)

    assert "[-1, 1]" in fails(q7.preprocess_value_range, build_transfer_model=build_transfer_model)

    def preprocess(image, training):
        return reference_preprocess(image, training) / 127.5 - 1.0

    passed, message = run(q7.preprocess_value_range, preprocess=preprocess, build_transfer_model=build_transfer_model)
    assert passed, message


# --- split ------------------------------------------------------------------------------------------------

reference_split = REFERENCE["split_indices"]


def test_leaking_split_fails():
    def split_indices(labels, seed=0):
        train, val, test = reference_split(labels, seed)
        return train, val, np.concatenate([test, train[:5]])

    assert "the split leaks" in fails(q7.split_is_stratified, split_indices=split_indices)


def test_wrong_sizes_fail():
    def split_indices(labels, seed=0):
        rng = np.random.default_rng(seed)
        parts = [[], [], []]
        for c in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == c))
            a, b = int(0.6 * len(members)), int(0.8 * len(members))
            for part, piece in zip(parts, (members[:a], members[a:b], members[b:])):
                part.append(piece)
        return tuple(np.concatenate(p) for p in parts)

    message = fails(q7.split_is_stratified, split_indices=split_indices)
    assert "expected" in message and "Split each class separately" in message


def test_unstratified_split_fails():
    def split_indices(labels, seed=0):
        order = np.random.default_rng(seed).permutation(len(labels))
        n = len(labels)
        return order[: n // 2], order[n // 2 : 3 * n // 4], order[3 * n // 4 :]

    assert "stratify" in fails(q7.split_is_stratified, split_indices=split_indices)


def test_split_missing_images_fails():
    def split_indices(labels, seed=0):
        train, val, test = reference_split(labels, seed)
        return train, val, test[:-3]

    assert "are in no split" in fails(q7.split_is_stratified, split_indices=split_indices)


def test_unseeded_split_fails():
    def split_indices(labels, seed=0):
        return reference_split(labels, seed=int(np.random.randint(1_000_000)))

    assert "different splits" in fails(q7.split_is_reproducible, split_indices=split_indices)


def test_ignored_seed_fails():
    def split_indices(labels, seed=0):
        return reference_split(labels, seed=0)

    assert "seed argument is ignored" in fails(q7.split_is_reproducible, split_indices=split_indices)


def test_split_hard_coded_for_the_flowers_fails_on_other_labels():
    def split_indices(labels, seed=0):
        if len(np.unique(labels)) != 102:
            return np.arange(len(labels)), np.array([], int), np.array([], int)
        return reference_split(labels, seed)

    assert run(q7.split_is_stratified, split_indices=split_indices)[0]
    assert "Class" in fails(q7.split_other_labels, split_indices=split_indices)


# --- the model ----------------------------------------------------------------------------------------------


def mobilenet_model(
    constructor=keras.applications.MobileNetV3Small,
    num_classes=102,
    weights="imagenet",
    *,
    freeze=True,
    inference=True,
    units=256,
    output_activation="softmax",
    pool="gap",
    extra_dense=False,
    include_top=False,
    ignore_weights=False,
    norm_trainable=False,
):
    """A transfer model on a cheap backbone, with one knob per classic mistake."""
    kwargs = {"include_top": include_top, "weights": None if ignore_weights else weights, "input_shape": (224, 224, 3)}
    if not include_top and constructor is keras.applications.MobileNetV3Small:
        kwargs["include_preprocessing"] = True
    base = constructor(**kwargs)
    base.trainable = not freeze
    if norm_trainable:  # frozen weights, but BatchNormalization left in training mode
        for layer in batch_norm_layers(base):
            layer.trainable = True
            for variable in (layer.gamma, layer.beta):
                variable.trainable = False
    inputs = keras.Input((224, 224, 3))
    x = base(inputs, training=False) if inference else base(inputs)
    if pool == "gap":
        x = layers.GlobalAveragePooling2D()(x)
    elif pool == "flatten":
        x = layers.Flatten()(x)
    x = layers.Dense(units, activation="relu")(x)
    if extra_dense:
        x = layers.Dense(128, activation="relu")(x)
    outputs = layers.Dense(num_classes, activation=output_activation)(x)
    return keras.Model(inputs, outputs)


def builder(**knobs):
    def build_transfer_model(num_classes=102, weights="imagenet"):
        return mobilenet_model(num_classes=num_classes, weights=weights, **knobs)

    return build_transfer_model


MODEL_CHECKS = (
    q7_model.model_head,
    q7_model.backbone_frozen,
    q7_model.backbone_pretrained,
    q7_model.inference_mode,
    q7_model.num_classes_used,
)


def test_another_backbone_and_a_sequential_head_pass_every_model_check():
    def build_transfer_model(num_classes=102, weights="imagenet"):
        base = keras.applications.MobileNetV3Small(include_top=False, weights=weights, input_shape=(224, 224, 3))
        base.trainable = False
        return keras.Sequential(
            [
                keras.Input((224, 224, 3)),
                base,
                layers.GlobalAveragePooling2D(),
                layers.Dense(256),
                layers.ReLU(),
                layers.Dropout(0.2),
                layers.Dense(num_classes),
                layers.Softmax(),
            ]
        )

    for check in MODEL_CHECKS:
        passed, message = run(check, build_transfer_model=build_transfer_model)
        assert passed, f"{check.__name__}: {message}"
    assert "256 x (576 + 1) + 257 x 102" in run(q7_model.backbone_frozen, build_transfer_model=build_transfer_model)[1]


def test_unfrozen_backbone_fails_the_frozen_and_the_inference_mode_checks():
    build = builder(freeze=False, inference=False)
    assert "which should be frozen" in fails(q7_model.backbone_frozen, build_transfer_model=build)
    assert "moving mean" in fails(q7_model.inference_mode, build_transfer_model=build)
    assert run(q7_model.model_head, build_transfer_model=build)[0]


def test_batch_norm_in_training_mode_fails_only_the_inference_mode_check():
    build = builder(norm_trainable=True, inference=False)
    assert run(q7_model.backbone_frozen, build_transfer_model=build)[0]
    message = fails(q7_model.inference_mode, build_transfer_model=build)
    assert "training mode" in message and "training=False" in message


def test_wrong_head_fails_with_what_differs():
    assert "expected 256" in fails(q7_model.model_head, build_transfer_model=builder(units=128))
    assert "expected exactly two" in fails(q7_model.model_head, build_transfer_model=builder(extra_dense=True))
    assert "'softmax'" in fails(q7_model.model_head, build_transfer_model=builder(output_activation=None))
    assert "GlobalAveragePooling2D" in fails(q7_model.model_head, build_transfer_model=builder(pool="flatten"))
    assert "in the head" in fails(q7_model.backbone_frozen, build_transfer_model=builder(units=128))


def test_classifier_left_on_the_backbone_fails():
    def build_transfer_model(num_classes=102, weights="imagenet"):
        base = keras.applications.MobileNetV3Small(include_top=True, weights=weights, input_shape=(224, 224, 3))
        base.trainable = False
        inputs = keras.Input((224, 224, 3))
        x = layers.Dense(256, activation="relu")(base(inputs, training=False))
        return keras.Model(inputs, layers.Dense(num_classes, activation="softmax")(x))

    assert "include_top=False" in fails(q7_model.model_head, build_transfer_model=build_transfer_model)


def test_ignored_weights_argument_fails():
    message = fails(q7_model.backbone_pretrained, build_transfer_model=builder(ignore_weights=True))
    assert "did not load the backbone's weights" in message


def test_home_made_backbone_is_not_pretrained():
    def build_transfer_model(num_classes=102, weights="imagenet"):
        base = keras.Sequential(
            [
                keras.Input((224, 224, 3)),
                layers.Conv2D(8, 3, strides=4),
                layers.BatchNormalization(),
                layers.Conv2D(16, 3, strides=4),
            ],
            name="mynet",
        )
        base.trainable = False
        inputs = keras.Input((224, 224, 3))
        x = layers.GlobalAveragePooling2D()(base(inputs, training=False))
        x = layers.Dense(256, activation="relu")(x)
        return keras.Model(inputs, layers.Dense(num_classes, activation="softmax")(x))

    assert "not a keras.applications network" in fails(
        q7_model.backbone_pretrained, build_transfer_model=build_transfer_model
    )
    assert run(q7_model.backbone_frozen, build_transfer_model=build_transfer_model)[0]


def test_flat_model_without_a_nested_backbone_fails_clearly():
    def build_transfer_model(num_classes=102, weights="imagenet"):
        inputs = keras.Input((224, 224, 3))
        x = layers.GlobalAveragePooling2D()(layers.Conv2D(8, 3)(inputs))
        x = layers.Dense(256, activation="relu")(x)
        return keras.Model(inputs, layers.Dense(num_classes, activation="softmax")(x))

    assert "No backbone model was found" in fails(q7_model.model_head, build_transfer_model=build_transfer_model)


def test_hard_coded_class_count_fails_the_hidden_check():
    def build_transfer_model(num_classes=102, weights="imagenet"):
        return mobilenet_model(num_classes=102, weights=weights)

    assert "num_classes=5" in fails(q7_model.num_classes_used, build_transfer_model=build_transfer_model)


# --- training -------------------------------------------------------------------------------------------------


def test_training_that_unfreezes_the_backbone_fails():
    def train_transfer(model, train_ds, val_ds, epochs):
        for layer in model.layers:  # "fine-tune everything"
            layer.trainable = True
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        return model.fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=0).history

    message = fails(q7.training, build_transfer_model=builder(), train_transfer=train_transfer)
    assert "backbone's weights or BatchNormalization statistics changed" in message


def test_full_tier_offline_without_weights_names_the_options(tmp_path):
    make_synthetic_flowers(tmp_path, num_classes=2, per_class=4)

    def build_transfer_model(num_classes=102, weights="imagenet"):
        raise Exception(
            "URL fetch failure on https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5: None -- [Errno -3] Temporary failure in name resolution"
        )

    namespace = {name: REFERENCE[name] for name in NAMES} | {"build_transfer_model": build_transfer_model}
    ctx = Context(QUESTION, namespace, REFERENCE, options=GradingOptions(tier="full", data=str(tmp_path)))
    with pytest.raises(CheckFailed) as error:
        q7.training(ctx)
    message = str(error.value)
    assert "--weights PATH" in message and "--tier quick" in message and "KERAS_HOME" in message


# --- data --------------------------------------------------------------------------------------------------------


def test_tfds_mock_data_loads_all_splits_as_one_set(tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.setenv("CNN_GRADER_DATA", str(tmp_path))  # nothing in the data home: falls through to TFDS
    with tfds.testing.mock_data(num_examples=9):
        data = load_flowers()
    assert data.kind == "tfds" and len(data) == 9
    assert data.num_classes == 102 and data.class_names[0] == "pink primrose"
    assert data.labels.min() >= 0 and data.labels.max() < 102
    image = data.image(0)
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8


def test_original_archive_is_extracted_and_labelled(tmp_path):
    from scipy.io import savemat

    source = tmp_path / "source"
    (source / "jpg").mkdir(parents=True)
    labels = np.array([1, 1, 2, 3, 3, 3])
    for i in range(len(labels)):
        keras.utils.save_img(
            str(source / "jpg" / f"image_{i + 1:05d}.jpg"), np.full((20 + i, 30, 3), 40 * i, np.uint8), scale=False
        )
    home = tmp_path / "home"
    home.mkdir()
    with tarfile.open(home / "102flowers.tgz", "w:gz") as archive:
        archive.add(source / "jpg", arcname="jpg")
    savemat(home / "imagelabels.mat", {"labels": labels[None, :]})
    data = load_flowers(home)
    assert data.kind == "archive" and len(data) == 6
    assert data.labels.tolist() == [0, 0, 1, 2, 2, 2]
    assert data.image(5).shape == (25, 30, 3)


def test_image_folder_feeds_the_pipeline(tmp_path):
    make_synthetic_flowers(tmp_path, num_classes=3, per_class=2)
    data = load_flowers(tmp_path)
    assert data.kind == "folder" and len(data) == 6 and data.num_classes == 3
    assert np.bincount(data.labels).tolist() == [2, 2, 2]
    batch, labels = next(iter(make_dataset(data, np.arange(6), reference_preprocess, training=False, batch_size=4)))
    assert tuple(batch.shape) == (4, 224, 224, 3) and batch.dtype == "float32"
    assert labels.numpy().tolist() == data.labels[:4].tolist()


def test_no_data_anywhere_gives_one_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_GRADER_DATA", str(tmp_path))
    with pytest.raises(DataUnavailable) as error:
        load_flowers(tfds_data_dir=str(tmp_path / "tfds"))
    message = str(error.value)
    assert (
        "102flowers.tgz" in message and "images/<class name>" in message and "tfds build oxford_flowers102" in message
    )


# --- the question's declaration -------------------------------------------------------------------------------


def test_code_beside_the_student_is_reached_by_its_targets():
    for target in (q7_beside.PREPROCESS_TARGET, q7_beside.BUILD_TARGET, q7_beside.TRAIN_TARGET):
        assert resolve_grader_function(target).__name__ == target.rpartition(":")[2]


def test_full_tier_raises_the_sandbox_limits_and_quick_keeps_them():
    limits = Limits(wall_s=300, memory_mb=4096)
    assert QUESTION.limits_for(limits, GradingOptions(tier="quick")) == limits
    full = QUESTION.limits_for(limits, GradingOptions(tier="full"))
    assert full.wall_s == 3600 and full.memory_mb == 24_576 and full.threads == limits.threads
    assert QUESTION.limits_for(Limits(wall_s=9000), GradingOptions(tier="full")).wall_s == 9000  # never lowered


def test_errors_for_the_user_are_user_facing():
    assert issubclass(DataUnavailable, UserFacingError) and issubclass(ReportError, UserFacingError)
    assert resolve_grader_function(QUESTION.report).__name__ == "report_command"
