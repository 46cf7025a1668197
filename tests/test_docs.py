"""The documentation site builds in strict mode, and its CLI reference covers every command and option."""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from conftest import REPO

from grader.cli import main


def commands(group: click.Group, prefix: str = "grader") -> dict[str, click.Command]:
    """Every command of the CLI by its full name ('grader nbgrader grade')."""
    found: dict[str, click.Command] = {}
    for name, command in group.commands.items():
        full = f"{prefix} {name}"
        found[full] = command
        if isinstance(command, click.Group):
            found.update(commands(command, full))
    return found


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_docs_build_in_strict_mode(site: Path) -> None:
    for page in (
        "index.html",
        "students/index.html",
        "tas/index.html",
        "staff/index.html",
        "design/index.html",
        "cli/index.html",
        "troubleshooting/index.html",
    ):
        assert (site / page).is_file(), page


def test_cli_reference_names_every_command_and_option(site: Path) -> None:
    text = html.unescape(re.sub(r"<[^>]+>", " ", (site / "cli" / "index.html").read_text()))
    missing = []
    for name, command in commands(main).items():
        if name not in text:
            missing.append(name)
        for parameter in command.params:
            for flag in getattr(parameter, "opts", []):
                if flag.startswith("-") and flag not in text:
                    missing.append(f"{name} {flag}")
    assert missing == []


def test_readme_is_short_and_links_the_docs() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.split()) < 1000
    for page in ("docs/students.md", "docs/tas.md", "docs/staff.md", "docs/design.md", "docs/cli.md"):
        assert page in readme and (REPO / page).is_file()
