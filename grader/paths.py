"""Where the exercises, the reference solutions (or the data a release recorded from them) and the data live.

In the course checkout the references are `solutions/`. A student package (`grader release`)
has no `solutions/`: its checks read `grader/data/reference.json`, and its stubs are
`grader/data/exercises/`. `solutions_available()` decides which one grading uses.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DATA = Path(__file__).resolve().parent / "data"  # filled by `grader release` in a student package
REFERENCE_DATA = "reference.json"


def solutions_dir() -> Path:
    """The reference solutions (`$CNN_GRADER_SOLUTIONS`, default `solutions/` of the checkout)."""
    return Path(os.environ.get("CNN_GRADER_SOLUTIONS", REPO_ROOT / "solutions"))


def solutions_available() -> bool:
    """Whether the reference solutions' code is here (the course checkout), rather than only released data."""
    folder = solutions_dir()
    return folder.is_dir() and any(folder.glob("*.py"))


def reference_data_file() -> Path:
    """The released reference data (`$CNN_GRADER_REFERENCE_DATA`, default the package's `data/reference.json`)."""
    return Path(os.environ.get("CNN_GRADER_REFERENCE_DATA", PACKAGE_DATA / REFERENCE_DATA))


def exercises_dir() -> Path:
    """The stubs shipped to students (the checkout's `exercises/`, else the student package's copy)."""
    checkout = REPO_ROOT / "exercises"
    return checkout if checkout.is_dir() else PACKAGE_DATA / "exercises"


def shipped_file(relative: str) -> Path:
    """A course file of the checkout (e.g. `datasets/fashion-mnist.sha256`), else the student package's copy."""
    checkout = REPO_ROOT / relative
    return checkout if checkout.exists() else PACKAGE_DATA / Path(relative).name


def data_home() -> Path:
    """The data cache (`$CNN_GRADER_DATA`, default `datasets/` of the checkout)."""
    return Path(os.environ.get("CNN_GRADER_DATA", REPO_ROOT / "datasets"))
