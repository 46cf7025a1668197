"""The `grader` command line: a thin layer over `grading` and `report`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

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
def check_command(question: str, folder: Path | None, solutions: bool, as_json: bool, public: bool) -> None:
    """Grade QUESTION (q1, q4, ... or 'all'); exits 1 when any check fails."""
    from .grading import grade_folder
    from .questions import QUESTIONS, get_question
    from .report import render_json, render_text

    if solutions and folder:
        raise click.UsageError("use either --path or --solutions")
    folder = solutions_dir() if solutions else folder or _default_folder()
    try:
        questions = list(QUESTIONS.values()) if question.lower() == "all" else [get_question(question)]
    except KeyError as error:
        raise click.BadParameter(error.args[0], param_hint="QUESTION") from None
    results = [grade_folder(q, folder, include_hidden=not public) for q in questions]
    if as_json:
        click.echo(render_json(results, as_list=question.lower() == "all"))
    else:
        render_text(results)
    sys.exit(0 if all(r.passed for r in results) else 1)


def _default_folder() -> Path:
    here = Path("exercises")
    return here if here.is_dir() else exercises_dir()
