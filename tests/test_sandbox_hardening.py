"""Issue 11's hostile submissions, one per numbered scenario: each scores what its real work deserves, leaves no
process, IPC object or file behind, and gets a truthful message.

1. reading the checkout (`.git`, `solutions/`) from the child;
2. processes and SysV shared memory outliving the question (also when the grader is SIGKILLed), `/run/lock`;
3. unbounded work in the grader (a model of ~120 weightless blocks) and replies the grader cannot read
   (deep nesting, huge integers);
7. Dask workers with several threads (refused), and tracing from several threads at once (correct);
plus a `grader batch` where a hostile student shares the only worker with two honest ones.
Items 4-6 and 8 are covered by `test_grader_output_safety.py`. Where the kernel refuses a namespace, the tests
assert that `meta["isolation"]` says so instead.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest
from conftest import REPO, failed

from grader.grading import grade_folder
from grader.options import Limits
from grader.paths import solutions_dir
from grader.questions import get_question
from grader.sandbox import IsolatedExecutor

GOOD_LENET = (solutions_dir() / "q1_lenet.py").read_text()
LIMITS = Limits(wall_s=60, memory_mb=2048, processes=96)
OWN = "own namespace"


def grade_isolated(folder: Path, source: str, limits: Limits = LIMITS):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "q1_lenet.py").write_text(source)
    return grade_folder(get_question("q1"), folder, isolated=True, limits=limits)


def messages(result) -> list[str]:
    return list(failed(result).values())


def processes_with(marker: str) -> list[int]:
    """Live processes whose command line holds `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as file:
                    cmdline = file.read().decode(errors="replace")
                with open(f"/proc/{entry}/stat") as file:
                    state = file.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if marker in cmdline and state not in "ZX":
                found.append(int(entry))
    return found


def shm_keys() -> set[int]:
    """The SysV shared-memory keys of this (the grader's) IPC namespace."""
    with open("/proc/sysvipc/shm") as table:
        return {int(line.split()[0]) for line in list(table)[1:] if line.strip()}


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


# -- 1. the checkout is out of sight --------------------------------------------------------------------------------

PEEKING = textwrap.dedent(f"""
    import os, subprocess

    REPO = {str(REPO)!r}

    def build_lenet5(input_shape=(28, 28, 1), num_classes=10):
        text = None
        try:
            text = subprocess.run(["git", "--git-dir", REPO + "/.git", "show", "HEAD:solutions/q1_lenet.py"],
                                  capture_output=True, text=True, timeout=20).stdout or None
        except Exception:
            pass
        for path in (REPO + "/solutions/q1_lenet.py", REPO + "/.git/HEAD"):
            try:
                text = text or open(path).read()
            except OSError:
                pass
        if text and "def build_lenet5" in text:
            namespace = {{}}
            exec(text, namespace)
            return namespace["build_lenet5"](input_shape, num_classes)
        raise RuntimeError("found no reference solution")

    def view():
        out = {{}}
        for folder in (REPO, REPO + "/.git", REPO + "/solutions", REPO + "/grader"):
            try:
                out[folder] = sorted(os.listdir(folder))
            except OSError as error:
                out[folder] = type(error).__name__
        return out
""")


def test_1_the_checkout_git_and_solutions_are_out_of_sight(tmp_path):
    result = grade_isolated(tmp_path / "s", PEEKING)
    isolation = result.meta["isolation"]
    if not isinstance(isolation["hidden"], list):
        assert isolation["filesystem"].startswith("not available")
        pytest.skip(f"no mount namespace here: {isolation['filesystem']}")
    assert result.score == 0
    assert "found no reference solution" in messages(result)[0]
    assert isolation["filesystem"].startswith("minimal")
    with IsolatedExecutor(get_question("q1"), tmp_path / "s", limits=LIMITS) as executor:
        view = executor.call("view").value
    prefix = Path(sys.prefix).resolve()
    venv = {prefix.relative_to(REPO.resolve()).parts[0]} if prefix.is_relative_to(REPO.resolve()) else set()
    assert set(view[str(REPO)]) <= {"grader"} | venv  # nothing else of the checkout
    assert view[str(REPO) + "/.git"] == view[str(REPO) + "/solutions"] == "FileNotFoundError"
    assert "checks.py" in view[str(REPO) + "/grader"]


# -- 2. nothing outlives the question -------------------------------------------------------------------------------


def leaving(marker: str, key: int, then: str = "raise RuntimeError('left a daemon behind')") -> str:
    return textwrap.dedent(f"""
        import ctypes, os, subprocess, time

        def build_lenet5(input_shape=(28, 28, 1), num_classes=10):
            subprocess.Popen(["sleep", "{marker}"], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            libc = ctypes.CDLL(None, use_errno=True)
            shmid = libc.shmget({key}, 4096, 0o1000 | 0o666)  # IPC_CREAT, mode 666
            assert shmid >= 0, os.strerror(ctypes.get_errno())
            {then}

        def writable():
            out = {{}}
            for folder in ("/run/lock", "/var/lock", "/run", "/var/tmp", "/dev/shm", "/tmp", "/dev/mqueue"):
                try:
                    with open(os.path.join(folder, "cnn-grader-probe"), "w") as file:
                        file.write("x")
                    out[folder] = True
                except OSError:
                    out[folder] = False
            return out
    """)


def test_2_daemons_and_shared_memory_die_with_the_question(tmp_path):
    marker, key = f"{1000 + uuid.uuid4().int % 10**6}.{os.getpid()}", 0x5A000000 + os.getpid() % 0xFFFF
    result = grade_isolated(tmp_path / "s", leaving(marker, key))
    isolation = result.meta["isolation"]
    assert result.score == 0 and "left a daemon behind" in messages(result)[0]
    if isolation["pid"] == OWN or "unprivileged" in isolation["user"]:
        assert wait_until(lambda: not processes_with(marker), 10), "the detached process outlived the question"
    else:
        assert isolation["pid"].startswith("not available")
    if isolation["ipc"] == OWN:
        assert key not in shm_keys()
    else:
        assert isolation["ipc"].startswith("not available")
    with IsolatedExecutor(get_question("q1"), tmp_path / "s", limits=LIMITS) as executor:
        writable = executor.call("writable").value
    if isinstance(isolation["hidden"], list):
        assert writable == {
            "/run/lock": False,
            "/var/lock": False,
            "/run": False,
            "/var/tmp": True,
            "/dev/shm": True,
            "/tmp": True,
            "/dev/mqueue": False,
        }
    assert not Path("/run/lock/cnn-grader-probe").exists()


GRADE_ONE = """
import sys
from pathlib import Path
from grader.grading import grade_folder
from grader.options import Limits
from grader.questions import get_question
grade_folder(get_question("q1"), Path(sys.argv[1]), isolated=True, limits=Limits(wall_s=300, memory_mb=2048))
"""


def test_2_daemons_die_when_the_grader_is_sigkilled(tmp_path):
    marker, key = f"{2000 + uuid.uuid4().int % 10**6}.{os.getpid()}", 0x5B000000 + os.getpid() % 0xFFFF
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "q1_lenet.py").write_text(leaving(marker, key, then="time.sleep(600)"))
    grader = subprocess.Popen(
        [sys.executable, "-c", GRADE_ONE, str(folder)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        assert wait_until(lambda: processes_with(marker), 180), "the submission never started its daemon"
    finally:
        grader.kill()
        grader.wait()
    assert wait_until(lambda: not processes_with(marker), 15), "the detached process outlived the SIGKILLed grader"
    assert key not in shm_keys()


# -- 3. bounded work in the grader, replies it cannot read -----------------------------------------------------------

WEIGHTLESS_BLOCKS = textwrap.dedent("""
    import keras
    from keras import layers

    def build_lenet5(input_shape=(28, 28, 1), num_classes=10):
        inputs = keras.Input(input_shape)
        x = layers.Reshape((input_shape[0], -1))(inputs)
        for _ in range(120):
            x = layers.Reshape((-1,))(x)
            x = layers.RepeatVector(8)(x)
            x = layers.Dot(axes=(1, 1))([x, x])
            x = layers.Resizing(28, 28)(layers.Reshape((x.shape[1], x.shape[2], 1))(x))
            x = layers.Reshape((28, 28))(x)
        outputs = layers.Dense(num_classes, activation="softmax")(layers.Flatten()(x))
        return keras.Model(inputs, outputs)
""")


def test_3_a_model_of_weightless_blocks_is_refused_quickly_and_truthfully(tmp_path):
    started = time.monotonic()
    result = grade_isolated(tmp_path / "s", WEIGHTLESS_BLOCKS, Limits(wall_s=120, memory_mb=2048))
    assert time.monotonic() - started < 120
    assert result.score == 0
    text = " ".join(messages(result))
    assert "layers: the grader does not inspect a model that large" in text or "more than 1,000 layers" in text, text
    assert "did not finish" not in text and "your code was stopped" not in text


def replying(value: str) -> str:
    """A submission whose child sends `value` (Python source of the encoded reply) in place of its model."""
    return GOOD_LENET + textwrap.dedent(f"""

        import grader.sandbox.codec as _codec
        _codec.Codec.encode = lambda self, value, depth=0: {value}
    """)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            "__import__('json').loads('{\"t\": \"list\", \"v\": [' * 200 + ']}' * 200)",
            "nested more than 60 levels deep",
        ),
        ("{'t': 'bigint', 'v': '9' * 5000}", "an integer of more than 400 digits"),
        ("10 ** 1000", "an integer of more than 400 digits"),
        ("{'t': 'float', 'v': 'not a number'}", "could not be read by the grader (ValueError"),
    ],
    ids=["deep-json", "bigint", "huge-int", "bad-float"],
)
def test_3_replies_the_grader_cannot_read_get_a_clear_message(tmp_path, reply, expected):
    result = grade_isolated(tmp_path / "s", replying(reply))
    assert result.score == 0
    first = messages(result)[0]
    assert expected in first, first
    assert "internal" not in first.lower()


def test_3_a_reply_nested_beyond_the_json_parser_is_refused(tmp_path):
    source = GOOD_LENET + textwrap.dedent("""

        import grader.sandbox.protocol as _protocol
        _send = _protocol.send
        def _deep(channel, message):
            if "ok" in message:
                channel.send_bytes(b'{"id": %d, "ok": ' % message["id"] + b"[" * 100_000 + b"]" * 100_000 + b"}")
            else:
                _send(channel, message)
        import grader.sandbox.child as _child
        _child.send = _deep
    """)
    result = grade_isolated(tmp_path / "s", source)
    assert result.score == 0
    assert "not a grader reply" in messages(result)[0]


# -- 7. threads ------------------------------------------------------------------------------------------------------


def test_7_dask_workers_with_several_threads_are_refused():
    from distributed import Client, LocalCluster

    from grader.batch.workers import ThreadedWorkerError, grade_on_worker, run_on_cluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        with pytest.raises(ThreadedWorkerError, match="more than one thread.*--nthreads 1"):
            list(run_on_cluster(cluster.scheduler_address, [{"student": "s", "questions": ["q1"]}]))
        with Client(cluster) as client:  # a worker that joined later refuses the job itself
            with pytest.raises(ThreadedWorkerError, match="runs 2 threads"):
                client.submit(grade_on_worker, {"student": "s", "questions": ["q1"]}).result()


def test_7_tracing_from_several_threads_at_once_gives_each_its_own_trace():
    from grader.comparator import total_params, trace
    from grader.quiet import import_keras

    keras = import_keras()
    layers = keras.layers
    models = {
        "lenet": keras.Sequential([keras.Input((28, 28, 1)), layers.Conv2D(6, 5), layers.Flatten(), layers.Dense(10)]),
        "tiny": keras.Sequential([keras.Input((28, 28, 1)), layers.Flatten(), layers.Dense(3)]),
    }
    errors: list[str] = []

    def work(name: str) -> None:
        for _ in range(5):
            traced = trace(models[name], (28, 28, 1))
            if total_params(traced) != models[name].count_params():
                errors.append(f"{name}: {[t.name for t in traced]}")

    threads = [threading.Thread(target=work, args=(name,)) for name in models for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


# -- one worker, one hostile student, two honest ones ---------------------------------------------------------------


def test_batch_with_a_hostile_student_on_the_only_worker_keeps_the_honest_marks(tmp_path):
    from grader.batch import run_batch

    marker, key = f"{3000 + uuid.uuid4().int % 10**6}.{os.getpid()}", 0x5C000000 + os.getpid() % 0xFFFF
    hostile = leaving(marker, key, then="return _peek(input_shape, num_classes)")
    hostile += PEEKING.replace("def build_lenet5", "def _peek")
    subs = tmp_path / "subs"
    for student, source in (("honest1", GOOD_LENET), ("mallory", hostile), ("honest2", GOOD_LENET)):
        (subs / student).mkdir(parents=True)
        (subs / student / "q1_lenet.py").write_text(source)
    report = run_batch(subs, out_dir=tmp_path / "out", questions=["q1"], workers=1, limits=LIMITS)
    assert sorted(report.graded) == ["honest1", "honest2", "mallory"]
    with sqlite3.connect(tmp_path / "out" / "results.sqlite") as db:
        scores = dict(db.execute("SELECT student, score FROM results WHERE question = 'q1'"))
    assert scores == {"honest1": 10.0, "honest2": 10.0, "mallory": 0.0}
    assert wait_until(lambda: not processes_with(marker), 10)
    assert key not in shm_keys()
