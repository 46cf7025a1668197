"""Run student code in a sandboxed child process; the grader only ever sees artifacts.

The trusted grading process (the parent) never imports a submission. For each question
it starts a child, forked from a *zygote* (a fork server) that imported Keras once (no
TensorFlow op has run there, so forking is safe; each child is a fresh copy, so no state
passes from one student or question to the next). The child:

* starts its own session (`setsid`), so killing "its parent's group" reaches only itself;
* runs in new PID and IPC namespaces where the kernel allows (`child.child_entry`): the
  zygote's child (a relay) forks the namespace's PID 1, which forks the student's process;
  when that process ends PID 1 exits and every process left in the namespace dies, and
  each link dies with its parent (PR_SET_PDEATHSIG), so nothing outlives the question,
  a SIGKILLed grader or a stopped `grader batch`; SysV IPC objects vanish too;
* gets a private working folder holding a copy of the submission, and, where the kernel
  lets root (or an unprivileged user namespace) create namespaces, a mount namespace with
  a minimal view (`mounts`): that folder is `/tmp` (the only writable host path), the
  checkout and the home folder show only Python, site-packages and the `grader` package
  (read-only), the solutions, the hidden data, the results store and the other
  submissions are covered by empty read-only mounts, every other mount is read-only;
  plus an empty network namespace (network off);
* drops to an unprivileged uid of its own (no passwd entry, so it owns nothing), which
  makes the rest of the file system read-only to it and lets the parent kill every
  process it forked, by uid, when the question ends;
* runs under `setrlimit` caps (`grader.options.Limits`): address space (memory),
  processes/threads, file size, open files, no core dumps; TensorFlow's thread pools are
  set to `threads`;
* has stdin/stdout/stderr on /dev/null; what the student prints during a call is caught
  at Python level in a bounded buffer.

Parent and child talk over a socket in JSON only (never pickle from the child), and the
parent bounds what it does with a reply (nesting, integer size, model configuration size
and layer count: `codec`; strings through `grader.text.clean`). Values go
as tagged JSON, numpy arrays as `.npy` files read with `allow_pickle=False`, Keras models
as their configuration or, when weights matter, as a `.keras` file; the parent rebuilds
them with `safe_mode=True`, so a model can carry no code. Structural checks only need the
architecture: sending AlexNet's 61M weights (~245 MB) both ways would cost seconds per
call, so weights travel only when a call's `grader.options.Transfer` asks for them, and a
model rebuilt from its architecture has zero weights.

The modules, parent side first:

* `executor`: `IsolatedExecutor` (what `checks.Context` calls) and `RemoteNamespace`;
* `process`: one child as the parent sees it: requests under the wall clock, death
  messages, killing by uid (`ChildFailure`);
* `folders`: the child's private copy of the submission, what it must not see, what it
  may only read;
* `zygote`: the parent's handle on its fork server (`warm_up` starts it early);
* `protocol`: the wire: `ChildSetup`, request ops, the message size cap;
* `codec`: values <-> tagged JSON and files, on both sides;
* `zygote_process`: the fork server itself (`python -m grader.sandbox.zygote_process`);
* `child`: the child's main loop: confine, load the submission, serve requests;
* `confinement` and `mounts`: namespaces, rlimits, uid, environment; the mount layout;
* `probe`: whether this machine can run the sandbox at all (not on macOS or Windows: a
  student's own `grader check` then grades unconfined and says so; grading for marks refuses).

Nothing Linux-only (`resource`, `/proc`, `fcntl`) is imported at module level: the package
imports on every platform, and `probe.available()` decides before anything is started.

The names below are imported on first use, so that starting the zygote
(`zygote.start`) costs the grading process almost nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .codec import Codec, RemoteHistory, unloadable_model_message
    from .confinement import die_with_parent, limit_threads
    from .executor import IsolatedExecutor, RemoteNamespace
    from .folders import hidden_paths, readonly_paths
    from .process import UID_BASE, UID_SLOTS, ChildFailure, next_uid, uid_processes
    from .protocol import PROTOCOL_MAX_BYTES, ChildSetup
    from .zygote import warm_up

_HOMES = {
    "codec": ("Codec", "RemoteHistory", "unloadable_model_message"),
    "confinement": ("die_with_parent", "limit_threads"),
    "executor": ("IsolatedExecutor", "RemoteNamespace"),
    "folders": ("hidden_paths", "readonly_paths"),
    "process": ("UID_BASE", "UID_SLOTS", "ChildFailure", "next_uid", "uid_processes"),
    "protocol": ("PROTOCOL_MAX_BYTES", "ChildSetup"),
    "zygote": ("warm_up",),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "PROTOCOL_MAX_BYTES",
    "UID_BASE",
    "UID_SLOTS",
    "ChildFailure",
    "ChildSetup",
    "Codec",
    "IsolatedExecutor",
    "RemoteHistory",
    "RemoteNamespace",
    "die_with_parent",
    "hidden_paths",
    "limit_threads",
    "next_uid",
    "readonly_paths",
    "uid_processes",
    "unloadable_model_message",
    "warm_up",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOME_OF[name]}", __name__), name)
    globals()[name] = value
    return value
