"""The `grader` command line: a thin layer over grading, batch, nbgrader and the reports.

Exit codes, the same for every command: 0 everything passed, 1 checks failed, 2 a usage
error (unknown question, missing folder, bad option), 3 the grader could not do its job
(missing data, a failed nbgrader step, an internal error), 130 interrupted.
The commands live in `student` (list, check, report) and `staff` (nbgrader, batch,
dashboard, export); `base` holds what they share.
"""

from __future__ import annotations

import os
import sys

import click

from ..quiet import silence_frameworks
from ..release.command import release_command
from .base import EXIT_FAILED, EXIT_GRADER, EXIT_PASSED, EXIT_USAGE, GraderError, GraderGroup, quick_exit_asked
from .staff import batch_command, dashboard_command, export_command, nbgrader_group
from .student import check_command, init_command, list_questions, report_command

__all__ = ["EXIT_FAILED", "EXIT_GRADER", "EXIT_PASSED", "EXIT_USAGE", "GraderError", "main", "run"]


@click.group(cls=GraderGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cnn-grader")
def main() -> None:
    """Exercises and autograder for the convolutional-networks unit."""
    silence_frameworks()


for command in (
    init_command,
    list_questions,
    check_command,
    report_command,
    nbgrader_group,
    batch_command,
    dashboard_command,
    export_command,
    release_command,
):
    main.add_command(command)


def run() -> None:
    """The `grader` console command (and `python -m grader`): `main`, ended quickly where the command asked."""
    try:
        main()
    except SystemExit as done:
        if not quick_exit_asked():
            raise
        if isinstance(done.code, str):
            print(done.code, file=sys.stderr)
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            if stream is not None:
                stream.flush()
        os._exit(code)
