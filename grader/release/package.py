"""Build the student package: a wheel of `grader/` with the released data and the stubs, never `solutions/`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from ..paths import PACKAGE_DATA, REFERENCE_DATA, REPO_ROOT, exercises_dir

# Files of the checkout that the student package carries in `grader/data/` (besides the data and the stubs).
SHIPPED = ("datasets/fashion-mnist.sha256",)
PROJECT_FILES = ("pyproject.toml", "README.md", "LICENSE")


class ReleaseError(RuntimeError):
    """The student package could not be built, or would hold what it must not."""


def build_wheel(data: dict[str, Any], out: Path) -> Path:
    """Write the wheel of the student package into `out` and return its path."""
    data_dir = Path("grader") / PACKAGE_DATA.name
    missing = [name for name in (*PROJECT_FILES, *SHIPPED) if not (REPO_ROOT / name).is_file()]
    if missing:
        raise ReleaseError(
            f"the student package is built from a checkout of cnn-grader; {REPO_ROOT} has no {', '.join(missing)}"
        )
    with tempfile.TemporaryDirectory(prefix="cnn-grader-release-") as scratch:
        staging = Path(scratch) / "package"
        staging.mkdir()
        for name in PROJECT_FILES:
            shutil.copy2(REPO_ROOT / name, staging / name)
        shutil.copytree(
            REPO_ROOT / "grader",
            staging / "grader",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", PACKAGE_DATA.name),
        )
        (staging / data_dir).mkdir()
        (staging / data_dir / REFERENCE_DATA).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        shutil.copytree(exercises_dir(), staging / data_dir / "exercises", ignore=shutil.ignore_patterns("__pycache__"))
        for relative in SHIPPED:
            shutil.copy2(REPO_ROOT / relative, staging / data_dir / Path(relative).name)
        out.mkdir(parents=True, exist_ok=True)
        before = set(out.glob("*.whl"))
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
        built = subprocess.run([*command, "-w", str(out), str(staging)], capture_output=True, text=True)
        if built.returncode != 0:
            raise ReleaseError(f"pip wheel failed:\n{(built.stdout + built.stderr)[-3000:]}")
    wheels = sorted(set(out.glob("*.whl")) - before) or sorted(out.glob("cnn_grader-*.whl"))
    if not wheels:
        raise ReleaseError(f"pip wheel wrote no wheel into {out}")
    return wheels[-1]


def wheel_files(wheel: Path) -> list[str]:
    """The paths inside `wheel`."""
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def verify_wheel(wheel: Path, solutions: Path) -> None:
    """Refuse a wheel that holds a file of `solutions/` (by path or by content)."""
    names = wheel_files(wheel)
    leaked = [name for name in names if name.split("/")[0] == solutions.name]
    texts = {path.read_bytes() for path in solutions.glob("*.py")}
    with zipfile.ZipFile(wheel) as archive:
        leaked += [name for name in names if archive.read(name) in texts]
    if leaked:
        raise ReleaseError(f"the student package would hold reference solutions: {', '.join(leaked)}")
