"""q7's model checks: the head after the backbone, a frozen backbone, pretrained weights passed on, inference mode."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..checks import CheckFailed, Context, StudentCodeError
from ..flowers.backbones import backbone_constructor, batch_norm_layers, find_backbone
from ..flowers.data import NUM_CLASSES
from .q7_calls import applications_twin, built_with_backbone_weights, student_backbone, student_model
from .q7_geometry import SIZE

HEAD_UNITS = 256


# --- what the head must be ---------------------------------------------------------------------


def activation_of(layer: Any) -> str | None:
    """The activation a layer applies ('relu', 'softmax', ...), or None."""
    import keras

    if isinstance(layer, keras.layers.ReLU):
        return "relu"
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    config = layer.get_config()
    activation = config.get("activation")
    if isinstance(activation, dict):
        activation = activation.get("config", {}).get("name") or activation.get("class_name")
    return str(activation).lower() if activation is not None else None


def head_problem(model: Any, backbone: Any, num_classes: int) -> str | None:
    """What is wrong with the layers after the backbone, or None."""
    import keras

    if any(layer.name == "predictions" for layer in backbone.layers):
        return (
            f"Your backbone '{backbone.name}' still has its ImageNet classifier (a 'predictions' layer with 1000 "
            "outputs): build it with include_top=False, so your head replaces it."
        )
    head = model.layers[model.layers.index(backbone) + 1 :]
    pooled = len(backbone.output.shape) == 2
    dense: list[tuple[Any, str]] = []
    for layer in head:
        kind = type(layer).__name__
        if isinstance(layer, keras.layers.Dense):
            if not pooled:
                return (
                    "Your head uses Dense layers on the backbone's 7x7 feature map: add "
                    "keras.layers.GlobalAveragePooling2D() right after the backbone (or build it with pooling='avg')."
                )
            dense.append((layer, activation_of(layer) or "linear"))
        elif kind.startswith("Global") and "Pooling" in kind:
            pooled = True
        elif isinstance(layer, keras.layers.Flatten):
            return (
                "Your head flattens the backbone's feature map (7x7xF values) instead of pooling it: use "
                "GlobalAveragePooling2D, which gives F features and keeps Dense(256) small."
            )
        elif isinstance(layer, (keras.layers.Activation, keras.layers.ReLU, keras.layers.Softmax)):
            if dense and dense[-1][1] == "linear":
                dense[-1] = (dense[-1][0], activation_of(layer) or "linear")
        elif isinstance(layer, (keras.layers.Dropout, keras.layers.InputLayer)):
            continue
        elif layer.weights:
            return (
                f"Your head has a {kind} layer ('{layer.name}') with weights; the head should be global pooling, "
                "Dense(256, relu), Dense(num_classes, softmax) only."
            )
    units = [int(layer.units) for layer, _ in dense]
    if len(dense) != 2:
        return (
            f"Your head has {len(dense)} Dense layer(s) ({', '.join(str(u) for u in units) or 'none'} units), expected "
            "exactly two: Dense(256, activation='relu') then Dense(num_classes, activation='softmax')."
        )
    (_, hidden_act), (_, output_act) = dense
    if units[0] != HEAD_UNITS:
        return f"Your first Dense layer has {units[0]} units, expected 256: Dense(256, activation='relu')."
    if hidden_act != "relu":
        return f"Your Dense(256) uses activation '{hidden_act}', expected 'relu': Dense(256, activation='relu')."
    if units[1] != num_classes:
        return (
            f"With num_classes={num_classes} your last Dense layer has {units[1]} units: use Dense(num_classes, ...) "
            "with the argument, not a fixed number."
        )
    if output_act != "softmax":
        return (
            f"Your last Dense layer uses activation '{output_act}', expected 'softmax' (the model should output class "
            "probabilities): Dense(num_classes, activation='softmax')."
        )
    return None


def head_params(feature_dim: int, num_classes: int) -> int:
    """Trainable parameters of the head on `feature_dim` features: Dense(256) then Dense(num_classes)."""
    return HEAD_UNITS * (feature_dim + 1) + (HEAD_UNITS + 1) * num_classes


def count(variables: Any) -> int:
    """The number of values in `variables` (weights)."""
    return int(sum(int(np.prod(v.shape)) for v in variables))


# --- the checks ----------------------------------------------------------------------------------


def model_head(ctx: Context) -> str:
    model = student_model(ctx)
    backbone = student_backbone(ctx, model)
    problem = head_problem(model, backbone, NUM_CLASSES)
    if problem:
        raise CheckFailed(problem)
    return f"{backbone.name} -> global pooling -> Dense(256, relu) -> Dense(102, softmax)"


def backbone_frozen(ctx: Context) -> str:
    model = student_model(ctx)
    backbone = student_backbone(ctx, model)
    features = int(backbone.output.shape[-1])
    expected = head_params(features, NUM_CLASSES)
    trainable = count(model.trainable_weights)
    formula = f"256 x ({features:,} + 1) + 257 x 102 = {expected:,}"
    if trainable == expected:
        frozen = count(backbone.weights)
        return f"{trainable:,} trainable parameters = {formula}; {frozen:,} frozen in '{backbone.name}'"
    in_backbone = count(backbone.trainable_weights)
    if in_backbone:
        norm = sum(count(layer.trainable_weights) for layer in batch_norm_layers(backbone))
        detail = (
            f" All {in_backbone:,} are BatchNormalization scales and offsets: freeze the whole backbone, "
            "base.trainable = False."
            if norm == in_backbone
            else " Freeze it with base.trainable = False before compiling (recompile after changing trainable)."
        )
        raise CheckFailed(
            f"Your model has {trainable:,} trainable parameters, expected {formula} (the head's only): "
            f"{in_backbone:,} of them are in the backbone '{backbone.name}', which should be frozen.{detail}"
        )
    raise CheckFailed(
        f"Your backbone is frozen, but the model has {trainable:,} trainable parameters, expected {formula} for its "
        f"F = {features:,} features: the difference ({trainable - expected:+,}) is in the head (see the head check)."
    )


def backbone_pretrained(ctx: Context) -> str:
    backbone = student_backbone(ctx)
    constructor = backbone_constructor(backbone.name)
    if constructor is None:
        raise CheckFailed(
            f"Your backbone '{backbone.name}' is not a keras.applications network the grader recognises: build it with "
            "keras.applications.<Name>(include_top=False, weights=weights, input_shape=(224, 224, 3)) and keep its "
            "name."
        )
    name = constructor.__name__
    fresh = applications_twin(constructor, backbone, None)
    if count(fresh.weights) != count(backbone.weights):
        raise CheckFailed(
            f"Your backbone is called '{backbone.name}' but has {count(backbone.weights):,} parameters; "
            f"keras.applications.{name}(include_top=False) has {count(fresh.weights):,}. "
            "Use the network as keras.applications builds it."
        )
    rng = np.random.default_rng(0)
    marked = [w + rng.normal(0, 0.01, size=w.shape).astype(w.dtype) if w.size else w for w in fresh.get_weights()]
    try:
        loaded = built_with_backbone_weights(ctx, backbone, constructor, marked, NUM_CLASSES)
    except StudentCodeError as error:
        raise CheckFailed(
            f"build_transfer_model(weights=PATH) failed with a local weights file for {name}: {error} "
            f"Pass the argument straight on: keras.applications.{name}(include_top=False, weights=weights, ...)."
        ) from None
    other = find_backbone(loaded)
    same = (
        other is not None
        and len(other.weights) == len(marked)
        and all(np.shape(a) == np.shape(b) and np.allclose(a.numpy(), b) for a, b in zip(other.weights, marked))
    )
    if not same:
        raise CheckFailed(
            "build_transfer_model(weights=PATH) did not load the backbone's weights from PATH: pass the weights "
            f"argument on, keras.applications.{name}(include_top=False, weights=weights, ...), so weights='imagenet' "
            "gives the pretrained network and a local file works on an offline machine."
        )
    return f"keras.applications.{name}, and the weights argument is passed on (a local weights file was loaded)"


def inference_mode(ctx: Context) -> str:
    import keras

    model = student_model(ctx)
    backbone = student_backbone(ctx, model)
    norms = batch_norm_layers(backbone)
    if not norms:
        return f"'{backbone.name}' has no BatchNormalization layers, so no statistics can drift"
    before = [v.numpy() for v in model.weights]
    means = [(layer, layer.moving_mean.numpy()) for layer in norms]
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, size=(4, SIZE, SIZE, 3)).astype(np.float32)
    y = np.arange(4) % NUM_CLASSES
    try:
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy", run_eagerly=True)
        model.train_on_batch(x, y)
        moved = [(layer.name, float(np.max(np.abs(layer.moving_mean.numpy() - mean)))) for layer, mean in means]
        moved = [(name, delta) for name, delta in moved if delta > 1e-6]
    finally:
        model.set_weights(before)
    if moved:
        name, delta = moved[0]
        raise CheckFailed(
            f"After one training step of the head, the moving mean of {len(moved)} of the backbone's {len(norms)} "
            f"BatchNormalization layers changed (first: '{name}', by {delta:.3g}): the backbone runs in training mode "
            "and its ImageNet statistics drift. Freeze it (base.trainable = False: a frozen BatchNormalization runs "
            "in inference mode in Keras 3) and call it as base(inputs, training=False), which keeps it in inference "
            "mode even when you later unfreeze it to fine-tune."
        )
    return f"the moving statistics of all {len(norms)} BatchNormalization layers stay put while the head trains"


def num_classes_used(ctx: Context) -> str:
    model = student_model(ctx, num_classes=5, weights_back=False)
    problem = head_problem(model, student_backbone(ctx, model), 5)
    if problem:
        raise CheckFailed(f"With num_classes=5: {problem}")
    return "num_classes=5 gives a 5-way softmax"
