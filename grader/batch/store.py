"""The results store of `grader batch`: SQLite, one atomic transaction per graded submission.

Tables:

* `submissions`: one row per student found, with the files' digest and timestamp;
* `results`: one row per (student, question): score, max score, checks and meta as JSON;
* `runs`: one row per `grader batch` invocation; each result names the run that wrote it;
* `sources`: one row per (student, question): the question's code as staged for grading
  (for the class dashboard's similar-submissions review: `grader dashboard` needs only
  this folder).

A submission's results are written in one transaction (old rows deleted, new rows
inserted, the submission marked done), so a crash or SIGKILL at any moment leaves it
either fully graded or not at all; re-running grades only what is missing.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..checks import QuestionResult
from ..questions import QUESTIONS

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL NOT NULL,
    options TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS submissions (
    student TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    timestamp TEXT,
    questions TEXT,
    graded_at REAL,
    run INTEGER,
    wall_s REAL
);
CREATE TABLE IF NOT EXISTS results (
    student TEXT NOT NULL,
    question TEXT NOT NULL,
    score REAL NOT NULL,
    max_score REAL NOT NULL,
    checks TEXT NOT NULL,
    meta TEXT NOT NULL,
    run INTEGER NOT NULL,
    PRIMARY KEY (student, question)
);
CREATE TABLE IF NOT EXISTS sources (
    student TEXT NOT NULL,
    question TEXT NOT NULL,
    source TEXT NOT NULL,
    PRIMARY KEY (student, question)
);
"""


class BatchStore:
    """Per-student, per-question results of a class, in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def start_run(self, options: Mapping[str, Any]) -> int:
        cursor = self.db.execute(
            "INSERT INTO runs (started, options) VALUES (?, ?)", (time.time(), json.dumps(options, default=str))
        )
        assert cursor.lastrowid is not None  # an INSERT into a table with an integer key
        return cursor.lastrowid

    def register(self, student: str, digest: str, timestamp: str | None) -> None:
        """Record a submission; a changed digest (new files) drops its old results and makes it pending again."""
        row = self.db.execute("SELECT digest FROM submissions WHERE student = ?", (student,)).fetchone()
        if row is None:
            self.db.execute(
                "INSERT INTO submissions (student, digest, timestamp) VALUES (?, ?, ?)", (student, digest, timestamp)
            )
        elif row[0] != digest:  # new files: the old files' results no longer stand, for any question
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.execute("DELETE FROM results WHERE student = ?", (student,))
                self.db.execute(
                    "UPDATE submissions SET digest = ?, timestamp = ?, graded_at = NULL, questions = NULL "
                    "WHERE student = ?",
                    (digest, timestamp, student),
                )
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def keep_sources(self, student: str, sources: Mapping[str, str]) -> None:
        """Store `student`'s code per question ({question: source}), replacing what was kept before."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute("DELETE FROM sources WHERE student = ?", (student,))
            self.db.executemany(
                "INSERT INTO sources (student, question, source) VALUES (?, ?, ?)",
                [(student, question, source) for question, source in sorted(sources.items())],
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def sources(self) -> dict[str, dict[str, str]]:
        """{student: {question: source}} of every submission whose code was kept."""
        out: dict[str, dict[str, str]] = {}
        for student, question, source in self.db.execute("SELECT student, question, source FROM sources"):
            out.setdefault(student, {})[question] = source
        return out

    def wall_times(self) -> dict[str, float | None]:
        """Seconds each graded submission took (all its questions)."""
        return dict(self.db.execute("SELECT student, wall_s FROM submissions WHERE graded_at IS NOT NULL"))

    def last_run_options(self) -> dict[str, Any]:
        """The options the latest `grader batch` run recorded (questions, due date, ...); {} before any run."""
        row = self.db.execute("SELECT options FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        return json.loads(row[0]) if row else {}

    def pending(self, students: Iterable[str], questions: Sequence[str], regrade: Iterable[str] = ()) -> list[str]:
        """The students not yet graded on all of `questions` (plus those in `regrade`)."""
        again = set(regrade)
        out = []
        for student in students:
            row = self.db.execute(
                "SELECT graded_at, questions FROM submissions WHERE student = ?", (student,)
            ).fetchone()
            done = row is not None and row[0] is not None and set(questions) <= set(json.loads(row[1] or "[]"))
            if student in again or not done:
                out.append(student)
        return out

    def commit(self, student: str, results: Sequence[Mapping[str, Any]], *, run: int, wall_s: float) -> None:
        """Write one submission's results atomically (all questions, or nothing)."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            for result in results:
                db.execute(
                    "INSERT OR REPLACE INTO results (student, question, score, max_score, checks, meta, run) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        student,
                        result["question"],
                        float(result["score"]),
                        float(result["max_score"]),
                        json.dumps(result["checks"]),
                        json.dumps(result.get("meta", {}), default=str),
                        run,
                    ),
                )
            row = db.execute("SELECT questions FROM submissions WHERE student = ?", (student,)).fetchone()
            questions = sorted(set(json.loads((row[0] if row else None) or "[]")) | {r["question"] for r in results})
            db.execute(
                "UPDATE submissions SET graded_at = ?, questions = ?, run = ?, wall_s = ? WHERE student = ?",
                (time.time(), json.dumps(questions), run, wall_s, student),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def results(self, questions: Sequence[str] | None = None) -> dict[str, dict[str, QuestionResult]]:
        """{student: {question: result}} of every graded submission (titles from the question registry)."""
        out: dict[str, dict[str, QuestionResult]] = {}
        rows = self.db.execute(
            "SELECT r.student, r.question, r.checks, r.meta FROM results r "
            "JOIN submissions s ON s.student = r.student WHERE s.graded_at IS NOT NULL ORDER BY r.student, r.question"
        )
        for student, question, checks, meta in rows:
            if questions is not None and question not in questions:
                continue
            title = QUESTIONS[question].title if question in QUESTIONS else ""
            data = {"question": question, "checks": json.loads(checks), "meta": json.loads(meta)}
            out.setdefault(student, {})[question] = QuestionResult.from_dict(data, title=title)
        return out

    def timestamps(self) -> dict[str, str | None]:
        return dict(self.db.execute("SELECT student, timestamp FROM submissions"))

    def graded_in_run(self, run: int) -> list[str]:
        return [
            row[0] for row in self.db.execute("SELECT student FROM submissions WHERE run = ? ORDER BY student", (run,))
        ]
