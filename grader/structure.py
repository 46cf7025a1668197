"""A layer trace made in the student's process, read as data and checked for consistency before any check uses it.

The grader rebuilds a sandboxed student's model from its configuration and traces it
itself. A subclassed model, a Lambda layer or a custom layer cannot be rebuilt without
the student's Python code, so for those the child traces the model
(`grader.sandbox.traced.describe_model`) and sends the trace as plain data. Nothing the
child sends is trusted: `validated_trace` bounds it (types, counts, lengths, sizes) and
then recomputes what it can from each layer's own settings: the parameters of every
layer kind it knows (convolutions, Dense, normalisation), the output shape of every
kind whose arithmetic it knows (convolutions, pooling, Dense, Flatten, shape-preserving
layers), that each layer's input holds as many values as the model's input or an earlier
layer's output (a reshape by plain operations is allowed), and
that the layers' parameters add up to the model's count. A kind it does not know may
change shapes but may not hold parameters. What it cannot prove is that the trace
describes the student's model and not another, self-consistent one: see
docs/design.md, "Subclassed models: structure traced in the sandbox".
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .checks import StudentCodeError
from .diagnoses import TRACE_INCONSISTENT
from .text import clean
from .tracing import CONFIG_KEYS, MAX_TRACED_LAYERS, LayerTrace, format_shape, total_params

STRUCTURE_TRACED = "traced in the sandbox"  # `meta["isolation"]["structure"]` of such a submission
MAX_RANK = 8  # axes of a shape, entries of a tuple setting
MAX_DIM = 2**31  # one axis, one setting
MAX_PARAMS = 10**12  # one layer's, or the model's, parameters
NAME_CHARS = 200
_KIND = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
LAYER_KEYS = {"name", "kind", "input_shape", "output_shape", "params", "config", "uid"}

Shape = tuple[int, ...]


class InconsistentTrace(StudentCodeError):
    """The trace from the student's process is malformed or does not add up."""


def validated_trace(data: Any, input_shape: Sequence[int], what: str) -> list[LayerTrace]:
    """The trace `data` sent by the child for `what` traced on `input_shape`, checked; raises `InconsistentTrace`."""
    if not isinstance(data, Mapping) or set(data) != {"layers", "total"}:
        raise _failure(what, "it is not a trace the grader can read")
    items, total = data["layers"], _integer(data["total"], MAX_PARAMS, what, "the model's parameter count")
    if not isinstance(items, list) or len(items) > MAX_TRACED_LAYERS:
        raise _failure(what, f"it is not a list of at most {MAX_TRACED_LAYERS:,} layers")
    layers = [_layer(item, what) for item in items]
    _check_shared(layers, what)
    model_input = tuple(int(d) for d in input_shape)
    sizes = {math.prod(model_input)}  # values held by the model's input and each output so far
    for layer in layers:
        if math.prod(layer.input_shape) not in sizes:  # the same shape, or one reshaped by a plain operation
            raise _failure(
                what,
                f"layer '{layer.name}' ({layer.kind}) receives a {format_shape(layer.input_shape)} input that neither "
                f"the model's {format_shape(model_input)} input nor any earlier layer produced. If your call() "
                "pools or reshapes tensors with plain operations, use the matching layer instead (Flatten, Reshape, "
                "GlobalAveragePooling2D)",
            )
        _check_layer(layer, what)
        sizes.add(math.prod(layer.output_shape))
    if total_params(layers) != total:
        raise _failure(
            what,
            f"its layers hold {total_params(layers):,} parameters in all, but the model reports {total:,}: every "
            "weight of the model must belong to a layer it calls",
        )
    return layers


def _failure(what: str, detail: str) -> InconsistentTrace:
    return InconsistentTrace(
        f"The grader cannot rebuild {what} (a subclassed model, a Lambda or a custom layer), so it was traced in "
        f"your own process, and that trace does not add up: {detail}.",
        diagnosis=TRACE_INCONSISTENT.id,
    )


# -- reading the data


def _integer(value: Any, limit: int, what: str, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
        raise _failure(what, f"{field} is not a whole number between 0 and {limit:,}")
    return value


def _shape(value: Any, what: str, field: str) -> Shape:
    if not isinstance(value, (tuple, list)) or len(value) > MAX_RANK:
        raise _failure(what, f"{field} is not a shape of at most {MAX_RANK} axes")
    return tuple(_integer(d, MAX_DIM, what, f"an axis of {field}") for d in value)


def _setting(value: Any, what: str, field: str) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > MAX_DIM:
            raise _failure(what, f"{field} is larger than {MAX_DIM:,}")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _failure(what, f"{field} is not a finite number")
        return value
    if isinstance(value, str):
        return clean(value, 100, newlines=False)
    if isinstance(value, (tuple, list)) and len(value) <= MAX_RANK:
        return tuple(_setting_int(v, what, field) for v in value)
    raise _failure(what, f"{field} is not a plain setting")


def _setting_int(value: Any, what: str, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or abs(value) > MAX_DIM:
        raise _failure(what, f"{field} holds something other than whole numbers")
    return value


def _layer(item: Any, what: str) -> LayerTrace:
    if not isinstance(item, Mapping) or set(item) != LAYER_KEYS:
        raise _failure(what, f"a layer is not described by exactly {', '.join(sorted(LAYER_KEYS))}")
    name, kind, config = item["name"], item["kind"], item["config"]
    if not isinstance(name, str) or not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise _failure(what, "a layer's name or kind is not a short text")
    name = clean(name, NAME_CHARS, newlines=False)
    if not isinstance(config, Mapping) or not set(config) <= set(CONFIG_KEYS):
        raise _failure(what, f"the settings of layer '{name}' hold keys the grader does not read")
    return LayerTrace(
        name=name,
        kind=kind,
        input_shape=_shape(item["input_shape"], what, f"the input shape of layer '{name}'"),
        output_shape=_shape(item["output_shape"], what, f"the output shape of layer '{name}'"),
        params=_integer(item["params"], MAX_PARAMS, what, f"the parameter count of layer '{name}'"),
        config={str(k): _setting(v, what, f"setting {k} of layer '{name}'") for k, v in config.items()},
        uid=_integer(item["uid"], MAX_TRACED_LAYERS, what, f"the identity of layer '{name}'"),
    )


def _check_shared(layers: Sequence[LayerTrace], what: str) -> None:
    """Calls of one layer (one uid) agree on what the layer is."""
    first: dict[int, LayerTrace] = {}
    for layer in layers:
        seen = first.setdefault(layer.uid, layer)
        if (seen.name, seen.kind, seen.params, seen.config) != (layer.name, layer.kind, layer.params, layer.config):
            raise _failure(what, f"layer '{layer.name}' is described differently in two of its calls")


# -- recomputing what a layer's settings imply


def _check_layer(layer: LayerTrace, what: str) -> None:
    rule = _RULES.get(layer.kind)
    if rule is None:
        if layer.params:
            raise _failure(
                what,
                f"layer '{layer.name}' is a {layer.kind}, a kind whose {layer.params:,} parameters the grader cannot "
                "recompute from its settings. Use built-in Keras layers (Conv2D, Dense, BatchNormalization, ...) "
                "for every layer that holds weights",
            )
        return
    try:
        params, output = rule(layer.input_shape, layer.config)
    except (KeyError, TypeError, ValueError, ZeroDivisionError, IndexError):
        raise _failure(
            what,
            f"layer '{layer.name}' ({layer.kind}) does not fit its {format_shape(layer.input_shape)} input with its "
            f"settings {dict(layer.config)}",
        ) from None
    setting = f"a {layer.kind} with these settings on a {format_shape(layer.input_shape)} input"
    if params != layer.params:
        raise _failure(what, f"layer '{layer.name}' reports {layer.params:,} parameters, but {setting} has {params:,}")
    if output is None:  # a reshape: any shape holding the same number of values
        output = layer.output_shape if math.prod(layer.output_shape) == math.prod(layer.input_shape) else None
    if output != layer.output_shape:
        expected = format_shape(output) if output is not None else "as many values as its input"
        raise _failure(
            what,
            f"layer '{layer.name}' reports a {format_shape(layer.output_shape)} output, but {setting} gives {expected}",
        )


def _tuple(value: Any, rank: int) -> tuple[int, ...]:
    values = tuple(value) if isinstance(value, tuple) else (value,) * rank
    if len(values) != rank or not all(isinstance(v, int) and v > 0 for v in values):
        raise ValueError("not a positive setting per axis")
    return values


def _split(shape: Shape, config: Mapping[str, Any], rank: int) -> tuple[Shape, int]:
    """The spatial axes and the channel count of an input of `rank` spatial axes."""
    if len(shape) != rank + 1:
        raise ValueError("wrong rank")
    if config.get("data_format") == "channels_first":
        return shape[1:], shape[0]
    return shape[:-1], shape[-1]


def _join(spatial: Sequence[int], channels: int, config: Mapping[str, Any]) -> Shape:
    if config.get("data_format") == "channels_first":
        return (channels, *spatial)
    return (*spatial, channels)


def _sliding(spatial: Shape, config: Mapping[str, Any], window: Shape, strides: Shape, dilation: Shape) -> Shape:
    padding = config["padding"]
    out = []
    for w, k, s, d in zip(spatial, window, strides, dilation):
        if padding in ("same", "causal"):
            out.append(-(-w // s))
        elif padding == "valid":
            out.append((w - d * (k - 1) - 1) // s + 1)
        else:
            raise ValueError(f"unknown padding {padding!r}")
    if any(o <= 0 for o in out):
        raise ValueError("no output left")
    return tuple(out)


def _conv(kind: str) -> Callable[[Shape, Mapping[str, Any]], tuple[int, Shape | None]]:
    def rule(shape: Shape, config: Mapping[str, Any]) -> tuple[int, Shape | None]:
        kernel = config["kernel_size"]
        rank = len(kernel) if isinstance(kernel, tuple) else 2
        kernel = _tuple(kernel, rank)
        spatial, channels = _split(shape, config, rank)
        strides = _tuple(config["strides"], rank)
        dilation = _tuple(config.get("dilation_rate", 1), rank)
        bias = bool(config["use_bias"])
        window = math.prod(kernel)
        if kind == "conv":
            filters, groups = int(config["filters"]), int(config.get("groups") or 1)
            if channels % groups:
                raise ValueError("channels not divisible by groups")
            params, out_channels = window * channels // groups * filters + bias * filters, filters
        elif kind == "depthwise":
            multiplier = int(config["depth_multiplier"])
            out_channels = channels * multiplier
            params = window * out_channels + bias * out_channels
        else:  # separable
            multiplier, filters = int(config["depth_multiplier"]), int(config["filters"])
            params, out_channels = window * channels * multiplier + channels * multiplier * filters, filters
            params += bias * filters
        return params, _join(_sliding(spatial, config, kernel, strides, dilation), out_channels, config)

    return rule


def _pool(rank: int) -> Callable[[Shape, Mapping[str, Any]], tuple[int, Shape | None]]:
    def rule(shape: Shape, config: Mapping[str, Any]) -> tuple[int, Shape | None]:
        spatial, channels = _split(shape, config, rank)
        window = _tuple(config["pool_size"], rank)
        strides = _tuple(config.get("strides") or window, rank)
        return 0, _join(_sliding(spatial, config, window, strides, (1,) * rank), channels, config)

    return rule


def _global_pool(rank: int) -> Callable[[Shape, Mapping[str, Any]], tuple[int, Shape | None]]:
    def rule(shape: Shape, config: Mapping[str, Any]) -> tuple[int, Shape | None]:
        _, channels = _split(shape, config, rank)
        return 0, _join((1,) * rank, channels, config) if config.get("keepdims") else (channels,)

    return rule


def _dense(shape: Shape, config: Mapping[str, Any]) -> tuple[int, Shape | None]:
    units = int(config["units"])
    return shape[-1] * units + bool(config["use_bias"]) * units, (*shape[:-1], units)


def _normalization(moving: int) -> Callable[[Shape, Mapping[str, Any]], tuple[int, Shape | None]]:
    def rule(shape: Shape, config: Mapping[str, Any]) -> tuple[int, Shape | None]:
        axes = config["axis"] if isinstance(config["axis"], tuple) else (config["axis"],)
        if 0 in axes:
            raise ValueError("normalised over the batch")
        size = math.prod(shape[a - 1 if a > 0 else a] for a in axes)  # axis 1 is the first after the batch
        return size * (moving + bool(config["center"]) + bool(config["scale"])), shape

    return rule


def _flatten(shape: Shape, config: Mapping[str, Any]) -> tuple[int, Shape | None]:
    return 0, (math.prod(shape),)


def _same(shape: Shape, config: Mapping[str, Any]) -> tuple[int, Shape | None]:
    return 0, shape


def _reshape(shape: Shape, config: Mapping[str, Any]) -> tuple[int, Shape | None]:
    return 0, None  # any shape holding the same number of values


SHAPE_PRESERVING = (
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise", "GaussianDropout",
    "AlphaDropout", "Activation", "ReLU", "LeakyReLU", "ELU", "Softmax", "Rescaling", "Identity", "InputLayer",
)  # fmt: skip
_RULES: dict[str, Callable[[Shape, Mapping[str, Any]], tuple[int, Shape | None]]] = {
    **{f"Conv{n}D": _conv("conv") for n in (1, 2, 3)},
    "DepthwiseConv1D": _conv("depthwise"),
    "DepthwiseConv2D": _conv("depthwise"),
    "SeparableConv1D": _conv("separable"),
    "SeparableConv2D": _conv("separable"),
    **{f"{kind}Pooling{n}D": _pool(n) for kind in ("Max", "Average") for n in (1, 2, 3)},
    **{f"Global{kind}Pooling{n}D": _global_pool(n) for kind in ("Max", "Average") for n in (1, 2, 3)},
    "Dense": _dense,
    "BatchNormalization": _normalization(2),
    "LayerNormalization": _normalization(0),
    "Flatten": _flatten,
    "Reshape": _reshape,
    **{kind: _same for kind in SHAPE_PRESERVING},
}
