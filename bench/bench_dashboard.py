"""Build the class dashboard for 1,000 synthetic stored submissions (target: under 10 s).

A results store is filled with generated results for the structural questions (checks
passed or failed at random, failures with the diagnoses their checks declare) and
generated code per question (the reference with renamed variables, a few copied pairs),
then `grader.dashboard.write_dashboard` is timed on it, end to end (figures, similarity,
HTML). Usage: python bench/bench_dashboard.py [--students 1000] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grader.batch.store import BatchStore  # noqa: E402
from grader.dashboard import write_dashboard  # noqa: E402
from grader.paths import solutions_dir  # noqa: E402
from grader.questions import get_question  # noqa: E402

QUESTIONS = ("q1", "q5", "q6")  # the structural questions the batch tests grade


def synthetic_result(question_id: str, rng: random.Random) -> dict:
    question = get_question(question_id)
    checks = []
    for check in question.checks:
        passed = rng.random() < 0.75
        diagnosis = None if passed else rng.choice([d.id for d in check.diagnoses] or ["crashed"])
        points = float(check.points) if passed else 0.0
        message = "ok" if passed else f"synthetic failure ({diagnosis})"
        checks.append(
            {
                "name": check.name,
                "passed": passed,
                "points": points,
                "max_points": float(check.points),
                "message": message,
                "diagnosis": diagnosis,
            }
        )
    isolation = {"network": "off", "user": "uid 20001 (unprivileged)"}
    return {
        "question": question_id,
        "score": sum(c["points"] for c in checks),
        "max_score": question.max_score,
        "checks": checks,
        "meta": {"isolation": isolation},
    }


def synthetic_source(question_id: str, student: int, rng: random.Random) -> str:
    source = (solutions_dir() / get_question(question_id).filename).read_text()
    names = ["model", "x", "inputs", "total", "count", "layer"]
    for name in names:
        source = source.replace(f" {name} ", f" {name}_{rng.randrange(10**6)} ")
    extra = "\n".join(f"value_{i} = {rng.randrange(10**6)} * {rng.randrange(99)}" for i in range(rng.randrange(1, 30)))
    return f"{source}\n# student {student}\n{extra}\n"


def build_store(out: Path, students: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    store = BatchStore(out / "results.sqlite")
    try:
        run = store.start_run({"questions": list(QUESTIONS), "duedate": "2025-03-01 12:00:00"})
        for i in range(students):
            student = f"student{i:04d}"
            day = 1 + (i % 3 == 0)  # a third submitted a day late
            store.register(student, f"digest{i}", f"2025-03-0{day} 10:00:00")
            sources = {q: synthetic_source(q, i, rng) for q in QUESTIONS}
            if i % 100 == 1:  # a copy of the previous student
                sources = store.sources().get(f"student{i - 1:04d}", sources)
            store.keep_sources(student, sources)
            store.commit(student, [synthetic_result(q, rng) for q in QUESTIONS], run=run, wall_s=rng.uniform(5, 40))
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    build_store(out, args.students)
    built = time.perf_counter() - started
    print(f"store with {args.students} submissions x {len(QUESTIONS)} questions built in {built:.1f} s")
    started, cpu = time.perf_counter(), time.process_time()
    path = write_dashboard(out)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    size = path.stat().st_size / 1024
    print(
        f"dashboard for {args.students} submissions built in {elapsed:.2f} s wall, {cpu:.2f} s CPU ({size:.0f} KiB): {path}"
    )
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
