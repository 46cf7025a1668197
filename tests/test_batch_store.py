"""The SQLite results store of `grader batch`: reopen, resume, regrade, new files, crashes mid-write, concurrency.

Rows are read back over a connection of the test's own, so what is asserted is what a later run would find on disk.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from grader.batch.store import BatchStore

REPO = Path(__file__).resolve().parent.parent
QUESTIONS = ["q1", "q5", "q6"]


def result(question: str, *points: float, max_points: float = 5.0, meta: dict | None = None) -> dict:
    """One question's result as a batch worker hands it to the store (the layout of `QuestionResult.to_dict`)."""
    checks = [
        {"name": f"check {i}", "passed": p == max_points, "points": float(p), "max_points": max_points, "message": "."}
        for i, p in enumerate(points, 1)
    ]
    return {
        "question": question,
        "score": float(sum(points)),
        "max_score": max_points * len(points),
        "checks": checks,
        "meta": meta or {},
    }


def query(path: Path, sql: str, *args) -> list[tuple]:
    db = sqlite3.connect(path, timeout=5)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def rows(path: Path) -> list[tuple]:
    """The committed results: (student, question, score, max_score, run)."""
    return query(path, "SELECT student, question, score, max_score, run FROM results ORDER BY student, question")


def submission(path: Path, student: str) -> tuple | None:
    """(digest, timestamp, graded?, questions, run) of a student's submission row."""
    sql = "SELECT digest, timestamp, graded_at, questions, run FROM submissions WHERE student = ?"
    found = query(path, sql, student)
    if not found:
        return None
    digest, timestamp, graded_at, questions, run = found[0]
    return digest, timestamp, graded_at is not None, json.loads(questions) if questions else None, run


def scores(store: BatchStore, questions=None) -> dict[str, dict[str, tuple]]:
    """`store.results()` as {student: {question: (score, max_score, check points, meta)}}."""
    out: dict[str, dict[str, tuple]] = {}
    for student, per_question in store.results(questions).items():
        for question, r in per_question.items():
            out.setdefault(student, {})[question] = (r.score, r.max_score, [c.points for c in r.checks], r.meta)
    return out


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "out" / "results.sqlite"  # the folder does not exist yet: the store makes it


@pytest.fixture
def store(path: Path):
    opened = BatchStore(path)
    yield opened
    opened.close()


def test_results_survive_reopening(path, store):
    store.register("ada", "d-ada", "2024-05-01 10:00:00")
    store.register("bob", "d-bob", None)
    run = store.start_run({"questions": QUESTIONS[:2], "workers": 2})
    store.commit("ada", [result("q1", 5, 5, meta={"wall_s": 1.5}), result("q5", 5, 0)], run=run, wall_s=3.25)
    store.close()

    reopened = BatchStore(path)
    try:
        assert rows(path) == [("ada", "q1", 10.0, 10.0, run), ("ada", "q5", 5.0, 10.0, run)]
        assert scores(reopened) == {
            "ada": {"q1": (10.0, 10.0, [5.0, 5.0], {"wall_s": 1.5}), "q5": (5.0, 10.0, [5.0, 0.0], {})}
        }
        assert reopened.pending(["ada", "bob"], QUESTIONS[:2]) == ["bob"]
        assert reopened.timestamps() == {"ada": "2024-05-01 10:00:00", "bob": None}
        assert reopened.graded_in_run(run) == ["ada"]
        assert submission(path, "ada") == ("d-ada", "2024-05-01 10:00:00", True, ["q1", "q5"], run)
        assert submission(path, "bob") == ("d-bob", None, False, None, None)
        assert query(path, "SELECT wall_s FROM submissions WHERE student = 'ada'") == [(3.25,)]
        assert [json.loads(o) for (o,) in query(path, "SELECT options FROM runs")] == [
            {"questions": ["q1", "q5"], "workers": 2}
        ]
        assert query(path, "PRAGMA journal_mode") == [("wal",)]
        assert reopened.start_run({}) == run + 1
    finally:
        reopened.close()


def test_resume_grades_only_what_is_missing(path, store):
    for student in ("ada", "bob", "cy"):
        store.register(student, f"d-{student}", None)
    first = store.start_run({})
    store.commit("ada", [result("q1", 10)], run=first, wall_s=1)
    store.commit("bob", [result("q1", 4), result("q5", 3)], run=first, wall_s=1)
    assert store.pending(["ada", "bob", "cy"], ["q1"]) == ["cy"]
    assert store.pending(["ada", "bob", "cy"], ["q1", "q5"]) == ["ada", "cy"]  # ada lacks q5

    second = store.start_run({})
    store.commit("ada", [result("q5", 7)], run=second, wall_s=1)  # only the missing question
    assert submission(path, "ada")[2:] == (True, ["q1", "q5"], second)
    assert rows(path)[:2] == [("ada", "q1", 10.0, 5.0, first), ("ada", "q5", 7.0, 5.0, second)]
    assert store.pending(["ada", "bob", "cy"], ["q1", "q5"]) == ["cy"]
    assert store.graded_in_run(first) == ["bob"]
    assert store.graded_in_run(second) == ["ada"]


def test_regrade_replaces_the_rows(path, store):
    store.register("ada", "d-ada", None)
    store.register("bob", "d-bob", None)
    first = store.start_run({})
    store.commit("ada", [result("q1", 2), result("q5", 3)], run=first, wall_s=1)
    store.commit("bob", [result("q1", 4)], run=first, wall_s=1)
    assert store.pending(["ada", "bob"], ["q1"]) == []
    assert store.pending(["ada", "bob"], ["q1"], regrade=["ada"]) == ["ada"]

    second = store.start_run({})
    store.commit("ada", [result("q1", 5), result("q5", 1)], run=second, wall_s=2)
    assert rows(path) == [
        ("ada", "q1", 5.0, 5.0, second),
        ("ada", "q5", 1.0, 5.0, second),
        ("bob", "q1", 4.0, 5.0, first),
    ]
    assert {q: s[0] for q, s in scores(store)["ada"].items()} == {"q1": 5.0, "q5": 1.0}
    assert store.graded_in_run(first) == ["bob"]
    assert store.graded_in_run(second) == ["ada"]


def test_new_files_mean_a_new_grading(path, store):
    store.register("ada", "d1", "2024-05-01")
    run = store.start_run({})
    store.commit("ada", [result("q1", 3)], run=run, wall_s=1)

    store.register("ada", "d1", "2024-05-02")  # same files, found again: nothing changes
    assert store.pending(["ada"], ["q1"]) == []
    assert submission(path, "ada") == ("d1", "2024-05-01", True, ["q1"], run)

    store.register("ada", "d2", "2024-05-03")  # new files
    assert store.pending(["ada"], ["q1"]) == ["ada"]
    assert submission(path, "ada")[:4] == ("d2", "2024-05-03", False, None)
    assert scores(store) == {}  # the old files' results are not reported as the new files' grade
    assert store.timestamps() == {"ada": "2024-05-03"}

    again = store.start_run({})
    store.commit("ada", [result("q1", 5)], run=again, wall_s=1)
    assert rows(path) == [("ada", "q1", 5.0, 5.0, again)]
    assert store.pending(["ada"], ["q1"]) == []


def test_new_files_graded_on_fewer_questions_drop_the_old_results(path, store):
    store.register("ada", "d1", None)
    store.commit("ada", [result("q1", 1), result("q5", 2), result("q6", 3)], run=store.start_run({}), wall_s=1)
    store.register("ada", "d2", None)
    store.commit("ada", [result("q1", 4)], run=store.start_run({}), wall_s=1)
    assert submission(path, "ada")[3] == ["q1"]
    assert list(scores(store)["ada"]) == ["q1"]


def test_failed_commit_writes_nothing_and_the_store_stays_usable(path, store):
    store.register("ada", "d-ada", None)
    run = store.start_run({})
    unserialisable = {**result("q5", 1), "checks": [object()]}
    with pytest.raises(TypeError):
        store.commit("ada", [result("q1", 5), unserialisable], run=run, wall_s=1)
    assert rows(path) == []
    assert submission(path, "ada")[2:] == (False, None, None)
    assert store.pending(["ada"], ["q1"]) == ["ada"]

    store.commit("ada", [result("q1", 5)], run=run, wall_s=1)  # no transaction was left open
    assert rows(path) == [("ada", "q1", 5.0, 5.0, run)]


CHILD = """
import sys, time
from {module} import BatchStore

def result(question, score):
    return {{"question": question, "score": score, "max_score": 10.0, "checks": [], "meta": {{}}}}

class Stall(dict):
    def __getitem__(self, key):
        print("mid-write", flush=True)
        time.sleep(120)  # the parent SIGKILLs us here, inside bob's transaction

store = BatchStore(sys.argv[1])
run = store.start_run({{}})
for student in ("ada", "bob"):
    store.register(student, "d-" + student, None)
store.commit("ada", [result("q1", 10.0), result("q5", 7.0)], run=run, wall_s=1.0)
store.commit("bob", [result("q1", 4.0), Stall(question="q5")], run=run, wall_s=1.0)
"""


def test_sigkill_mid_commit_keeps_only_committed_submissions(path):
    """A writer killed inside a transaction: readers never see its rows, and the next run can write."""
    path.parent.mkdir(parents=True)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(module=BatchStore.__module__), str(path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        line = child.stdout.readline()
        assert line == "mid-write\n", child.stderr.read() if child.poll() is not None else line
        reader = BatchStore(path)  # a second connection while bob's rows are written but not committed
        try:
            assert rows(path) == [("ada", "q1", 10.0, 10.0, 1), ("ada", "q5", 7.0, 10.0, 1)]
            assert sorted(scores(reader)) == ["ada"]
            assert reader.pending(["ada", "bob"], ["q1", "q5"]) == ["bob"]
        finally:
            reader.close()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL

    store = BatchStore(path)  # the next `grader batch`
    try:
        assert rows(path) == [("ada", "q1", 10.0, 10.0, 1), ("ada", "q5", 7.0, 10.0, 1)]
        assert store.pending(["ada", "bob"], ["q1", "q5"]) == ["bob"]
        run = store.start_run({})
        store.commit("bob", [result("q1", 2), result("q5", 3)], run=run, wall_s=1)  # the lock died with the child
        assert [r[:3] for r in rows(path)] == [
            ("ada", "q1", 10.0),
            ("ada", "q5", 7.0),
            ("bob", "q1", 2.0),
            ("bob", "q5", 3.0),
        ]
        assert store.graded_in_run(run) == ["bob"]
    finally:
        store.close()


def test_a_second_writer_waits_for_the_first(path, store):
    """Two stores on one file: the second commit blocks until the first one's transaction ends, then both count."""
    store.register("ada", "d-ada", None)
    store.register("bob", "d-bob", None)
    run = store.start_run({})
    inside, release, done = threading.Event(), threading.Event(), threading.Event()

    class Held(dict):
        def __getitem__(self, key):
            inside.set()
            assert release.wait(30)
            return super().__getitem__(key)

    def first_writer():
        own = BatchStore(path)
        try:
            own.commit("ada", [result("q1", 1), Held(result("q5", 2))], run=run, wall_s=1)
        finally:
            own.close()

    def second_writer():
        own = BatchStore(path)
        try:
            own.commit("bob", [result("q1", 3)], run=run, wall_s=1)
            done.set()
        finally:
            own.close()

    threads = [threading.Thread(target=first_writer), threading.Thread(target=second_writer)]
    threads[0].start()
    assert inside.wait(30)
    threads[1].start()
    assert not done.wait(0.5)  # blocked on the first writer's lock
    assert rows(path) == []
    release.set()
    for thread in threads:
        thread.join(30)
    assert done.is_set()
    assert [r[:3] for r in rows(path)] == [("ada", "q1", 1.0), ("ada", "q5", 2.0), ("bob", "q1", 3.0)]


def test_concurrent_readers_never_see_half_a_submission(path, store):
    students = [f"s{i:02d}" for i in range(12)]
    for student in students:
        store.register(student, f"d-{student}", None)
    run = store.start_run({})
    finished = threading.Event()
    errors: list[BaseException] = []
    seen: list[list[int]] = []

    def writer():
        own = BatchStore(path)
        try:
            for n, student in enumerate(students):
                own.commit(student, [result(q, n % 6) for q in QUESTIONS], run=run, wall_s=0.1)
        finally:
            own.close()
            finished.set()

    def reader():
        own = BatchStore(path)
        counts: list[int] = []
        try:
            while True:
                last = finished.is_set()
                snapshot = scores(own, QUESTIONS)
                for student, per_question in snapshot.items():  # all three questions or none
                    assert sorted(per_question) == QUESTIONS, (student, per_question)
                    n = students.index(student)
                    assert {s[0] for s in per_question.values()} == {float(n % 6)}
                pending = own.pending(students, QUESTIONS)
                assert len(pending) <= len(students) - len(snapshot)
                counts.append(len(snapshot))
                if last:
                    break
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)
        finally:
            own.close()
            seen.append(counts)

    threads = [threading.Thread(target=reader) for _ in range(3)] + [threading.Thread(target=writer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(seen) == 3
    for counts in seen:
        assert counts == sorted(counts), counts  # a reader never sees a submission disappear
        assert counts[-1] == len(students)
    assert store.pending(students, QUESTIONS) == []
    assert store.graded_in_run(run) == students
