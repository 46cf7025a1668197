"""Where the exercises, the reference solutions and the data live."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def solutions_dir() -> Path:
    """The reference solutions (`$CNN_GRADER_SOLUTIONS`, default `solutions/` of the checkout)."""
    return Path(os.environ.get("CNN_GRADER_SOLUTIONS", REPO_ROOT / "solutions"))


def exercises_dir() -> Path:
    """The stubs shipped to students."""
    return REPO_ROOT / "exercises"


def data_home() -> Path:
    """The data cache (`$CNN_GRADER_DATA`, default `datasets/` of the checkout)."""
    return Path(os.environ.get("CNN_GRADER_DATA", REPO_ROOT / "datasets"))
