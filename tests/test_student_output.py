"""What student code prints is shown under a failed check: the last lines, capped, cleaned; never a hidden check's."""

from __future__ import annotations

import io

import keras
from conftest import grade_folder
from keras import layers

from grader import notebook
from grader.grading import grade_namespace
from grader.questions import get_question
from grader.report import render_text
from grader.results import OUTPUT_CHARS, OUTPUT_LINES, output_tail
from grader.sandbox.child import BoundedWriter

WRONG_LENET = """
import keras
from keras import layers


def build_lenet5(input_shape=(28, 28, 1), num_classes=10):
{prints}
    return keras.Sequential([
        keras.Input(input_shape),
        layers.Conv2D(6, 5, activation="relu"),  # padding='valid': C1 gives 24x24
        layers.MaxPooling2D(),
        layers.Conv2D(16, 5, activation="relu"),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dense(120, activation="relu"),
        layers.Dense(84, activation="relu"),
        layers.Dense(num_classes, activation="softmax"),
    ])
"""


def report_of(result) -> str:
    buffer = io.StringIO()
    render_text([result], file=buffer)
    return buffer.getvalue()


def sandboxed(tmp_path, prints: str):
    (tmp_path / "q1_lenet.py").write_text(WRONG_LENET.format(prints=prints))
    return grade_folder(get_question("q1"), tmp_path, isolated=True)


def test_the_childs_writer_keeps_the_end_of_the_output():
    writer = BoundedWriter(100)
    for number in range(1000):
        print(f"line {number}", file=writer)
    value = writer.getvalue()
    assert value.endswith("line 999\n") and "line 0\n" not in value
    assert writer.size == 100 and writer.dropped == sum(len(f"line {n}\n") for n in range(1000)) - 100
    assert value.startswith(f"[... {writer.dropped:,} earlier characters")


def test_output_tail_keeps_the_last_lines_cleaned():
    text = (
        "".join(f"debug {n}\n" for n in range(100)) + "\x1b[31mred\x1b[0m\x07 bell\n 1/9 [>...]\r 9/9 [====] done\r\n"
    )
    tail = output_tail(text)
    lines = tail.splitlines()
    assert len(lines) == OUTPUT_LINES and lines[-2:] == ["red bell", " 9/9 [====] done"]
    assert lines[0] == f"debug {100 - OUTPUT_LINES + 2}"
    assert "\x1b" not in tail and "\x07" not in tail and "\r" not in tail
    assert len(output_tail("y" * 10_000_000 + "\nthe end")) <= OUTPUT_CHARS


def test_a_failed_check_shows_the_last_lines_the_sandboxed_code_printed(tmp_path):
    prints = '    for number in range(40):\n        print(f"debug {number}: input_shape={input_shape}")\n'
    prints += '    print("\\x1b[2J\\x1b[31mshapes look fine?\\x1b[0m\\x07")'
    result = sandboxed(tmp_path, prints)
    shapes = next(c for c in result.checks if c.name == "layer output shapes match LeNet-5")
    assert not shapes.passed and shapes.message.startswith("C1 ")  # the same verdict as without prints
    assert shapes.output.splitlines()[-1] == "shapes look fine?"
    assert "debug 39: input_shape=(28, 28, 1)" in shapes.output and "debug 0:" not in shapes.output
    report = report_of(result)
    assert f"your code printed (last {OUTPUT_LINES} lines):" in report
    assert "| shapes look fine?" in report and "\x1b" not in report and "\x07" not in report
    assert result.to_dict()["checks"][1]["output"] == shapes.output
    assert all("output" not in c for c in result.to_dict()["checks"] if c["passed"])


def test_ten_megabytes_of_prints_are_capped_and_grading_goes_on(tmp_path):
    prints = '    print("x" * 10_000_000)\n    print("last words")'
    result = sandboxed(tmp_path, prints)
    shapes = next(c for c in result.checks if c.name == "layer output shapes match LeNet-5")
    assert not shapes.passed and shapes.message.startswith("C1 ")
    assert shapes.output.endswith("last words") and len(shapes.output) <= OUTPUT_CHARS
    assert result.score == 4  # the other checks ran as usual


def test_the_notebook_shows_the_prints_but_never_a_hidden_checks(capsys):
    """In-process (the notebook API) too; a hidden check's output (it may show hidden inputs) is redacted."""

    def build_lenet5(input_shape=(28, 28, 1), num_classes=10):
        print(f"called with input_shape={input_shape}")
        return keras.Sequential(
            [
                keras.Input((28, 28, 1)),  # ignores input_shape: the hidden check fails
                layers.Conv2D(6, 5, activation="relu"),
                layers.MaxPooling2D(),
                layers.Conv2D(16, 5, activation="relu"),
                layers.MaxPooling2D(),
                layers.Flatten(),
                layers.Dense(120, activation="relu"),
                layers.Dense(84, activation="relu"),
                layers.Dense(num_classes, activation="softmax"),
            ]
        )

    notebook.check("q1", build_lenet5)
    shown = capsys.readouterr().out
    assert "your code printed (last 1 line):" in shown and "| called with input_shape=(28, 28, 1)" in shown

    question = get_question("q1")
    hidden = {c.name for c in question.checks if c.hidden}
    full = grade_namespace(question, {"build_lenet5": build_lenet5}, include_hidden=True)
    leaky = [c for c in full.checks if c.name in hidden and not c.passed]
    assert leaky and "input_shape=(28, 28, 3)" in leaky[0].output  # what the hidden check called it with
    redacted = full.redacted(hidden)
    assert "28, 28, 3" not in report_of(redacted) and "28, 28, 3" not in str(redacted.to_dict())
