"""One sandboxed child as the grading process sees it: requests and replies under the question's wall clock.

A child that hangs, dies, floods the channel or sends garbage is killed (with everything
it forked, by its uid) and stays dead for the rest of the question: `ChildFailure`, with
a message that tells the student what their code did.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from .. import diagnoses
from ..checks import StudentCodeError
from ..diagnoses import Diagnosis
from ..options import Limits
from .protocol import PROTOCOL_MAX_BYTES, ChildSetup, Op, send
from .zygote import Zygote, zygote

# A child's uid: UID_BASE + UID_SLOTS * pid of the grading process + a rotating slot, unique among live graders.
UID_BASE = 200_000
UID_SLOTS = 16
_UID_COUNTER = [0]


class ChildFailure(StudentCodeError):
    """The child process died, hung or broke the protocol: the question's later calls fail too."""


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


class ChildProcess:
    """A child forked by this process's zygote, with its channel, deadline and uid."""

    def __init__(self, limits: Limits, uid: int) -> None:
        self.limits = limits
        self.uid = uid
        self.dead: str | None = None  # why the child is gone, once it is
        self._pid: int | None = None
        self._zygote: Zygote | None = None
        self._exit_code: int | None = None
        self._conn: Connection | None = None
        self._deadline = 0.0
        self._started = 0.0
        self._waited = 0.0  # seconds spent waiting for the child's replies: its (the student's) share of the clock
        self._sequence = 0

    @property
    def owns_uid(self) -> bool:
        """Whether the child runs under its own uid (the grader is root and drops privileges)."""
        return self.limits.drop_privileges and os.geteuid() == 0

    def start(self, setup: ChildSetup, what: str) -> dict[str, Any]:
        """Fork the child; returns its hello (raises `ChildFailure` when it dies or hangs while loading)."""
        self.kill_uid()  # leftovers of a previous question run under the same uid
        self._zygote = zygote()
        self._started = time.monotonic()
        self._deadline = self._started + self.limits.seconds
        self._pid, self._conn = self._zygote.spawn(setup)
        return self._receive(what)

    def fail(self, message: str, diagnosis: Diagnosis = diagnoses.PROCESS_DIED) -> ChildFailure:
        """Mark the child dead for `message`; returns the failure to raise."""
        self.dead = message
        return ChildFailure(message, diagnosis=diagnosis.id)

    def ensure_alive(self, what: str) -> None:
        if self.dead is not None:
            raise ChildFailure(
                f"{what} was not run: earlier in this question, {_lower_first(self.dead)}",
                diagnosis=diagnoses.PROCESS_DIED.id,
            )

    def request(
        self, message: dict[str, Any], what: str, on_progress: Callable[[Any], None] | None = None
    ) -> dict[str, Any]:
        """Send `message`; returns the child's reply to it.

        Messages the child sends meanwhile with a `progress` key and no `id` go, as received, to
        `on_progress`, which validates them (display only: `grader.progress.accept`).
        """
        self.ensure_alive(what)
        self._sequence += 1
        message["id"] = self._sequence
        try:
            send(self._channel(), message)
        except (OSError, ValueError) as error:
            self.kill()
            raise self.fail(self._death_message(what, error), self._death_diagnosis(error)) from None
        while True:  # replies to earlier requests (e.g. from processes the student forked) are skipped
            reply = self._receive(what)
            if reply.get("id") == self._sequence:
                return reply
            if on_progress is not None and "progress" in reply and "id" not in reply:
                on_progress(reply["progress"])

    def _channel(self) -> Connection:
        if self._conn is None:
            raise RuntimeError("the sandboxed child was not started")
        return self._conn

    def _receive(self, what: str) -> dict[str, Any]:
        conn = self._channel()
        waiting = time.monotonic()
        remaining = self._deadline - waiting
        try:
            answered = remaining > 0 and conn.poll(remaining)
            self._waited += time.monotonic() - waiting
            if not answered:
                self.kill()
                message, diagnosis = self._timeout_message(what)
                raise self.fail(message, diagnosis)
            raw = conn.recv_bytes(PROTOCOL_MAX_BYTES)
        except (EOFError, OSError) as error:
            if not _too_long(error):
                self._wait_exit(3.0)  # it died: let the zygote report how
            self.kill()
            raise self.fail(self._death_message(what, error), self._death_diagnosis(error)) from None
        try:
            message = json.loads(raw)
            if not isinstance(message, dict):
                raise ValueError("not an object")
        except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than Python's stack
            self.kill()
            raise self.fail(
                f"{what}: the sandboxed process sent something that is not a grader reply (tampering?)."
            ) from None
        return message

    def _timeout_message(self, what: str) -> tuple[str, Diagnosis]:
        """Why the question's clock ran out: the student's code, or (said as such) the grader's own work."""
        elapsed = time.monotonic() - self._started
        grader_s = max(0.0, elapsed - self._waited)
        if grader_s <= self._waited:
            return (
                f"{what} did not finish within the {self.limits.seconds:g}-second limit for this question "
                "(an endless loop, or far too much work?): your code was stopped."
            ), diagnoses.TIMEOUT
        return (
            f"{what} was stopped at the {self.limits.seconds:g}-second limit for this question, most of which the "
            f"grader spent on its own checks of your work ({grader_s:.0f} s; your code ran {self._waited:.0f} s). "
            "This is not a fault of your code as such: a model this large or unusual takes the grader too long to "
            "inspect; if your model follows the exercise, please tell your TA."
        ), diagnoses.GRADER_ERROR

    def _death_diagnosis(self, error: BaseException) -> Diagnosis:
        """The diagnosis of a child that died: out of memory when the kernel killed it, else a dead process."""
        if _too_long(error):
            return diagnoses.WRONG_TYPE
        return diagnoses.OUT_OF_MEMORY if self._exit_code == -signal.SIGKILL else diagnoses.PROCESS_DIED

    def _death_message(self, what: str, error: BaseException) -> str:
        if _too_long(error):
            return f"{what} sent back more than {PROTOCOL_MAX_BYTES // 2**20} MB: return less data."
        return death_message(what, self._wait_exit(3.0), self.limits.memory_mb)

    # -- stopping

    def close(self) -> None:
        """Stop the child and everything it started."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                if self.dead is None:
                    send(self._conn, {"op": Op.EXIT})
                    self._wait_exit(1.0)
            with contextlib.suppress(Exception):
                self._conn.close()
        self.kill()
        self._wait_exit(2.0)
        self.kill_uid()
        self._conn = None

    def _wait_exit(self, timeout: float) -> int | None:
        if self._exit_code is None and self._pid is not None and self._zygote is not None:
            with contextlib.suppress(Exception):
                self._exit_code = self._zygote.exit_code(self._pid, timeout)
        return self._exit_code

    def kill(self) -> None:
        if self._pid is None or self._exit_code is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self._pid, signal.SIGKILL)
        self.kill_uid()

    def kill_uid(self) -> None:
        """Stop, then kill, every process running as the child's uid (what it forked, even in new sessions)."""
        if not self.owns_uid:
            return
        for _ in range(200):
            pids = uid_processes(self.uid)
            if not pids:
                break
            for sig in (signal.SIGSTOP, signal.SIGKILL):  # frozen processes cannot fork any more
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, sig)
            time.sleep(0.01)
        deadline = time.monotonic() + 2.0
        while uid_processes(self.uid, zombies=True) and time.monotonic() < deadline:
            time.sleep(0.02)  # the zygote (a subreaper) reaps what student code forked


def death_message(what: str, code: int | None, memory_mb: int) -> str:
    """How the child running `what` ended (`code`: its exit code, negative for a signal; None: unknown)."""
    if code is None:
        return f"{what} stopped answering (the sandboxed process closed its channel)."
    if code < 0:
        number = -code
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        if number == signal.SIGKILL:
            return (
                f"{what} was killed (signal SIGKILL): it ran out of memory (the limit is {memory_mb:,} MB "
                "on top of what TensorFlow needs) or killed its own process."
            )
        if number in (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT):
            hint = " (this is often running out of memory inside TensorFlow)" if number == signal.SIGABRT else ""
            return f"{what} crashed (signal {name}){hint}: your code killed the process it ran in."
        return f"{what} was stopped by signal {name}: do not send signals to your own process."
    return (
        f"{what} ended the process it ran in (exit code {code}), e.g. with os._exit, sys.exit or quit(): "
        "a function must return its result."
    )


def _too_long(error: BaseException) -> bool:
    """Whether `error` is the channel refusing a message over `PROTOCOL_MAX_BYTES`."""
    return isinstance(error, OSError) and "message length" in str(error).lower()


def _lower_first(text: str) -> str:
    return text if text.startswith("`") else text[:1].lower() + text[1:]
