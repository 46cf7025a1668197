"""The `grader release` command (course staff): a thin layer over `grader.release.release`."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("release")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--notebook",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The released notebook to ship beside the wheel (from `grader nbgrader build`).",
)
def release_command(out: Path, notebook: Path | None) -> None:
    """Build the student package in OUT: a wheel that grades without solutions/, the stubs and the reference data."""
    from ..cli.base import GraderError
    from .build import release
    from .package import ReleaseError

    try:
        released = release(out, notebook=notebook)
    except ReleaseError as error:
        raise GraderError(str(error)) from None
    click.echo(f"wheel: {released.wheel}")
    click.echo(f"reference data (what students can read): {released.data}")
    click.echo(f"stubs: {released.exercises}")
    if released.notebook is not None:
        click.echo(f"notebook: {released.notebook}")
    click.echo(f"left out: {released.hidden_only} reference results that only hidden checks use")
    for problem in released.problems:
        click.echo(f"not released (the check says it runs when the TA grades): {problem}")
