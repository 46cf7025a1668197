"""Run student code in a sandboxed child process; the grader only ever sees artifacts.

The trusted grading process (the parent) never imports a submission. For each question
it starts a child, forked from a *forkserver* that imported Keras once (no TensorFlow op
has run there, so forking is safe; each child is a fresh copy, so no state passes from
one student or question to the next). The child:

* starts its own session (`setsid`), so killing "its parent's group" reaches only itself;
* gets a private working folder holding a copy of the submission, and, where the kernel
  lets root create namespaces, a mount namespace in which that folder is `/tmp` and the
  solutions, the hidden data, the results store and the other submissions are covered by
  empty read-only mounts, plus an empty network namespace (network off);
* drops to an unprivileged uid of its own (no passwd entry, so it owns nothing), which
  makes the rest of the file system read-only to it and lets the parent kill every
  process it forked, by uid, when the question ends;
* runs under `setrlimit` caps: address space (memory), processes/threads, file size,
  open files, no core dumps; TensorFlow's thread pools are set to `threads`;
* has stdin/stdout/stderr on /dev/null; what the student prints during a call is caught
  at Python level in a bounded buffer.

Parent and child talk over a pipe in JSON only (never pickle from the child). Values go
as tagged JSON, numpy arrays as `.npy` files read with `allow_pickle=False`, Keras models
as their configuration (the `config.json` of a `.keras` file) or, when weights matter, as
a `.keras` file; the parent rebuilds them with `safe_mode=True`, so a model can carry no
code. Structural checks only need the architecture: sending AlexNet's 61M weights
(~245 MB) both ways would cost seconds per call, so weights travel only on request
(`weights=True` / `send_back_args=True`), and a model rebuilt from its architecture has
zero weights.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import hashlib
import dataclasses
import io
import json
import math
import os
import resource
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .checks import Question, StudentCall, StudentCodeError, StudentSide, describe_call, explain_exception, explain_failure
from .patching import patched

PROTOCOL_MAX_BYTES = 64 * 1024 * 1024
UID_BASE = 200_000  # child uid = UID_BASE + 16 * pid of the grading process + a rotating slot: unique among live graders
UID_SLOTS = 16
DEFAULT_STDOUT_BYTES = 64 * 1024


@dataclasses.dataclass(frozen=True)
class Limits:
    """Caps applied to the child process of one question."""

    wall_s: float = 300.0  # wall-clock time for the whole question (all its calls)
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


class ChildFailure(StudentCodeError):
    """The child process died, hung or broke the protocol: the question's later calls fail too."""


# --------------------------------------------------------------------------- value codec


class _Opaque:
    """Stands for a value that cannot leave the child; its class takes the original type's name."""

    def __init__(self, text: str) -> None:
        self._text = text

    def __repr__(self) -> str:
        return self._text


class RemoteHistory:
    """A `keras.callbacks.History` sent from the child: only its `history` dict."""

    def __init__(self, history: dict[str, Any]) -> None:
        self.history = history

    def __repr__(self) -> str:
        return f"<History {sorted(self.history)}>"


RemoteHistory.__name__ = "History"


def _opaque(type_name: str, text: str) -> Any:
    cls = type(type_name if type_name.isidentifier() else "object", (_Opaque,), {})
    return cls(text)


class Codec:
    """Tagged JSON for values crossing the process boundary; files go to `folder`."""

    def __init__(self, folder: Path, *, weights: bool = False, max_file_bytes: int = 1 << 30, compiled: bool = False) -> None:
        self.folder = Path(folder)
        self.weights = weights
        self.max_file_bytes = max_file_bytes
        # Models loaded with their compile settings: in the child (the grader's models, e.g. a compiled
        # one handed to a student's function); the grader only predicts with the student's models.
        self.compiled = compiled

    def _file(self, suffix: str) -> Path:
        return self.folder / f"{uuid.uuid4().hex}{suffix}"

    def encode(self, value: Any, depth: int = 0) -> Any:
        import numpy as np

        if depth > 50:
            return {"t": "opaque", "type": type(value).__name__, "repr": "<nested too deeply>"}
        if value is None or isinstance(value, (bool, int, str)):
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63:
                return {"t": "bigint", "v": str(value)}
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {"t": "float", "v": repr(value)}
        if isinstance(value, (list, tuple)):
            return {"t": type(value).__name__ if type(value) in (list, tuple) else "list", "v": [self.encode(v, depth + 1) for v in value]}
        if isinstance(value, dict):
            return {"t": "dict", "v": [[self.encode(k, depth + 1), self.encode(v, depth + 1)] for k, v in value.items()]}
        if isinstance(value, np.generic):
            return {"t": "npscalar", "dtype": str(value.dtype), "v": self.encode(value.item(), depth + 1)}
        if isinstance(value, np.ndarray):
            if value.dtype == object:
                return {"t": "opaque", "type": "ndarray", "repr": "<array of Python objects>"}
            path = self._file(".npy")
            np.save(path, value, allow_pickle=False)
            return {"t": "ndarray", "file": path.name}
        keras = sys.modules.get("keras")
        if keras is not None:
            if isinstance(value, keras.callbacks.History):
                return {"t": "history", "v": self.encode(dict(value.history), depth + 1)}
            if isinstance(value, keras.layers.Layer):
                return self._encode_layer(keras, value)
        text = repr(value) if type(value).__repr__ is not object.__repr__ else f"<{type(value).__name__} object>"
        return {"t": "opaque", "type": type(value).__name__, "repr": text[:200]}

    def _encode_layer(self, keras: Any, layer: Any) -> Any:
        kind = type(layer).__name__
        if self.weights and isinstance(layer, keras.Model):
            path = self._file(".keras")
            layer.save(path)
            return {"t": "keras", "file": path.name, "class": kind, "name": layer.name}
        config = keras.saving.serialize_keras_object(layer)
        path = self._file(".json")
        path.write_text(json.dumps(config))
        return {"t": "config", "file": path.name, "class": kind, "name": layer.name}

    def decode(self, data: Any) -> Any:
        import numpy as np

        if not isinstance(data, dict):
            if isinstance(data, list):  # never produced by encode; refuse quietly
                return [self.decode(v) for v in data]
            return data
        tag = data.get("t")
        if tag == "list":
            return [self.decode(v) for v in data["v"]]
        if tag == "tuple":
            return tuple(self.decode(v) for v in data["v"])
        if tag == "dict":
            out = {}
            for key, value in data["v"]:
                key = self.decode(key)
                try:
                    out[key] = self.decode(value)
                except TypeError:  # unhashable key
                    out[repr(key)] = self.decode(value)
            return out
        if tag == "float":
            return float(data["v"])
        if tag == "bigint":
            return int(data["v"])
        if tag == "npscalar":
            return np.dtype(str(data["dtype"])).type(self.decode(data["v"]))
        if tag == "ndarray":
            return np.load(self._checked(data["file"]), allow_pickle=False)
        if tag == "history":
            return RemoteHistory(self.decode(data["v"]))
        if tag in ("config", "keras"):
            return self._decode_model(data)
        if tag == "opaque":
            return _opaque(str(data.get("type", "object")), str(data.get("repr", ""))[:200])
        raise ValueError(f"unknown value tag {tag!r}")

    def _checked(self, name: str) -> Path:
        path = (self.folder / str(name)).resolve()
        if path.parent != self.folder.resolve() or path.is_symlink() or not path.is_file():
            raise ValueError(f"artifact {name!r} is not a plain file of the exchange folder")
        if path.stat().st_size > self.max_file_bytes:
            raise ValueError(f"artifact {name!r} is larger than {self.max_file_bytes} bytes")
        return path

    def _decode_model(self, data: Mapping[str, Any]) -> Any:
        import keras

        path = self._checked(data["file"])
        kind = str(data.get("class", "model"))
        try:
            if data["t"] == "keras":
                return keras.saving.load_model(path, safe_mode=True, compile=self.compiled)
            text = path.read_text()
            digest = hashlib.sha256(text.encode()).hexdigest()
            if digest in _REBUILT:
                _REBUILT.move_to_end(digest)
                return _REBUILT[digest]
            model = keras.saving.deserialize_keras_object(_zero_initializers(json.loads(text)), safe_mode=True)
            _remember(digest, model)
            return model
        except Exception as error:  # noqa: BLE001 - any failure to rebuild is the model's
            raise StudentCodeError(unloadable_model_message(kind, error)) from None


# Models rebuilt from architectures, by digest of their configuration: a configuration
# determines the rebuilt (zero-weight) model, and correct submissions share theirs, so a
# batch worker rebuilds AlexNet once rather than three times per student. Bounded by size.
_REBUILT: collections.OrderedDict[str, Any] = collections.OrderedDict()
REBUILT_MAX_PARAMS = 200_000_000  # ~800 MB of float32 weights


def _remember(digest: str, model: Any) -> None:
    try:
        size = int(model.count_params())
    except Exception:  # noqa: BLE001 - an unbuilt model is not worth keeping
        return
    if size > REBUILT_MAX_PARAMS:
        return
    _REBUILT[digest] = model
    while sum(int(m.count_params()) for m in _REBUILT.values()) > REBUILT_MAX_PARAMS:
        _REBUILT.popitem(last=False)


def _zero_initializers(config: Any) -> Any:
    """The config with every built-in initializer replaced by zeros: rebuilding AlexNet skips 61M random draws."""
    if isinstance(config, dict):
        out = {}
        for key, value in config.items():
            if (
                key.endswith("_initializer")
                and isinstance(value, dict)
                and value.get("module") == "keras.initializers"
                and value.get("registered_name") in (None, value.get("class_name"))
            ):
                out[key] = {"module": "keras.initializers", "class_name": "Zeros", "config": {}, "registered_name": None}
            else:
                out[key] = _zero_initializers(value)
        return out
    if isinstance(config, list):
        return [_zero_initializers(v) for v in config]
    return config


def unloadable_model_message(kind: str, error: BaseException) -> str:
    """Why a model from the child could not be rebuilt by the grader, for a student."""
    text = str(error)
    if "lambda" in text.lower() or "safe_mode" in text:
        return (
            f"Your {kind} contains a Lambda layer (or another piece of Python code), which the grader will not load: "
            "it rebuilds your model from its saved configuration with safe_mode=True. Use built-in layers "
            "(e.g. keras.layers.Rescaling or an activation argument) instead of Lambda."
        )
    return (
        f"The grader could not rebuild your {kind} from its saved configuration: your code runs in a separate "
        "process and only the model's .keras description reaches the grader, which never imports your classes. "
        "A subclassed keras.Model or a custom layer cannot be rebuilt without its Python class: build the model "
        "with keras.Sequential or the functional API (keras.Model(inputs, outputs)) and built-in layers. "
        f"(Keras said: {_first_line(text)})"
    )


def _first_line(text: str) -> str:
    line = next((l.strip() for l in text.splitlines() if l.strip()), "")
    return line if len(line) <= 200 else line[:197] + "..."


# --------------------------------------------------------------------------- the child


class _BoundedWriter(io.TextIOBase):
    """A text sink that keeps the first `limit` characters and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[str] = []
        self.size = 0
        self.dropped = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        text = str(text)
        room = self.limit - self.size
        if room > 0:
            self.parts.append(text[:room])
            self.size += min(len(text), room)
        self.dropped += max(0, len(text) - max(room, 0))
        return len(text)

    def getvalue(self) -> str:
        value = "".join(self.parts)
        if self.dropped:
            value += f"\n[... {self.dropped:,} more characters of output not kept]"
        return value


_CLONE_NEWNS = 0x00020000
_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_REMOUNT, _MS_BIND, _MS_MOVE, _MS_REC, _MS_PRIVATE = 1, 2, 4, 32, 4096, 8192, 16384, 1 << 18


def _libc() -> Any:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    return libc


def _mount(libc: Any, source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    if libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {target}: {os.strerror(errno)}")


def _needed_paths() -> list[str]:
    """Where this interpreter's code lives: the child must be able to import from there."""
    paths = {sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable)), os.path.dirname(os.path.dirname(__file__))}
    paths.update(p for p in sys.path if p and os.path.isdir(p))
    return sorted({os.path.realpath(p) for p in paths})


def _closed_ancestor(path: str) -> tuple[str, str] | None:
    """The first folder on the way to `path` that others may not enter, and its entry leading to `path`."""
    current = "/"
    for part in Path(path).parts[1:]:
        following = os.path.join(current, part)
        try:
            if not os.stat(current).st_mode & stat.S_IXOTH:
                return current, following
        except OSError:
            return None
        current = following
    return None


def _expose_python(libc: Any, private: str) -> list[str]:
    """Make the interpreter reachable by an unprivileged uid when it lives in a closed folder (e.g. /root/.pyenv).

    The closed folder gets an empty read-only tmpfs in which only the needed entries
    reappear (bound read-only): the child can import Python and nothing else from there.
    """
    closed: dict[str, set[str]] = {}
    for path in _needed_paths():
        found = _closed_ancestor(path)
        if found:
            closed.setdefault(found[0], set()).add(found[1])
    for folder, entries in closed.items():
        if folder == "/" or private.startswith(folder + os.sep):
            continue
        holds = []
        for index, entry in enumerate(sorted(entries)):
            hold = os.path.join(private, f".hold-{index}")
            os.mkdir(hold, 0o700)
            _mount(libc, entry, hold, None, _MS_BIND | _MS_REC)
            holds.append((entry, hold))
        _mount(libc, "tmpfs", folder, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=64k,mode=755")
        for entry, hold in holds:
            os.makedirs(entry, exist_ok=True)
            _mount(libc, hold, entry, None, _MS_MOVE)
            _mount(libc, None, entry, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY)
            os.rmdir(hold)
        _mount(libc, None, folder, None, _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)
    return sorted(closed)


def _private_mounts(libc: Any, private: str, hide: Sequence[str], readonly: Sequence[str] = ()) -> tuple[list[str], str]:
    """In a new mount namespace: `private` becomes /tmp (and /var/tmp, /dev/shm); `hide` gets empty read-only mounts.

    The `readonly` folders (the grader's checkout, the home folder) are bound read-only,
    so even a child that could write there by permissions cannot.
    """
    _mount(libc, None, "/", None, _MS_REC | _MS_PRIVATE)
    hidden = []
    real_private = os.path.realpath(private)
    covered = _expose_python(libc, real_private)
    for path in readonly:
        if any(path == c or path.startswith(c + os.sep) for c in covered):
            continue  # already an empty read-only folder holding only Python
        if os.path.isdir(path) and not real_private.startswith(os.path.realpath(path) + os.sep):
            _mount(libc, path, path, None, _MS_BIND | _MS_REC)
            _mount(libc, None, path, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY)
    for path in hide:  # before /tmp is covered: some hidden folders may live there
        if os.path.isdir(path) and not real_private.startswith(os.path.realpath(path) + os.sep):
            _mount(libc, "tmpfs", path, "tmpfs", _MS_RDONLY | _MS_NOSUID | _MS_NODEV, "size=4k,mode=555")
            hidden.append(path)
    keep = [*_needed_paths(), *readonly]
    for target in ("/var/tmp", "/dev/shm", "/tmp"):  # /tmp last: it covers `private`
        if os.path.isdir(target):
            _cover_keeping(libc, real_private, target, keep)
    return hidden, "/tmp"


def _cover_keeping(libc: Any, private: str, target: str, keep: Sequence[str]) -> None:
    """Bind `private` over `target`; the `keep` folders inside `target` reappear read-only.

    A checkout (and its virtual environment) cloned under /tmp must stay importable
    when /tmp becomes the child's private folder.
    """
    real_target = os.path.realpath(target)
    inside = sorted({os.path.realpath(p) for p in keep if os.path.realpath(p).startswith(real_target + os.sep)})
    tops = [p for p in inside if not any(p.startswith(q + os.sep) for q in inside if q != p)]
    tops = [p for p in tops if os.path.isdir(p) and not private.startswith(p + os.sep) and p != private]
    holds = []
    for index, path in enumerate(tops):
        hold = os.path.join(private, f".keep-{index}")
        os.mkdir(hold, 0o700)
        _mount(libc, path, hold, None, _MS_BIND | _MS_REC)
        holds.append((path, os.path.basename(hold)))
    _mount(libc, private, target, None, _MS_BIND | _MS_REC)  # recursive: the holds come along
    for path, hold in holds:
        destination = os.path.join(target, os.path.relpath(path, real_target))
        os.makedirs(destination, exist_ok=True)
        _mount(libc, os.path.join(target, hold), destination, None, _MS_MOVE)
        _mount(libc, None, destination, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY)
        # The empty hold folder stays (root's, mode 700): its twin under the real private path is still a mount point.


def _sandbox(setup: Mapping[str, Any]) -> dict[str, Any]:
    """Confine this (forked, single-threaded) child; returns what was enforced."""
    enforced: dict[str, Any] = {"process": True, "session": True}
    private = str(setup["private"])
    workdir = private
    libc = _libc()
    uid = int(setup["uid"])
    dropping = setup["drop_privileges"] and os.geteuid() == 0
    if dropping:  # the private folder becomes the child's own, before /tmp is covered
        os.chown(private, uid, uid)
        for entry in os.scandir(private):
            os.lchown(entry.path, uid, uid)
    if setup["namespaces"] and os.geteuid() == 0:
        if libc.unshare(_CLONE_NEWNS | _CLONE_NEWNET) == 0:
            enforced["network"] = "off"
            try:
                enforced["hidden"], workdir = _private_mounts(libc, private, setup["hide"], setup.get("readonly", ()))
            except OSError as error:
                enforced["hidden"] = f"not available: {error}"
        else:
            reason = os.strerror(ctypes.get_errno())
            if libc.unshare(_CLONE_NEWNET) == 0:
                enforced["network"] = "off"
            else:
                enforced["network"] = f"not available: unshare: {reason}"
            enforced["hidden"] = f"not available: unshare(CLONE_NEWNS): {reason}"
    elif setup["namespaces"]:
        # Not root: an unprivileged user namespace gives the same mounts where the kernel allows it.
        outer_uid, outer_gid = os.getuid(), os.getgid()
        if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNS | _CLONE_NEWNET) == 0:
            try:
                with open("/proc/self/setgroups", "w") as f:
                    f.write("deny")
                with open("/proc/self/uid_map", "w") as f:
                    f.write(f"{outer_uid} {outer_uid} 1")
                with open("/proc/self/gid_map", "w") as f:
                    f.write(f"{outer_gid} {outer_gid} 1")
                enforced["network"] = "off"
                enforced["hidden"], workdir = _private_mounts(libc, private, setup["hide"], setup.get("readonly", ()))
            except OSError as error:
                enforced.setdefault("network", "off")
                enforced["hidden"] = f"not available: {error}"
        else:
            reason = os.strerror(ctypes.get_errno())
            enforced["network"] = f"not available: unprivileged user namespaces: {reason}"
            enforced["hidden"] = f"not available: the grader is not root and user namespaces are refused ({reason})"
    else:
        enforced["network"] = "not available: disabled"
        enforced["hidden"] = "not available: disabled"

    limits = setup["limits"]
    vm = _vm_bytes()
    caps = {
        resource.RLIMIT_AS: vm + int(limits["memory_mb"]) * 1024 * 1024,
        resource.RLIMIT_FSIZE: int(limits["file_mb"]) * 1024 * 1024,
        resource.RLIMIT_NOFILE: int(limits["open_files"]),
        resource.RLIMIT_CORE: 0,
    }
    if dropping:
        caps[resource.RLIMIT_NPROC] = int(limits["processes"])
    for which, value in caps.items():
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(which, (value, value))
    enforced["memory_mb"] = int(limits["memory_mb"])
    enforced["threads"] = int(limits["threads"])
    if dropping:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        enforced["user"] = f"uid {uid} (unprivileged)"
    else:
        enforced["user"] = f"not dropped: uid {os.getuid()}" + ("" if os.geteuid() == 0 else " is already unprivileged")
    die_with_parent()  # after setuid, which clears it: a dead grader leaves no student code running
    os.chdir(workdir)
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL") or k.startswith(("TF_", "ABSL_", "GRPC_", "KERAS_BACKEND"))}
    env.update(HOME=workdir, KERAS_HOME=os.path.join(workdir, ".keras"), TMPDIR=workdir, PYTHONDONTWRITEBYTECODE="1")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        env[var] = str(limits["threads"])
    os.environ.clear()
    os.environ.update(env)
    keep = [p for p in sys.path if p and os.path.isdir(p) and not any(os.path.realpath(p) == os.path.realpath(h) or os.path.isdir(os.path.join(p, "solutions")) for h in setup["hide"])]
    sys.path[:] = [workdir, *[p for p in keep if "site-packages" in p or "lib/python" in p]]
    enforced["cwd"] = "private temporary folder"
    return enforced


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (PR_SET_PDEATHSIG); no-op elsewhere."""
    with contextlib.suppress(Exception):
        parent = os.getppid()
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the request
            os._exit(1)


def _vm_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _limit_threads(threads: int) -> None:
    with contextlib.suppress(Exception):
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def child_main(fd: int, setup: dict[str, Any]) -> None:
    """Entry point of the child (forked by the zygote): sandbox, import the submission, answer call requests."""
    from multiprocessing.connection import Connection

    conn = Connection(fd)
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    sys.stdout = _BoundedWriter(0)
    sys.stderr = _BoundedWriter(0)
    try:
        enforced = _sandbox(setup)
        _limit_threads(int(setup["limits"]["threads"]))
    except Exception as error:  # noqa: BLE001 - report and stop: never run student code unconfined
        conn.send_bytes(json.dumps({"fatal": f"the sandbox could not be set up: {type(error).__name__}: {error}"}).encode())
        os._exit(3)
    stdout_cap = int(setup["limits"]["stdout_bytes"])
    module_path = os.path.join(os.getcwd(), setup["filename"])
    namespace: dict[str, Any] = {}
    load_error = None
    if not os.path.isfile(module_path):
        load_error = f"{setup['filename']} was not found in {setup['display_folder']}."
    else:
        namespace, load_error = _load_submission(module_path, setup["module"], setup["filename"], stdout_cap)
    names = {name: ("function" if callable(value) else "value") for name, value in namespace.items() if not name.startswith("__")}
    _send(conn, {"hello": True, "load_error": load_error, "names": names, "enforced": enforced})
    codec = Codec(Path(os.getcwd()))
    while True:
        try:
            request = json.loads(conn.recv_bytes())
        except (EOFError, OSError):
            os._exit(0)
        op = request.get("op")
        if op == "exit":
            os._exit(0)
        try:
            reply = _serve(op, request, namespace, codec, module_path, stdout_cap)
        except MemoryError:
            reply = {"raised": "The sandboxed process ran out of memory while handling the call's data."}
        except Exception as error:  # noqa: BLE001 - a grader-side failure, reported as such
            reply = {"internal": f"{type(error).__name__}: {str(error)[:1000]}"}
        reply["id"] = request.get("id")
        _send(conn, reply)


def _send(conn: Any, message: dict[str, Any]) -> None:
    conn.send_bytes(json.dumps(message).encode())


def _load_submission(path: str, module: str, filename: str, stdout_cap: int) -> tuple[dict[str, Any], str | None]:
    import importlib.util

    spec = importlib.util.spec_from_file_location(module, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[module] = mod
    try:
        with contextlib.redirect_stdout(_BoundedWriter(stdout_cap)):
            spec.loader.exec_module(mod)
    except SyntaxError as error:
        return {}, f"{filename} has a syntax error on line {error.lineno}: {error.msg}."
    except SystemExit as error:
        return {}, f"{filename} calls sys.exit({error.code!r}) while loading: remove it (the file is imported, not run as a script)."
    except MemoryError:
        return {}, f"{filename} ran out of memory while loading (top-level code allocates too much)."
    except BaseException as error:  # noqa: BLE001 - top-level student code may raise anything
        return {}, explain_exception(f"import {module}", error, path) + " (while loading the file)."
    return vars(mod), None


def _serve(op: str, request: Mapping[str, Any], namespace: dict[str, Any], codec: Codec, source: str, stdout_cap: int) -> dict[str, Any]:
    name = str(request.get("name"))
    if op == "value":
        if name not in namespace:
            return {"missing": True}
        return {"ok": Codec(codec.folder, weights=False).encode(namespace[name])}
    if op == "run":
        return _run_grader_function(request, namespace, codec, source, stdout_cap)
    if op != "call":
        return {"error": f"unknown op {op!r}"}
    if namespace.get(name) is None:
        return {"missing": True}
    args_codec = Codec(codec.folder, weights=bool(request.get("weights")), compiled=True)
    args = args_codec.decode({"t": "tuple", "v": request.get("args", [])})
    kwargs = args_codec.decode({"t": "dict", "v": request.get("kwargs", [])})
    call = describe_call(name, args, kwargs)
    weightless = not (request.get("weights") or request.get("weights_back") or request.get("send_back_args"))
    student = StudentSide(namespace, source, stdout=lambda: _BoundedWriter(stdout_cap))
    try:
        with _zero_weights(weightless):
            outcome = student.call(name, *args, **kwargs)
    except StudentCodeError as error:
        return {"raised": str(error), "stdout": getattr(error, "stdout", "")}
    out_codec = Codec(codec.folder, weights=bool(request.get("send_back_args")))
    try:
        reply: dict[str, Any] = {"ok": Codec(codec.folder, weights=bool(request.get("weights_back"))).encode(outcome.value), "stdout": outcome.stdout}
        if request.get("send_back_args"):
            reply["args"] = out_codec.encode(tuple(args))
            reply["kwargs"] = out_codec.encode(dict(kwargs))
    except Exception as error:  # noqa: BLE001 - e.g. a model that cannot be serialised
        return {"raised": f"What `{call}` returned could not be sent to the grader: {type(error).__name__}: {_first_line(str(error))}. "
                "Return built-in types and keras models built from built-in layers.", "stdout": outcome.stdout}
    return reply


def _run_grader_function(request: Mapping[str, Any], namespace: dict[str, Any], codec: Codec, source: str, stdout_cap: int) -> dict[str, Any]:
    """The `run` op: a grader function called beside the student's code (`Context.run_with_student`)."""
    from .checks import CheckFailed, resolve_grader_function

    function = resolve_grader_function(str(request["target"]))
    if request.get("seed") is not None:  # before decoding: layers rebuilt from configurations draw their seeds
        import keras

        keras.utils.set_random_seed(int(request["seed"]))
    args_codec = Codec(codec.folder, weights=True, compiled=True)
    args = args_codec.decode({"t": "tuple", "v": request.get("args", [])})
    kwargs = args_codec.decode({"t": "dict", "v": request.get("kwargs", [])})
    student = StudentSide(namespace, source, stdout=lambda: _BoundedWriter(stdout_cap))
    try:
        value = function(student, *args, **kwargs)
    except CheckFailed as failure:
        return {"failed": str(failure), "student": isinstance(failure, StudentCodeError), "stdout": getattr(failure, "stdout", "")}
    except (Exception, SystemExit) as error:  # noqa: BLE001 - student code reached outside `StudentSide.call`
        return {"raised": explain_failure(f"{function.__name__} (the grader's call of your code)", error, source)}
    try:
        return {"ok": Codec(codec.folder, weights=True).encode(value)}
    except Exception as error:  # noqa: BLE001 - e.g. a trained model that cannot be serialised
        return {"raised": f"The grader could not send back what your code produced: {type(error).__name__}: {_first_line(str(error))}. "
                "Use keras models built from built-in layers (Sequential or functional)."}


@contextlib.contextmanager
def _zero_weights(active: bool) -> Iterator[None]:
    """While a call whose weights never leave the child runs, Keras's random initializers give zeros.

    Structural checks look only at architectures, so random draws for AlexNet's 61M
    weights (~1 s per build) are wasted; zeros cost ~0.3 s. Not used when weights matter.
    """
    if not active:
        yield
        return
    import keras

    classes = [keras.initializers.VarianceScaling, keras.initializers.RandomUniform, keras.initializers.RandomNormal,
               keras.initializers.TruncatedNormal, keras.initializers.Orthogonal]

    def zeros(self, shape, dtype=None):
        return keras.ops.zeros(shape, dtype=dtype)

    with patched(classes, "__call__", zeros):
        yield


# --------------------------------------------------------------------------- the parent

class Zygote:
    """The trusted fork server of this grading process (`grader._zygote`), started on first use."""

    def __init__(self) -> None:
        import socket
        import subprocess

        from .quiet import silence_frameworks

        silence_frameworks()
        os.environ.setdefault("KERAS_HOME", tempfile.mkdtemp(prefix="cnn-grader-keras-"))
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.socket = ours
        self.process = subprocess.Popen(
            [sys.executable, "-m", "grader._zygote", str(theirs.fileno())],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            cwd=tempfile.gettempdir(), start_new_session=True,
        )
        theirs.close()
        self._buffer = b""
        self.exits: dict[int, int] = {}
        self._expect("ready", timeout=300)

    def alive(self) -> bool:
        return self.process.poll() is None

    def _read(self, timeout: float) -> dict[str, Any] | None:
        import select

        while b"\n" not in self._buffer:
            ready, _, _ = select.select([self.socket], [], [], timeout)
            if not ready:
                return None
            data = self.socket.recv(1 << 16)
            if not data:
                raise RuntimeError("the isolation zygote died")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        message = json.loads(line)
        if "exited" in message:
            self.exits[int(message["exited"])] = int(message["code"])
        return message

    def _expect(self, key: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            message = self._read(max(0.0, deadline - time.monotonic()))
            if message is None:
                raise RuntimeError(f"the isolation zygote did not answer ({key}) within {timeout:g} s")
            if key in message:
                return message

    def spawn(self, setup: Mapping[str, Any]) -> tuple[int, Any]:
        """Fork a child running `child_main(setup)`; returns its pid and the parent's end of its channel."""
        import socket
        from multiprocessing.connection import Connection

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        socket.send_fds(self.socket, [json.dumps(setup).encode() + b"\n"], [theirs.fileno()])
        theirs.close()
        pid = int(self._expect("spawned", timeout=60)["spawned"])
        return pid, Connection(ours.detach())

    def exit_code(self, pid: int, timeout: float = 5.0) -> int | None:
        """The child's exit code (negative: killed by that signal), once the zygote reaped it."""
        deadline = time.monotonic() + timeout
        while pid not in self.exits and time.monotonic() < deadline:
            if self._read(max(0.0, deadline - time.monotonic())) is None:
                break
        return self.exits.pop(pid, None)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.socket.close()
        with contextlib.suppress(Exception):
            self.process.kill()
            self.process.wait(5)


_ZYGOTE_LOCK = threading.Lock()
_ZYGOTE: Zygote | None = None


def zygote() -> Zygote:
    """This process's zygote (restarted if it died)."""
    global _ZYGOTE
    with _ZYGOTE_LOCK:
        if _ZYGOTE is None or not _ZYGOTE.alive():
            _ZYGOTE = Zygote()
        return _ZYGOTE


def warm_up() -> None:
    """Start the zygote now (it imports Keras), so the first question does not pay for it."""
    zygote()


def hidden_paths(extra: Sequence[os.PathLike | str] = ()) -> list[str]:
    """Folders the child must not see: solutions, hidden data, plus `extra` (results, other submissions)."""
    from .paths import data_home, solutions_dir

    paths = [solutions_dir(), data_home(), Path("/usr/share/datasets"), Path.home() / ".keras" / "datasets", *map(Path, extra)]
    keras_home = os.environ.get("KERAS_HOME")
    if keras_home:
        paths.append(Path(keras_home) / "datasets")
    needed = [os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, Path(__file__).parent)]
    out = []
    for path in paths:
        real = os.path.realpath(path)
        covers_needed = any(n == real or n.startswith(real + os.sep) for n in needed)
        if os.path.isdir(real) and real not in out and not covers_needed:
            out.append(real)
    return out


def readonly_paths() -> list[str]:
    """Folders bound read-only in the child: the grader's checkout and the home folder."""
    from .paths import REPO_ROOT

    out = []
    for path in (REPO_ROOT, Path.home()):
        real = os.path.realpath(path)
        if os.path.isdir(real) and real != "/" and real not in out:
            out.append(real)
    return out


class IsolatedExecutor:
    """One child process for one question of one submission; use as a context manager."""

    def __init__(
        self,
        question: Question,
        folder: Path,
        *,
        limits: Limits | None = None,
        hide: Sequence[os.PathLike | str] = (),
    ) -> None:
        self.question = question
        self.folder = Path(folder)
        self.limits = limits or Limits()
        self.hide = list(hide)
        self.source = str(self.folder / question.filename)
        self.load_error: str | None = None
        self.names: dict[str, str] = {}
        self.enforced: dict[str, Any] = {"process": True}
        self.calls = 0
        self._dead: str | None = None
        self._pid: int | None = None
        self._zygote: Zygote | None = None
        self._exit_code: int | None = None
        self._sequence = 0
        self._conn: Any = None
        self._private: Path | None = None
        self._deadline = 0.0
        self._uid = next_uid()

    # -- life cycle

    def __enter__(self) -> "IsolatedExecutor":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> None:
        """Start the child, copy the submission into its folder, and wait for it to load the file."""
        base = Path(tempfile.gettempdir()) / "cnn-grader-sandbox"
        base.mkdir(mode=0o711, exist_ok=True)
        _remove_stale(base)
        self._private = Path(tempfile.mkdtemp(prefix="q-", dir=base))
        os.chmod(self._private, 0o700)
        _copy_submission(self.folder, self._private)
        setup = {
            "private": str(self._private),
            "filename": self.question.filename,
            "module": self.question.module,
            "display_folder": str(self.folder),
            # the submission's own folder is hidden too: the child works on its private copy
            "hide": hidden_paths([*self.hide, self.folder.resolve()]),
            "readonly": readonly_paths(),
            "limits": dataclasses.asdict(self.limits),
            "uid": self._uid,
            "drop_privileges": self.limits.drop_privileges,
            "namespaces": self.limits.namespaces,
        }
        self._kill_uid()  # leftovers of a previous question run under the same uid
        self._zygote = zygote()
        self._deadline = time.monotonic() + self.limits.wall_s
        self._pid, self._conn = self._zygote.spawn(setup)
        try:
            hello = self._receive("loading " + self.question.filename)
        except ChildFailure as failure:
            self.load_error = str(failure)
            return
        if "fatal" in hello:
            self.load_error = f"The grader could not start a sandbox for your code: {hello['fatal']}. Please tell your TA."
            self._dead = self.load_error
            return
        self.load_error = hello.get("load_error")
        self.names = {str(k): str(v) for k, v in dict(hello.get("names", {})).items()}
        enforced = hello.get("enforced", {})
        self.enforced = {k: enforced[k] for k in ("process", "session", "network", "user", "hidden", "memory_mb", "threads") if k in enforced}
        self.enforced["wall_s"] = self.limits.wall_s

    def close(self) -> None:
        """Stop the child and everything it started; remove its folder."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                if self._dead is None:
                    self._conn.send_bytes(b'{"op": "exit"}')
                    self._wait_exit(1.0)
            with contextlib.suppress(Exception):
                self._conn.close()
        self._kill()
        self._wait_exit(2.0)
        self._kill_uid()
        if self._private is not None:
            shutil.rmtree(self._private, ignore_errors=True)
        self._conn = None

    def _wait_exit(self, timeout: float) -> int | None:
        if self._exit_code is None and self._pid is not None and self._zygote is not None:
            with contextlib.suppress(Exception):
                self._exit_code = self._zygote.exit_code(self._pid, timeout)
        return self._exit_code

    def _kill(self) -> None:
        if self._pid is None or self._exit_code is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self._pid, signal.SIGKILL)
        self._kill_uid()

    def _kill_uid(self) -> None:
        """Stop, then kill, every process running as the child's uid (what it forked, even in new sessions)."""
        if not (self.limits.drop_privileges and os.geteuid() == 0):
            return
        for _ in range(200):
            pids = uid_processes(self._uid)
            if not pids:
                break
            for sig in (signal.SIGSTOP, signal.SIGKILL):  # frozen processes cannot fork any more
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, sig)
            time.sleep(0.01)
        deadline = time.monotonic() + 2.0
        while uid_processes(self._uid, zombies=True) and time.monotonic() < deadline:
            time.sleep(0.02)  # the zygote (a subreaper) reaps what student code forked

    # -- protocol

    def _receive(self, what: str) -> dict[str, Any]:
        remaining = self._deadline - time.monotonic()
        try:
            ready = remaining > 0 and self._conn.poll(remaining)
            if not ready:
                self._kill()
                raise self._fail(
                    f"{what} did not finish within the {self.limits.wall_s:g}-second limit for this question "
                    "(an endless loop, or far too much work?): your code was stopped."
                )
            raw = self._conn.recv_bytes(PROTOCOL_MAX_BYTES)
        except (EOFError, OSError) as error:
            if not (isinstance(error, OSError) and "message length" in str(error).lower()):
                self._wait_exit(3.0)  # it died: let the zygote report how
            self._kill()
            raise self._fail(self._death_message(what, error)) from None
        try:
            message = json.loads(raw)
            if not isinstance(message, dict):
                raise ValueError("not an object")
        except ValueError:
            self._kill()
            raise self._fail(f"{what}: the sandboxed process sent something that is not a grader reply (tampering?).") from None
        return message

    def _fail(self, message: str) -> ChildFailure:
        self._dead = message
        return ChildFailure(message)

    def _death_message(self, what: str, error: BaseException) -> str:
        code = self._wait_exit(3.0)
        if isinstance(error, OSError) and "message length" in str(error).lower():
            return f"{what} sent back more than {PROTOCOL_MAX_BYTES // 2**20} MB: return less data."
        if code is None:
            return f"{what} stopped answering (the sandboxed process closed its channel)."
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else f"signal {-code}"
            if -code == signal.SIGKILL:
                return (
                    f"{what} was killed (signal SIGKILL): it ran out of memory (the limit is {self.limits.memory_mb:,} MB "
                    "on top of what TensorFlow needs) or killed its own process."
                )
            if -code in (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT):
                hint = " (this is often running out of memory inside TensorFlow)" if -code == signal.SIGABRT else ""
                return f"{what} crashed (signal {name}){hint}: your code killed the process it ran in."
            return f"{what} was stopped by signal {name}: do not send signals to your own process."
        return (
            f"{what} ended the process it ran in (exit code {code}), e.g. with os._exit, sys.exit or quit(): "
            "a function must return its result."
        )

    def _request(self, message: dict[str, Any], what: str) -> dict[str, Any]:
        if self._dead is not None:
            raise ChildFailure(f"{what} was not run: earlier in this question, {_lower_first(self._dead)}")
        if self.load_error is not None:
            raise StudentCodeError(self.load_error)
        self._sequence += 1
        message["id"] = self._sequence
        try:
            self._conn.send_bytes(json.dumps(message).encode())
        except (OSError, ValueError) as error:
            self._kill()
            raise self._fail(self._death_message(what, error)) from None
        while True:  # replies to earlier requests (e.g. from processes the student forked) are skipped
            reply = self._receive(what)
            if reply.get("id") == self._sequence:
                return reply

    # -- the executor interface used by `Context`

    def value(self, name: str) -> Any:
        """The student's plain value `name` (e.g. a written answer), decoded."""
        reply = self._request({"op": "value", "name": name}, f"reading `{name}`")
        if reply.get("missing"):
            raise KeyError(name)
        return Codec(self._private).decode(reply.get("ok"))

    def call(
        self,
        name: str,
        args: tuple = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        weights: bool = False,
        weights_back: bool = False,
        send_back_args: bool = False,
    ) -> StudentCall:
        """Run the student's `name(*args, **kwargs)` in the child; raises `StudentCodeError` when it fails.

        `weights` sends model arguments with their weights (default: architecture only);
        `weights_back` returns a returned model with its weights; `send_back_args` also
        returns the arguments as the call left them (models with weights: what training
        changed).
        """
        kwargs = dict(kwargs or {})
        call = f"`{describe_call(name, args, kwargs)}`"
        self.calls += 1
        codec = Codec(self._private, weights=weights or send_back_args)
        try:
            encoded_args = codec.encode(tuple(args))["v"]
            encoded_kwargs = codec.encode(kwargs)["v"]
        except Exception as error:  # noqa: BLE001 - a grader-side problem
            raise RuntimeError(f"cannot send the arguments of {call} to the sandbox: {error}") from error
        _chown_tree(self._private, self._uid if self.limits.drop_privileges and os.geteuid() == 0 else None)
        reply = self._request(
            {"op": "call", "name": name, "args": encoded_args, "kwargs": encoded_kwargs, "weights": weights or send_back_args,
             "weights_back": weights_back, "send_back_args": send_back_args},
            call,
        )
        if reply.get("missing"):
            raise KeyError(name)
        if "internal" in reply:
            raise RuntimeError(f"the sandbox could not run {call}: {reply['internal']}")
        stdout = str(reply.get("stdout", ""))[: self.limits.stdout_bytes + 200]
        if "raised" in reply:
            error = StudentCodeError(str(reply["raised"]))
            error.stdout = stdout  # type: ignore[attr-defined]
            raise error
        decoder = Codec(self._private, max_file_bytes=self.limits.file_mb * 1024 * 1024)
        value = decoder.decode(reply.get("ok"))
        outcome = StudentCall(value, stdout, tuple(args), dict(kwargs))
        if send_back_args:
            outcome.args = tuple(decoder.decode(reply.get("args", {"t": "tuple", "v": []})))
            outcome.kwargs = dict(decoder.decode(reply.get("kwargs", {"t": "dict", "v": []})))
        return outcome

    def run(self, target: str, args: tuple = (), kwargs: Mapping[str, Any] | None = None, *, seed: int | None = None) -> Any:
        """Run the grader function `target` in the child beside the student's code (`Context.run_with_student`).

        Arguments and result cross as artifacts, models with their weights. Raises
        `StudentCodeError` or `CheckFailed` as the function did there.
        """
        from .checks import CheckFailed

        what = f"the grader's {target.rpartition(':')[2]} with your code"
        codec = Codec(self._private, weights=True)
        try:
            encoded_args = codec.encode(tuple(args))["v"]
            encoded_kwargs = codec.encode(dict(kwargs or {}))["v"]
        except Exception as error:  # noqa: BLE001 - a grader-side problem
            raise RuntimeError(f"cannot send the arguments of {target} to the sandbox: {error}") from error
        _chown_tree(self._private, self._uid if self.limits.drop_privileges and os.geteuid() == 0 else None)
        self.calls += 1
        reply = self._request({"op": "run", "target": target, "args": encoded_args, "kwargs": encoded_kwargs, "seed": seed}, what)
        if "internal" in reply:
            raise RuntimeError(f"the sandbox could not run {target}: {reply['internal']}")
        if "failed" in reply:
            kind = StudentCodeError if reply.get("student") else CheckFailed
            failure = kind(str(reply["failed"]))
            failure.stdout = str(reply.get("stdout", ""))[: self.limits.stdout_bytes + 200]  # type: ignore[attr-defined]
            raise failure
        if "raised" in reply:
            raise StudentCodeError(str(reply["raised"]))
        return Codec(self._private, max_file_bytes=self.limits.file_mb * 1024 * 1024).decode(reply.get("ok"))

    def describe(self) -> dict[str, Any]:
        """What isolation was in force, for the result's meta."""
        return dict(self.enforced)


_UID_COUNTER = [0]


def next_uid() -> int:
    """A uid for the next child: each question of this grading process gets the next of its 16 slots."""
    _UID_COUNTER[0] += 1
    return UID_BASE + UID_SLOTS * os.getpid() + _UID_COUNTER[0] % UID_SLOTS


def uid_processes(uid: int, *, zombies: bool = False) -> list[int]:
    """Processes whose real uid is `uid` (zombies too, if asked: they still count against RLIMIT_NPROC)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as status:
                fields = dict(line.split(":", 1) for line in status if ":" in line)
            if int(fields["Uid"].split()[0]) == uid and (zombies or not fields["State"].strip().startswith(("Z", "X"))):
                found.append(int(entry))
        except (OSError, KeyError, ValueError):
            continue
    return found


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text.startswith("`") is False else text


def _chown_tree(folder: Path | None, uid: int | None) -> None:
    if folder is None or uid is None:
        return
    for entry in os.scandir(folder):
        with contextlib.suppress(OSError):
            os.lchown(entry.path, uid, uid)


def _remove_stale(base: Path, age_s: float = 6 * 3600) -> None:
    """Remove sandbox folders left by a killed grader (older than `age_s`)."""
    cutoff = time.time() - age_s
    with contextlib.suppress(OSError):
        for entry in os.scandir(base):
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    shutil.rmtree(entry.path, ignore_errors=True)


def _copy_submission(source: Path, target: Path, max_bytes: int = 50 * 1024 * 1024) -> None:
    """Copy the submission's files (not folders, not links, nothing huge) into the private folder."""
    if not source.is_dir():
        return
    for entry in os.scandir(source):
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat().st_size <= max_bytes:
                shutil.copyfile(entry.path, target / entry.name)
        except OSError:
            continue


class RemoteNamespace(Mapping):
    """The submission's names as the parent sees them: functions become calls into the child."""

    def __init__(self, executor: IsolatedExecutor) -> None:
        self._executor = executor

    def __getitem__(self, name: str) -> Any:
        kind = self._executor.names.get(name)
        if kind is None:
            raise KeyError(name)
        if kind == "function":
            executor = self._executor

            def remote(*args: Any, **kwargs: Any) -> Any:
                return executor.call(name, args, kwargs).value

            remote.__name__ = name
            return remote
        return self._executor.value(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._executor.names)

    def __len__(self) -> int:
        return len(self._executor.names)


def question_limits(question: Question, limits: Limits, options: Mapping[str, Any]) -> Limits:
    """`limits` as `question` needs them: a module may define `sandbox_limits(limits, options)` (e.g. training time)."""
    module = sys.modules.get(f"grader.questions.{question.module}")
    adjust = getattr(module, "sandbox_limits", None)
    return adjust(limits, options) if adjust is not None else limits
