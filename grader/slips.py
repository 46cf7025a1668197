"""Recognisable slips behind a wrong parameter count or parameter share.

A student's number is compared with what each common slip would give, computed from the
trusted model's own layers (`layer_params`): all biases left out, only one layer counted,
one layer counted twice, and for a share also the complement (1 - share) and a percentage.
`count_slip` and `share_slip` return the slip that matches exactly (a share: within the
check's tolerance), with its diagnosis and a sentence for the student, or None.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from typing import Any

from .diagnoses import Diagnosis

BIASES_OMITTED = Diagnosis("biases-omitted", "leaves out the biases (one per output channel or unit)")
ONE_LAYER_ONLY = Diagnosis("one-layer-only", "counts the parameters of one layer only (`total = ...`, not `+=`)")
LAYER_TWICE = Diagnosis("layer-counted-twice", "counts one layer's parameters twice")
COMPLEMENT = Diagnosis("complement-returned", "returns the complement (1 - the share asked for)")
PERCENTAGE = Diagnosis("percentage-not-fraction", "returns a percentage (x100) where a fraction in [0, 1] is asked")
COUNT_SLIPS = (BIASES_OMITTED, ONE_LAYER_ONLY, LAYER_TWICE)
SHARE_SLIPS = (PERCENTAGE, COMPLEMENT, *COUNT_SLIPS)


@dataclasses.dataclass(frozen=True)
class LayerParams:
    """One layer's parameters: `biases` (its weights named "bias") and `weights` (all the others)."""

    name: str
    kind: str
    weights: int
    biases: int = 0

    @property
    def total(self) -> int:
        return self.weights + self.biases

    def label(self) -> str:
        return f"'{self.name}' ({self.kind}, {self.total:,} parameters)"


@dataclasses.dataclass(frozen=True)
class Slip:
    """A slip that explains a wrong number: its diagnosis and what to tell the student."""

    diagnosis: Diagnosis
    message: str


def leaf_layers(model: Any) -> Iterator[Any]:
    """The layers of a Keras `model` that hold their own weights, nested models opened."""
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from leaf_layers(layer)
        else:
            yield layer


def params_of(layer: Any) -> LayerParams:
    """`layer`'s parameter counts (a built Keras layer)."""
    sizes = [(weight.name.split("/")[-1], math.prod(weight.shape)) for weight in layer.weights]
    biases = sum(size for name, size in sizes if name == "bias")
    return LayerParams(layer.name, type(layer).__name__, sum(size for _, size in sizes) - biases, biases)


def layer_params(model: Any) -> list[LayerParams]:
    """Every leaf layer of `model` that has parameters."""
    return [p for p in map(params_of, leaf_layers(model)) if p.total]


def _count_candidates(layers: Sequence[LayerParams]) -> Iterator[tuple[int, Slip]]:
    """(the number a slip gives, the slip), most likely slip first."""
    total = sum(layer.total for layer in layers)
    biases = sum(layer.biases for layer in layers)
    if biases:
        yield (
            total - biases,
            Slip(
                BIASES_OMITTED,
                f"That is the total without the {biases:,} biases: every Conv2D and Dense layer also has one "
                "bias per output channel or unit (unless built with use_bias=False).",
            ),
        )
    if len(layers) > 1:
        for layer in layers:
            yield (
                layer.total,
                Slip(
                    ONE_LAYER_ONLY,
                    f"That is the parameters of one layer only, {layer.label()}: your loop probably replaces "
                    "the total (`total = ...`) instead of adding to it (`total += ...`).",
                ),
            )
    for layer in layers:
        yield (
            total + layer.total,
            Slip(
                LAYER_TWICE,
                f"That is {layer.total:,} too many, exactly layer {layer.label()}: that layer is counted twice "
                "(e.g. added again after the loop).",
            ),
        )


def count_slip(layers: Sequence[LayerParams], actual: int) -> Slip | None:
    """The slip that turns the true total of `layers` into `actual`, if one does."""
    if actual == sum(layer.total for layer in layers):
        return None
    return next((slip for value, slip in _count_candidates(layers) if value == actual), None)


def share_slip(
    part: Sequence[LayerParams],
    whole: Sequence[LayerParams],
    actual: float,
    *,
    tolerance: float,
    part_label: str,
    rest_label: str,
) -> Slip | None:
    """The slip that turns the share of `part` in `whole` (`part` is a subset of `whole`) into `actual`.

    Matches are within `tolerance` (100 x `tolerance` for a percentage); `part_label` and
    `rest_label` name the two groups of layers in the message ("the Dense layers").
    """
    whole_total = sum(layer.total for layer in whole)
    if not whole_total or not math.isfinite(actual):
        return None
    share = sum(layer.total for layer in part) / whole_total
    if abs(actual - share) <= tolerance:
        return None
    for value, scale, slip in _share_candidates(part, whole, part_label, rest_label):
        if abs(actual - value) <= scale * tolerance and abs(value - share) > tolerance:
            return slip
    return None


def _share_candidates(
    part: Sequence[LayerParams], whole: Sequence[LayerParams], part_label: str, rest_label: str
) -> Iterator[tuple[float, float, Slip]]:
    """(the share a slip gives, the scale of the tolerance, the slip), most likely slip first."""
    part_total, whole_total = sum(p.total for p in part), sum(p.total for p in whole)
    share = part_total / whole_total
    yield 100 * share, 100, Slip(PERCENTAGE, "Return a fraction, not a percentage.")
    yield 1 - share, 1, Slip(COMPLEMENT, f"That is {rest_label}' share; the question asks for {part_label}'.")
    part_weights, whole_weights = sum(p.weights for p in part), sum(p.weights for p in whole)
    if whole_weights and whole_weights < whole_total:
        yield (
            part_weights / whole_weights,
            1,
            Slip(BIASES_OMITTED, "That is the share without the biases: count every layer's biases too."),
        )
    if len(part) > 1:
        for layer in part:
            yield (
                layer.total / whole_total,
                1,
                Slip(
                    ONE_LAYER_ONLY,
                    f"That is the share of one layer only, {layer.label()}: add up all of {part_label} "
                    "(`total += ...`, not `total = ...`).",
                ),
            )
    for layer in whole:
        doubled = part_total + layer.total if layer in part else part_total
        yield (
            doubled / (whole_total + layer.total),
            1,
            Slip(LAYER_TWICE, f"That is the share with layer {layer.label()} counted twice: count each layer once."),
        )
