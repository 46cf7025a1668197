"""The dashboard's charts, drawn by matplotlib and inlined as SVG (the page opens offline)."""

from __future__ import annotations

import html
import io
import re
from collections.abc import Mapping, Sequence
from typing import Any

BLUE, GREY, RED = "#3b6ea8", "#9aa5b1", "#c0392b"


STYLE: Any = {"svg.fonttype": "none", "svg.hashsalt": "cnn-grader", "font.size": 9}


def _subplots(size: tuple[float, float]) -> tuple[Any, Any]:
    """A figure and its axes, without pyplot (no global figure registry, no GUI backend)."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(STYLE):
        figure = Figure(figsize=size)
        return figure, figure.add_subplot()


def to_svg(figure: Any, label: str) -> str:
    """`figure` as an inline `<svg>` element (no XML prolog), labelled for screen readers."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context(STYLE):
        figure.savefig(buffer, format="svg", bbox_inches="tight")
    svg, label = buffer.getvalue(), html.escape(label, quote=True)
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    return svg.replace("<svg ", f'<svg role="img" aria-label="{label}" class="chart" ', 1)


def histogram_svg(
    bins: Sequence[Mapping[str, Any]], figures: Mapping[str, Any], title: str, *, wide: bool = False
) -> str:
    """A histogram of scores (`bins` from `stats.histogram`) with mean, median and quartiles marked."""
    figure, axes = _subplots((6.4 if wide else 3.4, 2.4 if wide else 2.1))
    lefts = [b["from"] for b in bins]
    widths = [b["to"] - b["from"] for b in bins]
    axes.bar(lefts, [b["students"] for b in bins], width=widths, align="edge", color=BLUE, edgecolor="white")
    if figures.get("n"):
        low, high = figures["lower_quartile"], figures["upper_quartile"]
        axes.axvspan(low, high, color=GREY, alpha=0.25, label="middle half (Q1-Q3)")
        axes.axvline(figures["median"], color=RED, linewidth=1.5, label=f"median {figures['median']:g}")
        axes.axvline(figures["mean"], color="black", linestyle="--", linewidth=1, label=f"mean {figures['mean']:g}")
        axes.legend(fontsize=7, frameon=False, loc="upper left")
    axes.set_title(title, fontsize=10)
    axes.set_xlabel("score")
    axes.set_ylabel("students")
    axes.set_xlim(0, bins[-1]["to"] if bins else 1)
    axes.spines[["top", "right"]].set_visible(False)
    return to_svg(figure, f"histogram: {title}")


def pass_rate_svg(checks: Sequence[Mapping[str, Any]], limit: int = 25) -> str:
    """Horizontal bars: the pass rate of the hardest `limit` checks."""
    shown = list(checks)[:limit]
    figure, axes = _subplots((6.4, 0.28 * max(len(shown), 3) + 0.8))
    labels = [f"{c['question']}: {c['check']}"[:60] for c in shown]
    rates = [100 * c["pass_rate"] for c in shown]
    colors = [RED if r < 50 else BLUE for r in rates]
    axes.barh(range(len(shown)), rates, color=colors)
    axes.set_yticks(range(len(shown)), labels, fontsize=7)
    axes.invert_yaxis()
    axes.set_xlim(0, 100)
    axes.set_xlabel("students passing (%)")
    axes.set_title("Checks, hardest first", fontsize=10)
    axes.spines[["top", "right"]].set_visible(False)
    return to_svg(figure, "pass rate of each check")
