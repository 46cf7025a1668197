"""Live progress of a student's training: shown per epoch, on stderr with --json, and only ever display data.

The progress records come from where student code runs, so they are untrusted: garbage,
NaN, negative epochs, oversized or flooding records are dropped, and the grader's verdicts
and output are unaffected.
"""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, cast

import pytest
from conftest import REPO
from rich.console import Console

from grader import progress
from grader.progress import EpochUpdate, NullSink, ProgressSink, RichSink, TextSink, Tracker, parse_update

GOOD = {"fit": 1, "epoch": 2, "epochs": 5, "loss": 0.25, "val_loss": 0.5}


class Recording(ProgressSink):
    """A sink that keeps what it was given."""

    def __init__(self) -> None:
        self.started: list[tuple[str, float | None]] = []
        self.updates: list[EpochUpdate] = []
        self.stopped = 0

    def start(self, label: str, limit_s: float | None) -> None:
        self.started.append((label, limit_s))

    def update(self, update: EpochUpdate, elapsed_s: float) -> None:
        self.updates.append(update)

    def stop(self, elapsed_s: float) -> None:
        self.stopped += 1


@pytest.mark.parametrize(
    "change",
    [
        {"epoch": -1},
        {"epoch": 0},
        {"epoch": True},
        {"epoch": 2.0},
        {"epoch": "2"},
        {"epoch": 10**30},
        {"epoch": 6},  # beyond the epochs asked for
        {"epochs": -5},
        {"epochs": "5"},
        {"fit": 0},
        {"fit": 10**6},
        {"loss": float("nan")},
        {"loss": float("inf")},
        {"val_loss": 1e300},
        {"loss": "0.1\x1b[2J"},
        {"val_loss": [0.1]},
        {f"extra{i}": i for i in range(100)},
    ],
)
def test_garbage_records_are_dropped(change):
    assert parse_update(GOOD) == EpochUpdate(1, 2, 5, 0.25, 0.5)
    assert parse_update({**GOOD, **change}) is None


def test_non_records_are_dropped():
    for raw in (None, "x" * 1_000_000, [1, 2], 3, {"epoch": None}, {}):
        assert parse_update(raw) is None
    assert parse_update({"epoch": 1}) == EpochUpdate(1, 1, None, None, None)  # losses and the count are optional


def test_a_flood_is_capped_ordered_and_cheap_and_a_failing_display_is_switched_off():
    sink = Recording()
    with progress.showing(sink), progress.task("q2 train", 300.0) as tracker:
        started = time.monotonic()
        for epoch in range(1, 5001):
            progress.accept({"epoch": epoch, "loss": 1.0})
            progress.accept({"epoch": 1, "loss": 9.0})  # going back: dropped
            progress.accept("garbage")
        assert time.monotonic() - started < 2.0  # 15,000 records: far under the cost of one epoch
    assert sink.started == [("q2 train", 300.0)] and sink.stopped == 1
    assert [u.epoch for u in sink.updates] == list(range(1, progress.MAX_UPDATES + 1))
    assert tracker.dropped == 15_000 - progress.MAX_UPDATES

    class Broken(Recording):
        def update(self, update: EpochUpdate, elapsed_s: float) -> None:
            raise OSError("the terminal went away")

    tracker = Tracker(Broken(), "q2", None)
    tracker.accept(GOOD)  # does not raise: the display is switched off
    assert isinstance(tracker.sink, NullSink)
    progress.accept(GOOD)  # outside a task: nothing to show, nothing raised


def test_reporting_an_epoch_never_fails_the_training():
    class Unconvertible:
        def __float__(self) -> float:
            raise RuntimeError("a callback put this in the logs")

    sink = Recording()
    with progress.showing(sink), progress.task("q2 train"):
        progress.report_epoch(1, 1, 2, {"loss": Unconvertible(), "val_loss": 0.5})  # the loss is left out
        progress.report_epoch(1, 2, 2, cast(Any, "not a mapping"))  # nothing shown, nothing raised
    assert sink.updates == [EpochUpdate(1, 1, 2, None, 0.5)]


def test_text_sink_prints_one_line_per_epoch_against_the_limit():
    stream = io.StringIO()
    with progress.showing(TextSink(stream)), progress.task("q2 train_until_overfit", 300.0):
        progress.accept({"epoch": 1, "epochs": 30, "loss": 0.61234, "val_loss": 0.5})
        progress.accept({"fit": 2, "epoch": 1, "epochs": 3, "loss": 0.4})
    lines = stream.getvalue().splitlines()
    assert lines[0] == "q2 train_until_overfit: training (time limit 5:00)"
    assert lines[1].startswith("  epoch 1/30  loss 0.6123  val_loss 0.5000  (0:00 of 5:00)")
    assert lines[2].startswith("  fit 2, epoch 1/3  loss 0.4000  (")


def test_the_display_follows_the_stream(monkeypatch):
    for variable in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(variable, raising=False)
    master, slave = pty.openpty()
    with open(slave, "w") as terminal:
        assert isinstance(progress.for_stream(terminal), RichSink)  # a terminal: rich's bar
    os.close(master)
    assert isinstance(progress.for_stream(io.StringIO()), NullSink)  # a pipe (e.g. --json's stderr): nothing
    assert isinstance(progress.for_stream(io.StringIO(), plain=True), TextSink)  # the notebook API: plain lines


def test_rich_display_of_a_real_watched_fit():
    import keras
    import numpy as np

    from grader.training import watched_training

    console = Console(record=True, force_terminal=True, width=120, file=io.StringIO())
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, y = np.random.default_rng(0).random((64, 4), dtype=np.float32), np.arange(64) % 2
    with progress.showing(RichSink(console)), progress.task("q2 train_until_overfit", 300.0):
        with watched_training(300.0, given_model=model):
            history = model.fit(x, y, validation_data=(x, y), epochs=2, verbose=0).history
    text = console.export_text()
    assert "q2 train_until_overfit" in text and "/ 5:00" in text
    for epoch in (1, 2):
        loss, val_loss = history["loss"][epoch - 1], history["val_loss"][epoch - 1]
        assert f"epoch {epoch}/2  loss {loss:.4f}  val_loss {val_loss:.4f}" in text


# --------------------------------------------------------------------------- `grader check q2`, sandboxed

TWO_EPOCHS = """
import keras


def train_until_overfit(model, x_train, y_train, x_val, y_val):
    forge("before")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=2, batch_size=100, verbose=0)
    forge("after")
    return history.history
"""

HOSTILE = """
import grader.progress as progress


def forge(when):
    send = progress._CHANNEL.get("send")
    if send is None:
        return
    if when == "before":  # records the parent must drop
        for record in ({"epoch": -1, "loss": 0.1}, {"epoch": 1, "loss": float("nan")}, {"epoch": 1, "loss": "\\x1b[2J"},
                       {"epoch": 10**40}, "x" * 5_000_000, [1, 2], {f"k{i}": i for i in range(1000)}):
            send(record)
    else:  # a flood of records that do not move the run forward
        for _ in range(20_000):
            send({"epoch": 1, "epochs": 2, "loss": 9.87654, "val_loss": 9.87654})
"""


def run_in_terminal(folder: Path, *args: str) -> tuple[int, str]:
    """`grader check q2` on `folder` with stdout and stderr on a pseudo-terminal: its exit code and what it showed."""
    master, slave = pty.openpty()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "140"}
    command = [sys.executable, "-m", "grader", "check", "q2", "--path", str(folder), *args]
    with subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=REPO, env=env) as process:
        os.close(slave)
        shown = b""
        while True:
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:  # the terminal's other end closed
                break
            if not chunk:
                break
            shown += chunk
        code = process.wait(timeout=600)
    os.close(master)
    return code, shown.decode(errors="replace")


@pytest.mark.slow
def test_grader_check_q2_shows_each_epoch_in_a_terminal_and_a_hostile_child_cannot_spoil_it(tmp_path):
    (tmp_path / "q2_overfit.py").write_text(TWO_EPOCHS + textwrap.dedent(HOSTILE))
    started = time.monotonic()
    code, terminal = run_in_terminal(tmp_path, "--plots", str(tmp_path / "plots"))
    assert code == 1, terminal[-3000:]  # two epochs cannot overfit: some checks fail
    assert "q2 train_until_overfit" in terminal and "/ 5:00" in terminal
    assert "epoch 1/2  loss " in terminal and "epoch 2/2  loss " in terminal and "val_loss " in terminal
    # the forged records were dropped; the grader's verdicts are those of the honest training
    assert "9.8765" not in terminal and "loss nan" not in terminal and "xxxxx" not in terminal
    verdicts = [
        line for line in terminal.splitlines() if "trains the model it is given" in line or "history is real" in line
    ]
    assert len(verdicts) == 2 and all("PASS" in line for line in verdicts), terminal[-3000:]
    assert time.monotonic() - started < 300


def test_with_json_progress_goes_to_stderr_and_stdout_stays_one_json_report(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from grader.cli import main

    streams = []
    choose = progress.for_stream

    def recorded(stream, **kwargs):
        streams.append("stderr" if stream is sys.stderr else "stdout" if stream is sys.stdout else "other")
        return choose(stream, **kwargs)

    monkeypatch.setattr(progress, "for_stream", recorded)
    done = CliRunner().invoke(main, ["check", "q1", "--path", str(tmp_path), "--json"])
    assert json.loads(done.stdout)["question"] == "q1"  # nothing but the report on stdout
    done = CliRunner().invoke(main, ["check", "q1", "--path", str(tmp_path)])
    assert "score 0/" in done.stdout
    assert streams == ["stderr", "stdout"]
