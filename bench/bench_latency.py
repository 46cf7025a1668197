"""How long a student waits for `grader check qN`, as a ratio to a bare `import keras`.

    .venv/bin/python bench/bench_latency.py                    # q1, q4, q5, q6; 5 rounds
    .venv/bin/python bench/bench_latency.py q1 --rounds 9 --json

Each round runs, as fresh processes one after the other, `python -c "import keras"` and
then `grader check qN --solutions` for every question asked (sandboxed, as a student runs
it), so both see the same machine load; a command is timed from its start to its exit.
The table reports the medians over the rounds and the median of the per-round ratios,
which is what the goal (`grader check` within 1.3x of `import keras`, on 2 cores) refers
to: absolute seconds vary with the machine and its load, the ratio much less.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ("q1", "q4", "q5", "q6")
COLUMNS = ("question", "grader check s", "import keras s", "ratio")
GOAL = 1.3


def timed(command: list[str]) -> float:
    """Seconds `command` takes from start to exit; raises when it fails."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return seconds


def measure(questions: tuple[str, ...], rounds: int) -> list[dict[str, float | str]]:
    """One row per question: median seconds of `grader check`, of `import keras`, and of their ratio."""
    keras_s: list[float] = []
    check_s: dict[str, list[float]] = {q: [] for q in questions}
    ratios: dict[str, list[float]] = {q: [] for q in questions}
    for round_ in range(rounds):
        keras_s.append(timed([sys.executable, "-c", "import keras"]))
        for question in questions:
            seconds = timed([sys.executable, "-m", "grader", "check", question, "--solutions"])
            check_s[question].append(seconds)
            ratios[question].append(seconds / keras_s[-1])
        done = ", ".join(f"{q} {check_s[q][-1]:.2f} s" for q in questions)
        print(f"round {round_ + 1}/{rounds}: import keras {keras_s[-1]:.2f} s; {done}", file=sys.stderr)
    return [
        {
            "question": question,
            "grader check s": round(statistics.median(check_s[question]), 2),
            "import keras s": round(statistics.median(keras_s), 2),
            "ratio": round(statistics.median(ratios[question]), 2),
        }
        for question in questions
    ]


def markdown(rows: list[dict[str, float | str]]) -> str:
    """The rows as a Markdown table."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(row[column]) for column in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("questions", nargs="*", default=list(QUESTIONS), help="questions (default: q1 q4 q5 q6)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5); the table shows medians")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    args = parser.parse_args()
    rows = measure(tuple(args.questions), args.rounds)
    print(json.dumps(rows, indent=2) if args.json else markdown(rows))
    slow = [row["question"] for row in rows if float(row["ratio"]) > GOAL]
    if slow:
        print(f"over {GOAL}x: {', '.join(map(str, slow))} ({os.cpu_count()} cores here)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
