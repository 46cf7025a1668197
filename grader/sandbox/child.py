"""The sandboxed child: confine itself, import the submission, then answer the parent's requests until told to exit.

`child_entry` runs in the process the zygote (`zygote_process`) forked. Where the kernel
gives it new PID and IPC namespaces, three processes make up one child:

* the *relay* (the zygote's child, the pid the parent knows): waits, then ends as the
  student's process ended (same exit code or signal), so death messages stay truthful;
* the namespace's *init* (PID 1, still the grader's): reaps what student code forks and,
  when the student's process ends, exits, and with it the kernel kills every process
  left in the namespace (daemons in new sessions included) and drops its SysV IPC objects;
* the *student's process* (PID 2), confined by `confine`, which loads and serves the code.

Each dies with its parent (PR_SET_PDEATHSIG), so killing the grader, or `grader batch`,
by any signal reaches the whole chain. Without the namespaces, `child_main` runs in the
zygote's child itself (the parent then still kills what it forked by uid). Everything it sends back is
JSON and files of its private folder (`Codec`); whatever student code raises, prints or
returns becomes a reply, never a crash of the loop.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import os
import signal
import sys
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from .. import progress
from ..checks import CheckFailed, StudentCodeError, StudentSide, describe_call, explain_failure, resolve_grader_function
from ..diagnoses import NOT_REBUILDABLE
from ..options import Transfer
from ..patching import built_unallocated, zero_initialized
from ..submission import load_file, not_found_message
from .codec import Codec, first_line
from .confinement import confine, die_with_parent, limit_threads, process_namespaces
from .protocol import ChildSetup, Op, send
from .traced import keep

Reply = dict[str, Any]


class BoundedWriter(io.TextIOBase):
    """A text sink that keeps the last `limit` characters (the end of a log says most) and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: collections.deque[str] = collections.deque()
        self.size = 0
        self.dropped = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        text = str(text)
        self.parts.append(text)
        self.size += len(text)
        while self.size > self.limit and self.parts:  # drop from the front: the oldest output goes first
            excess, first = self.size - self.limit, self.parts[0]
            cut = min(excess, len(first))
            if cut == len(first):
                self.parts.popleft()
            else:
                self.parts[0] = first[cut:]
            self.size -= cut
            self.dropped += cut
        return len(text)

    def getvalue(self) -> str:
        value = "".join(self.parts)
        if self.dropped:
            value = f"[... {self.dropped:,} earlier characters of output not kept]\n" + value
        return value


def child_entry(fd: int, setup: ChildSetup) -> None:
    """Entry point of the zygote's child: new PID and IPC namespaces where allowed, then `child_main`."""
    os.setsid()
    die_with_parent()  # dies with the zygote, which dies with the grader
    try:
        processes = process_namespaces(setup)
    except Exception as error:  # noqa: BLE001 - reported by the child: student code never runs unconfined
        processes = {"fatal": f"{type(error).__name__}: {error}"}
    if processes.get("pid") != "own namespace":
        child_main(fd, setup, processes)
        return
    _relay(fd, setup, processes)


def _relay(fd: int, setup: ChildSetup, processes: dict[str, str]) -> None:
    """Fork the namespace's init, which forks the student's process; end as that process ended."""
    read_end, write_end = os.pipe()
    init = os.fork()
    if init == 0:  # PID 1 of the new namespace
        os.close(read_end)
        code = 1
        try:
            _init(fd, setup, processes, write_end)
            code = 0
        finally:
            os._exit(code)
    os.close(fd)  # only the student's process holds the channel: its death closes it
    os.close(write_end)
    _, status = os.waitpid(init, 0)
    with os.fdopen(read_end, "rb") as reported:
        text = reported.read(64)
    with contextlib.suppress(ValueError):
        status = int(text) if text else status
    _end_as(status)


def _init(fd: int, setup: ChildSetup, processes: dict[str, str], report: int) -> None:
    """PID 1 of the namespace: reap everything; when the student's process ends, report how and exit (the rest die)."""
    die_with_parent()
    student = os.fork()
    if student == 0:
        os.close(report)
        code = 1
        try:
            child_main(fd, setup, processes)
            code = 0
        finally:
            os._exit(code)
    os.close(fd)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return
        except InterruptedError:
            continue
        if pid == student:
            os.write(report, str(status).encode())
            return


def _end_as(status: int) -> None:
    """Exit with the wait `status` of another process: the same exit code, or death by the same signal."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        with contextlib.suppress(OSError, ValueError):  # SIGKILL and SIGSTOP have no handler to reset
            signal.signal(number, signal.SIG_DFL)
        with contextlib.suppress(OSError):
            os.kill(os.getpid(), number)
        os._exit(128 + number)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


def child_main(fd: int, setup: ChildSetup, processes: dict[str, str] | None = None) -> None:
    """The student's process: sandbox, import the submission, answer call requests.

    `processes`: the PID/IPC namespaces it runs in (`process_namespaces`), or why not.
    """
    conn = Connection(fd)
    with contextlib.suppress(OSError):  # already a session leader under the relay
        os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for stream in (0, 1, 2):
        os.dup2(null, stream)
    sys.stdout = BoundedWriter(0)
    sys.stderr = BoundedWriter(0)
    try:
        if processes and "fatal" in processes:
            raise RuntimeError(f"new PID/IPC namespaces: {processes['fatal']}")
        enforced = confine(setup, processes)
        limit_threads(setup.limits.threads)
    except Exception as error:  # noqa: BLE001 - report and stop: student code never runs unconfined
        send(conn, {"fatal": f"the sandbox could not be set up: {type(error).__name__}: {error}"})
        os._exit(3)
    server = _Server(setup)
    send(conn, {"hello": True, "load_error": server.load(), "names": server.names(), "enforced": enforced})
    # from now on (never before the hello), training epochs go to the grader's live display
    progress.set_channel(lambda record: send(conn, {"progress": record}))
    while True:
        try:
            request = json.loads(conn.recv_bytes())
        except (EOFError, OSError):
            os._exit(0)
        if request.get("op") == Op.EXIT:
            os._exit(0)
        reply = server.answer(request)
        reply["id"] = request.get("id")
        send(conn, reply)


class _Server:
    """The student's module loaded in the child, and the requests served on it."""

    def __init__(self, setup: ChildSetup) -> None:
        self.setup = setup
        self.folder = Path(os.getcwd())
        self.source = str(self.folder / setup.filename)
        self.namespace: dict[str, Any] = {}
        self.stdout_cap = setup.limits.stdout_bytes

    def load(self) -> str | None:
        """Import the submission (kept in `sys.modules`: Keras finds a model's classes there); returns why it failed."""
        if not os.path.isfile(self.source):
            return not_found_message(self.setup.filename, self.setup.display_folder)
        loaded = load_file(Path(self.source), self.setup.module, stdout=self._writer(), keep=True)
        self.namespace = loaded.namespace
        return loaded.error

    def names(self) -> dict[str, str]:
        return {
            name: ("function" if callable(value) else "value")
            for name, value in self.namespace.items()
            if not name.startswith("__")
        }

    def answer(self, request: Mapping[str, Any]) -> Reply:
        """The reply to one request; a failure of the child itself is an `internal` reply."""
        handlers: dict[str, Callable[[Mapping[str, Any]], Reply]] = {
            Op.VALUE: self.value,
            Op.CALL: self.call,
            Op.RUN: self.run,
        }
        handler = handlers.get(str(request.get("op")))
        if handler is None:
            return {"error": f"unknown op {request.get('op')!r}"}
        try:
            return handler(request)
        except MemoryError:
            return {"raised": "The sandboxed process ran out of memory while handling the call's data."}
        except Exception as error:  # noqa: BLE001 - a grader-side failure, reported as such
            return {"internal": f"{type(error).__name__}: {str(error)[:1000]}"}

    def _writer(self) -> BoundedWriter:
        return BoundedWriter(self.stdout_cap)

    def _student(self) -> StudentSide:
        return StudentSide(self.namespace, self.source, stdout=self._writer)

    def value(self, request: Mapping[str, Any]) -> Reply:
        name = str(request.get("name"))
        if name not in self.namespace:
            return {"missing": True}
        return {"ok": Codec(self.folder).encode(self.namespace[name])}

    def _call_student(self, name: str, args: Any, kwargs: Any, *, architecture: bool) -> Any:
        """The student's call; when only its models' architecture leaves the child, they get no weight memory.

        Code that Keras refuses to run without allocated weights (it creates a variable from
        a value, or initialises one explicitly) is run again the ordinary way.
        """
        student = self._student()
        if not architecture:
            return student.call(name, *args, **kwargs)
        with zero_initialized():  # weights that never leave the child: no random draws
            return built_unallocated(lambda: student.call(name, *args, **kwargs))

    def call(self, request: Mapping[str, Any]) -> Reply:
        """The student's function `name`, models crossing as the request's `transfer` says."""
        name = str(request.get("name"))
        if self.namespace.get(name) is None:
            return {"missing": True}
        transfer = Transfer(request.get("transfer", Transfer.ARCHITECTURE.value))
        incoming = Codec(self.folder, weights=transfer.weights_out, compiled=True)
        args, kwargs = incoming.decode_arguments(request.get("args", []), request.get("kwargs", []))
        call = describe_call(name, args, kwargs)
        try:
            outcome = self._call_student(name, args, kwargs, architecture=transfer is Transfer.ARCHITECTURE)
        except StudentCodeError as error:
            return {"raised": str(error), "stdout": error.stdout, "diagnosis": error.diagnosis}
        keep(name, args, kwargs, outcome.value)  # a model the grader cannot rebuild is traced here next
        try:
            reply: Reply = {
                "ok": Codec(self.folder, weights=transfer.weights_back).encode(outcome.value),
                "stdout": outcome.stdout,
            }
            if transfer.args_back:
                back = Codec(self.folder, weights=True)
                reply["args"] = back.encode(tuple(args))
                reply["kwargs"] = back.encode(dict(kwargs))
        except Exception as error:  # noqa: BLE001 - e.g. a model that cannot be serialised
            return {
                "raised": f"What `{call}` returned could not be sent to the grader: {type(error).__name__}: "
                f"{first_line(str(error))}. Return built-in types and keras models built from built-in layers.",
                "stdout": outcome.stdout,
                "diagnosis": NOT_REBUILDABLE.id if _is_model(outcome.value) else None,
            }
        return reply

    def run(self, request: Mapping[str, Any]) -> Reply:
        """A grader function called beside the student's code (`Context.run_with_student`)."""
        function = resolve_grader_function(str(request["target"]))
        if request.get("seed") is not None:  # before decoding: layers rebuilt from configurations draw their seeds
            import keras

            keras.utils.set_random_seed(int(request["seed"]))
        incoming = Codec(self.folder, weights=True, compiled=True)
        args, kwargs = incoming.decode_arguments(request.get("args", []), request.get("kwargs", []))
        try:
            value = function(self._student(), *args, **kwargs)
        except CheckFailed as failure:
            return {
                "failed": str(failure),
                "student": isinstance(failure, StudentCodeError),
                "stdout": failure.stdout,
                "diagnosis": failure.diagnosis,
            }
        except (Exception, SystemExit) as error:  # noqa: BLE001 - student code reached outside `StudentSide.call`
            what = f"{function.__name__} (the grader's call of your code)"
            return {"raised": explain_failure(what, error, self.source)}
        try:
            return {"ok": Codec(self.folder, weights=True).encode(value)}
        except Exception as error:  # noqa: BLE001 - e.g. a trained model that cannot be serialised
            return {
                "raised": f"The grader could not send back what your code produced: {type(error).__name__}: "
                f"{first_line(str(error))}. "
                "Use keras models built from built-in layers (Sequential or functional)."
            }


def _is_model(value: Any) -> bool:
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(value, keras.Model)
