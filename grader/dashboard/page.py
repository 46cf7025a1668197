"""The dashboard as one self-contained HTML page: inline CSS, inline SVG charts, a few lines of JS to sort tables."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from .similarity import SimilarPair

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1320px;padding:12px 20px;
color:#1d2630;font-size:14px}
h1{font-size:22px;margin:4px 0}h2{font-size:17px;margin:22px 0 6px;border-bottom:1px solid #d8dee4;padding-bottom:3px}
table{border-collapse:collapse;margin:6px 0}td,th{padding:3px 8px;border-bottom:1px solid #e6e9ec;text-align:left;
vertical-align:top}th{background:#f3f5f7;position:sticky;top:0}th.sort{cursor:pointer}th.sort:after{content:" \\2195";
color:#9aa5b1}.num{text-align:right;font-variant-numeric:tabular-nums}.charts{display:flex;flex-wrap:wrap;gap:8px}
.chart{max-width:100%;height:auto}.bad{color:#c0392b;font-weight:600}.ok{color:#2e7d32}.muted{color:#66727f}
.cards{display:flex;gap:10px;flex-wrap:wrap}.card{background:#f3f5f7;border-radius:6px;padding:8px 12px}
.card b{font-size:18px;display:block}.scroll{max-height:520px;overflow:auto}details{margin:4px 0}
table.diff{font-family:monospace;font-size:12px}.diff_add{background:#d4f7d4}.diff_chg{background:#fff2a8}
.diff_sub{background:#ffd6d6}td.diff_header{color:#66727f}
"""
SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, column) {
    th.classList.add("sort");
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var up = th.dataset.order !== "up"; th.dataset.order = up ? "up" : "down";
      rows.sort(function (a, b) {
        var x = a.cells[column].dataset.v || a.cells[column].textContent;
        var y = b.cells[column].dataset.v || b.cells[column].textContent;
        var n = parseFloat(x) - parseFloat(y);
        var c = isNaN(n) ? x.localeCompare(y) : n;
        return up ? c : -c;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
var shown = 0;  // charts laid out with a size (what the page's render test reads)
document.querySelectorAll("svg.chart").forEach(function (svg) {
  var box = svg.getBoundingClientRect();
  if (box.width > 0 && box.height > 0) { shown++; }
});
document.body.dataset.chartsVisible = String(shown);
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    if value is None:
        return "&ndash;"
    return f"{value:g}" if isinstance(value, (int, float)) else esc(value)


def table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, sortable: bool = False, numeric: Sequence[int] = ()
) -> str:
    """An HTML table; `rows` hold HTML already escaped (or whole `<td>`s); columns in `numeric` are right-aligned."""

    def cell(i: int, text: str) -> str:
        return text if text.startswith("<td") else f"<td{' class=num' if i in numeric else ''}>{text}</td>"

    head = "".join(f"<th{' class=num' if i in numeric else ''}>{esc(h)}</th>" for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(cell(i, text) for i, text in enumerate(row)) + "</tr>" for row in rows)
    kind = "sortable" if sortable else ""
    return f'<table class="{kind}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def student_link(student: str, feedback: Mapping[str, str]) -> str:
    target = feedback.get(student)
    return f'<a href="{esc(target)}">{esc(student)}</a>' if target else esc(student)


def summary_cards(figures: Mapping[str, Any], health: Mapping[str, Any], pairs: int) -> str:
    total = figures["total"]
    problems = sum(1 for rows in health["kinds"].values() for _ in rows)
    cards = [
        ("students", figures["students"]), ("mean", f"{fmt(total['mean'])} / {figures['max_score']:g}"),
        ("median", fmt(total["median"])),
        ("quartiles", f"{fmt(total['lower_quartile'])} &ndash; {fmt(total['upper_quartile'])}"),
        ("grading problems", problems), ("similar pairs", pairs),
    ]  # fmt: skip
    return '<div class="cards">' + "".join(f'<div class="card"><b>{v}</b>{esc(k)}</div>' for k, v in cards) + "</div>"


def distribution_section(figures: Mapping[str, Any], charts: Mapping[str, str], titles: Mapping[str, str]) -> str:
    rows = []
    for key, data in [("total", figures["total"]), *figures["questions"].items()]:
        name = "total" if key == "total" else f"{key} {titles.get(key, '')}"
        top = figures["max_score"] if key == "total" else data["max_score"]
        figures_shown = (fmt(data[k]) for k in ("mean", "median", "lower_quartile", "upper_quartile", "min", "max"))
        rows.append([esc(name), fmt(top), fmt(data["n"]), *figures_shown])
    stats = table(["", "out of", "students", "mean", "median", "Q1", "Q3", "min", "max"], rows, numeric=range(1, 9))
    return f'<h2 id="scores">Score distributions</h2><div class="charts">{"".join(charts.values())}</div>{stats}'


def checks_section(checks: Sequence[Mapping[str, Any]], chart: str) -> str:
    rows = []
    for c in checks:
        d = c["discrimination"]
        low = d is not None and d < 0.1
        why = "passing this check hardly tracks the rest of the score"
        flag = f' <span class="bad" title="{why}">low</span>' if low else ""
        rate = f'<td class=num data-v="{c["pass_rate"]}">{100 * c["pass_rate"]:.1f}%</td>'
        discrimination = f'<td class=num data-v="{d if d is not None else -9}">{fmt(d)}{flag}</td>'
        rows.append([esc(c["question"]), esc(c["check"]), rate, f"{c['passed']}/{c['students']}", discrimination])
    note = (
        '<p class="muted">Discrimination: the point-biserial correlation of passing a check with the rest of the '
        "score (total minus the check's points). Near 0 or negative: the check does not track how well students "
        "do otherwise; look at it.</p>"
    )
    headers = ["question", "check", "pass rate", "passed", "discrimination"]
    listed = table(headers, rows, sortable=True, numeric=(2, 3, 4))
    return f'<h2 id="checks">Checks, hardest first</h2>{chart}{note}{listed}'


def misconceptions_section(rows: Sequence[Mapping[str, Any]], feedback: Mapping[str, str]) -> str:
    body = [
        [f"<code>{esc(r['id'])}</code>", esc(r["title"]), fmt(r["count"]), esc(", ".join(r["questions"])),
         ", ".join(student_link(s, feedback) for s in r["students"])]
        for r in rows
    ]  # fmt: skip
    intro = '<p class="muted">What failed checks diagnosed, by the number of students (hidden checks included).</p>'
    headers = ["diagnosis", "what it means", "students", "questions", "who"]
    return f'<h2 id="misconceptions">Misconceptions</h2>{intro}{table(headers, body, sortable=True, numeric=(2,))}'


def students_section(
    rows: Sequence[Mapping[str, Any]], question_ids: Sequence[str], feedback: Mapping[str, str]
) -> str:
    body = []
    for r in rows:
        cells = [student_link(r["student"], feedback)]
        scores = r["scores"]
        cells += [f'<td class=num data-v="{scores.get(q, -1)}">{fmt(scores.get(q))}</td>' for q in question_ids]
        cells += [fmt(r["total"]), fmt(r["wall_s"]), esc(r["timestamp"] or "")]
        cells += ['<span class="bad">late</span>' if r["late"] else "", esc("; ".join(r["warnings"]))]
        body.append(cells)
    headers = ["student", *question_ids, "total", "time (s)", "submitted", "late", "isolation warnings"]
    numeric = range(1, len(question_ids) + 3)
    listed = table(headers, body, sortable=True, numeric=numeric)
    return f'<h2 id="students">Students</h2><div class="scroll">{listed}</div>'


def similarity_section(
    pairs: Sequence[SimilarPair], diffs: Mapping[tuple[str, str, str], str], threshold: float
) -> str:
    intro = (
        f'<p class="muted">Pairs whose code for a question is at least {threshold:.0%} the same after '
        "normalising names, comments and layout, with the stub's and the reference's code left out. "
        "For review only: nothing here "
        "changes a score.</p>"
    )
    if not pairs:
        return f'<h2 id="similar">Similar submissions</h2>{intro}<p class="ok">none</p>'
    parts = []
    for p in pairs:
        diff = diffs.get((p.question, p.first, p.second))
        summary = (
            f"{esc(p.question)}: {esc(p.first)} and {esc(p.second)}, {p.similarity:.0%} similar "
            f"({p.shared} shared shingles)"
        )
        parts.append(f"<details><summary>{summary}</summary>{diff or ''}</details>" if diff else f"<p>{summary}</p>")
    return f'<h2 id="similar">Similar submissions</h2>{intro}{"".join(parts)}'


def health_section(health: Mapping[str, Any], titles: Mapping[str, str]) -> str:
    rows = [
        [f"<code>{esc(kind)}</code>", esc(titles.get(kind, kind)), fmt(len(found)),
         esc(", ".join(f"{f['student']} ({f['question']})" for f in found))]
        for kind, found in health["kinds"].items()
    ]  # fmt: skip
    parts = [table(["kind", "what happened", "count", "submissions (question)"], rows, numeric=(2,))]
    unenforced = health["not_enforced"]
    if unenforced:
        items = "".join(f"<li>{esc(s)}: {esc('; '.join(w))}</li>" for s, w in unenforced.items())
        head = f'<p class="bad">Graded with isolation not fully enforced ({len(unenforced)} students):</p>'
        parts.append(f"{head}<ul>{items}</ul>")
    else:
        parts.append('<p class="ok">Every question of every submission was graded with the sandbox fully enforced.</p>')
    return '<h2 id="health">Grading health</h2>' + "".join(parts)


def render(*, title: str, sections: Sequence[str]) -> str:
    nav = " &middot; ".join(
        f'<a href="#{a}">{t}</a>'
        for a, t in [("scores", "scores"), ("checks", "checks"), ("misconceptions", "misconceptions"),
                     ("students", "students"), ("similar", "similar submissions"), ("health", "grading health")]
    )  # fmt: skip
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body><h1>{esc(title)}</h1><nav>{nav}</nav>"
        + "".join(sections)
        + f"<script>{SCRIPT}</script></body></html>"
    )
