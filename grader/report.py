"""Render question results for a terminal (rich) or as JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import IO

from rich.console import Console
from rich.markup import escape

from .checks import QuestionResult


def _points(value: float) -> str:
    return f"{value:g}"


def render_text(results: Sequence[QuestionResult], file: IO[str] | None = None) -> None:
    """One line per check (mark, points, message), a total per question and overall."""
    console = Console(file=file, highlight=False, soft_wrap=True)
    for result in results:
        console.print(f"[bold]{result.question}[/bold] {escape(result.title)}")
        for check in result.checks:
            mark = "[green]PASS[/green]" if check.passed else "[red]FAIL[/red]"
            points = f"{_points(check.points)}/{_points(check.max_points)}"
            console.print(f"  {mark} {points:>7}  {escape(check.name)}: {escape(check.message)}")
        colour = "green" if result.passed else "red"
        console.print(f"  [{colour}]score {_points(result.score)}/{_points(result.max_score)}[/{colour}]\n")
    if len(results) > 1:
        score = sum(r.score for r in results)
        total = sum(r.max_score for r in results)
        console.print(f"[bold]total {_points(score)}/{_points(total)}[/bold]")


def render_json(results: Sequence[QuestionResult], *, as_list: bool) -> str:
    """The JSON report: one object, or a list of them for `check all`."""
    payload = [r.to_dict() for r in results] if as_list else results[0].to_dict()
    return json.dumps(payload, indent=2)
