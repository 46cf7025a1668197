"""What every command shares: exit codes, the grader's own errors, deprecated spellings, the default folder."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from ..options import TIER_NAMES
from ..paths import exercises_dir

EXIT_PASSED, EXIT_FAILED, EXIT_USAGE, EXIT_GRADER = 0, 1, 2, 3
TIER = click.Choice(TIER_NAMES)  # the --tier of every command that trains

_QUICK_EXIT = {"asked": False}


def exit_quickly_when_done() -> None:
    """Ask `grader.cli.run` to end this process without the interpreter's teardown once the command returns.

    Only for a command that cleans up after itself (closes its files and sandboxes; the
    zygote dies with its parent): with TensorFlow loaded the teardown takes about a second
    after the report is out, a second the student waits for the prompt.
    """
    _QUICK_EXIT["asked"] = True


def quick_exit_asked() -> bool:
    return _QUICK_EXIT["asked"]


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


def deprecated(old: str, new: str) -> None:
    """The one-line warning (stderr) for an option spelled the old way."""
    click.echo(f"warning: {old} is deprecated and goes away in the next release; use {new}", err=True)


class RenamedOptions(click.Command):
    """A command that still accepts its options' old spellings (hidden; each use warns once on stderr).

    `renamed` maps an old spelling to the new one (`--timeout` -> `--question-time-limit`).
    `flag_values` maps a switch that used to take a value to the option now taking it:
    `--regrade alice` (old) reads as `--regrade --student alice`.
    """

    def __init__(
        self,
        *args: Any,
        renamed: Mapping[str, str] | None = None,
        flag_values: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.renamed = dict(renamed or {})
        self.flag_values = dict(flag_values or {})

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, self.modernise(ctx, list(args)))

    def modernise(self, ctx: click.Context, args: list[str]) -> list[str]:
        """`args` with every old spelling replaced by the new one (a warning per old spelling used)."""
        out: list[str] = []
        warned: set[str] = set()
        takes_value = self._options_taking_values(ctx)
        positional = sum(1 for p in self.params if isinstance(p, click.Argument))
        bare = self._bare_tokens(args, takes_value)
        index = 0
        while index < len(args):
            token = args[index]
            if token == "--":
                out += args[index:]
                break
            name, equals, value = token.partition("=")
            if name in self.renamed:
                if name not in warned:
                    deprecated(name, self.renamed[name])
                    warned.add(name)
                out.append(self.renamed[name] + equals + value)
            elif name in self.flag_values and (equals or (index + 1 in bare and len(bare) > positional)):
                given = value if equals else args[index + 1]
                target = self.flag_values[name]
                if name not in warned:
                    metavar = target.lstrip("-").upper()
                    deprecated(f"{name} {metavar}", f"{name} {target} {metavar}")
                    warned.add(name)
                out += [name, target, given]
                index += 0 if equals else 1
            else:
                out.append(token)
            index += 1
        return out

    def _options_taking_values(self, ctx: click.Context) -> set[str]:
        found = {old for old, new in self.renamed.items() if new in self._value_options(ctx)}
        return found | self._value_options(ctx)

    def _value_options(self, ctx: click.Context) -> set[str]:
        return {
            opt
            for p in self.get_params(ctx)
            if isinstance(p, click.Option) and not p.is_flag and not p.count
            for opt in p.opts
        }

    @staticmethod
    def _bare_tokens(args: list[str], takes_value: set[str]) -> list[int]:
        """Indexes of the tokens that are neither options nor option values (arguments, or an old flag's value)."""
        bare: list[int] = []
        index = 0
        while index < len(args):
            token = args[index]
            if token == "--":
                bare += range(index + 1, len(args))
                break
            if token.startswith("-") and token != "-":
                if token in takes_value:
                    index += 1  # its value
            else:
                bare.append(index)
            index += 1
        return bare


def default_folder() -> Path:
    """`./exercises` when the command runs next to one, else the package's own stubs."""
    here = Path("exercises")
    return here if here.is_dir() else exercises_dir()
