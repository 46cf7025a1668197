"""The `grader` command line: a thin layer over `grading` and `report`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from .isolation import Limits
from .paths import exercises_dir, solutions_dir
from .quiet import silence_frameworks


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cnn-grader")
def main() -> None:
    """Exercises and autograder for the convolutional-networks unit."""
    silence_frameworks()


@main.command("list")
def list_questions() -> None:
    """List the questions with their points and files."""
    from .questions import QUESTIONS

    for question in QUESTIONS.values():
        click.echo(f"{question.id:<4} {question.max_score:>5g} points  {question.filename:<16} {question.title}")


@main.command("check")
@click.argument("question")
@click.option("--path", "folder", type=click.Path(file_okay=False, path_type=Path), help="Submission folder (default ./exercises).")
@click.option("--solutions", is_flag=True, help="Grade the reference solutions.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report and nothing else on stdout.")
@click.option("--public", is_flag=True, help="Skip the hidden checks (what a released notebook shows).")
@click.option("--in-process", "in_process", is_flag=True, help="Import the submission into the grader's own process (debugging; no sandbox).")
@click.option(
    "--tier", type=click.Choice(["quick", "full"]), default="quick", show_default=True,
    help="Training questions (q2, q3): quick = 10k-image subset for a CPU, full = official split for a GPU.",
)
@click.option(
    "--plots", "plots", type=click.Path(file_okay=False, path_type=Path), default=Path("plots"), show_default=True,
    help="Folder for the PNGs of the training questions (learning curves, augmentation grid).",
)
@click.option(
    "--time-limit", "time_limit", type=click.FloatRange(min=1), default=None,
    help="Seconds student training may run per question (default: quick 300, full 1800).",
)
def check_command(
    question: str, folder: Path | None, solutions: bool, as_json: bool, public: bool,
    tier: str, plots: Path, time_limit: float | None, in_process: bool = False,
) -> None:
    """Grade QUESTION (q1, q2, ... or 'all'); exits 1 when any check fails."""
    from .grading import grade_folder
    from .questions import QUESTIONS, get_question
    from .report import render_json, render_text
    from .training import TRAINING_QUESTIONS, TIERS, slow_tier_notice

    if solutions and folder:
        raise click.UsageError("use either --path or --solutions")
    folder = solutions_dir() if solutions else folder or _default_folder()
    try:
        questions = list(QUESTIONS.values()) if question.lower() == "all" else [get_question(question)]
    except KeyError as error:
        raise click.BadParameter(error.args[0], param_hint="QUESTION") from None
    options = {"tier": tier, "plots": plots, "time_limit": time_limit}
    if any(q.id in TRAINING_QUESTIONS for q in questions):
        notice = slow_tier_notice(TIERS[tier])
        if notice:
            click.echo(notice, err=as_json)  # keep stdout pure JSON
    limits = Limits(threads=os.cpu_count() or 1)  # one student on this machine: the sandbox may use every core
    results = [
        grade_folder(q, folder, include_hidden=not public, options=options, isolated=not in_process, limits=limits)
        for q in questions
    ]
    if as_json:
        click.echo(render_json(results, as_list=question.lower() == "all"))
    else:
        render_text(results)
    sys.exit(0 if all(r.passed for r in results) else 1)


def _default_folder() -> Path:
    here = Path("exercises")
    return here if here.is_dir() else exercises_dir()


@main.group("nbgrader")
def nbgrader_group() -> None:
    """Build the nbgrader course and grade a class (for TAs)."""


@nbgrader_group.command("build")
@click.argument("course_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("-q", "--question", "questions", multiple=True, help="Only these questions (repeatable; default: all).")
@click.option("--assignment", default="cnn", show_default=True, help="Assignment (and notebook) name.")
@click.option("--course-id", default="cnn-grader", show_default=True, help="nbgrader course id.")
@click.option("--timeout", default=600, show_default=True, help="Seconds a cell may run at autograde.")
def nbgrader_build(course_dir: Path, questions: tuple[str, ...], assignment: str, course_id: str, timeout: int) -> None:
    """Write an nbgrader course (config and source notebook) into COURSE_DIR."""
    from .nbgrader.build import build_course

    try:
        path = build_course(course_dir, questions or None, assignment=assignment, course_id=course_id, timeout=timeout)
    except KeyError as error:
        raise click.BadParameter(error.args[0], param_hint="--question") from None
    click.echo(f"wrote {course_dir / 'nbgrader_config.py'} and {path}")
    click.echo(f"next: cd {course_dir} && nbgrader generate_assignment {assignment}")


@nbgrader_group.command("grade")
@click.argument("course_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("assignment")
@click.option("--collect/--no-collect", default=False, show_default=True, help="Run `nbgrader collect` (exchange) first; otherwise submissions are already in submitted/.")
@click.option("--exchange", type=click.Path(file_okay=False, path_type=Path), help="Exchange root for --collect.")
@click.option("--generate/--no-generate", default=True, show_default=True, help="Run `nbgrader generate_assignment --force` first.")
@click.option("--feedback/--no-feedback", default=True, show_default=True, help="Write feedback HTML.")
@click.option("--to", "export_to", type=click.Path(dir_okay=False, path_type=Path), help="CSV path (default COURSE_DIR/grades.csv).")
@click.option("--regrade", is_flag=True, help="Autograde every submission again (default: only new or resubmitted ones).")
@click.option(
    "--sandbox/--no-sandbox", default=True, show_default=True,
    help="Grade the notebooks again with `grader batch` (sandboxed); where a test cell's score differs, the sandbox's counts.",
)
@click.option("--workers", "-w", default=2, show_default=True, type=click.IntRange(min=1), help="Sandbox grading processes.")
def nbgrader_grade(
    course_dir: Path, assignment: str, collect: bool, exchange: Path | None, generate: bool, feedback: bool, export_to: Path | None,
    regrade: bool, sandbox: bool, workers: int,
) -> None:
    """Autograde ASSIGNMENT, write feedback and grades.csv, print a summary per student and question."""
    from .nbgrader.grade import StepFailed, grade_assignment, render_summary, summarise

    try:
        outcome = grade_assignment(
            course_dir, assignment, generate=generate, collect=collect, exchange=exchange,
            feedback=feedback, export_to=export_to, regrade=regrade, sandbox=sandbox, workers=workers, echo=click.echo,
        )
    except StepFailed as error:
        raise click.ClickException(str(error)) from None
    render_summary(summarise(course_dir, assignment))
    click.echo(f"grades: {outcome.csv}")
    if outcome.corrections:
        click.echo(f"{len(outcome.corrections)} test cell score(s) not confirmed by the sandbox (listed above): see `sandbox-grading/{assignment}/feedback/`")
    if outcome.failures:
        raise click.ClickException("nbgrader could not autograde some submissions: see its log above")


@main.command("report")
@click.argument("question")
@click.option("--path", "folder", type=click.Path(file_okay=False, path_type=Path), help="Folder holding q7_flowers.py (default ./exercises).")
@click.option("--solutions", is_flag=True, help="Report on the reference solution.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path("report-q7"), show_default=True, help="Report folder (runs accumulate there).")
@click.option("--tier", type=click.Choice(["quick", "full"]), default="quick", show_default=True, help="quick: generated images, weights=None, CPU; full: the flowers, ImageNet weights, GPU.")
@click.option("--data", help="The flowers: a folder (102flowers.tgz + imagelabels.mat, or one sub-folder per class) or 'tfds'.")
@click.option("--weights", help="Backbone weights: 'imagenet' (default on the full tier) or a local weights file.")
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs (default: quick 3, full 10).")
def report_command(question: str, folder: Path | None, solutions: bool, out: Path, tier: str, data: str | None, weights: str | None, epochs: int | None) -> None:
    """Train once and write the experiment report (HTML and Markdown) for QUESTION (q7)."""
    from .flowers import DataUnavailable
    from .questions import get_question
    from .quiet import captured_stderr, import_keras
    from .submission import load_module
    from .transfer_report import ReportError, report

    try:
        spec = get_question(question)
    except KeyError as error:
        raise click.BadParameter(error.args[0], param_hint="QUESTION") from None
    if spec.id != "q7":
        raise click.BadParameter(f"only q7 has a report (not {spec.id})", param_hint="QUESTION")
    if solutions and folder:
        raise click.UsageError("use either --path or --solutions")
    import_keras()
    with captured_stderr():
        loaded = load_module(solutions_dir() if solutions else folder or _default_folder(), spec)
    if loaded.error:
        raise click.ClickException(loaded.error)
    try:
        with captured_stderr():
            files = report(loaded.namespace, out=out, tier=tier, data=data, weights=weights, epochs=epochs, log=click.echo)
    except (ReportError, DataUnavailable) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"test accuracy {files.experiment.test_accuracy:.3f} (top-5 {files.experiment.test_top5:.3f})")
    click.echo(f"wrote {files.html} and {files.markdown}")


@main.command("batch")
@click.argument("submissions_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("grading-results"), show_default=True, help="Results store (results.sqlite), grades.csv, summary and feedback/.")
@click.option("-q", "--question", "questions", multiple=True, help="Only these questions (repeatable; default: all).")
@click.option("--workers", "-w", default=2, show_default=True, type=click.IntRange(min=1), help="Grading processes on this machine.")
@click.option("--regrade", multiple=True, metavar="STUDENT", help="Grade STUDENT again even if already graded (repeatable).")
@click.option("--cluster", metavar="ADDRESS", help="Send the jobs to this Dask scheduler (e.g. tcp://gpu-head:8786) instead of local workers.")
@click.option("--question-timeout", type=click.FloatRange(min=1), default=300, show_default=True, help="Wall-clock seconds per question of one submission (training questions get at least their tier's time limit plus 4 minutes).")
@click.option("--memory-mb", type=click.IntRange(min=256), default=Limits.memory_mb, show_default=True, help="Memory a question's sandbox may use on top of what the framework maps at import.")
@click.option("--assignment", default="cnn", show_default=True, help="Assignment name for the CSV.")
@click.option("--duedate", default="", help="Due date for the CSV (informational).")
@click.option("--roster", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="CSV with student_id, first_name, last_name, email.")
@click.option("--tier", type=click.Choice(["quick", "full"]), default="quick", show_default=True, help="Training questions: quick (CPU subset) or full (official split, for GPU workers).")
@click.option("--time-limit", "time_limit", type=click.FloatRange(min=1), default=None, help="Seconds student training may run per training question (default: the tier's).")
@click.option("--no-progress", is_flag=True, help="No progress bar (logs, CI).")
def batch_command(
    submissions_dir: Path, out_dir: Path, questions: tuple[str, ...], workers: int, regrade: tuple[str, ...],
    cluster: str | None, question_timeout: float, memory_mb: int, assignment: str, duedate: str,
    roster: Path | None, tier: str, time_limit: float | None, no_progress: bool,
) -> None:
    """Grade every submission in SUBMISSIONS_DIR (a folder per student), sandboxed; resumes where it stopped."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from .batch import run_batch
    from .questions import get_question

    try:
        ids = [get_question(q).id for q in questions]
    except KeyError as error:
        raise click.BadParameter(error.args[0], param_hint="--question") from None
    console = Console(stderr=True)
    bar = Progress(
        TextColumn("grading"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        TextColumn("{task.description}"), console=console, disable=no_progress,
    )
    task = bar.add_task("", total=None)

    def progress(done: int, total: int, student: str) -> None:
        bar.update(task, completed=done, total=total, description=student)

    limits = {"wall_s": question_timeout, "memory_mb": memory_mb}
    with bar:
        try:
            report = run_batch(
                submissions_dir, out_dir=out_dir, questions=ids or None, workers=workers, regrade=regrade,
                cluster=cluster, limits=limits, assignment=assignment, duedate=duedate, roster=roster, progress=progress,
                options={"tier": tier, "time_limit": time_limit},
            )
        except KeyError as error:
            raise click.BadParameter(error.args[0], param_hint="--regrade") from None
    click.echo(
        f"graded {len(report.graded)} submission(s) in {report.wall_s:g} s; {len(report.skipped)} already graded "
        f"(--regrade STUDENT grades one again)"
    )
    if report.interrupted:
        click.echo("interrupted: run the same command again to grade the rest (nothing graded is lost)")
    click.echo(report.summary_path.read_text(), nl=False)
    click.echo(f"grades: {report.csv_path}\nfeedback: {report.feedback_dir}/\nresults store: {report.out_dir / 'results.sqlite'}")
    sys.exit(130 if report.interrupted else 0)
