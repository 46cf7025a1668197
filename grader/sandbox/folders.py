"""The folders of a child, decided by the grading process: its private copy of the submission, what it must
not see (`hidden_paths`) and the folders it sees only Python and the grader package of (`readonly_paths`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from ..paths import REPO_ROOT, data_home, solutions_dir

SANDBOX_FOLDER = "cnn-grader-sandbox"  # under the temporary folder: one private folder per question
STALE_AFTER_S = 6 * 3600
MAX_COPIED_BYTES = 50 * 1024 * 1024


def private_folder(submission: Path) -> Path:
    """A fresh folder (mode 700) holding a copy of the submission's files."""
    base = Path(tempfile.gettempdir()) / SANDBOX_FOLDER
    base.mkdir(mode=0o711, exist_ok=True)
    _remove_stale(base)
    private = Path(tempfile.mkdtemp(prefix="q-", dir=base))
    os.chmod(private, 0o700)
    _copy_submission(submission, private)
    return private


def give_to(folder: Path, uid: int | None) -> None:
    """Make the entries of `folder` belong to `uid` (None: leave them), so the child may read and replace them."""
    if uid is None:
        return
    for entry in os.scandir(folder):
        with contextlib.suppress(OSError):
            os.lchown(entry.path, uid, uid)


def hidden_paths(extra: Sequence[os.PathLike[str] | str] = ()) -> list[str]:
    """Folders the child must not see: solutions, hidden data, plus `extra` (results, other submissions)."""
    paths = [solutions_dir(), data_home(), Path("/usr/share/datasets"), Path.home() / ".keras" / "datasets"]
    paths += map(Path, extra)
    keras_home = os.environ.get("KERAS_HOME")
    if keras_home:
        paths.append(Path(keras_home) / "datasets")
    needed = [os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, REPO_ROOT / "grader")]
    out = []
    for path in paths:
        real = os.path.realpath(path)
        covers_needed = any(n == real or n.startswith(real + os.sep) for n in needed)
        if os.path.isdir(real) and real not in out and not covers_needed:
            out.append(real)
    return out


def readonly_paths() -> list[str]:
    """Folders covered in the child by an empty read-only view in which only Python and the `grader` package reappear:
    the grader's checkout (its `.git`, solutions, results, bench outputs...) and the home folder."""
    out = []
    for path in (REPO_ROOT, Path.home()):
        real = os.path.realpath(path)
        if os.path.isdir(real) and real != "/" and real not in out:
            out.append(real)
    return out


def _remove_stale(base: Path, age_s: float = STALE_AFTER_S) -> None:
    """Remove sandbox folders left by a killed grader (older than `age_s`)."""
    cutoff = time.time() - age_s
    with contextlib.suppress(OSError):
        for entry in os.scandir(base):
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    shutil.rmtree(entry.path, ignore_errors=True)


def _copy_submission(source: Path, target: Path, max_bytes: int = MAX_COPIED_BYTES) -> None:
    """Copy the submission's files (not folders, not links, nothing huge) into the private folder."""
    if not source.is_dir():
        return
    for entry in os.scandir(source):
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat().st_size <= max_bytes:
                shutil.copyfile(entry.path, target / entry.name)
        except OSError:
            continue
