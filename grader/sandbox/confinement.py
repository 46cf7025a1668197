"""Confine a freshly forked child before it loads student code: namespaces, rlimits, own uid, scrubbed environment.

`process_namespaces` runs first, in the zygote's child: new PID and IPC namespaces, so
that every process the student's code starts dies with the question (the namespace's
PID 1 is the grader's, and its death kills all of them) and its SysV IPC objects vanish.
`confine` then runs in the (single-threaded) process that will load student code and
returns what it enforced; where the kernel refuses a measure, the result says
"not available: <why>" instead of failing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from ..options import Limits
from .mounts import libc, private_mounts
from .protocol import ChildSetup

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
PR_SET_PDEATHSIG = 1

_KEPT_VARIABLES = ("PATH", "LANG", "LC_ALL")
_KEPT_PREFIXES = ("TF_", "ABSL_", "GRPC_", "KERAS_BACKEND")
_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)


def process_namespaces(setup: ChildSetup) -> dict[str, str]:
    """Unshare PID and IPC namespaces for this process's children: {"pid": ..., "ipc": ...}, "own namespace" or why not.

    Not root: the namespaces come with an unprivileged user namespace where the kernel allows it.
    """
    if not setup.limits.namespaces:
        return {"pid": "not available: disabled", "ipc": "not available: disabled"}
    lib = libc()
    flags = CLONE_NEWPID | CLONE_NEWIPC
    if os.geteuid() != 0:
        outer_uid, outer_gid = os.getuid(), os.getgid()
        if lib.unshare(CLONE_NEWUSER | flags) != 0:
            reason = os.strerror(ctypes.get_errno())
            return {"pid": f"not available: unshare: {reason}", "ipc": f"not available: unshare: {reason}"}
        _map_ids(outer_uid, outer_gid)  # raises: the child then reports that the sandbox could not be set up
        return {"pid": "own namespace", "ipc": "own namespace"}
    if lib.unshare(flags) == 0:
        return {"pid": "own namespace", "ipc": "own namespace"}
    reason = os.strerror(ctypes.get_errno())
    ipc = "own namespace" if lib.unshare(CLONE_NEWIPC) == 0 else f"not available: unshare: {reason}"
    return {"pid": f"not available: unshare: {reason}", "ipc": ipc}


def _map_ids(outer_uid: int, outer_gid: int) -> None:
    for name, text in (
        ("setgroups", "deny"),
        ("uid_map", f"{outer_uid} {outer_uid} 1"),
        ("gid_map", f"{outer_gid} {outer_gid} 1"),
    ):
        with open(f"/proc/self/{name}", "w") as file:
            file.write(text)


def confine(setup: ChildSetup, processes: dict[str, str] | None = None) -> dict[str, Any]:
    """Confine this (forked, single-threaded) child; returns what was enforced.

    `processes`: what `process_namespaces` enforced for this process (it runs in them).
    """
    processes = processes or {"pid": "not available: not requested", "ipc": "not available: not requested"}
    limits = setup.limits
    dropping = limits.drop_privileges and os.geteuid() == 0
    if dropping:  # the private folder becomes the child's own, before /tmp is covered
        os.chown(setup.private, setup.uid, setup.uid)
        for entry in os.scandir(setup.private):
            os.lchown(entry.path, setup.uid, setup.uid)
    network, hidden, workdir = _enter_namespaces(setup, new_proc=processes["pid"] == "own namespace")
    _set_rlimits(limits, dropping)
    enforced: dict[str, Any] = {"process": True, "session": True, "network": network, "hidden": hidden, **processes}
    enforced["filesystem"] = (
        "minimal: Python, site-packages and the grader package read-only, private /tmp the only writable folder"
        if isinstance(hidden, list)
        else hidden
    )
    enforced["memory_mb"] = limits.memory_mb
    enforced["threads"] = limits.threads
    if dropping:
        os.setgroups([])
        os.setgid(setup.uid)
        os.setuid(setup.uid)
        enforced["user"] = f"uid {setup.uid} (unprivileged)"
    else:
        enforced["user"] = f"not dropped: uid {os.getuid()}" + ("" if os.geteuid() == 0 else " is already unprivileged")
    die_with_parent()  # after setuid, which clears it: a dead grader leaves no student code running
    os.chdir(workdir)
    _scrub_environment(workdir, limits.threads)
    _scrub_sys_path(workdir, setup.hide)
    enforced["cwd"] = "private temporary folder"
    return enforced


def _enter_namespaces(setup: ChildSetup, *, new_proc: bool) -> tuple[str, list[str] | str, str]:
    """New mount and network namespaces where allowed: (network, hidden folders or why not, working folder)."""
    if not setup.limits.namespaces:
        return "not available: disabled", "not available: disabled", setup.private
    if os.geteuid() == 0:
        return _root_namespaces(setup, new_proc)
    return _user_namespaces(setup)


def _root_namespaces(setup: ChildSetup, new_proc: bool) -> tuple[str, list[str] | str, str]:
    lib = libc()
    if lib.unshare(CLONE_NEWNS | CLONE_NEWNET) != 0:
        reason = os.strerror(ctypes.get_errno())
        network = "off" if lib.unshare(CLONE_NEWNET) == 0 else f"not available: unshare: {reason}"
        return network, f"not available: unshare(CLONE_NEWNS): {reason}", setup.private
    try:
        hidden, workdir = private_mounts(lib, setup.private, setup.hide, setup.readonly, new_proc=new_proc)
    except OSError as error:
        return "off", f"not available: {error}", setup.private
    return "off", hidden, workdir


def _user_namespaces(setup: ChildSetup) -> tuple[str, list[str] | str, str]:
    """Not root: an unprivileged user namespace gives the same mounts where the kernel allows it."""
    lib = libc()
    outer_uid, outer_gid = os.getuid(), os.getgid()
    if lib.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET) != 0:
        reason = os.strerror(ctypes.get_errno())
        return (
            f"not available: unprivileged user namespaces: {reason}",
            f"not available: the grader is not root and user namespaces are refused ({reason})",
            setup.private,
        )
    try:
        _map_ids(outer_uid, outer_gid)
        hidden, workdir = private_mounts(lib, setup.private, setup.hide, setup.readonly)
    except OSError as error:
        return "off", f"not available: {error}", setup.private
    return "off", hidden, workdir


def _set_rlimits(limits: Limits, dropping: bool) -> None:
    import resource  # Unix only: imported here, so that the CLI starts where it is missing (`probe`)

    caps = {
        resource.RLIMIT_AS: _vm_bytes() + limits.memory_mb * 1024 * 1024,
        resource.RLIMIT_FSIZE: limits.file_mb * 1024 * 1024,
        resource.RLIMIT_NOFILE: limits.open_files,
        resource.RLIMIT_CORE: 0,
    }
    if dropping:
        caps[resource.RLIMIT_NPROC] = limits.processes
    for which, value in caps.items():
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(which, (value, value))


def _vm_bytes() -> int:
    """The address space this process maps already (the imported framework)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _scrub_environment(workdir: str, threads: int) -> None:
    env = {k: v for k, v in os.environ.items() if k in _KEPT_VARIABLES or k.startswith(_KEPT_PREFIXES)}
    env.update(HOME=workdir, KERAS_HOME=os.path.join(workdir, ".keras"), TMPDIR=workdir, PYTHONDONTWRITEBYTECODE="1")
    for variable in _THREAD_VARIABLES:
        env[variable] = str(threads)
    os.environ.clear()
    os.environ.update(env)


def _scrub_sys_path(workdir: str, hide: Sequence[str]) -> None:
    """Only the working folder and installed packages stay importable: no hidden folder, nothing holding solutions."""

    def reveals(path: str) -> bool:
        real = os.path.realpath(path)
        return any(real == os.path.realpath(h) or os.path.isdir(os.path.join(path, "solutions")) for h in hide)

    keep = [p for p in sys.path if p and os.path.isdir(p) and not reveals(p)]
    sys.path[:] = [workdir, *[p for p in keep if "site-packages" in p or "lib/python" in p]]


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (PR_SET_PDEATHSIG); no-op elsewhere."""
    with contextlib.suppress(Exception):
        parent = os.getppid()
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the request
            os._exit(1)


def limit_threads(threads: int) -> None:
    """Size TensorFlow's intra- and inter-op thread pools (before it runs an op); nothing without TensorFlow."""
    with contextlib.suppress(Exception):
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
