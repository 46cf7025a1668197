"""`grader batch`: a mixed class of 50, SIGKILL and resume, --regrade, CSV/summary/feedback, a Dask LocalCluster."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from conftest import REPO, grade_source

from grader.batch import NBGRADER_COLUMNS, discover, run_batch
from grader.batch.hand_grades import HandGradesError, read_hand_grades
from grader.options import GradingOptions, Limits
from grader.paths import exercises_dir, solutions_dir

QUESTIONS = ["q1", "q5", "q6"]  # the structural questions without AlexNet builds by the student (CI time)
FULL = {"q1": 10.0, "q5": 10.0, "q6": 3.0}  # q6: 3 automatic points, 5 more by hand
LIMITS = Limits(wall_s=40, memory_mb=2048, processes=96)

BAD_LENET = (solutions_dir() / "q1_lenet.py").read_text().replace('padding="same", ', "")
PERCENT_Q6 = (solutions_dir() / "q6_dropout.py").read_text().replace(
    "def classifier_parameter_fraction(model):", "def _fraction(model):"
) + ("\n\ndef classifier_parameter_fraction(model):\n    return 100 * _fraction(model)\n")
LENET_HEAD = "def build_lenet5(input_shape=(28, 28, 1), num_classes=10):\n"
LINEAR_MODEL = (
    LENET_HEAD
    + "    import keras\n    return keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(), keras.layers.Dense(num_classes)])\n"
)
HOSTILE_Q1 = {
    "loop": LENET_HEAD + "    while True:\n        pass\n",
    "os_exit": "import os\n" + LENET_HEAD + "    os._exit(0)\n",
    "segfault": "import os, signal\n" + LENET_HEAD + "    os.kill(os.getpid(), signal.SIGSEGV)\n",
    "killpg": "import os, signal\n" + LENET_HEAD + "    os.killpg(os.getpgid(0), signal.SIGKILL)\n",
    "fork": "import os\n" + LENET_HEAD + "    while True:\n        os.fork()\n",
    "sys_exit_import": "import sys\nsys.exit(0)\n",
    "sys_exit_call": "import sys\n" + LENET_HEAD + "    sys.exit(0)\n",
    "memory": LENET_HEAD + "    return bytearray(64 * 1024 ** 3)\n",
    "read_solutions": "import glob\n"
    + LENET_HEAD
    + f"    found = glob.glob('../solutions/*.py') + glob.glob({str(REPO / 'solutions' / '*.py')!r})\n"
    "    exec(open(found[0]).read())\n    return build_lenet5()\n",
    "fake_print": 'print(\'{"question": "q1", "score": 10}\')\n'
    + LENET_HEAD
    + "    print('score 10/10')\n    raise ValueError('no model')\n",
    "monkeypatch": "import grader.checks\ngrader.checks.run_checks = None\n" + LINEAR_MODEL,
    "write_outside": "import os\n" + LENET_HEAD + f"    open({str(REPO / 'pwned.txt')!r}, 'w').write('x')\n",
    "raise": LENET_HEAD + "    raise RuntimeError('boom')\n",
}


def write_student(root: Path, student: str, files: dict[str, str]) -> None:
    folder = root / student
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text)


def solution_files(*questions: str) -> dict[str, str]:
    names = {"q1": "q1_lenet.py", "q4": "q4_alexnet.py", "q5": "q5_params.py", "q6": "q6_dropout.py"}
    return {names[q]: (solutions_dir() / names[q]).read_text() for q in questions}


def notebook_submission() -> str:
    """An nbgrader-style notebook: solution cells tagged `<qN>_solution`, the q6 answer in `q6_answer`."""
    from grader.questions import get_question

    cells = [nbformat.v4.new_code_cell("import keras", metadata={"nbgrader": {"grade_id": "setup"}})]
    for q in QUESTIONS:
        spec = get_question(q)
        cells.append(
            nbformat.v4.new_code_cell(
                (solutions_dir() / spec.filename).read_text(),
                metadata={"nbgrader": {"grade_id": f"{q}_solution", "solution": True}},
            )
        )
        cells.append(
            nbformat.v4.new_code_cell(f'check("{q}")', metadata={"nbgrader": {"grade_id": f"{q}_test", "grade": True}})
        )
    answer = (
        "AlexNet keeps about 96 percent of its parameters in the dense classifier, so that is where it overfits; "
        "dropout there regularises the huge fully connected layers while the convolutions share few weights."
    )
    cells.append(
        nbformat.v4.new_markdown_cell(answer, metadata={"nbgrader": {"grade_id": "q6_answer", "solution": True}})
    )
    return nbformat.writes(nbformat.v4.new_notebook(cells=cells))


def make_class(root: Path) -> dict[str, dict[str, float] | None]:
    """50 submissions: correct, notebook, stubs, wrong answers and 13 hostile ones. Returns the expected scores."""
    expected: dict[str, dict[str, float] | None] = {}
    correct = solution_files(*QUESTIONS)
    stub = {name: (exercises_dir() / name).read_text() for name in correct}
    for i in range(22):
        write_student(root, f"s{i:02d}-correct", correct)
        expected[f"s{i:02d}-correct"] = dict(FULL)
    write_student(root, "s22-notebook", {"assignment.ipynb": notebook_submission()})
    expected["s22-notebook"] = dict(FULL)
    for i in range(23, 30):
        write_student(root, f"s{i:02d}-stub", stub)
        expected[f"s{i:02d}-stub"] = {"q1": 0.0, "q5": 0.0, "q6": 0.0}
    for i in range(30, 37):
        write_student(root, f"s{i:02d}-wrong", {**correct, "q1_lenet.py": BAD_LENET, "q6_dropout.py": PERCENT_Q6})
        expected[f"s{i:02d}-wrong"] = None  # filled in from in-process grading below
    for i, (kind, source) in enumerate(HOSTILE_Q1.items(), start=37):
        write_student(root, f"s{i:02d}-{kind}", {**correct, "q1_lenet.py": source})
        expected[f"s{i:02d}-{kind}"] = {"q1": 0.0, "q5": FULL["q5"], "q6": FULL["q6"]}
    assert len(expected) == 50
    return expected


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    root = tmp_path_factory.mktemp("class")
    subs, out = root / "submissions", root / "out"
    expected = make_class(subs)
    for name in ("wrong-q1", "wrong-q6", "linear-q1"):
        (root / name).mkdir()
    wrong = {
        "q1": grade_source(root / "wrong-q1", "q1", BAD_LENET).score,
        "q5": FULL["q5"],
        "q6": grade_source(root / "wrong-q6", "q6", PERCENT_Q6).score,
    }
    assert wrong["q1"] < 10 and wrong["q6"] < FULL["q6"]
    linear = grade_source(root / "linear-q1", "q1", LINEAR_MODEL).score  # what the monkeypatching student really earns
    assert 0 < linear < 10
    expected["s47-monkeypatch"]["q1"] = linear
    for student in expected:
        if expected[student] is None:
            expected[student] = wrong
    started = time.monotonic()
    report = run_batch(subs, out_dir=out, questions=QUESTIONS, workers=2, limits=LIMITS)
    return {"subs": subs, "out": out, "expected": expected, "report": report, "wall_s": time.monotonic() - started}


def scores_in_store(out: Path) -> dict[str, dict[str, float]]:
    db = sqlite3.connect(out / "results.sqlite")
    scores: dict[str, dict[str, float]] = {}
    for student, question, score in db.execute("SELECT student, question, score FROM results"):
        scores.setdefault(student, {})[question] = score
    db.close()
    return scores


def test_fifty_mixed_submissions_get_the_right_scores(graded_class):
    report, expected = graded_class["report"], graded_class["expected"]
    assert sorted(report.graded) == sorted(expected)
    assert scores_in_store(graded_class["out"]) == expected
    assert not (REPO / "pwned.txt").exists()
    print(f"50 submissions x {len(QUESTIONS)} questions graded in {graded_class['wall_s']:.0f} s")


def test_hostile_submissions_fail_with_their_own_messages(graded_class):
    feedback = graded_class["out"] / "feedback"
    first_message = {}
    for kind in HOSTILE_Q1:
        text = next(feedback.glob(f"s*-{kind}.md")).read_text()
        q1 = text.split("## q1")[1].split("## q5")[0]
        first_message[kind] = q1.splitlines()[2]
    assert "did not finish within the 40-second limit" in first_message["loop"]
    assert "exit code 0" in first_message["os_exit"]
    assert "crashed (signal SIGSEGV)" in first_message["segfault"]
    assert "killed (signal SIGKILL)" in first_message["killpg"]
    assert "BlockingIOError" in first_message["fork"] or "limit" in first_message["fork"]
    assert "calls sys.exit(0) while loading" in first_message["sys_exit_import"]
    assert "called sys.exit(0)" in first_message["sys_exit_call"]
    assert "ran out of memory" in first_message["memory"]
    assert "raised IndexError" in first_message["read_solutions"]  # the glob found no solutions
    assert "raised ValueError" in first_message["fake_print"]
    assert "raised RuntimeError" in first_message["raise"]
    assert not (REPO / "pwned.txt").exists()  # the write never reaches the host
    if not REPO.is_relative_to("/tmp"):  # a checkout under /tmp lies inside the child's private /tmp
        assert "raised" in first_message["write_outside"] and (
            "Permission denied" in first_message["write_outside"] or "Read-only" in first_message["write_outside"]
        )
    assert len(set(first_message.values())) == len(first_message)


def test_csv_has_nbgraders_export_columns_and_one_per_question(graded_class):
    with open(graded_class["out"] / "grades.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [*NBGRADER_COLUMNS, *QUESTIONS, "q6 by hand"]
    assert len(rows) == 50
    by_id = {row["student_id"]: row for row in rows}
    for student, scores in graded_class["expected"].items():
        row = by_id[student]
        assert float(row["score"]) == float(row["raw_score"]) == sum(scores.values())
        assert float(row["max_score"]) == 23.0 and row["late_submission_penalty"] == "0" and row["assignment"] == "cnn"
        assert row["q6 by hand"] == "pending hand grading"  # out of score and max_score until imported
        assert {q: float(row[q]) for q in QUESTIONS} == scores


def test_summary_ranks_the_checks_most_students_fail(graded_class):
    summary = json.loads((graded_class["out"] / "summary.json").read_text())
    assert summary["students"] == 50 and summary["max_score"] == 23
    assert sum(h["students"] for h in summary["histogram"]) == 50
    rates = summary["checks"]
    assert rates == sorted(rates, key=lambda r: (r["pass_rate"], r["question"], r["check"]))
    q6_fraction = next(r for r in rates if r["check"] == "classifier parameter fraction of AlexNet")
    assert q6_fraction["passed"] == 50 - 7 - 7  # the stubs and the percentages
    text = (graded_class["out"] / "summary.txt").read_text()
    assert "score distribution" in text and "checks by pass rate" in text


def test_feedback_per_student_hides_the_hidden_checks(graded_class):
    files = sorted((graded_class["out"] / "feedback").glob("*.md"))
    assert len(files) == 50
    wrong = (graded_class["out"] / "feedback" / "s30-wrong.md").read_text()
    assert "padding='same'" in wrong and "Return a fraction, not a percentage" in wrong
    assert "hidden check 1: " in wrong and "input_shape is honoured" not in wrong


def test_rerun_grades_nothing_and_regrade_grades_one(graded_class):
    report = run_batch(graded_class["subs"], out_dir=graded_class["out"], questions=QUESTIONS, workers=1, limits=LIMITS)
    assert report.graded == [] and len(report.skipped) == 50
    again = run_batch(
        graded_class["subs"],
        out_dir=graded_class["out"],
        questions=QUESTIONS,
        workers=1,
        limits=LIMITS,
        regrade=["s30-wrong"],
    )
    assert again.graded == ["s30-wrong"]
    assert scores_in_store(graded_class["out"]) == graded_class["expected"]
    one = run_batch(
        graded_class["subs"],
        out_dir=graded_class["out"],
        questions=QUESTIONS,
        workers=1,
        limits=LIMITS,
        regrade=True,
        students=["s31-wrong"],
    )
    assert one.graded == ["s31-wrong"] and len(one.skipped) == 49  # --regrade --student: that student only
    with pytest.raises(KeyError, match="ghost"):
        run_batch(graded_class["subs"], out_dir=graded_class["out"], questions=QUESTIONS, students=["ghost"])


def test_hand_grades_are_imported_into_the_totals_and_feedback(graded_class, tmp_path):
    hand = tmp_path / "hand.csv"
    hand.write_text("student,question,points\ns00-correct,q6,4\ns30-wrong,q6,2.5\n")
    report = run_batch(
        graded_class["subs"],
        out_dir=graded_class["out"],
        questions=QUESTIONS,
        workers=1,
        limits=LIMITS,
        hand_grades=read_hand_grades(hand),
    )
    assert report.graded == [] and report.pending_hand_grading == "q6 (5 points) for 48 students"
    with open(graded_class["out"] / "grades.csv", newline="") as handle:
        rows = {row["student_id"]: row for row in csv.DictReader(handle)}
    assert rows["s00-correct"]["q6 by hand"] == "4" and float(rows["s00-correct"]["score"]) == 23 + 4
    assert float(rows["s00-correct"]["max_score"]) == 23 + 5
    assert rows["s01-correct"]["q6 by hand"] == "pending hand grading" and float(rows["s01-correct"]["max_score"]) == 23
    feedback = (graded_class["out"] / "feedback" / "s30-wrong.md").read_text()
    assert "written answer, graded by hand: 2.5/5" in feedback
    pending = (graded_class["out"] / "feedback" / "s01-correct.md").read_text()
    assert "pending hand grading (5 points, not in the total)" in pending
    run_batch(graded_class["subs"], out_dir=graded_class["out"], questions=QUESTIONS, workers=1, limits=LIMITS)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("student,points\nalice,4\n", "needs the columns"),
        ("student,question,points\nalice,q1,4\n", "q1 has no answer graded by hand"),
        ("student,question,points\nalice,q9,4\n", "unknown question 'q9'"),
        ("student,question,points\nalice,q6,6\n", "outside 0-5"),
        ("student,question,points\nalice,q6,-1\n", "outside 0-5"),
        ("student,question,points\nalice,q6,nan\n", "outside 0-5"),
        ("student,question,points\nalice,q6,four\n", "line 2: points 'four' is not a number"),
        ("student,question,points\nalice,q6,4\nalice,q6,3\n", "line 3: alice already has a hand grade"),
        ("student,question,points\n,q6,4\n", "no student"),
    ],
)
def test_hand_grades_are_validated(tmp_path, text, error):
    path = tmp_path / "hand.csv"
    path.write_text(text)
    with pytest.raises(HandGradesError, match=error):
        read_hand_grades(path)


def test_hand_grades_for_an_unknown_student_are_a_usage_error(tmp_path):
    subs, hand = tmp_path / "subs", tmp_path / "hand.csv"
    subs.mkdir()
    hand.write_text("student,question,points\nghost,q6,4\n")
    done = subprocess.run(
        [sys.executable, "-m", "grader", "batch", str(subs), "--out", str(tmp_path / "out"), "-q", "q6",
         "--hand-grades", str(hand), "--no-progress"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 2 and "hand grades for students without a submission: ghost" in done.stderr


def test_old_regrade_spelling_still_works_and_warns(capsys):
    import click

    from grader.cli.staff import batch_command

    ctx = click.Context(batch_command)
    assert batch_command.modernise(ctx, ["subs", "--regrade", "alice", "-w", "1"]) == [
        "subs", "--regrade", "--student", "alice", "-w", "1",
    ]  # fmt: skip
    assert "--regrade STUDENT is deprecated" in capsys.readouterr().err
    assert batch_command.modernise(ctx, ["--regrade", "alice", "subs"])[:3] == ["--regrade", "--student", "alice"]
    assert capsys.readouterr().err.count("deprecated") == 1
    assert batch_command.modernise(ctx, ["--regrade", "subs"]) == ["--regrade", "subs"]  # today's switch
    assert batch_command.modernise(ctx, ["subs", "--out", "x", "--regrade"]) == ["subs", "--out", "x", "--regrade"]
    assert capsys.readouterr().err == ""
    assert batch_command.modernise(ctx, ["subs", "--question-timeout=30"]) == ["subs", "--question-time-limit=30"]
    assert "--question-timeout is deprecated" in capsys.readouterr().err


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def test_sigkill_half_way_then_resume_loses_and_duplicates_nothing(tmp_path):
    subs, out = tmp_path / "subs", tmp_path / "out"
    expected = {}
    for i in range(12):
        write_student(subs, f"k{i:02d}", solution_files("q1", "q6") if i % 3 else {"q1_lenet.py": BAD_LENET})
        expected[f"k{i:02d}"] = {"q1": 10.0, "q6": 3.0} if i % 3 else None
    command = [
        sys.executable,
        "-m",
        "grader",
        "batch",
        str(subs),
        "--out",
        str(out),
        "-q",
        "q1",
        "-q",
        "q6",
        "--workers",
        "2",
        "--no-progress",
    ]
    first = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    deadline = time.monotonic() + 300
    done = 0
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if first.poll() is not None:
            break
        workers = workers or _children(first.pid)
        if (out / "results.sqlite").exists():
            with sqlite3.connect(out / "results.sqlite", timeout=30) as db:
                done = db.execute("SELECT COUNT(*) FROM submissions WHERE graded_at IS NOT NULL").fetchone()[0]
            if done >= 4:
                break
    assert first.poll() is None, "the batch finished before it could be killed"
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    time.sleep(2)
    assert workers and not [
        pid
        for pid in workers
        if Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    ]

    with sqlite3.connect(out / "results.sqlite") as db:
        before = {row[0] for row in db.execute("SELECT student FROM submissions WHERE graded_at IS NOT NULL")}
    assert 4 <= len(before) < 12
    second = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"{12 - len(before)} already graded" not in second.stdout
    assert (
        f"graded {12 - len(before)} submission(s)" in second.stdout and f"{len(before)} already graded" in second.stdout
    )
    with sqlite3.connect(out / "results.sqlite") as db:
        rows = db.execute("SELECT student, question, score, run FROM results ORDER BY student, question").fetchall()
        runs = dict(db.execute("SELECT student, run FROM submissions"))
    assert len(rows) == 24 and len({(s, q) for s, q, _, _ in rows}) == 24  # every result once
    for student, run in runs.items():
        assert (run == 1) == (student in before)  # graded once: the killed run's results were kept
    scores = {(s, q): score for s, q, score, _ in rows}
    for student, want in expected.items():
        if want:
            assert scores[(student, "q1")] == 10.0 and scores[(student, "q6")] == 3.0
        else:
            assert 0 < scores[(student, "q1")] < 10 and scores[(student, "q6")] == 0.0


def test_the_same_jobs_run_on_a_dask_local_cluster(tmp_path):
    from distributed import LocalCluster

    subs, out = tmp_path / "subs", tmp_path / "out"
    write_student(subs, "d0", solution_files("q1", "q6"))
    write_student(subs, "d1", {"q1_lenet.py": HOSTILE_Q1["segfault"], "q6_dropout.py": PERCENT_Q6})
    write_student(subs, "d2", {"q1_lenet.py": BAD_LENET})
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        report = run_batch(subs, out_dir=out, questions=["q1", "q6"], cluster=cluster.scheduler_address, limits=LIMITS)
    assert sorted(report.graded) == ["d0", "d1", "d2"]
    scores = scores_in_store(out)
    assert scores["d0"] == {"q1": 10.0, "q6": 3.0}
    assert scores["d1"]["q1"] == 0.0 and scores["d1"]["q6"] == 0.0  # the answer screen is worth 0
    assert 0 < scores["d2"]["q1"] < 10 and scores["d2"]["q6"] == 0.0
    feedback = (out / "feedback" / "d1.md").read_text()
    assert "crashed (signal SIGSEGV)" in feedback


def test_discover_reads_nbgrader_submitted_layout(tmp_path):
    write_student(tmp_path / "submitted", "ann", {})
    inner = tmp_path / "submitted" / "ann" / "cnn"
    inner.mkdir()
    (inner / "cnn.ipynb").write_text(notebook_submission())
    (inner / "timestamp.txt").write_text("2026-11-20 10:00:00.000000 UTC")
    [submission] = discover(tmp_path / "submitted")
    assert (
        submission.student == "ann"
        and submission.timestamp.startswith("2026-11-20")
        and "cnn.ipynb" in submission.files
    )


def test_training_questions_are_graded_in_the_batch_sandbox(tmp_path):
    """q2 in a batch worker: an honest run trains and verifies, a fabricated history is caught, a crash stays local."""
    import json

    subs, out = tmp_path / "submissions", tmp_path / "out"
    honest = re.sub(r"MAX_EPOCHS = \d+", "MAX_EPOCHS = 2", (solutions_dir() / "q2_overfit.py").read_text())
    fabricated = honest.replace(
        "return history.history", "return {key: values * 3 for key, values in history.history.items()}"
    )
    assert honest.count("MAX_EPOCHS = 2") == 1 and fabricated != honest
    write_student(subs, "t1-honest", {"q2_overfit.py": honest})
    write_student(subs, "t2-fabricated", {"q2_overfit.py": fabricated})
    write_student(
        subs,
        "t3-segfault",
        {
            "q2_overfit.py": HOSTILE_Q1["segfault"].replace(
                "build_lenet5(input_shape=(28, 28, 1), num_classes=10)",
                "train_until_overfit(model, x_train, y_train, x_val, y_val)",
            )
        },
    )
    options = GradingOptions(train_size=1000, val_size=500, test_size=500)
    report = run_batch(subs, out_dir=out, questions=["q2"], workers=2, limits=LIMITS, options=options)
    assert sorted(report.graded) == ["t1-honest", "t2-fabricated", "t3-segfault"]
    db = sqlite3.connect(out / "results.sqlite")
    checks = {
        student: {c["name"]: c for c in json.loads(text)}
        for student, text in db.execute("SELECT student, checks FROM results")
    }
    meta = {student: json.loads(text) for student, text in db.execute("SELECT student, meta FROM results")}
    db.close()
    assert (
        checks["t1-honest"]["trains the model it is given"]["passed"]
        and checks["t1-honest"]["history is real"]["passed"]
    )
    assert meta["t1-honest"]["isolation"]["process"] is True and meta["t1-honest"]["epochs"] >= 2
    assert checks["t2-fabricated"]["trains the model it is given"]["passed"]
    assert "but the grader saw model.fit train the model" in checks["t2-fabricated"]["history is real"]["message"]
    assert all("crashed (signal SIGSEGV)" in c["message"] for c in checks["t3-segfault"].values())
