"""The grading process's handle on its zygote (`zygote_process`): start it once, ask it to fork children.

Talks to the zygote over a Unix socket pair: a request is one JSON line (a `ChildSetup`)
sent with one file descriptor (the child's end of its own channel); the zygote answers
{"spawned": pid}, and {"exited": pid, "code": ...} whenever it reaps a child.

The socket is shared by every thread of the process (a Dask worker may grade in several
threads): a lock makes each spawn (request and answer) one unit, and readers take turns.

Started as its own process (`python -m grader.sandbox.zygote_process`), the zygote imports
Keras itself: seconds of CPU. `grader check`, a fresh process that has imported Keras and
loaded nothing secret yet (no reference solution, hidden data or run secret), instead forks
its zygote from itself (`start(fork=True)`): Keras is imported once, for both. `start`
does not wait; `zygote()`, which a child's start calls, waits for the zygote's "ready".
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from ..quiet import silence_frameworks
from .protocol import ChildSetup

ZYGOTE_MODULE = "grader.sandbox.zygote_process"


class ForkedProcess:
    """A zygote forked from this process, with the `poll`, `kill` and `wait` of `subprocess.Popen`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = self.pid, 0
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def wait(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.returncode


def _fork(theirs: socket.socket) -> ForkedProcess:
    """Fork this process into the zygote, serving `theirs` (`zygote_process.become_zygote`)."""
    for stream in (sys.stdout, sys.stderr):  # nothing buffered here is written twice
        with contextlib.suppress(Exception):
            stream.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            from .zygote_process import become_zygote

            become_zygote(theirs.fileno())
            code = 0
        finally:
            os._exit(code)
    return ForkedProcess(pid)


class Zygote:
    """The trusted fork server of this grading process, started on first use.

    With `fork=True` it is a fork of this process (which must have loaded nothing a student
    may not see), else a new Python process.
    """

    READY_TIMEOUT_S = 300

    def __init__(self, fork: bool = False) -> None:
        silence_frameworks()
        os.environ.setdefault("KERAS_HOME", tempfile.mkdtemp(prefix="cnn-grader-keras-"))
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.socket = ours
        self.process: subprocess.Popen[bytes] | ForkedProcess
        if fork:
            self.process = _fork(theirs)
        else:
            self.process = subprocess.Popen(
                [sys.executable, "-m", ZYGOTE_MODULE, str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                cwd=tempfile.gettempdir(),
                start_new_session=True,
            )
        theirs.close()
        self._buffer = b""
        self.exits: dict[int, int] = {}
        self._lock = threading.RLock()
        self._ready = False

    def wait_ready(self) -> None:
        """Block until the zygote has imported Keras and listens (at once after the first time)."""
        with self._lock:
            if not self._ready:
                self._expect("ready", timeout=self.READY_TIMEOUT_S)
                self._ready = True

    def alive(self) -> bool:
        return self.process.poll() is None

    def _read(self, timeout: float) -> dict[str, Any] | None:
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
        with self._lock:
            while True:
                message = self._read(max(0.0, deadline - time.monotonic()))
                if message is None:
                    raise RuntimeError(f"the isolation zygote did not answer ({key}) within {timeout:g} s")
                if key in message:
                    return message

    def spawn(self, setup: ChildSetup) -> tuple[int, Connection]:
        """Fork a child running `child_main(setup)`; returns its pid and the parent's end of its channel."""
        self.wait_ready()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with self._lock:  # request and answer as one unit: another thread's "spawned" is not ours
            socket.send_fds(self.socket, [json.dumps(setup.to_dict()).encode() + b"\n"], [theirs.fileno()])
            theirs.close()
            pid = int(self._expect("spawned", timeout=60)["spawned"])
        return pid, Connection(ours.detach())

    def exit_code(self, pid: int, timeout: float = 5.0) -> int | None:
        """The child's exit code (negative: killed by that signal), once the zygote reaped it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:  # short turns: other threads spawn in between
                if pid in self.exits:
                    break
                self._read(min(0.05, max(0.0, deadline - time.monotonic())))
        with self._lock:
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
    """This process's zygote (restarted if it died), once it is ready: a child's clock starts after this."""
    global _ZYGOTE
    with _ZYGOTE_LOCK:
        if _ZYGOTE is None or not _ZYGOTE.alive():
            _ZYGOTE = Zygote()
        started = _ZYGOTE
    started.wait_ready()
    return started


def start(*, fork: bool = False) -> None:
    """Start the zygote without waiting, where the sandbox can run.

    `fork=True` makes it a fork of this process, which saves a second Keras import. Only for
    a process that has imported Keras and loaded nothing a student may not see (no reference
    solution, hidden data or run secret: `grader check` before it grades); it is a plain start
    where another thread runs (a fork copies only the calling thread) or Keras is not imported.
    """
    from .probe import available

    global _ZYGOTE
    if not available()[0]:
        return
    fork = fork and threading.active_count() == 1 and "keras" in sys.modules
    with _ZYGOTE_LOCK:
        if _ZYGOTE is None or not _ZYGOTE.alive():
            _ZYGOTE = Zygote(fork=fork)


def warm_up() -> None:
    """Start the zygote now and wait until it is ready, so the first question does not pay for it."""
    zygote()
