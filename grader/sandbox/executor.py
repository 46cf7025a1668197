"""The executor interface that `checks.Context` uses: student code of one question, run in one sandboxed child."""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import diagnoses, progress
from ..checks import CheckFailed, Question, StudentCall, StudentCodeError, describe_call
from ..options import Limits, Transfer
from ..text import clean
from .codec import Codec
from .folders import give_to, hidden_paths, private_folder, readonly_paths
from .process import ChildFailure, ChildProcess, next_uid
from .protocol import ChildSetup, Op

MAX_NAMES = 10_000  # names of a submission the parent keeps
ENFORCED_KEYS = ("process", "session", "pid", "ipc", "network", "filesystem", "user", "hidden", "memory_mb", "threads")


def reported_diagnosis(reply: dict[str, Any], question: Question) -> str | None:
    """The diagnosis the child named, if the engine or the question declares it (the child is untrusted)."""
    value = reply.get("diagnosis")
    known = {d.id for d in diagnoses.GENERIC} | {d.id for check in question.checks for d in check.diagnoses}
    return value if isinstance(value, str) and value in known else None


class IsolatedExecutor:
    """One child process for one question of one submission; use as a context manager."""

    def __init__(
        self,
        question: Question,
        folder: Path,
        *,
        limits: Limits | None = None,
        hide: Sequence[os.PathLike[str] | str] = (),
    ) -> None:
        self.question = question
        self.folder = Path(folder)
        limits = limits or Limits()
        self.limits = limits if limits.wall_s is not None else dataclasses.replace(limits, wall_s=question.time_limit_s)
        self.hide = list(hide)
        self.source = str(self.folder / question.filename)
        self.load_error: str | None = None
        self.names: dict[str, str] = {}
        self.enforced: dict[str, Any] = {"process": True}
        self.calls = 0
        self._child = ChildProcess(self.limits, next_uid())
        self._private: Path | None = None

    # -- life cycle

    def __enter__(self) -> IsolatedExecutor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the child, copy the submission into its folder, and wait for it to load the file."""
        self._private = private_folder(self.folder)
        try:
            hello = self._child.start(self._setup(self._private), "loading " + self.question.filename)
        except ChildFailure as failure:
            self.load_error = str(failure)
            return
        if "fatal" in hello:
            self.load_error = (
                f"The grader could not start a sandbox for your code: {clean(hello['fatal'])}. Please tell your TA."
            )
            self._child.fail(self.load_error)
            return
        load_error = hello.get("load_error")
        self.load_error = None if load_error is None else clean(load_error)
        names = hello.get("names")
        names = names if isinstance(names, dict) else {}
        self.names = {
            k: clean(v, 20) for k, v in list(names.items())[:MAX_NAMES] if isinstance(k, str) and k.isidentifier()
        }
        enforced = hello.get("enforced")
        enforced = enforced if isinstance(enforced, dict) else {}
        self.enforced = {key: _plain(enforced[key]) for key in ENFORCED_KEYS if key in enforced}
        self.enforced["wall_s"] = self.limits.seconds

    def _setup(self, private: Path) -> ChildSetup:
        return ChildSetup(
            private=str(private),
            filename=self.question.filename,
            module=self.question.module,
            display_folder=str(self.folder),
            # the submission's own folder is hidden too: the child works on its private copy
            hide=tuple(hidden_paths([*self.hide, self.folder.resolve()])),
            readonly=tuple(readonly_paths()),
            limits=self.limits,
            uid=self._child.uid,
        )

    def close(self) -> None:
        """Stop the child and everything it started; remove its folder."""
        self._child.close()
        if self._private is not None:
            shutil.rmtree(self._private, ignore_errors=True)

    # -- the executor interface used by `Context`

    def value(self, name: str) -> Any:
        """The student's plain value `name` (e.g. a written answer), decoded."""
        reply = self._request({"op": Op.VALUE, "name": name}, f"reading `{name}`")
        if reply.get("missing"):
            raise KeyError(name)
        return Codec(self._folder(), unallocated=True).decode(reply.get("ok"))

    def call(
        self,
        name: str,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        transfer: Transfer = Transfer.ARCHITECTURE,
    ) -> StudentCall:
        """Run the student's `name(*args, **kwargs)` in the child; raises `StudentCodeError` when it fails.

        Models cross as `transfer` says: architecture only (the default), a returned model
        with its weights (`WEIGHTS_BACK`), or arguments sent with their weights and returned
        as the call left them, i.e. what training changed (`ROUND_TRIP`).
        """
        kwargs = dict(kwargs or {})
        call = f"`{describe_call(name, args, kwargs)}`"
        self.calls += 1
        encoded_args, encoded_kwargs = self._send_arguments(args, kwargs, weights=transfer.weights_out, what=call)
        reply = self._request(
            {"op": Op.CALL, "name": name, "args": encoded_args, "kwargs": encoded_kwargs, "transfer": transfer.value},
            call,
        )
        if reply.get("missing"):
            raise KeyError(name)
        if "internal" in reply:
            raise RuntimeError(f"the sandbox could not run {call}: {clean(reply['internal'])}")
        stdout = self._stdout(reply)
        if "raised" in reply:
            failure = StudentCodeError(clean(reply["raised"]), diagnosis=reported_diagnosis(reply, self.question))
            failure.stdout = stdout
            raise failure
        decoder = self._decoder()
        outcome = StudentCall(decoder.decode(reply.get("ok")), stdout, tuple(args), dict(kwargs))
        if transfer.args_back:
            outcome.args = tuple(decoder.decode(reply.get("args", {"t": "tuple", "v": []})))
            outcome.kwargs = dict(decoder.decode(reply.get("kwargs", {"t": "dict", "v": []})))
        return outcome

    def run(
        self,
        target: str,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        seed: int | None = None,
    ) -> Any:
        """Run the grader function `target` in the child beside the student's code (`Context.run_with_student`).

        Arguments and result cross as artifacts, models with their weights. Raises
        `StudentCodeError` or `CheckFailed` as the function did there.
        """
        what = f"the grader's {target.rpartition(':')[2]} with your code"
        encoded_args, encoded_kwargs = self._send_arguments(args, dict(kwargs or {}), weights=True, what=target)
        self.calls += 1
        reply = self._request(
            {"op": Op.RUN, "target": target, "args": encoded_args, "kwargs": encoded_kwargs, "seed": seed},
            what,
            on_progress=progress.accept,  # e.g. the epochs of a student's training, for the display only
        )
        if "internal" in reply:
            raise RuntimeError(f"the sandbox could not run {target}: {clean(reply['internal'])}")
        if "failed" in reply:
            kind = StudentCodeError if reply.get("student") else CheckFailed
            failed = kind(clean(reply["failed"]), diagnosis=reported_diagnosis(reply, self.question))
            failed.stdout = self._stdout(reply)
            raise failed
        if "raised" in reply:
            raise StudentCodeError(clean(reply["raised"]))
        return self._decoder().decode(reply.get("ok"))

    def describe(self) -> dict[str, Any]:
        """What isolation was in force, for the result's meta."""
        return dict(self.enforced)

    # -- helpers

    def _folder(self) -> Path:
        if self._private is None:
            raise RuntimeError("the sandbox was not started")
        return self._private

    def _decoder(self) -> Codec:
        return Codec(self._folder(), max_file_bytes=self.limits.file_mb * 1024 * 1024, unallocated=True)

    def _stdout(self, reply: Mapping[str, Any]) -> str:
        stdout = reply.get("stdout", "")
        return clean(stdout if isinstance(stdout, str) else "", self.limits.stdout_bytes + 200)

    def _send_arguments(
        self, args: Sequence[Any], kwargs: Mapping[str, Any], *, weights: bool, what: str
    ) -> tuple[list[Any], list[Any]]:
        """Write the arguments to the exchange folder (owned by the child's uid); returns what the request carries."""
        try:
            encoded = Codec(self._folder(), weights=weights).encode_arguments(args, kwargs)
        except Exception as error:  # a grader-side problem, reported as an internal error
            raise RuntimeError(f"cannot send the arguments of {what} to the sandbox: {error}") from error
        give_to(self._folder(), self._child.uid if self._child.owns_uid else None)
        return encoded

    def _request(
        self, message: dict[str, Any], what: str, on_progress: Callable[[Any], None] | None = None
    ) -> dict[str, Any]:
        self._child.ensure_alive(what)
        if self.load_error is not None:
            raise StudentCodeError(self.load_error)
        return self._child.request(message, what, on_progress)


def _plain(value: Any) -> Any:
    """A value of the child's `enforced` report, kept only as a short string, number or list of strings (for meta)."""
    if isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, list):
        return [clean(v, 500) for v in value[:100] if isinstance(v, str)]
    return clean(value, 500) if isinstance(value, str) else "not reported"


class RemoteNamespace(Mapping[str, Any]):
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
