"""What student code can put into the grader's outputs: control characters, formulas, non-numbers, odd names."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import failed, grade, grade_source

from grader.batch.jobs import _replace_text
from grader.batch.outputs import write_csv, write_summary
from grader.batch.submissions import discover
from grader.checks import CheckResult, QuestionResult
from grader.paths import solutions_dir
from grader.text import clean, spreadsheet_cell

FORGED_REPORT = "\x1b[2J\x1b[H\x1b[32mq1 score 10/10\x1b[0m\x1b[8m"


def test_clean_removes_escape_sequences_and_c1_controls_and_caps_length() -> None:
    text = clean(f"{FORGED_REPORT}\x9b2J\x07tail\nnext line", limit=4000)
    assert text == "q1 score 10/10tail\nnext line"
    assert len(clean("x" * 10_000, limit=100)) == 100
    assert "\n" not in clean("a\nb", newlines=False)


def test_a_message_built_from_student_text_reaches_the_report_without_controls(tmp_path: Path) -> None:
    source = f"def build_lenet5(input_shape=(28, 28, 1), num_classes=10):\n    raise ValueError({FORGED_REPORT!r})\n"
    result = grade_source(tmp_path, "q1", source)
    messages = [c.message for c in result.checks]
    assert result.score == 0
    assert all("\x1b" not in m and "\x07" not in m for m in messages)
    assert any("raised ValueError" in m and "q1 score 10/10" in m for m in messages)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_fraction_fails_the_numeric_checks(value: float) -> None:
    answer = " ".join(["word"] * 30)
    result = grade("q6", classifier_parameter_fraction=lambda model: value, ANSWER=answer)
    failures = failed(result)
    assert set(failures) == {
        "classifier parameter fraction of AlexNet",
        "classifier parameter fraction of another model",
    }
    assert all("not a number" in message for message in failures.values())


def test_bool_is_not_an_int_in_parameter_counts() -> None:
    namespace: dict = {}
    exec((solutions_dir() / "q5_params.py").read_text(), namespace)
    namespace["conv2d_params"] = lambda *args, **kwargs: True
    result = grade("q5", **{k: namespace[k] for k in ("conv2d_params", "dense_params", "count_parameters")})
    assert "returned a bool" in failed(result)["conv2d_params formula"]


def test_csv_cells_cannot_be_formulas(tmp_path: Path) -> None:
    result = QuestionResult("q6", "t", [CheckResult("c", True, 2.0, 2.0, "ok")])
    path = write_csv(
        tmp_path / "grades.csv",
        {"=cmd|' /C calc'!A0": {"q6": result}},
        ["q6"],
        {"=cmd|' /C calc'!A0": '=HYPERLINK("http://x")'},
        assignment="cnn",
        roster={"=cmd|' /C calc'!A0": {"first_name": "+SUM(1)", "last_name": "@x", "email": "-1"}},
    )
    with open(path, newline="") as handle:
        row = next(csv.DictReader(handle))
    for column in ("student_id", "timestamp", "first_name", "last_name", "email"):
        assert row[column].startswith("'"), column
    assert row["score"] == row["q6"] == "2"
    assert spreadsheet_cell("\t=1+1").startswith("'") and spreadsheet_cell(" -2").startswith("'")
    assert spreadsheet_cell("alice") == "alice" and spreadsheet_cell(None) == ""


def test_timestamp_is_parsed_as_a_date_or_left_empty_and_flagged(tmp_path: Path) -> None:
    for student, stamp in (("good", "2026-11-30 10:15:00.123456 UTC"), ("forged", '=HYPERLINK("http://x")')):
        folder = tmp_path / "subs" / student
        folder.mkdir(parents=True)
        (folder / "q1_lenet.py").write_text("x = 1\n")
        (folder / "timestamp.txt").write_text(stamp)
    found = {s.student: s for s in discover(tmp_path / "subs")}
    assert found["good"].timestamp == "2026-11-30 10:15:00" and found["good"].timestamp_problem is None
    assert found["forged"].timestamp is None and "not a date" in (found["forged"].timestamp_problem or "")
    summary = write_summary(tmp_path, {}, ["q1"], problems={"forged": found["forged"].timestamp_problem or ""})
    text = summary.read_text()
    assert "no submission graded yet" in text and "out of 0 points" not in text
    assert "forged: timestamp.txt is not a date" in text
    assert json.loads((tmp_path / "summary.json").read_text())["problems"] == {
        "forged": found["forged"].timestamp_problem
    }


def test_a_student_folder_name_with_quotes_and_backslashes_is_substituted_as_text() -> None:
    data = {"checks": [{"message": "C:\\staging\\submission/q1.py failed"}], "meta": {"C:\\staging\\submission": 1}}
    replaced = _replace_text(data, "C:\\staging\\submission", 'your submission (a"b\\c)')
    assert replaced["checks"][0]["message"] == 'your submission (a"b\\c)/q1.py failed'
    assert list(replaced["meta"]) == ['your submission (a"b\\c)']


def test_the_terminal_report_shows_no_forged_escape_sequences(tmp_path: Path) -> None:
    """`grader check` in a terminal: the student's text arrives without the sequences that would forge a report."""
    import os
    import subprocess
    import sys

    (tmp_path / "q1_lenet.py").write_text(
        f"def build_lenet5(input_shape=(28, 28, 1), num_classes=10):\n    raise ValueError({FORGED_REPORT!r})\n"
    )
    env = {**os.environ, "FORCE_COLOR": "1", "TERM": "xterm-256color"}  # rich writes colours as to a terminal
    done = subprocess.run(
        [sys.executable, "-m", "grader", "check", "q1", "--path", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 1
    assert "score 0/10" in done.stdout
    for forged in ("\x1b[2J", "\x1b[H", "\x1b[8m", "\x1b[32mq1 score 10/10"):
        assert forged not in done.stdout


def test_batch_workers_make_no_keras_home_when_one_is_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    from grader.batch.workers import LocalPool

    made: list[str] = []
    real = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    pool = LocalPool(1)
    pool.close(kill=True)
    assert made == []
    monkeypatch.delenv("KERAS_HOME")
    pool = LocalPool(1)
    pool.close(kill=True)
    assert len(made) == 1 and "cnn-grader-keras-" in made[0]
