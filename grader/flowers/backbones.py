"""keras.applications backbones: recognised by name, found inside a model, described, and calibrated when random."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

IMAGENET = "imagenet"  # the pretrained weights of the full tier (Keras downloads and caches them)

# keras.applications model names (lower case) -> the module whose preprocess_input they expect.
_FAMILIES = (
    (r"^efficientnetv2", "efficientnet_v2"),
    (r"^efficientnet", "efficientnet"),
    (r"^resnet\d+v2", "resnet_v2"),
    (r"^resnet\d+$", "resnet"),
    (r"^mobilenetv3", "mobilenet_v3"),
    (r"^mobilenetv2", "mobilenet_v2"),
    (r"^mobilenet", "mobilenet"),
    (r"^convnext", "convnext"),
    (r"^densenet", "densenet"),
    (r"^vgg16", "vgg16"),
    (r"^vgg19", "vgg19"),
    (r"^inception_resnet_v2", "inception_resnet_v2"),
    (r"^inception_v3", "inception_v3"),
    (r"^xception", "xception"),
    (r"^nasnet", "nasnet"),
)
_DOWNLOAD_FAILURE = re.compile(
    r"URL fetch failure|urlopen|Name or service not known|Temporary failure in name resolution|"
    r"Failed to establish|Connection refused|Network is unreachable|getaddrinfo|HTTP Error|storage\.googleapis"
)


def backbone_module(name: str) -> str | None:
    """The `keras.applications` module of a backbone called `name` ('resnet50' -> 'resnet')."""
    for pattern, module in _FAMILIES:
        if re.match(pattern, name.lower()):
            return module
    return None


def backbone_constructor(name: str) -> Callable[..., Any] | None:
    """The `keras.applications` constructor of a model called `name` ('mobilenetv2_1.00_224' -> MobileNetV2)."""
    import keras

    key = re.sub(r"^(mobilenet(v2)?)_.*$", r"\1", name.lower())
    key = re.sub(r"[^a-z0-9]", "", key)
    for attr in dir(keras.applications):
        if attr[:1].isupper() and re.sub(r"[^a-z0-9]", "", attr.lower()) == key:
            return getattr(keras.applications, attr)
    return None


def backbone_preprocess_input(name: str) -> Callable[[Any], Any] | None:
    """`keras.applications.<module>.preprocess_input` for the backbone called `name`."""
    import keras

    module = backbone_module(name)
    found = getattr(keras.applications, module, None) if module else None
    return getattr(found, "preprocess_input", None)


def find_backbone(model: Any) -> Any | None:
    """The pretrained backbone inside `model`: its largest nested keras.Model."""
    import keras

    nested = [layer for layer in getattr(model, "layers", []) if isinstance(layer, keras.Model)]
    if not nested:
        return None
    return max(nested, key=lambda m: len(m.layers))


def _all_layers(model: Any) -> list[Any]:
    return list(model._flatten_layers(include_self=False)) if hasattr(model, "_flatten_layers") else list(model.layers)


def batch_norm_layers(model: Any) -> list[Any]:
    """Every BatchNormalization layer in `model`, nested models included."""
    import keras

    return [layer for layer in _all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]


def describe_model(model: Any) -> dict[str, Any]:
    """Backbone name, feature count F, the head's layers, trainable and frozen parameters."""
    backbone = find_backbone(model)
    trainable = int(sum(int(np.prod(v.shape)) for v in model.trainable_weights))
    total = int(sum(int(np.prod(v.shape)) for v in model.weights))
    head = []
    layers_after = model.layers[model.layers.index(backbone) + 1 :] if backbone is not None else model.layers
    for layer in layers_after:
        config = layer.get_config()
        text = type(layer).__name__
        if "units" in config:
            text += f"({config['units']}, {config.get('activation', 'linear')})"
        elif "activation" in config:
            text += f"({config['activation']})"
        head.append(text)
    return {
        "backbone": backbone.name if backbone is not None else "(not a nested model)",
        "feature_dim": int(backbone.output.shape[-1]) if backbone is not None else 0,
        "trainable_params": trainable,
        "frozen_params": total - trainable,
        "head": head,
    }


def backbone_snapshot(model: Any) -> list[np.ndarray]:
    """The backbone's weights and BatchNormalization statistics, as arrays (empty without a backbone)."""
    backbone = find_backbone(model)
    return [np.array(v.numpy()) for v in backbone.weights] if backbone is not None else []


def backbone_drift(model: Any, before: Sequence[np.ndarray]) -> float:
    """The largest change of any backbone weight or statistic of `model` since `before` (`backbone_snapshot`)."""
    after = backbone_snapshot(model)
    if len(after) != len(before) or any(a.shape != b.shape for a, b in zip(after, before)):
        return float("inf")
    return max((float(np.max(np.abs(a - b))) for a, b in zip(after, before) if b.size), default=0.0)


# --- a random backbone (weights=None) --------------------------------------------------------------


def calibrate_batch_norm(backbone: Any, images: Any) -> int:
    """Set every BatchNormalization's moving statistics of a random backbone to those of `images`.

    A keras.applications network built with weights=None gives vanishingly small features
    (1e-5 for EfficientNetB0, 1e-12 for MobileNetV2): its BatchNormalization layers hold
    mean 0 and variance 1, not the statistics of real activations, so nothing could be
    learnt from them. One pass in training mode with momentum 0 (and dropout off) stores
    the statistics of this batch, layer after layer (calibrate on all the quick tier's
    training images: statistics of a few classes only blow up on the others). The weights
    stay random. Used by the quick tier only; returns how many layers were calibrated.
    """
    import keras

    norms = batch_norm_layers(backbone)
    dropouts = [layer for layer in _all_layers(backbone) if isinstance(layer, keras.layers.Dropout)]
    saved = [(layer, layer.momentum, layer.trainable) for layer in norms]
    rates = [(layer, layer.rate) for layer in dropouts]
    try:
        for layer in norms:
            layer.momentum, layer.trainable = 0.0, True
        for layer in dropouts:
            layer.rate = 0.0
        backbone(images, training=True)
    finally:
        for layer, momentum, trainable in saved:
            layer.momentum, layer.trainable = momentum, trainable
        for layer, rate in rates:
            layer.rate = rate
    return len(norms)


def calibration_note(count: int) -> str:
    """The report's note on a random backbone whose BatchNormalization statistics were calibrated."""
    return (
        f"weights=None: the backbone is random. Its BatchNormalization statistics were estimated on {count} training "
        "images so that its features are not vanishingly small; this run checks the pipeline, not the accuracy."
    )


# --- pretrained weights that could not be downloaded ---------------------------------------------


def looks_like_download_failure(message: str) -> bool:
    """Does a build error look like Keras failing to fetch ImageNet weights (offline)?"""
    return bool(_DOWNLOAD_FAILURE.search(message))


def weights_unavailable_message(weights: str, detail: str = "") -> str:
    """What to do when the backbone's pretrained `weights` could not be loaded."""
    return (
        f"The backbone's ImageNet weights could not be loaded (weights={weights!r}{': ' + detail if detail else ''}). "
        "Either run once on a machine with internet (Keras caches them in $KERAS_HOME/models, default ~/.keras/models; "
        "copy that folder to this machine), or download the backbone's `*_notop.h5` file and pass --weights PATH "
        "(build_transfer_model(weights=PATH)), or grade the quick tier (--tier quick), which uses weights=None."
    )
