"""The wire between the grading process and a sandboxed child: JSON messages, never pickle.

The parent sends requests (`Op`), each with an `id`; the child answers each with one
reply carrying the same `id` and one of these keys: `ok` (the encoded value), `missing`
(no such name), `raised` (student code failed: the message for the student), `failed`
(a grader check failed beside the student's code), `internal` (the child's own failure).
The child's first message is a hello: `load_error`, the `names` it defines, what was
`enforced`; or `fatal` when the sandbox could not be set up. While it runs a `RUN` request
the child may also send progress messages, `{"progress": {...}}` without an `id` (e.g. one
per finished training epoch: numbers only): display data that the parent validates and
caps (`grader.progress`) and no check reads.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Mapping
from typing import Any, Protocol

from ..options import Limits

PROTOCOL_MAX_BYTES = 64 * 1024 * 1024  # the largest message the parent reads from a child


class Op(enum.StrEnum):
    """What the parent asks of the child."""

    VALUE = "value"  # the student's plain value `name`
    CALL = "call"  # the student's function `name` with `args`/`kwargs`, models crossing as `transfer` says
    RUN = "run"  # the grader function `target` beside the student's code
    EXIT = "exit"


class Channel(Protocol):
    """The part of `multiprocessing.connection.Connection` the protocol uses."""

    def send_bytes(self, buf: bytes) -> None: ...

    def recv_bytes(self, maxlength: int | None = None) -> bytes: ...


def send(channel: Channel, message: Mapping[str, Any]) -> None:
    channel.send_bytes(json.dumps(message).encode())


@dataclasses.dataclass(frozen=True)
class ChildSetup:
    """What a new child needs to confine itself and load the submission (sent through the zygote as JSON)."""

    private: str  # the child's own folder, holding its copy of the submission; becomes its /tmp and cwd
    filename: str  # the question's file, e.g. q1_lenet.py
    module: str  # the module name the file is imported under
    display_folder: str  # the submission folder as the student knows it (for messages)
    hide: tuple[str, ...]  # folders covered by empty read-only mounts
    readonly: tuple[str, ...]  # folders bound read-only
    limits: Limits
    uid: int  # the unprivileged uid the child drops to (when the grader is root)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "hide": list(self.hide), "readonly": list(self.readonly)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChildSetup:
        return cls(
            private=str(data["private"]),
            filename=str(data["filename"]),
            module=str(data["module"]),
            display_folder=str(data["display_folder"]),
            hide=tuple(map(str, data["hide"])),
            readonly=tuple(map(str, data["readonly"])),
            limits=Limits.from_dict(data["limits"]),
            uid=int(data["uid"]),
        )
