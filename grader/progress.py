"""Live progress of long work (a student's training): epoch n of N, loss, val_loss, elapsed against the limit.

Display only: no check reads it. Three parts:

* where student code runs (the sandboxed child, or this process without a sandbox), the
  watched fit calls `report_epoch` after every epoch: one small record of numbers, sent over
  the sandbox's channel (`set_channel`, set by the child) or, without a sandbox, straight to
  the grader's tracker;
* in the grader, `task(label, limit_s)` opens the display of one long run, and `accept`
  takes the records that arrive meanwhile. They are untrusted data: a record is kept only
  when every field is a bounded int or a finite float (no string crosses), when it moves
  the run forward (fit, then epoch), and while the run has had fewer than `MAX_UPDATES`;
  anything else is dropped, so a hostile child can make the display wrong, never break or
  slow the grader. Elapsed time is the grader's own clock;
* sinks show it: `NullSink` (the default: `grader batch`, `--json` without a terminal,
  tests), `RichSink` (a terminal or Jupyter: rich's progress bar), `TextSink` (plain lines).
  `showing(sink)` chooses the sink for a block (`grader check`, the notebook API).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import io
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any

MAX_EPOCHS = 100_000  # the largest epoch number (and epoch count) shown
MAX_FITS = 100  # fits of one run shown (a student may call fit several times)
MAX_UPDATES = 500  # records shown per run; later ones are dropped
MAX_KEYS = 16  # a record with more keys is not one the grader sent
MAX_FIGURE = 1e15  # larger losses are not shown


@dataclasses.dataclass(frozen=True)
class EpochUpdate:
    """One finished epoch, as validated in the grader."""

    fit: int  # 1 for the run's first call of fit
    epoch: int  # 1-based, within that fit
    epochs: int | None  # the epochs that fit was asked for, when known
    loss: float | None
    val_loss: float | None

    def describe(self) -> str:
        """'epoch 3/30  loss 0.4123  val_loss 0.4555' (the fit's number too from the second fit on)."""
        total = f"/{self.epochs}" if self.epochs is not None else ""
        fit = f"fit {self.fit}, " if self.fit > 1 else ""
        parts = [f"{fit}epoch {self.epoch}{total}"]
        for name, value in (("loss", self.loss), ("val_loss", self.val_loss)):
            if value is not None:
                parts.append(f"{name} {value:.4f}")
        return "  ".join(parts)


def _bounded_int(value: Any, low: int, high: int) -> int | None:
    return value if type(value) is int and low <= value <= high else None


_INVALID = object()


def _figure(value: Any) -> Any:
    """A finite float of moderate size, None when absent, `_INVALID` for anything else (NaN, text, huge)."""
    if value is None:
        return None
    if type(value) not in (int, float):
        return _INVALID
    try:
        number = float(value)
    except OverflowError:
        return _INVALID
    return number if math.isfinite(number) and abs(number) <= MAX_FIGURE else _INVALID


def parse_update(raw: Any) -> EpochUpdate | None:
    """The record `raw` from the student's process as an `EpochUpdate`, or None when any field is not valid."""
    if not isinstance(raw, dict) or len(raw) > MAX_KEYS:
        return None
    fit = _bounded_int(raw.get("fit", 1), 1, MAX_FITS)
    epoch = _bounded_int(raw.get("epoch"), 1, MAX_EPOCHS)
    epochs = None if raw.get("epochs") is None else _bounded_int(raw.get("epochs"), 1, MAX_EPOCHS)
    loss, val_loss = _figure(raw.get("loss")), _figure(raw.get("val_loss"))
    if fit is None or epoch is None or _INVALID in (loss, val_loss):
        return None
    if raw.get("epochs") is not None and (epochs is None or epoch > epochs):
        return None
    return EpochUpdate(fit, epoch, epochs, loss, val_loss)


def clock(seconds: float) -> str:
    """'1:05' for 65 seconds."""
    minutes, secs = divmod(max(0, int(seconds)), 60)
    return f"{minutes}:{secs:02d}"


# --------------------------------------------------------------------------- sinks


class ProgressSink:
    """Where progress is shown. This base class shows nothing (`NullSink`); subclasses override all three."""

    def start(self, label: str, limit_s: float | None) -> None:
        """A long run begins (`limit_s`: its time limit, when it has one)."""

    def update(self, update: EpochUpdate, elapsed_s: float) -> None:
        """An epoch ended, `elapsed_s` seconds into the run (the grader's clock)."""

    def stop(self, elapsed_s: float) -> None:
        """The run ended."""


class NullSink(ProgressSink):
    """Shows nothing."""


class TextSink(ProgressSink):
    """Plain lines on `stream`: one when the run starts, one per epoch."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.limit_s: float | None = None

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def start(self, label: str, limit_s: float | None) -> None:
        self.limit_s = limit_s
        self._write(f"{label}: training" + (f" (time limit {clock(limit_s)})" if limit_s else ""))

    def update(self, update: EpochUpdate, elapsed_s: float) -> None:
        limit = f" of {clock(self.limit_s)}" if self.limit_s else ""
        self._write(f"  {update.describe()}  ({clock(elapsed_s)}{limit})")


class RichSink(ProgressSink):
    """rich's progress bar on `console`: label, bar over the epochs, epoch n/N, losses, elapsed / limit."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console

        self.console = console if console is not None else Console()
        self._progress: Any = None
        self._task: Any = None

    def start(self, label: str, limit_s: float | None) -> None:
        from rich.markup import escape
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        limit = TextColumn(f"/ {clock(limit_s)}" if limit_s else "")
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[epoch]}", markup=False),
            TimeElapsedColumn(),
            limit,
            console=self.console,
            redirect_stdout=False,  # what grading captures stays captured
            redirect_stderr=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(escape(label), total=None, epoch="starting")

    def update(self, update: EpochUpdate, elapsed_s: float) -> None:
        if self._progress is None:
            return
        total = update.epochs if update.epochs is not None else update.epoch
        self._progress.update(self._task, total=total, completed=update.epoch, epoch=update.describe())
        self._progress.refresh()  # every epoch is drawn, however quickly the next one comes

    def stop(self, elapsed_s: float) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


_TERMINALS: dict[int, IO[str]] = {}  # a copy of each terminal's file descriptor, kept for the process's life


def _own_copy(stream: IO[str]) -> IO[str]:
    """`stream` on a copy of its file descriptor: grading sends fd 2 to a buffer (`quiet.captured_stderr`)."""
    try:
        fd = stream.fileno()
        if fd not in _TERMINALS:
            _TERMINALS[fd] = os.fdopen(os.dup(fd), "w", encoding=getattr(stream, "encoding", None) or "utf-8")
        return _TERMINALS[fd]
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return stream


def for_stream(stream: IO[str], *, plain: bool = False) -> ProgressSink:
    """The sink for `stream`: rich's bar on a terminal or in Jupyter; else plain lines if `plain`, else nothing."""
    from rich.console import Console

    console = Console(file=stream)
    if console.is_jupyter:
        return RichSink(console)
    if console.is_terminal:
        return RichSink(Console(file=_own_copy(stream)))
    return TextSink(stream) if plain else NullSink()


# --------------------------------------------------------------------------- the grader's side


class Tracker:
    """One long run as the grader shows it: validates, orders and caps the records from the student's process."""

    def __init__(self, sink: ProgressSink, label: str, limit_s: float | None) -> None:
        self.sink = sink
        self.label = label
        self.limit_s = limit_s
        self.started = time.monotonic()
        self.last = (0, 0)  # (fit, epoch) last shown
        self.shown = 0
        self.dropped = 0

    def _show(self, method: Callable[..., None], *args: Any) -> None:
        try:
            method(*args)
        except Exception:  # noqa: BLE001 - a display that fails (closed terminal) is switched off, grading goes on
            self.sink = NullSink()

    def start(self) -> None:
        self._show(self.sink.start, self.label, self.limit_s)

    def accept(self, raw: Any) -> None:
        """Show the record `raw` if it is valid, moves the run forward and the run's cap is not reached."""
        update = parse_update(raw) if self.shown < MAX_UPDATES else None
        if update is None or (update.fit, update.epoch) <= self.last:
            self.dropped += 1
            return
        self.last = (update.fit, update.epoch)
        self.shown += 1
        self._show(self.sink.update, update, time.monotonic() - self.started)

    def stop(self) -> None:
        self._show(self.sink.stop, time.monotonic() - self.started)


_SINK: contextvars.ContextVar[ProgressSink | None] = contextvars.ContextVar("progress_sink", default=None)
_TRACKER: contextvars.ContextVar[Tracker | None] = contextvars.ContextVar("progress_tracker", default=None)


@contextlib.contextmanager
def showing(sink: ProgressSink) -> Iterator[ProgressSink]:
    """Within the block, long runs are shown on `sink`."""
    token = _SINK.set(sink)
    try:
        yield sink
    finally:
        _SINK.reset(token)


@contextlib.contextmanager
def task(label: str, limit_s: float | None = None) -> Iterator[Tracker]:
    """Show the long run of the block (e.g. a student's training) as `label`, against the time limit `limit_s`."""
    tracker = Tracker(_SINK.get() or NullSink(), label, limit_s)
    tracker.start()
    token = _TRACKER.set(tracker)
    try:
        yield tracker
    finally:
        _TRACKER.reset(token)
        tracker.stop()


def accept(raw: Any) -> None:
    """A progress record from where student code runs: shown in the open `task`, if any (untrusted data)."""
    tracker = _TRACKER.get()
    if tracker is not None:
        tracker.accept(raw)


# --------------------------------------------------------------------------- where student code runs

_CHANNEL: dict[str, Any] = {}  # in the sandboxed child: the function sending a record, and the thread allowed to


def set_channel(send: Callable[[dict[str, Any]], None]) -> None:
    """In the sandboxed child: records go to the grader through `send`, from the calling thread only."""
    _CHANNEL.update(send=send, thread=threading.get_ident())


def _plain_figure(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except Exception:  # noqa: BLE001 - whatever a callback put in the logs: that figure is not shown
        return None


def report_epoch(fit: int, epoch: int, epochs: Any, logs: Mapping[str, Any] | None) -> None:
    """Where student code runs: epoch `epoch` (1-based) of `epochs` of fit number `fit` ended with `logs`.

    Never raises: the display must not fail the training (`logs` may hold whatever callbacks put there).
    """
    try:
        logs = logs or {}
        record = {
            "fit": int(fit),
            "epoch": int(epoch),
            "epochs": epochs if type(epochs) is int else None,
            "loss": _plain_figure(logs.get("loss")),
            "val_loss": _plain_figure(logs.get("val_loss")),
        }
        send = _CHANNEL.get("send")
        if send is None:
            accept(record)  # no sandbox: this process is the grader's
        elif _CHANNEL.get("thread") == threading.get_ident():
            send(record)
    except Exception:  # noqa: BLE001 - a record that cannot be made or sent is not shown; training goes on
        return
