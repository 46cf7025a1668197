"""The student's commands: `grader init`, `grader list`, `grader check`, `grader report`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ..options import GradingOptions, Limits
from ..paths import exercises_dir, solutions_dir
from .base import EXIT_FAILED, EXIT_PASSED, TIER, GraderError, default_folder, exit_quickly_when_done


@click.command("init")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path), default=".")
def init_command(folder: Path) -> None:
    """Write the exercise stubs into FOLDER/exercises (default: here); files you already have are kept."""
    import shutil

    target = folder / "exercises"
    target.mkdir(parents=True, exist_ok=True)
    written, kept = [], []
    for stub in sorted(exercises_dir().glob("*.py")):
        destination = target / stub.name
        if destination.exists():
            kept.append(stub.name)
        else:
            shutil.copyfile(stub, destination)
            written.append(stub.name)
    click.echo(f"{target}: wrote {', '.join(written) or 'nothing'}")
    if kept:
        click.echo(f"kept your own {', '.join(kept)} (delete a file first to get its stub back)")
    from ..questions import QUESTIONS

    first = next(iter(QUESTIONS.values()))
    click.echo(f"next: edit {target / first.filename}, then run `grader check {first.id}` in {folder}")


@click.command("list")
def list_questions() -> None:
    """List the questions with their points and files."""
    from ..questions import QUESTIONS

    for question in QUESTIONS.values():
        by_hand = f" + {question.manual_points:g} by hand" if question.manual_points else ""
        points = f"{question.max_score:g} points{by_hand}"
        click.echo(f"{question.id:<4} {points:<21} {question.filename:<16} {question.title}")


@click.command("check")
@click.argument("question")
@click.option(
    "--path",
    "folder",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Submission folder (default ./exercises).",
)
@click.option("--solutions", is_flag=True, help="Grade the reference solutions.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report and nothing else on stdout.")
@click.option("--public", is_flag=True, help="Skip the hidden checks (what a released notebook shows).")
@click.option(
    "--in-process",
    "in_process",
    is_flag=True,
    help="Import the submission into the grader's own process (debugging; no sandbox).",
)
@click.option(
    "--tier",
    type=TIER,
    default="quick",
    show_default=True,
    help="Training questions: quick = small data for a CPU, full = the real data set for a GPU.",
)
@click.option(
    "--plots",
    "plots",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("plots"),
    show_default=True,
    help="Folder for the PNGs of the training questions (learning curves, augmentation grid).",
)
@click.option(
    "--time-limit",
    "time_limit",
    type=click.FloatRange(min=1),
    default=None,
    metavar="SECONDS",
    help="Seconds student training may run per training question (default: quick 300, full 1800).",
)
def check_command(
    question: str,
    folder: Path | None,
    solutions: bool,
    as_json: bool,
    public: bool,
    tier: str,
    plots: Path,
    time_limit: float | None,
    in_process: bool = False,
) -> None:
    """Grade QUESTION (q1, q2, ... or 'all'); exits 1 when any check fails."""
    from .. import progress
    from ..grading import grade_folder
    from ..questions import QUESTIONS, get_question
    from ..report import render_json, render_text

    if solutions and folder:
        raise click.UsageError("use either --path or --solutions")
    folder = solutions_dir() if solutions else folder or default_folder()
    try:
        questions = list(QUESTIONS.values()) if question.lower() == "all" else [get_question(question)]
    except KeyError as error:
        raise click.BadParameter(error.args[0], param_hint="QUESTION") from None
    if not in_process:  # Keras imported once, for the grader and its sandbox: the zygote is forked from here,
        # before anything starts TensorFlow's runtime (the training notice asks for the devices): a fork of a
        # process whose runtime threads hold locks deadlocks in its children. Never after a reference was loaded.
        from ..grading import references_loaded
        from ..quiet import import_keras
        from ..sandbox import zygote

        import_keras()
        zygote.start(fork=not references_loaded())
    options = GradingOptions.from_env(tier=tier, plots=plots, time_limit=time_limit)
    notices = [q.training.notice(options) for q in questions if q.training is not None]
    for notice in dict.fromkeys(n for n in notices if n):
        click.echo(notice, err=as_json)  # keep stdout pure JSON
    limits = Limits(threads=os.cpu_count() or 1)  # one student on this machine: the sandbox may use every core
    # Training shows its epochs live on a terminal (on stderr with --json: stdout stays pure JSON).
    with progress.showing(progress.for_stream(sys.stderr if as_json else sys.stdout)):
        results = [
            grade_folder(
                q,
                folder,
                include_hidden=not public,
                options=options,
                isolated=not in_process,
                limits=limits,
                unconfined_ok=True,  # the student's own machine: without a sandbox, graded here (the report says so)
            )
            for q in questions
        ]
    if as_json:
        click.echo(render_json(results, as_list=question.lower() == "all"))
    else:
        render_text(results)
    exit_quickly_when_done()  # the sandboxes are closed; the zygote dies with this process
    sys.exit(EXIT_PASSED if all(r.passed for r in results) else EXIT_FAILED)


@click.command("report")
@click.argument("question")
@click.option(
    "--path",
    "folder",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Submission folder (default ./exercises).",
)
@click.option("--solutions", is_flag=True, help="Report on the reference solution.")
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Report folder (runs accumulate there; default ./report-QUESTION).",
)
@click.option(
    "--tier",
    type=TIER,
    default="quick",
    show_default=True,
    help="quick: generated data, no pretrained weights, CPU; full: the real data and pretrained weights, GPU.",
)
@click.option(
    "--data",
    help="The real data: a folder (e.g. 102flowers.tgz + imagelabels.mat, or one sub-folder per class) or 'tfds'.",
)
@click.option("--weights", help="Backbone weights: 'imagenet' (default on the full tier) or a local weights file.")
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs (default: the tier's).")
def report_command(
    question: str,
    folder: Path | None,
    solutions: bool,
    out: Path | None,
    tier: str,
    data: str | None,
    weights: str | None,
    epochs: int | None,
) -> None:
    """Train once and write the experiment report (HTML and Markdown) for QUESTION."""
    from ..checks import UserFacingError, resolve_grader_function
    from ..questions import QUESTIONS, get_question
    from ..quiet import captured_stderr, import_keras
    from ..submission import load_module

    try:
        spec = get_question(question)
    except KeyError as error:
        raise click.BadParameter(error.args[0], param_hint="QUESTION") from None
    if spec.report is None:
        having = ", ".join(q.id for q in QUESTIONS.values() if q.report is not None) or "none"
        raise click.BadParameter(f"{spec.id} has no report (questions with one: {having})", param_hint="QUESTION")
    if solutions and folder:
        raise click.UsageError("use either --path or --solutions")
    import_keras()
    with captured_stderr():
        loaded = load_module(solutions_dir() if solutions else folder or default_folder(), spec)
    if loaded.error:
        raise GraderError(loaded.error)
    options = GradingOptions.from_env(tier=tier, data=data, weights=weights, epochs=epochs)
    try:
        lines = resolve_grader_function(spec.report)(
            loaded.namespace, out=out or Path(f"report-{spec.id}"), options=options, log=click.echo
        )
    except UserFacingError as error:
        raise GraderError(str(error)) from None
    for line in lines:
        click.echo(line)
