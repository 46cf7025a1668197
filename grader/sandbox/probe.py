"""Whether this machine can run the sandbox, and why not: the platform probe.

The sandbox (`grader.sandbox`) needs Linux: `fork` from a zygote, file descriptors
passed over Unix sockets, `/proc`, rlimits, namespaces. Where any of it is missing
(macOS, Windows), a student's own `grader check` grades without it (`grading.grade_folder`
with `unconfined_ok`) and says so once; TA grading (`grader batch`, nbgrader autograde)
refuses to. Linux without user namespaces still gets the sandboxed child, with what the
kernel allows (its `meta["isolation"]` says what was not enforced).

`CNN_GRADER_SANDBOX=off` makes the probe answer "unavailable" (tests, staff on a
machine they know): it can never make TA grading run unconfined, only refuse.
This module imports nothing that only Linux has.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import socket
import sys

from ..checks import UserFacingError

SANDBOX_VARIABLE = "CNN_GRADER_SANDBOX"
_OFF = ("off", "0", "no", "false")


def available() -> tuple[bool, str]:
    """(True, "") where the sandbox can run here, else (False, why not, in words for a student)."""
    setting = os.environ.get(SANDBOX_VARIABLE, "").strip().lower()
    if setting in _OFF:
        return False, f"switched off by {SANDBOX_VARIABLE}={setting}"
    if not sys.platform.startswith("linux"):
        return False, f"the sandbox needs Linux, and this is {platform.system() or sys.platform}"
    missing = [
        what
        for what, present in (
            ("os.fork", hasattr(os, "fork")),
            ("os.setsid", hasattr(os, "setsid")),
            ("socket.send_fds", hasattr(socket, "send_fds")),
            ("the resource module", importlib.util.find_spec("resource") is not None),
            ("/proc", os.path.exists("/proc/self/status")),
        )
        if not present
    ]
    if missing:
        return False, "this Python lacks " + ", ".join(missing)
    return True, ""


class SandboxUnavailable(UserFacingError):
    """TA grading asked for the sandbox where it cannot run: refused rather than run student code unconfined."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"Student code cannot be sandboxed on this machine ({reason}), and grading for marks never runs it "
            "unconfined. Grade on Linux (the course's container image, or a Linux VM); only if you accept running "
            "student code with your own rights, pass unconfined_ok=True to grading.grade_folder."
        )
        self.reason = reason


def unconfined_isolation(reason: str) -> dict[str, str]:
    """`meta["isolation"]` of a question graded without the sandbox: every measure "not available", and why."""
    why = f"not available: graded unconfined ({reason})"
    return {
        "mode": "unconfined",
        "reason": reason,
        "process": "not available: the grader's own process",
        "network": why,
        "filesystem": why,
        "user": why,
    }
