"""The zygote: imports Keras once, then forks one sandboxed child per request.

Started by `grader.sandbox.zygote` as `python -m grader.sandbox.zygote_process FD` with
one end of a Unix socket pair. Protocol on that socket (trusted: only the grading
process holds it): a request is one JSON line of setup data (`ChildSetup`) sent together
with one file descriptor (the child's end of its own channel); the zygote forks, answers
{"spawned": pid}, and later {"exited": pid, "code": exit code or -signal} for each child
it reaps. No TensorFlow op runs here, so forking is safe, and every child starts from the
same clean state. `grader check` forks its zygote from itself instead (`become_zygote`),
right after importing Keras, so that Keras is imported once.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import select
import signal
import socket
import sys
import tempfile

from ..quiet import import_keras
from .child import child_entry
from .confinement import die_with_parent
from .protocol import ChildSetup

PR_SET_CHILD_SUBREAPER = 36


def main(fd: int) -> None:
    control = socket.socket(fileno=fd)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    die_with_parent()
    # Orphans of the children (what student code forked) become ours, and are reaped here; not Linux: init's.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1)
    import_keras()  # numpy comes with it

    buffered = b""
    live: set[int] = set()
    control.sendall(b'{"ready": true}\n')
    while True:
        readable, _, _ = select.select([control], [], [], 0.05 if live else 0.2)
        if readable:
            try:
                data, fds, _, _ = socket.recv_fds(control, 1 << 20, 4)
            except OSError:
                data, fds = b"", []
            if not data:
                os._exit(0)  # the grading process is gone
            buffered += data
            while b"\n" in buffered:
                line, buffered = buffered.split(b"\n", 1)
                channel = fds.pop(0) if fds else -1
                live.add(_fork_child(control, channel, line))
            for extra in fds:
                os.close(extra)
        _reap(control, live)


def become_zygote(fd: int) -> None:
    """Turn this fork of a grading process into the zygote serving `fd`, as if started on its own."""
    gc.freeze()  # the grading process's objects are never finalized here (none closes an fd we reuse)
    os.setsid()
    os.chdir(tempfile.gettempdir())
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.closerange(3, fd)  # the grading process's files and sockets are not the children's
    os.closerange(fd + 1, os.sysconf("SC_OPEN_MAX"))
    main(fd)


def _fork_child(control: socket.socket, channel: int, line: bytes) -> int:
    """Fork a child serving `channel` under the setup in `line`; tell the grading process its pid."""
    pid = os.fork()
    if pid == 0:
        control.close()
        code = 1
        try:
            child_entry(channel, ChildSetup.from_dict(json.loads(line)))
            code = 0
        finally:
            os._exit(code)
    os.close(channel)
    control.sendall(json.dumps({"spawned": pid}).encode() + b"\n")
    return pid


def _reap(control: socket.socket, live: set[int]) -> None:
    """Reap every child: our own and adopted orphans (zombies count against RLIMIT_NPROC)."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            live.clear()
            return
        if pid == 0:
            return
        if pid in live:
            live.discard(pid)
            control.sendall(json.dumps({"exited": pid, "code": os.waitstatus_to_exitcode(status)}).encode() + b"\n")


if __name__ == "__main__":
    main(int(sys.argv[1]))
