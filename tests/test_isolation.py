"""Hostile submissions: whatever student code does in the sandbox, its question fails with its own message.

Each test grades a submission file with `grade_folder(..., isolated=True)`: the file is
imported and called only in a sandboxed child process. Where the sandbox could not apply
a measure on this machine (not root, no namespaces), the tests assert that the result's
`meta["isolation"]` says so instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, failed

from grader.grading import grade_folder
from grader.options import GradingOptions, Limits, Transfer
from grader.paths import solutions_dir
from grader.questions import get_question
from grader.sandbox import UID_BASE, UID_SLOTS, IsolatedExecutor, uid_processes

GOOD_LENET = (solutions_dir() / "q1_lenet.py").read_text()
LIMITS = Limits(wall_s=60, memory_mb=2048, processes=96)


def grade_isolated(folder: Path, question: str, source: str, limits: Limits = LIMITS, **files: str):
    spec = get_question(question)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / spec.filename).write_text(source)
    for name, text in files.items():
        (folder / name).write_text(text)
    return grade_folder(spec, folder, isolated=True, limits=limits)


def messages(result) -> list[str]:
    return list(failed(result).values())


def enforced(result) -> dict:
    return result.meta["isolation"]


def test_correct_submission_passes_and_meta_says_what_was_enforced(tmp_path):
    result = grade_isolated(tmp_path / "s", "q1", GOOD_LENET)
    assert failed(result) == {}
    assert result.score == result.max_score == 10
    isolation = enforced(result)
    assert isolation["process"] is True and isolation["session"] is True
    assert isolation["memory_mb"] == LIMITS.memory_mb and isolation["wall_s"] == LIMITS.wall_s
    for key in ("network", "user", "hidden"):
        assert key in isolation  # "off", an uid, a list of folders, or "not available: <why>"


def test_exception_is_reported_at_the_students_line(tmp_path):
    source = "def build_lenet5(input_shape=(28, 28, 1), num_classes=10):\n    return 1 / 0\n"
    result = grade_isolated(tmp_path / "s", "q1", source)
    assert result.score == 0
    assert any("raised ZeroDivisionError at q1_lenet.py line 2 (`return 1 / 0`)" in m for m in messages(result))
    assert {c.diagnosis for c in result.checks} == {"crashed"}  # named in the child, accepted as a generic id


def test_endless_loop_hits_the_wall_clock_limit(tmp_path):
    source = "def build_lenet5(input_shape=(28, 28, 1), num_classes=10):\n    while True:\n        pass\n"
    started = time.monotonic()
    result = grade_isolated(tmp_path / "s", "q1", source, Limits(wall_s=4))
    assert time.monotonic() - started < 30
    first = messages(result)[0]
    assert "did not finish within the 4-second limit" in first and "endless loop" in first
    assert all("not run: earlier in this question" in m or "4-second limit" in m for m in messages(result))
    assert result.checks[0].diagnosis == "timeout"


def test_memory_exhaustion_is_out_of_memory(tmp_path):
    source = (
        "def build_lenet5(input_shape=(28, 28, 1), num_classes=10):\n"
        "    hog = bytearray(64 * 1024 ** 3)\n"
        "    return hog\n"
    )
    result = grade_isolated(tmp_path / "s", "q1", source)
    assert any("ran out of memory" in m for m in messages(result)), messages(result)
    assert "out-of-memory" in {c.diagnosis for c in result.checks}


def test_fork_bomb_is_capped_and_every_forked_process_is_killed(tmp_path):
    source = (
        "import os, time\n"
        "def build_lenet5(input_shape=(28, 28, 1), num_classes=10):\n"
        "    for _ in range(3):\n"
        "        if os.fork() == 0:\n"
        "            os.setsid()  # leave the group: only a kill by uid reaches it\n"
        "            while True:\n"
        "                time.sleep(1)\n"
        "    while True:\n"
        "        os.fork()\n"
    )
    result = grade_isolated(tmp_path / "s", "q1", source, Limits(wall_s=20, memory_mb=2048, processes=48))
    assert result.score == 0
    first = messages(result)[0]
    assert "BlockingIOError" in first or "did not finish" in first, first
    if "unprivileged" in enforced(result)["user"]:
        uids = [UID_BASE + UID_SLOTS * os.getpid() + slot for slot in range(UID_SLOTS)]
        assert [pid for uid in uids for pid in uid_processes(uid, zombies=True)] == []  # killed and reaped
    again = grade_isolated(tmp_path / "t", "q1", GOOD_LENET)  # the next question is not starved of processes
    assert again.score == 10


def test_os_exit_ends_only_the_child(tmp_path):
    source = "import os\ndef build_lenet5(input_shape=(28, 28, 1), num_classes=10):\n    os._exit(0)\n"
    result = grade_isolated(tmp_path / "s", "q1", source)
    assert "ended the process it ran in (exit code 0)" in messages(result)[0]


def test_sys_exit_in_the_middle_of_a_check(tmp_path):
    source = "import sys\ndef build_lenet5(input_shape=(28, 28, 1), num_classes=10):\n    sys.exit(0)\n"
    result = grade_isolated(tmp_path / "s", "q1", source)
    assert "called sys.exit(0): a function must return its result" in messages(result)[0]


def test_segfault_is_a_crash(tmp_path):
    source = "import os, signal\ndef build_lenet5(input_shape=(28, 28, 1), num_classes=10):\n    os.kill(os.getpid(), signal.SIGSEGV)\n"
    result = grade_isolated(tmp_path / "s", "q1", source)
    assert "crashed (signal SIGSEGV)" in messages(result)[0]


def test_killing_the_parents_group_reaches_only_the_child(tmp_path):
    source = (
        "import os, signal\n"
        "def build_lenet5(input_shape=(28, 28, 1), num_classes=10):\n"
        "    for target in (os.getppid(), -1):\n"
        "        try:\n"
        "            os.kill(target, signal.SIGKILL)\n"
        "        except OSError:\n"
        "            pass\n"
        "    os.killpg(os.getpgid(0), signal.SIGKILL)\n"
    )
    result = grade_isolated(tmp_path / "s", "q1", source)
    assert "was killed (signal SIGKILL)" in messages(result)[0]
    again = grade_isolated(tmp_path / "t", "q1", GOOD_LENET)  # this process and the sandbox still work
    assert again.score == 10


def test_flooding_stdout_is_bounded_and_grading_goes_on(tmp_path):
    source = GOOD_LENET.replace(
        "def build_lenet5(",
        "import os\n_flooded = []\ndef _flood():\n    os.write(1, b'x' * 50_000_000)\n    print('y' * 20_000_000)\n\ndef build_lenet5(",
        1,
    )
    source = source.replace("    return keras.Sequential(", "    _flood()\n    return keras.Sequential(", 1)
    assert "_flood()\n    return" in source
    result = grade_isolated(tmp_path / "s", "q1", source)
    assert failed(result) == {}


def test_writing_outside_its_folder_changes_nothing(tmp_path):
    targets = [
        tmp_path / "outside.txt",
        REPO / "grader" / "pwned.py",
        solutions_dir() / "q1_lenet.py",
        Path("/tmp/cnn-grader-pwned"),
    ]
    source = (
        "import os\n"
        f"TARGETS = {[str(t) for t in targets]!r}\n"
        "def build_lenet5(input_shape=(28, 28, 1), num_classes=10):\n"
        "    done = []\n"
        "    for path in TARGETS:\n"
        "        try:\n"
        "            with open(path, 'w') as f:\n"
        "                f.write('pwned')\n"
        "            done.append(path)\n"
        "        except OSError as error:\n"
        "            pass\n"
        "    raise RuntimeError('wrote ' + repr(done))\n"
    )
    before = (solutions_dir() / "q1_lenet.py").read_text()
    result = grade_isolated(tmp_path / "s", "q1", source)
    assert result.score == 0
    isolation = enforced(result)
    if "unprivileged" in isolation["user"] or isinstance(isolation["hidden"], list):
        assert not (tmp_path / "outside.txt").exists()
        assert not (REPO / "grader" / "pwned.py").exists()
        assert (solutions_dir() / "q1_lenet.py").read_text() == before
        assert not Path("/tmp/cnn-grader-pwned").exists()
    else:
        assert "not" in isolation["user"] and "not available" in str(isolation["hidden"])


def test_reading_the_solutions_finds_nothing(tmp_path):
    source = (
        "import os, sys, glob\n"
        f"REPO = {str(REPO)!r}\n"
        "def build_lenet5(input_shape=(28, 28, 1), num_classes=10):\n"
        "    tried = ['../solutions/q1_lenet.py', os.path.join(REPO, 'solutions', 'q1_lenet.py')]\n"
        "    try:\n"
        "        from grader.paths import solutions_dir\n"
        "        tried.append(str(solutions_dir() / 'q1_lenet.py'))\n"
        "    except Exception:\n"
        "        pass\n"
        "    tried += [v for k, v in os.environ.items() if 'SOLUTION' in k]\n"
        "    for path in tried:\n"
        "        if os.path.isfile(path):\n"
        "            namespace = {}\n"
        "            exec(open(path).read(), namespace)\n"
        "            return namespace['build_lenet5'](input_shape, num_classes)\n"
        "    try:\n"
        "        import solutions.q1_lenet as leaked\n"
        "        return leaked.build_lenet5(input_shape, num_classes)\n"
        "    except ImportError:\n"
        "        pass\n"
        "    raise FileNotFoundError('no solutions in ' + repr(sys.path))\n"
    )
    result = grade_isolated(tmp_path / "s", "q1", source)
    isolation = enforced(result)
    if isinstance(isolation["hidden"], list):
        assert str(solutions_dir().resolve()) in isolation["hidden"]
        assert result.score == 0
        assert "raised FileNotFoundError" in messages(result)[0]
    else:
        assert isolation["hidden"].startswith("not available")


def test_network_is_off_where_the_kernel_allows(tmp_path):
    source = (
        "import socket\n"
        "def build_lenet5(input_shape=(28, 28, 1), num_classes=10):\n"
        "    socket.create_connection(('192.0.2.1', 80), timeout=3)\n"
    )
    result = grade_isolated(tmp_path / "s", "q1", source)
    if enforced(result)["network"] == "off":
        assert "Network is unreachable" in messages(result)[0]
    else:
        assert enforced(result)["network"].startswith("not available")


def test_monkeypatching_the_grader_and_keras_in_the_child_changes_nothing(tmp_path):
    source = (
        "import keras, grader.checks, grader.comparator\n"
        "from grader.checks import CheckResult, QuestionResult\n"
        "grader.checks.run_checks = lambda q, c, **k: QuestionResult(q.id, q.title, [CheckResult('all', True, 10, 10, 'ok')])\n"
        "grader.comparator.compare_structure = lambda *a: 'all layers match'\n"
        "keras.Model.count_params = lambda self: 61706\n"
        "def build_lenet5(input_shape=(28, 28, 1), num_classes=10):\n"
        "    return keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(), keras.layers.Dense(num_classes)])\n"
    )
    result = grade_isolated(tmp_path / "s", "q1", source)
    assert result.passed is False and result.score < 5
    failures = failed(result)
    assert failures["parameter count"].startswith("Your model has 7,850 parameters, expected 61,706")
    assert "Missing layer" in failures["layer output shapes match LeNet-5"]


def test_fabricated_answers_are_caught_by_the_grader_own_computation(tmp_path):
    reference = (solutions_dir() / "q4_alexnet.py").read_text()
    source = reference + (
        "\n\nimport grader.questions.q4_alexnet as _q4\n"
        "_ALEXNET = None\n"
        "def layer_output_shapes(model, input_shape=(224, 224, 3)):\n"
        "    # a fabricated report: the AlexNet answer, whatever the model\n"
        "    shapes = [(l.name, (1,)) for l in model.layers]\n"
        "    print(' '.join(name for name, _ in shapes))\n"
        "    return [(name, (1, 55, 55, 64)) for name, _ in shapes]\n"
    )
    result = grade_isolated(tmp_path / "s", "q4", source)
    failures = failed(result)
    assert set(failures) == {"layer_output_shapes on AlexNet", "layer_output_shapes on another model"}
    assert "should report" in failures["layer_output_shapes on another model"]


def test_subclassed_model_is_graded_on_the_structure_traced_in_the_sandbox(tmp_path):
    source = (
        "import keras\n"
        "class LeNet(keras.Model):\n"
        "    def __init__(self, num_classes=10):\n"
        "        super().__init__()\n"
        "        self.flat = keras.layers.Flatten()\n"
        "        self.out = keras.layers.Dense(num_classes)\n"
        "    def call(self, x):\n"
        "        return self.out(self.flat(x))\n"
        "def build_lenet5(input_shape=(28, 28, 1), num_classes=10):\n"
        "    return LeNet(num_classes)\n"
    )
    result = grade_isolated(tmp_path / "s", "q1", source)
    assert result.meta["isolation"]["structure"] == "traced in the sandbox"
    assert "Missing layer at the start: the reference has C1" in messages(result)[0]


def test_each_hostile_behaviour_has_its_own_message(tmp_path):
    """The messages above differ: a student can tell a crash from a loop from an exit."""
    cases = {
        "exit": "import os\ndef build_lenet5(input_shape=(28, 28, 1), num_classes=10):\n    os._exit(3)\n",
        "segv": "import os, signal\ndef build_lenet5(input_shape=(28, 28, 1), num_classes=10):\n    os.kill(os.getpid(), signal.SIGSEGV)\n",
        "sysexit": "import sys\ndef build_lenet5(input_shape=(28, 28, 1), num_classes=10):\n    sys.exit(2)\n",
    }
    seen = {name: messages(grade_isolated(tmp_path / name, "q1", source))[0] for name, source in cases.items()}
    assert len(set(seen.values())) == len(seen)
    assert "exit code 3" in seen["exit"] and "SIGSEGV" in seen["segv"] and "sys.exit(2)" in seen["sysexit"]


def test_cli_json_cannot_be_forged_by_printing(tmp_path):
    fake = json.dumps({"question": "q1", "score": 10, "max_score": 10, "checks": []})
    source = (
        "import os, sys\n"
        f"FAKE = {fake!r}\n"
        "print(FAKE)\n"
        "os.write(1, (FAKE + '\\n').encode())\n"
        "sys.__stdout__.write(FAKE + '\\n')\n"
        "def build_lenet5(input_shape=(28, 28, 1), num_classes=10):\n"
        "    print(FAKE)\n"
        "    os.write(1, FAKE.encode())\n"
        "    raise ValueError('no model')\n"
    )
    (tmp_path / "q1_lenet.py").write_text(source)
    done = subprocess.run(
        [sys.executable, "-m", "grader", "check", "q1", "--path", str(tmp_path), "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 1
    report = json.loads(done.stdout)  # pure JSON: nothing the student printed reached stdout
    assert report["score"] == 0 and len(report["checks"]) == 5
    assert report["meta"]["isolation"]["process"] is True


def test_in_process_flag_still_grades_in_the_grader_process(tmp_path):
    (tmp_path / "q6_dropout.py").write_text((solutions_dir() / "q6_dropout.py").read_text())
    done = subprocess.run(
        [sys.executable, "-m", "grader", "check", "q6", "--path", str(tmp_path), "--json", "--in-process"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads(done.stdout)
    assert done.returncode == 0 and report["score"] == report["max_score"] == get_question("q6").max_score > 0
    assert "isolation" not in report.get("meta", {})


@pytest.mark.parametrize("question", ["q4", "q5", "q6"])
def test_reference_solutions_get_full_marks_in_the_sandbox(question):
    result = grade_folder(get_question(question), solutions_dir(), isolated=True)
    assert failed(result) == {}
    assert result.score == result.max_score


def test_q5_walking_check_still_sees_count_params_in_the_sandbox(tmp_path):
    source = (solutions_dir() / "q5_params.py").read_text() + (
        "\n\ndef count_parameters(model):\n    return int(model.count_params())\n"
    )
    result = grade_isolated(tmp_path / "s", "q5", source)
    assert set(failed(result)) == {"count_parameters walks the layers"}
    assert "calls count_params()" in failed(result)["count_parameters walks the layers"]


def test_a_huge_return_value_is_refused_not_loaded(tmp_path):
    source = "def build_lenet5(input_shape=(28, 28, 1), num_classes=10):\n    return 'x' * 100_000_000\n"
    result = grade_isolated(tmp_path / "s", "q1", source)
    assert "sent back more than 64 MB" in messages(result)[0]


def test_training_opt_in_sends_weights_both_ways_and_a_history_back(tmp_path):
    """What the training questions need: a model trained in the sandbox comes back with its new weights."""
    import keras
    import numpy as np

    source = GOOD_LENET + (
        "\n\ndef train(model, x, y):\n"
        "    print('training')\n"
        "    return model.fit(x, y, epochs=2, batch_size=8, verbose=0)\n"
    )
    (tmp_path / "q1_lenet.py").write_text(source)
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    before = [w.copy() for w in model.get_weights()]
    x = np.random.default_rng(0).random((32, 4), dtype=np.float32)
    y = np.arange(32) % 3
    with IsolatedExecutor(get_question("q1"), tmp_path, limits=LIMITS) as executor:
        outcome = executor.call("train", (model, x, y), transfer=Transfer.ROUND_TRIP)
        built = executor.call("build_lenet5", transfer=Transfer.WEIGHTS_BACK).value
    trained, x_back, y_back = outcome.args
    assert outcome.stdout == "training\n"
    assert type(outcome.value).__name__ == "History" and len(outcome.value.history["loss"]) == 2
    assert isinstance(trained, keras.Model) and trained is not model
    assert any(not np.allclose(a, b) for a, b in zip(before, trained.get_weights()))  # trained in the sandbox
    assert all(np.allclose(a, b) for a, b in zip(before, model.get_weights()))  # the grader's copy untouched
    assert np.array_equal(x_back, x) and np.array_equal(y_back, y)
    assert built.count_params() == 61_706 and any(np.abs(w).sum() > 0 for w in built.get_weights())  # real weights


def test_the_child_imports_any_standard_module_but_sees_nothing_else_of_a_closed_home(tmp_path):
    source = (
        "import mailbox, encodings.cp037, os\nHOME_VIEW = {}\n"
        + GOOD_LENET
        + (
            "\n\ndef home_view():\n"
            "    out = {}\n"
            "    for folder in ('/root', os.path.expanduser('~')):\n"
            "        try:\n"
            "            out[folder] = sorted(os.listdir(folder))\n"
            "        except OSError as error:\n"
            "            out[folder] = type(error).__name__\n"
            "    return out\n"
        )
    )
    (tmp_path / "q1_lenet.py").write_text(source)
    with IsolatedExecutor(get_question("q1"), tmp_path, limits=LIMITS) as executor:
        assert executor.load_error is None
        view = executor.call("home_view").value
    if (
        os.path.isdir("/root")
        and not os.stat("/root").st_mode & 0o001
        and isinstance(executor.enforced["hidden"], list)
    ):
        assert set(view["/root"]) <= {".pyenv", ".local", ".cache", ".venv"}  # only where Python lives
        assert ".bashrc" not in view["/root"]


def test_an_endless_loop_in_a_structural_question_is_reported_within_its_own_minute(tmp_path):
    """No limit given (as `grader check` runs): q1's own 60-second limit stops the loop and the message names it."""
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "q1_lenet.py").write_text(
        "def build_lenet5(input_shape=(28, 28, 1), num_classes=10):\n    while True:\n        pass\n"
    )
    spec = get_question("q1")
    assert spec.time_limit_s == 60 and spec.limits_for(Limits(), GradingOptions()).wall_s == 60
    started = time.monotonic()
    result = grade_folder(spec, folder, isolated=True)
    assert time.monotonic() - started < 60 + 30  # the limit, plus start-up and the grader's own steps
    assert "did not finish within the 60-second limit" in messages(result)[0]
    assert result.checks[0].diagnosis == "timeout"
    assert result.meta["isolation"]["wall_s"] == 60
