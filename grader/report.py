"""Render question results for a terminal (rich) or as JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import IO

from rich.console import Console
from rich.markup import escape

from .checks import QuestionResult


def _points(value: float) -> str:
    return f"{value:g}"


def render_text(results: Sequence[QuestionResult], file: IO[str] | None = None) -> None:
    """One line per check (mark, points, message), a total per question and overall.

    A note heads the report when student code ran without the sandbox; under a failed
    check comes the end of what the student's code printed (once per question when the
    same output follows several failed checks).
    """
    console = Console(file=file, highlight=False, soft_wrap=True)
    notice = unconfined_notice(results)
    if notice:
        console.print(f"[yellow]{escape(notice)}[/yellow]")
    for result in results:
        console.print(f"[bold]{result.question}[/bold] {escape(result.title)}")
        shown = ""
        for check in result.checks:
            mark = "[green]PASS[/green]" if check.passed else "[red]FAIL[/red]"
            points = f"{_points(check.points)}/{_points(check.max_points)}"
            console.print(f"  {mark} {points:>7}  {escape(check.name)}: {escape(check.message)}")
            if check.output and not check.passed:
                _print_output(console, check.output, again=check.output == shown)
                shown = check.output
        colour = "green" if result.passed else "red"
        hidden = result.meta.get("hidden_checks")  # a student package: the hidden checks run when the TA grades
        if hidden:
            console.print(f"  ({escape(str(hidden))})")
        console.print(f"  [{colour}]score {_points(result.score)}/{_points(result.max_score)}[/{colour}]\n")
    if len(results) > 1:
        score = sum(r.score for r in results)
        total = sum(r.max_score for r in results)
        console.print(f"[bold]total {_points(score)}/{_points(total)}[/bold]")


def _print_output(console: Console, output: str, *, again: bool) -> None:
    if again:
        console.print("           (your code printed the same as above)")
        return
    lines = output.splitlines()
    console.print(f"           your code printed (last {len(lines)} line{'s' if len(lines) != 1 else ''}):")
    for line in lines:
        console.print(f"           | {escape(line)}", markup=True)


def unconfined_notice(results: Sequence[QuestionResult]) -> str:
    """The one line saying that student code ran without the sandbox, and why ("" when it ran in the sandbox)."""
    for result in results:
        isolation = result.meta.get("isolation")
        if isinstance(isolation, Mapping) and isolation.get("mode") == "unconfined":
            reason = str(isolation.get("reason") or "the sandbox cannot run here")
            return (
                f"Note: your code ran without the grader's sandbox ({reason}); the checks and points are the same, "
                "and your TA grades your work in the sandbox."
            )
    return ""


def render_json(results: Sequence[QuestionResult], *, as_list: bool) -> str:
    """The JSON report: one object, or a list of them for `check all`."""
    payload = [r.to_dict() for r in results] if as_list else results[0].to_dict()
    return json.dumps(payload, indent=2)
