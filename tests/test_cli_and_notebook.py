"""The `grader` command line and the notebook API, as students and CI use them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

GRADER = [sys.executable, "-m", "grader"]
BAD_LENET = """
import keras
from keras import layers


def build_lenet5(input_shape=(28, 28, 1), num_classes=10):
    return keras.Sequential([
        keras.Input(input_shape),
        layers.Conv2D(6, 5, activation="relu"),
        layers.MaxPooling2D(),
        layers.Conv2D(16, 5, activation="relu"),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dense(120, activation="relu"),
        layers.Dense(84, activation="relu"),
        layers.Dense(num_classes, activation="softmax"),
    ])
"""


def run_grader(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*GRADER, *args], cwd=cwd, capture_output=True, text=True, env=os.environ.copy(), timeout=1800
    )


def test_list_shows_every_question_with_points():
    done = run_grader("list")
    assert done.returncode == 0
    assert "q1" in done.stdout and "10 points" in done.stdout and "q6_dropout.py" in done.stdout
    q6 = next(line for line in done.stdout.splitlines() if line.startswith("q6"))
    assert "3 points + 5 by hand" in q6  # what nbgrader's notebook and `grader batch` count too


def test_check_on_stubs_scores_zero_and_exits_nonzero():
    done = run_grader("check", "q1")
    assert done.returncode == 1
    assert done.stdout.count("FAIL") == 5
    assert "not implemented yet" in done.stdout
    assert "score 0/10" in done.stdout


@pytest.mark.parametrize("command", [("check", "q1"), ("list",)])
def test_check_ends_without_the_interpreters_teardown(command):
    """`grader check` skips the teardown (about a second with TensorFlow) after its report; other commands do not."""
    program = (
        "import atexit, sys\nimport grader.cli\n"
        "atexit.register(lambda: print('TEARDOWN RAN'))\n"
        f"sys.argv = ['grader', *{command!r}]\ngrader.cli.run()\n"
    )
    done = subprocess.run([sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, timeout=600)
    if command[0] == "check":
        assert done.returncode == 1 and done.stdout.rstrip().endswith("score 0/10"), done.stdout + done.stderr
        assert "TEARDOWN RAN" not in done.stdout
    else:
        assert done.returncode == 0 and "TEARDOWN RAN" in done.stdout


def test_check_all_json_is_one_pure_json_list_in_question_order(tmp_path):
    """`check all --json` prints one JSON list and nothing else (CI's first command grades the solutions in full)."""
    from grader.questions import QUESTIONS

    done = run_grader("check", "all", "--path", str(REPO / "exercises"), "--json", "--plots", str(tmp_path))
    assert done.returncode == 1, done.stdout
    reports = json.loads(done.stdout)
    assert [r["question"] for r in reports] == list(QUESTIONS)
    for report in reports:
        assert set(report) >= {"question", "score", "max_score", "checks"}
        assert report["score"] == 0 < report["max_score"]
        for check in report["checks"]:
            assert set(check) >= {"name", "passed", "points", "max_points", "message", "diagnosis"}
            assert not check["passed"] and check["diagnosis"]  # every failed check carries its diagnosis id


def test_check_solutions_json_gives_full_marks_and_no_diagnosis(tmp_path):
    done = run_grader("check", "q1", "--solutions", "--json", "--plots", str(tmp_path))
    assert done.returncode == 0, done.stdout
    report = json.loads(done.stdout)
    assert report["question"] == "q1" and report["score"] == report["max_score"] > 0
    for check in report["checks"]:
        assert set(check) == {"name", "passed", "points", "max_points", "message", "diagnosis"}
        assert check["passed"] and check["diagnosis"] is None  # passed checks carry no diagnosis


def test_valid_padding_in_c1_is_named_from_the_command_line(tmp_path):
    (tmp_path / "q1_lenet.py").write_text(BAD_LENET)
    done = run_grader("check", "q1", "--path", str(tmp_path), "--json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    shapes = next(c for c in report["checks"] if c["name"] == "layer output shapes match LeNet-5")
    assert not shapes["passed"]
    assert shapes["message"].startswith("C1 ") and "padding='same'" in shapes["message"]
    assert shapes["diagnosis"]  # every failed check carries a machine-readable diagnosis
    assert 0 < report["score"] < report["max_score"]


def test_unknown_question_is_a_usage_error():
    done = run_grader("check", "q99")
    assert done.returncode == 2
    assert "unknown question 'q99'" in done.stderr


def test_a_missing_submission_folder_is_a_usage_error(tmp_path):
    done = run_grader("check", "q1", "--path", str(tmp_path / "missing"))
    assert done.returncode == 2 and "does not exist" in done.stderr
    assert "FAIL" not in done.stdout  # no report of seven zero scores


def test_the_grader_failing_is_exit_code_3_not_a_failed_check(tmp_path):
    (tmp_path / "q7_flowers.py").write_text("raise RuntimeError('top-level code fails')\n")
    done = run_grader("report", "q7", "--path", str(tmp_path), "--out", str(tmp_path / "report"))
    assert done.returncode == 3
    assert "top-level code fails" in done.stderr and "Traceback" not in done.stderr


def test_notebook_check_returns_a_plain_float_and_writes_nothing_to_stderr(capfd):
    from grader import check
    from grader.paths import solutions_dir
    from grader.questions import get_question
    from grader.submission import load_module

    reference = load_module(solutions_dir(), get_question("q1")).namespace
    capfd.readouterr()
    score = check("q1", reference["build_lenet5"])
    out, err = capfd.readouterr()
    assert type(score) is float and score == 9.0  # the hidden input_shape check is off in notebooks
    assert "score 9/9" in out and "PASS" in out
    assert err == ""

    hidden = check("q1", reference["build_lenet5"], hidden=True, show=False)
    assert type(hidden) is float and hidden == 10.0


def test_notebook_check_finds_names_in_the_callers_globals_and_answers_by_position(capfd):
    from grader import check
    from grader.paths import solutions_dir
    from grader.questions import get_question
    from grader.submission import load_module

    namespace = load_module(solutions_dir(), get_question("q6")).namespace
    score = check("q6", namespace["classifier_parameter_fraction"], namespace["ANSWER"])
    assert score == 2.0  # 3 automatic points minus the hidden check; the written answer is graded by hand
    exec("from grader import check\nresult = check('q6', show=False)", namespace)
    assert namespace["result"] == 2.0
    assert capfd.readouterr().err == ""


def _command(path: tuple[str, ...]):
    import click

    from grader.cli import main

    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


def test_old_option_spellings_are_hidden_aliases_that_warn(capsys):
    import click

    renamed = [
        (("nbgrader", "build"), "--timeout", "--question-time-limit"),
        (("nbgrader", "grade"), "--to", "--csv"),
        (("batch",), "--question-timeout", "--question-time-limit"),
        (("export",), "--output", "--csv"),
    ]
    for path, old, new in renamed:
        command = _command(path)
        ctx = click.Context(command)
        assert command.modernise(ctx, ["x", old, "7"]) == ["x", new, "7"]
        assert command.modernise(ctx, [f"{old}=7", "x"]) == [f"{new}=7", "x"]
        err = capsys.readouterr().err.splitlines()
        assert err == [f"warning: {old} is deprecated and goes away in the next release; use {new}"] * 2
        flags = {flag for parameter in command.params for flag in getattr(parameter, "opts", [])}
        assert old not in flags and new in flags  # hidden: not in --help nor in the CLI reference


def test_time_limit_and_tier_mean_the_same_in_every_command_that_trains():
    for path in (("check",), ("batch",), ("nbgrader", "grade")):
        command = _command(path)
        params = {flag: parameter for parameter in command.params for flag in getattr(parameter, "opts", [])}
        assert "--tier" in params and "--time-limit" in params, path
        assert "training" in params["--time-limit"].help.lower(), path
