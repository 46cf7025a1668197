"""Tiers of the training questions: how much data, how long student training may run, and on what.

`quick` (default) is a fixed, seeded 10,000 / 5,000 subset of Fashion-MNIST's training
images for a laptop or CI CPU; `full` is our 50,000 / 10,000 split of the 60,000 official
training images, meant for a GPU. Both test on the official 10,000 test images, which student code never sees.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import subprocess
from typing import Any

from ..options import GradingOptions, Limits


@dataclasses.dataclass(frozen=True)
class Tier:
    """How much data a training question uses, and how long student training may run."""

    name: str
    train_size: int
    val_size: int
    test_size: int
    time_limit_s: float
    meant_for: str


TIERS: dict[str, Tier] = {
    "quick": Tier("quick", 10_000, 5_000, 10_000, 300.0, "a laptop or CI CPU"),
    "full": Tier("full", 50_000, 10_000, 10_000, 1800.0, "a GPU"),
}

# What a training question's sandbox needs beyond the student's training time: the data
# sent both ways, the grader's checks and evaluations between the calls (measured: under a minute).
SANDBOX_OVERHEAD_S = 240.0


def tier_from_options(options: GradingOptions) -> Tier:
    """The tier `options` names, with its time limit and data sizes overridden where `options` sets them.

    The data sizes exist for fast tests of failure modes; a question's thresholds are only
    meaningful on the real tiers.
    """
    tier = TIERS[options.tier]
    changes: dict[str, Any] = {}
    if options.time_limit is not None:
        changes["time_limit_s"] = options.time_limit
    for key in ("train_size", "val_size", "test_size"):
        if getattr(options, key) is not None:
            changes[key] = getattr(options, key)
    return dataclasses.replace(tier, **changes) if changes else tier


@functools.lru_cache(maxsize=1)
def describe_device() -> str:
    """'CPU (2 cores)' or the GPU's name, without framework-specific calls."""
    import keras

    try:
        devices = [str(d).lower() for d in keras.distribution.list_devices()]
    except Exception:  # noqa: BLE001 - no device list: describe the CPU
        devices = []
    if not any("gpu" in d or "cuda" in d for d in devices):
        return f"CPU ({os.cpu_count()} cores)"
    name = "GPU"
    if shutil.which("nvidia-smi"):
        try:
            out = (
                subprocess.run(
                    ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                    check=False,
                )
                .stdout.strip()
                .splitlines()
            )
            name = f"GPU ({out[0].strip()})" if out else name
        except (OSError, subprocess.SubprocessError):
            pass
    return name


def has_gpu() -> bool:
    return describe_device().startswith("GPU")


def slow_tier_notice(options: GradingOptions) -> str | None:
    """What to tell a user who runs the full tier without a GPU (None otherwise): a `Training.notice`."""
    tier = tier_from_options(options)
    if tier.name == "full" and not has_gpu():
        return (
            f"note: the full tier ({tier.train_size:,} training images) is meant for a GPU; on this "
            f"{describe_device()} it will be slow (up to {tier.time_limit_s / 60:g} minutes per question)."
        )
    return None


def training_sandbox_limits(limits: Limits, options: GradingOptions) -> Limits:
    """A training question's sandbox limits: the wall clock covers the tier's training time and the checks around it."""
    tier = tier_from_options(options)
    return limits.at_least(wall_s=tier.time_limit_s * 1.05 + SANDBOX_OVERHEAD_S)


def base_meta(tier: Tier) -> dict[str, Any]:
    """What a training question's result records about where and on how much data it ran."""
    import keras

    return {
        "tier": tier.name,
        "device": describe_device(),
        "backend": keras.backend.backend(),
        "train_size": tier.train_size,
        "val_size": tier.val_size,
        "test_size": tier.test_size,
        "time_limit_s": tier.time_limit_s,
    }
