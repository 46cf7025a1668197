"""Typed configuration: what a grading run was asked to do, and the sandbox's caps.

`GradingOptions` is built once, from command-line flags (`grader.cli`) or keyword
arguments (`grader.notebook.check`) plus the environment, and passed down unchanged:
checks read `ctx.options.tier`, never a dict or an environment variable. Both types are
frozen and cross to batch workers and Dask jobs as plain dicts (`to_dict`/`from_dict`).
"""

from __future__ import annotations

import dataclasses
import enum
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

TIER_NAMES = ("quick", "full")
DEFAULT_STDOUT_BYTES = 64 * 1024
DEFAULT_WALL_S = 60.0  # a question's wall clock unless it declares its own (`Question.time_limit_s`)

# Environment variables read here and nowhere else (`GradingOptions.from_env`).
ENVIRONMENT = {
    "tier": "CNN_GRADER_TIER",
    "data": "CNN_GRADER_FLOWERS",
    "weights": "CNN_GRADER_WEIGHTS",
    "epochs": "CNN_GRADER_EPOCHS",
    "time_limit": "CNN_GRADER_TIME_LIMIT",
}
WORKER_THREADS = "CNN_GRADER_WORKER_THREADS"  # TensorFlow threads of each `grader batch` worker (default 1)


def worker_threads(environ: Mapping[str, str] | None = None) -> int:
    """TensorFlow threads of a `grader batch` worker process (`$CNN_GRADER_WORKER_THREADS`, default 1)."""
    environ = os.environ if environ is None else environ
    return max(1, int(environ.get(WORKER_THREADS) or 1))


@dataclasses.dataclass(frozen=True)
class GradingOptions:
    """What one grading run was asked to do (every field has a default that grades a student's laptop run)."""

    tier: str = "quick"  # training questions: quick (CPU subset) or full (all 60,000 training images split 50,000/10,000, or the real data; GPU)
    plots: Path | None = Path("plots")  # folder for the training questions' PNGs; None: no PNGs
    time_limit: float | None = None  # seconds student training may run (default: the tier's)
    train_size: int | None = None  # smaller data for fast tests of failure modes (thresholds assume a real tier)
    val_size: int | None = None
    test_size: int | None = None
    data: str | None = None  # where a question's real data is (q7: the flowers folder or 'tfds')
    weights: str | None = None  # pretrained weights ('imagenet' or a local file)
    epochs: int | None = None  # epochs of a transfer-learning run (default: the tier's)

    def __post_init__(self) -> None:
        tier = str(self.tier or "quick").lower()
        if tier not in TIER_NAMES:
            raise ValueError(f"unknown tier '{self.tier}'; use one of {', '.join(TIER_NAMES)}")
        object.__setattr__(self, "tier", tier)
        if self.plots is not None and not isinstance(self.plots, Path):
            object.__setattr__(self, "plots", Path(self.plots) if self.plots else None)
        for name in ("train_size", "val_size", "test_size", "epochs"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, int(value))
        if self.time_limit is not None:
            object.__setattr__(self, "time_limit", float(self.time_limit))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **given: Any) -> GradingOptions:
        """Options from keyword arguments, with `CNN_GRADER_*` variables filling what was not given."""
        environ = os.environ if environ is None else environ
        values = {key: value for key, value in given.items() if value is not None and value != ""}
        for key, variable in ENVIRONMENT.items():
            if key not in values and environ.get(variable):
                values[key] = environ[variable]
        if "plots" in given and given["plots"] in (None, False, ""):
            values["plots"] = None
        return cls(**values)

    def environment(self) -> dict[str, str]:
        """These options as the `CNN_GRADER_*` variables `from_env` reads (for a process that grades on our behalf,
        e.g. nbgrader's autograde); fields that are None are not set."""
        return {
            variable: str(getattr(self, key)) for key, variable in ENVIRONMENT.items() if getattr(self, key) is not None
        }

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["plots"] = str(self.plots) if self.plots is not None else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GradingOptions:
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    def replace(self, **changes: Any) -> GradingOptions:
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class Limits:
    """Caps applied to the sandboxed child process of one question."""

    wall_s: float | None = None  # wall-clock seconds for the whole question; None: the question's own limit
    # Address space the child may add to what the imported framework maps. JAX's CPU client needs
    # about 4 GB more to rebuild and run AlexNet (measured: 3072 fails there, 4096 passes).
    memory_mb: int = 4096
    threads: int = 1  # TensorFlow intra- and inter-op threads
    processes: int = 256  # RLIMIT_NPROC of the child's own uid (threads count)
    file_mb: int = 1024  # largest file the child may write
    open_files: int = 512
    stdout_bytes: int = DEFAULT_STDOUT_BYTES  # printed output kept per call
    drop_privileges: bool = True  # run as an unprivileged uid when the grader is root
    namespaces: bool = True  # mount + network namespaces when the kernel allows

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Limits:
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    @property
    def seconds(self) -> float:
        """The wall-clock limit in force (the question's own when none was set: `Question.limits_for` sets it)."""
        return self.wall_s if self.wall_s is not None else DEFAULT_WALL_S

    def at_least(self, *, wall_s: float = 0.0, memory_mb: int = 0) -> Limits:
        """These limits, raised to what a question needs (never lowered)."""
        return dataclasses.replace(self, wall_s=max(self.seconds, wall_s), memory_mb=max(self.memory_mb, memory_mb))


class Transfer(enum.Enum):
    """How models cross between the grader and the sandboxed child in one call of student code.

    ARCHITECTURE: arguments and the returned model cross as architecture only (rebuilt with
    zero weights): enough for every structural check, and cheap for AlexNet's 61M weights.
    WEIGHTS_BACK: as ARCHITECTURE, but a returned model comes back with its weights.
    ROUND_TRIP: model arguments go with their weights and come back as the call left them
    (what training changed), and a returned model comes back with its weights.
    """

    ARCHITECTURE = "architecture"
    WEIGHTS_BACK = "weights-back"
    ROUND_TRIP = "round-trip"

    @property
    def weights_out(self) -> bool:
        return self is Transfer.ROUND_TRIP

    @property
    def weights_back(self) -> bool:
        return self is not Transfer.ARCHITECTURE

    @property
    def args_back(self) -> bool:
        return self is Transfer.ROUND_TRIP
