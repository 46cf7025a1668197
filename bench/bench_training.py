"""Benchmark the reference solutions of the training questions (q2, q3) on each tier.

    .venv/bin/python bench/bench_training.py                 # quick and full tiers, q2 and q3
    .venv/bin/python bench/bench_training.py --tier quick    # one tier
    KERAS_BACKEND=jax .venv/bin/python bench/bench_training.py --tier quick

Each reference runs exactly as the grader runs it (same data split and seed, the run's
secret initial weights and class ids, the watched `fit` with its per-epoch weight
snapshots); after every epoch the test accuracy is measured (that time is not counted) to
find when the question's threshold is first met. Prints one Markdown table; its format
is kept stable so that CPU and GPU figures can be compared row by row. The time the grader
then spends measuring every epoch itself (`grader s`) goes to stderr and to `--json`;
`--without-snapshots` runs the watched `fit` without snapshots, to compare.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the grader is imported inside the functions

COLUMNS = (
    "question",
    "tier",
    "device",
    "backend",
    "epochs",
    "s/epoch",
    "s to threshold",
    "wall s",
    "test acc",
    "threshold",
)


def bench_one(question: str, tier_name: str, snapshots: bool = True) -> dict:
    """Run the reference of `question` on `tier_name` and return one table row."""
    from grader.quiet import import_keras

    keras = import_keras()  # quiet frameworks first, then the grader
    from grader.grading import reference_namespace
    from grader.options import GradingOptions
    from grader.questions import get_question, q2_overfit, q3_augment
    from grader.training import (
        RunSecret,
        Trajectory,
        describe_device,
        evaluate,
        evaluator_for,
        measure_curve,
        split_for,
        tier_from_options,
        watched_training,
    )

    tier = tier_from_options(GradingOptions(tier=tier_name, time_limit=10_000))
    split = split_for(tier)
    reference = reference_namespace(get_question(question))
    thresholds = (q2_overfit if question == "q2" else q3_augment).THRESHOLDS[tier.name]
    threshold = thresholds.test_accuracy.value
    seed = q2_overfit.SEED if question == "q2" else q3_augment.SEED

    keras.utils.set_random_seed(seed)
    model = reference["build_lenet5"]()
    secret = RunSecret.draw()
    secret.initialise(model, seed_after=seed)
    split = secret.relabel(split)
    extra = (reference["build_augmentation"](),) if question == "q3" else ()
    function = reference["train_until_overfit" if question == "q2" else "train_with_augmentation"]
    evaluation_s = [0.0]
    reached_at: list[float] = []

    def test_accuracy_each_epoch(fitted_model, watch) -> None:
        started = time.monotonic()
        accuracy = evaluate(model, split.x_test, split.y_test).accuracy
        evaluation_s[0] += time.monotonic() - started
        if accuracy >= threshold and not reached_at:
            reached_at.append(watch.elapsed - evaluation_s[0])

    keras.utils.set_random_seed(seed)
    started = time.monotonic()
    watched = model if snapshots else None
    with watched_training(tier.time_limit_s, [test_accuracy_each_epoch], given_model=watched) as watch:
        history = function(model, *extra, split.x_train, split.y_train, split.x_val, split.y_val)
    wall = time.monotonic() - started - evaluation_s[0]
    epochs = len(history["loss"])
    grader_s = None
    if snapshots:
        started = time.monotonic()
        data = watch.trajectory_data()
        measure_curve(Trajectory(data["points"], tuple(data["kinds"])), evaluator_for(model, split.x_val), split)
        grader_s = round(time.monotonic() - started, 1)
    return {
        "question": question,
        "tier": tier.name,
        "device": describe_device(),
        "backend": keras.backend.backend(),
        "epochs": epochs,
        "s/epoch": round(wall / epochs, 2),
        "s to threshold": round(reached_at[0], 1) if reached_at else None,
        "wall s": round(wall, 1),
        "test acc": round(evaluate(model, split.x_test, split.y_test).accuracy, 4),
        "threshold": threshold,
        "grader s": grader_s,
        "_watch_epochs": watch.epochs_run,
    }


def render_table(rows: list[dict]) -> str:
    def cell(value) -> str:
        return "not reached" if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(row[c]) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from grader.quiet import captured_stderr

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tier", choices=["quick", "full", "both"], default="both")
    parser.add_argument("--question", "-q", action="append", choices=["q2", "q3"], help="repeatable; default both")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument("--without-snapshots", action="store_true", help="no per-epoch weight snapshots (to compare)")
    args = parser.parse_args(argv)
    tiers = ["quick", "full"] if args.tier == "both" else [args.tier]
    questions = args.question or ["q2", "q3"]
    rows = []
    for tier in tiers:
        for question in questions:
            with captured_stderr():
                rows.append(bench_one(question, tier, snapshots=not args.without_snapshots))
            row = rows[-1]
            print(
                f"done: {question} {tier} in {row['wall s']} s ({row['epochs']} epochs, {row['s/epoch']} s/epoch); "
                f"the grader's per-epoch measurement: {row['grader s']} s",
                file=sys.stderr,
                flush=True,
            )
    print(render_table(rows))
    if args.json:
        public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
        args.json.write_text(json.dumps(public, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
