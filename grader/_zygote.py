"""The isolation zygote: imports Keras once, then forks one sandboxed child per request.

Started by `grader.isolation` as `python -m grader._zygote FD` with one end of a Unix
socket pair. Protocol on that socket (trusted: only the grading process holds it):
a request is one JSON line of setup data sent together with one file descriptor (the
child's end of its own channel); the zygote forks, answers {"spawned": pid}, and later
{"exited": pid, "code": exit code or -signal} for each child it reaps. No TensorFlow op
runs here, so forking is safe, and every child starts from the same clean state.
"""

from __future__ import annotations

import json
import os
import select
import socket
import sys


def main(fd: int) -> None:
    control = socket.socket(fileno=fd)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    from grader.isolation import die_with_parent
    from grader.quiet import import_keras

    die_with_parent()
    try:  # orphans of the children (what student code forked) become ours, and are reaped here
        import ctypes

        ctypes.CDLL(None).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
    except Exception:  # noqa: BLE001 - not Linux: the orphans go to init
        pass

    import_keras()
    import numpy  # noqa: F401

    import grader.isolation as isolation

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
                setup = json.loads(line)
                channel = fds.pop(0) if fds else -1
                pid = os.fork()
                if pid == 0:
                    control.close()
                    code = 1
                    try:
                        isolation.child_main(channel, setup)
                        code = 0
                    finally:
                        os._exit(code)
                os.close(channel)
                live.add(pid)
                control.sendall(json.dumps({"spawned": pid}).encode() + b"\n")
            for extra in fds:
                os.close(extra)
        while True:  # reap every child: our own and adopted orphans (zombies count against RLIMIT_NPROC)
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                live.clear()
                break
            if pid == 0:
                break
            if pid in live:
                live.discard(pid)
                control.sendall(json.dumps({"exited": pid, "code": os.waitstatus_to_exitcode(status)}).encode() + b"\n")


if __name__ == "__main__":
    main(int(sys.argv[1]))
