"""Throughput of `grader batch` against nbgrader's `autograde` on the same notebooks.

    .venv/bin/python bench/bench_batch.py [--students 8] [--workers 2] [--skip-nbgrader]

Generates an nbgrader course for the structural questions (q1, q4, q5, q6) with
`grader.nbgrader.build`, and N student notebooks (correct ones, and every third with a
LeNet-5 padding mistake) in nbgrader's `submitted/<student>/<assignment>/` layout. Then,
in the same run:

* `grader batch submitted --workers W` (sandboxed: every question of every student in its
  own child process; Keras imported once per worker), timed end to end, process start-up
  included;
* `nbgrader autograde <assignment>` on the same notebooks (one fresh kernel per notebook,
  grading in the kernel, no sandbox), timed end to end.

Prints both throughputs (submissions per minute) and their ratio, and checks that both
graders agree on which students lost points on q1.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUESTIONS = ["q1", "q4", "q5", "q6"]
ASSIGNMENT = "cnn"


def make_course(root: Path, students: int) -> tuple[Path, dict[str, bool]]:
    """The course folder with N submitted notebooks; returns it and {student: is_correct}."""
    import nbformat

    from grader.nbgrader.build import build_course
    from grader.nbgrader.grade import run_nbgrader

    course = root / "course"
    source = build_course(course, QUESTIONS, assignment=ASSIGNMENT)
    run_nbgrader(course, "generate_assignment", ASSIGNMENT, "--force")
    notebook = nbformat.read(source, as_version=4)
    correct: dict[str, bool] = {}
    for i in range(students):
        student = f"student{i:03d}"
        wrong = i % 3 == 2
        copy = nbformat.from_dict(notebook)
        if wrong:
            for cell in copy.cells:
                if cell.metadata.get("nbgrader", {}).get("grade_id") == "q1_solution":
                    cell.source = cell.source.replace('padding="same", ', "")
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        nbformat.write(copy, folder / source.name)
        (folder / "timestamp.txt").write_text("2026-11-20 10:00:00.000000 UTC")
        correct[student] = not wrong
    return course, correct


def time_grader_batch(course: Path, out: Path, workers: int) -> tuple[float, dict[str, float]]:
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "grader",
            "batch",
            str(course / "submitted"),
            "--out",
            str(out),
            "--workers",
            str(workers),
            "--no-progress",
            *[a for q in QUESTIONS for a in ("-q", q)],
        ],
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"grader batch failed:\n{done.stdout}\n{done.stderr[-3000:]}")
    with open(out / "grades.csv", newline="") as handle:
        q1 = {row["student_id"]: float(row["q1"]) for row in csv.DictReader(handle)}
    return wall, q1


def time_nbgrader(course: Path, notebook: str) -> float:
    from grader.nbgrader.grade import run_nbgrader

    started = time.monotonic()
    run_nbgrader(course, "autograde", ASSIGNMENT, "--create", "--force")
    return time.monotonic() - started


def nbgrader_q1_scores(course: Path, notebook: str, students: list[str]) -> dict[str, float]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        return {s: float(gradebook.find_grade("q1_test", notebook, ASSIGNMENT, s).score) for s in students}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-nbgrader", action="store_true")
    parser.add_argument("--keep", type=Path, help="keep the generated course here")
    args = parser.parse_args()
    os.environ.setdefault("KERAS_HOME", tempfile.mkdtemp(prefix="bench-keras-"))
    root = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    try:
        course, correct = make_course(root, args.students)
        print(
            f"{args.students} submissions (notebooks) x {len(QUESTIONS)} questions ({', '.join(QUESTIONS)}), {os.cpu_count()} CPUs"
        )
        batch_s, batch_q1 = time_grader_batch(course, root / "batch-out", args.workers)
        batch_rate = 60 * args.students / batch_s
        print(
            f"grader batch --workers {args.workers} (sandboxed): {batch_s:7.1f} s  {batch_rate:6.2f} submissions/min",
            flush=True,
        )
        assert all((batch_q1[s] == 10) == ok for s, ok in correct.items()), batch_q1
        if args.skip_nbgrader:
            return
        notebook = next((course / "source" / ASSIGNMENT).glob("*.ipynb")).stem
        nb_s = time_nbgrader(course, notebook)
        nb_rate = 60 * args.students / nb_s
        print(f"nbgrader autograde (in-kernel):         {nb_s:7.1f} s  {nb_rate:6.2f} submissions/min", flush=True)
        print(f"ratio grader batch / nbgrader: {batch_rate / nb_rate:.2f}x", flush=True)
        nb_q1 = nbgrader_q1_scores(course, notebook, sorted(correct))
        top = max(nb_q1.values(), default=0.0)
        agree = all((nb_q1.get(s, -1) == top) == ok for s, ok in correct.items())
        print(f"both graders agree on who lost q1 points: {agree}")
    finally:
        if args.keep:
            shutil.copytree(root, args.keep, dirs_exist_ok=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
