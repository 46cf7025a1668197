"""The child's view of the file system, built in its new mount namespace.

The view is minimal: the private folder becomes /tmp (and /var/tmp, /dev/shm); hidden
folders get empty read-only mounts; the grader's checkout, the home folder and any folder
others may not enter (e.g. /root holding a pyenv Python) are covered by an empty
read-only tmpfs in which only the Python runtime, its site-packages and the `grader`
package reappear, bound read-only (no `.git`, no `solutions/`, no results, no other
file of the checkout). Every other mount is then made read-only, so the private /tmp is
the only writable host path (`/run/lock` included). In a new PID namespace /proc is
mounted afresh: it shows only the question's own processes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import stat
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..paths import REPO_ROOT

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_MOVE, MS_REC = 1024, 2048, 4096, 8192, 16384
MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 1 << 18, 1 << 21, 1 << 24
WORKDIR = "/tmp"  # where the private folder appears in the child
PRIVATE_TARGETS = ("/var/tmp", "/dev/shm", WORKDIR)  # where the private folder is bound (writable)
# Mounts left as they are: kernel interfaces (the child's uid cannot write there) and the devices.
_KEPT_WRITABLE = ("/proc", "/sys", "/dev", "/dev/pts")
_FLAG_OPTIONS = {
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME,
    "relatime": MS_RELATIME,
    "strictatime": MS_STRICTATIME,
}


def libc() -> Any:
    """The C library, with `mount`'s argument types declared (`unshare` takes an int)."""
    lib = ctypes.CDLL(None, use_errno=True)
    lib.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    return lib


def _bytes(text: str | None) -> bytes | None:
    return text.encode() if text is not None else None


def mount(lib: Any, source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    if lib.mount(_bytes(source), _bytes(target), _bytes(fstype), flags, _bytes(data)) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {target}: {os.strerror(errno)}")


def python_paths() -> list[str]:
    """Where this interpreter's code lives (runtime, standard library, site-packages): the child imports from there."""
    paths = {sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    paths.update(p for p in sys.path if p and ("site-packages" in p or "lib/python" in p))
    return sorted({os.path.realpath(p) for p in paths if os.path.isdir(p)})


def needed_paths() -> list[str]:
    """What the child must be able to read: Python (`python_paths`) and the `grader` package, nothing else."""
    grader = os.path.realpath(REPO_ROOT / "grader")
    return sorted({*python_paths(), *([grader] if os.path.isdir(grader) else [])})


def private_mounts(
    lib: Any, private: str, hide: Sequence[str], cover: Sequence[str] = (), *, new_proc: bool = False
) -> tuple[list[str], str]:
    """In a new mount namespace: the minimal view described in the module docstring.

    `hide` folders get empty read-only mounts; `cover` folders (the checkout, the home
    folder) an empty read-only tmpfs keeping only `needed_paths`. Returns the folders
    hidden and the child's working folder.
    """
    mount(lib, None, "/", None, MS_REC | MS_PRIVATE)
    hidden = []
    real_private = os.path.realpath(private)
    for path in hide:  # before the covers and /tmp: some hidden folders may live there
        if os.path.isdir(path) and not _inside(real_private, os.path.realpath(path)):
            mount(lib, "tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=555")
            hidden.append(path)
    keep = needed_paths()
    folders = {os.path.realpath(p) for p in cover if os.path.isdir(p)}
    folders.update(_closed_ancestors(keep))
    for folder in sorted(folders, key=lambda f: -f.count(os.sep)):  # deepest first: a cover keeps the covers inside
        if folder != "/" and not _inside(real_private, folder) and folder not in keep:
            _cover_with_empty(lib, real_private, folder, keep)
    for target in PRIVATE_TARGETS:  # /tmp last: it covers `private`
        if os.path.isdir(target):
            _cover_keeping(lib, real_private, target, keep)
    _read_only_elsewhere(lib)
    if new_proc:
        with contextlib.suppress(OSError):  # where refused, /proc still shows the grader's namespace
            mount(lib, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    return hidden, WORKDIR


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _tops(paths: Iterable[str], folder: str) -> list[str]:
    """The paths strictly inside `folder` that are not inside another of them."""
    inside = sorted({p for p in paths if p != folder and _inside(p, folder)})
    return [p for p in inside if not any(q != p and _inside(p, q) for q in inside)]


def _closed_ancestors(paths: Iterable[str]) -> set[str]:
    """For each path, the first folder on the way to it that others may not enter (e.g. /root)."""
    closed = set()
    for path in paths:
        current = "/"
        for part in Path(path).parts[1:]:
            try:
                if not os.stat(current).st_mode & stat.S_IXOTH:
                    closed.add(current)
                    break
            except OSError:
                break
            current = os.path.join(current, part)
    return closed


def _cover_with_empty(lib: Any, private: str, folder: str, keep: Sequence[str]) -> None:
    """An empty read-only tmpfs over `folder` in which only the `keep` paths inside it reappear (bound read-only).

    A cover made before (a folder inside this one) comes along with its kept paths.
    """
    holds = []
    for index, path in enumerate(_tops(keep, folder)):
        if not os.path.isdir(path):
            continue
        hold = os.path.join(private, f".hold-{len(os.listdir(private))}-{index}")
        os.mkdir(hold, 0o700)
        mount(lib, path, hold, None, MS_BIND | MS_REC)
        holds.append((path, hold))
    mount(lib, "tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755")
    for path, hold in holds:
        os.makedirs(path, mode=0o755, exist_ok=True)
        mount(lib, hold, path, None, MS_MOVE)
        mount(lib, None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
        os.rmdir(hold)
    mount(lib, None, folder, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _cover_keeping(lib: Any, private: str, target: str, keep: Sequence[str]) -> None:
    """Bind `private` over `target`; the `keep` folders inside `target` reappear read-only.

    A checkout (and its virtual environment) cloned under /tmp must stay importable
    when /tmp becomes the child's private folder: its covered view comes along.
    """
    real_target = os.path.realpath(target)
    tops = [p for p in _tops(keep, real_target) if os.path.isdir(p) and not _inside(private, p)]
    holds = []
    for index, path in enumerate(tops):
        hold = os.path.join(private, f".keep-{index}")
        os.mkdir(hold, 0o700)
        mount(lib, path, hold, None, MS_BIND | MS_REC)
        holds.append((path, os.path.basename(hold)))
    mount(lib, private, target, None, MS_BIND | MS_REC)  # recursive: the holds come along
    for path, hold in holds:
        destination = os.path.join(target, os.path.relpath(path, real_target))
        os.makedirs(destination, exist_ok=True)
        mount(lib, os.path.join(target, hold), destination, None, MS_MOVE)
        mount(lib, None, destination, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
        # The empty hold folder stays (root's, mode 700): its twin under the real private path is still a mount point.


def mount_points() -> list[tuple[str, set[str]]]:
    """This namespace's mount points and their per-mount options, from /proc/self/mountinfo."""
    out = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            fields = line.split()
            if len(fields) > 5:
                point = fields[4].encode().decode("unicode_escape")  # \040 is a space
                out.append((point, set(fields[5].split(","))))
    return out


def _read_only_elsewhere(lib: Any) -> None:
    """Make every mount read-only but the private folder's and the kernel's (/proc, /sys, /dev): /run/lock too."""
    for point, options in mount_points():
        if "ro" in options or point in PRIVATE_TARGETS or any(_inside(point, k) for k in _KEPT_WRITABLE[:2]):
            continue
        if point in _KEPT_WRITABLE:
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        flags |= sum(flag for name, flag in _FLAG_OPTIONS.items() if name in options)
        with contextlib.suppress(OSError):  # e.g. a mount point covered since: it is out of sight anyway
            mount(lib, None, point, None, flags)
