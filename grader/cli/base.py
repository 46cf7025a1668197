"""What every command shares: exit codes, the grader's own errors, the default submission folder."""

from __future__ import annotations

from pathlib import Path

import click

from ..options import TIER_NAMES
from ..paths import exercises_dir

EXIT_PASSED, EXIT_FAILED, EXIT_USAGE, EXIT_GRADER = 0, 1, 2, 3
TIER = click.Choice(TIER_NAMES)  # the --tier of every command that trains


class GraderError(click.ClickException):
    """The grader could not do its job (exit code 3); the message says why and what to do."""

    exit_code = EXIT_GRADER


class GraderGroup(click.Group):
    """The command group: an unexpected exception in a command exits 3 (never 1, which means "checks failed")."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit, KeyboardInterrupt):
            raise
        except Exception as error:  # noqa: BLE001 - any crash of the grader itself is exit code 3
            raise GraderError(f"internal error: {type(error).__name__}: {error} (please report it)") from error


def default_folder() -> Path:
    """`./exercises` when the command runs next to one, else the package's own stubs."""
    here = Path("exercises")
    return here if here.is_dir() else exercises_dir()
