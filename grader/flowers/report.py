"""The q7 experiment report: one self-contained HTML file (images embedded) and the same content as Markdown.

`report(...)` runs the four q7 functions once (the quick tier on generated data, or the
full tier on the flowers with ImageNet weights), saves the run as JSON in `OUT/runs/`, and
writes `OUT/report.html` and `OUT/report.md` (its figures in `OUT/images/`). Runs
accumulate: run it once per backbone (change `build_transfer_model` and `preprocess`, or
the solution) and the comparison table lists every backbone that was run.

Sections: data set and split, sample images per class, preprocessing, model, per-epoch
curves (train, validation, test), final test accuracy and top-5, confusion summary,
comparison of backbones. `report_command` is q7's `Question.report` hook, run by `grader report`.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import html
import json
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..checks import UserFacingError
from ..options import GradingOptions
from ..quiet import captured_stderr
from .backbones import IMAGENET, looks_like_download_failure, weights_unavailable_message
from .data import FlowersData, load_flowers
from .experiment import BATCH_SIZES, FULL_EPOCHS, NAMES, QUICK_EPOCHS, Experiment, run_experiment
from .figures import curves_figure, preprocessing_figure, samples_figure
from .split import SPLIT_NAMES, split_problem
from .synthetic import synthetic_flowers

SECTIONS = (
    ("data", "Data set and split"),
    ("samples", "Sample images per class"),
    ("preprocessing", "Preprocessing"),
    ("model", "Model"),
    ("curves", "Accuracy and loss per epoch"),
    ("results", "Test accuracy"),
    ("confusion", "Confusion summary"),
    ("comparison", "Backbones compared"),
)


class ReportError(UserFacingError):
    """The report could not be produced; the message says why and what to do."""


@dataclasses.dataclass
class ReportFiles:
    html: Path
    markdown: Path
    run: Path
    experiment: Experiment


# --- running ------------------------------------------------------------------------------------


def report_command(
    namespace: Mapping[str, Any], *, out: Path, options: GradingOptions, log: Callable[[str], None]
) -> list[str]:
    """`grader report`'s hook: run the experiment as `options` say, write the report; returns the lines to print."""
    with captured_stderr():
        files = report(
            namespace,
            out=out,
            tier=options.tier,
            data=options.data,
            weights=options.weights,
            epochs=options.epochs,
            log=log,
        )
    experiment = files.experiment
    return [
        f"test accuracy {experiment.test_accuracy:.3f} (top-5 {experiment.test_top5:.3f})",
        f"wrote {files.html} and {files.markdown}",
    ]


def report(
    functions: Mapping[str, Callable[..., Any]],
    *,
    out: str | Path,
    tier: str = "quick",
    data: str | Path | None = None,
    weights: str | None = None,
    epochs: int | None = None,
    log: Callable[[str], None] | None = None,
) -> ReportFiles:
    """Run the q7 pipeline with `functions` (`NAMES`: preprocess, split_indices, build_transfer_model,
    train_transfer) and write the report.

    quick: `data` or a generated image folder, weights=None (or `weights`), 3 epochs, CPU.
    full: the flowers (`data`, else the data home or TFDS), `weights` (default 'imagenet'), 10 epochs.
    """
    missing = [name for name in NAMES if not callable(functions.get(name))]
    if missing:
        source = Path(str(functions.get("__file__") or "")).name
        see = f" (see exercises/{source})" if source else ""
        raise ReportError(f"the report needs the functions {', '.join(missing)}{see}.")
    out = Path(out)
    if tier == "full":
        dataset = load_flowers(data)
        weights = weights or IMAGENET
        epochs, batch = epochs or FULL_EPOCHS, BATCH_SIZES["full"]
    elif tier == "quick":
        dataset = load_flowers(data) if data else synthetic_flowers(Path(tempfile.mkdtemp(prefix="flowers-report-")))
        epochs, batch = epochs or QUICK_EPOCHS, BATCH_SIZES["quick"]
    else:
        raise ReportError(f"unknown tier '{tier}': use quick or full.")
    parts = functions["split_indices"](dataset.labels, seed=0)
    problem = split_problem(dataset.labels, parts)
    if problem:
        raise ReportError(f"split_indices is not right yet: {problem}")
    try:
        experiment, _ = run_experiment(
            {name: functions[name] for name in NAMES},
            dataset,
            tier=tier,
            weights=weights,
            epochs=epochs,
            batch_size=batch,
            split=parts,
            log=log,
        )
    except Exception as error:
        if weights == IMAGENET and looks_like_download_failure(str(error)):
            raise ReportError(weights_unavailable_message(weights, str(error).splitlines()[0])) from None
        raise
    run = save_run(out, experiment)
    html_path, md_path = write_report(out, experiment, dataset, functions["preprocess"], parts)
    return ReportFiles(html_path, md_path, run, experiment)


def save_run(out: Path, experiment: Experiment) -> Path:
    """`OUT/runs/<backbone>-<tier>.json`: one file per backbone and tier (a rerun replaces it)."""
    folder = Path(out) / "runs"
    folder.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{experiment.backbone}-{experiment.tier}")
    path = folder / f"{name}.json"
    payload = experiment.to_dict() | {"finished": datetime.datetime.now().isoformat(timespec="seconds")}
    path.write_text(json.dumps(payload, indent=1))
    return path


def load_runs(out: Path) -> list[dict[str, Any]]:
    runs = []
    for path in sorted((Path(out) / "runs").glob("*.json")):
        with contextlib.suppress(ValueError, OSError):
            runs.append(json.loads(path.read_text()))
    return runs


# --- content --------------------------------------------------------------------------------------


@dataclasses.dataclass
class Block:
    """One piece of a section: a paragraph, a table or an image; rendered as HTML and as Markdown."""

    kind: str  # "text", "table", "image"
    text: str = ""
    header: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    png: bytes = b""
    name: str = ""


def _pct(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{100 * value:.1f}%"


def _num(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


def confusion_summary(
    confusion: np.ndarray, names: Sequence[str], top: int = 10
) -> tuple[list[tuple[str, str, str, str]], list[tuple[str, str, str, str]]]:
    """The `top` most confused (true, predicted) pairs, and the `top` classes with the lowest accuracy."""
    confusion = np.asarray(confusion)
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    totals = confusion.sum(axis=1)
    order = np.argsort(-off, axis=None, kind="stable")[:top]
    pairs = []
    for flat in order:
        true, predicted = divmod(int(flat), confusion.shape[1])
        if off[true, predicted] == 0:
            break
        share = off[true, predicted] / totals[true] if totals[true] else 0.0
        pairs.append((str(names[true]), str(names[predicted]), str(int(off[true, predicted])), _pct(share)))
    accuracy = np.where(totals > 0, np.diag(confusion) / np.maximum(totals, 1), np.nan)
    worst = [c for c in np.argsort(accuracy, kind="stable") if totals[c] > 0][:top]
    classes = [(str(names[c]), str(int(totals[c])), str(int(confusion[c, c])), _pct(accuracy[c])) for c in worst]
    return pairs, classes


def build_sections(
    out: Path,
    experiment: Experiment,
    data: FlowersData,
    preprocess: Callable[[Any, bool], Any],
    parts: Sequence[np.ndarray],
) -> dict[str, list[Block]]:
    split = experiment.split
    sections: dict[str, list[Block]] = {}
    sections["data"] = [
        Block(
            "text",
            f"{experiment.data_origin}: {split['images']:,} images of {split['classes']} classes, re-split per class "
            "(stratified) into 50% train, 25% validation and 25% test with split_indices(labels, seed=0); "
            "any split the source ships is ignored.",
        ),
        Block(
            "table",
            header=("split", "images", "share", "images per class (min–max)"),
            rows=tuple(
                (
                    name,
                    f"{split[name]['images']:,}",
                    _pct(split[name]["images"] / max(split["images"], 1)),
                    f"{split[name]['per_class_min']}–{split[name]['per_class_max']}",
                )
                for name in SPLIT_NAMES
            ),
        ),
    ]
    sections["samples"] = [
        Block("text", "One training image per class, as stored (before preprocessing)."),
        Block("image", png=samples_figure(data, parts), name="samples"),
    ]
    black = _viewable_range(preprocess)
    sections["preprocessing"] = [
        Block(
            "text",
            "Each image is resized so that its shorter side is 256 pixels (aspect ratio kept), then cropped to 224x224: "
            "a random crop (and random horizontal flip, if preprocess does it) for training, the centre crop for validation and test. "
            f"Pixel values are then scaled as the backbone expects: black becomes {black[0]}, white becomes {black[1]} (per channel).",
        ),
        Block("image", png=preprocessing_figure(data, int(np.asarray(parts[0])[0]), preprocess), name="preprocessing"),
    ]
    total = experiment.trainable_params + experiment.frozen_params
    sections["model"] = [
        Block(
            "text",
            f"Backbone: {experiment.backbone} from keras.applications (include_top=False, weights={experiment.weights}), frozen and run in "
            f"inference mode; it gives F = {experiment.feature_dim:,} features per image. Head: {' -> '.join(experiment.head)}.",
        ),
        Block(
            "table",
            header=("parameters", "count", "share"),
            rows=(
                (
                    "trainable (the head)",
                    f"{experiment.trainable_params:,}",
                    _pct(experiment.trainable_params / max(total, 1)),
                ),
                (
                    "frozen (the backbone)",
                    f"{experiment.frozen_params:,}",
                    _pct(experiment.frozen_params / max(total, 1)),
                ),
                ("total", f"{total:,}", "100.0%"),
            ),
        ),
        Block(
            "text",
            f"Expected trainable parameters: 256 x (F + 1) + 257 x classes = 256 x {experiment.feature_dim + 1:,} + 257 x {len(experiment.class_names)} = "
            f"{256 * (experiment.feature_dim + 1) + 257 * len(experiment.class_names):,}.",
        ),
    ]
    curves = experiment.curves
    epochs = len(curves.get("test_accuracy", []))
    sections["curves"] = [
        Block(
            "text",
            f"Trained for {experiment.epochs} epochs (batch size {experiment.batch_size}, tier '{experiment.tier}'). Train figures are "
            "the running means Keras reports during each epoch (random crops); validation and test are evaluated on centre crops after each epoch.",
        ),
        Block("image", png=curves_figure(curves), name="curves"),
        Block(
            "table",
            header=(
                "epoch",
                "train loss",
                "train acc.",
                "val. loss",
                "val. acc.",
                "test loss",
                "test acc.",
                "test top-5",
            ),
            rows=tuple(
                (
                    str(e + 1),
                    _num(curves["train_loss"][e]),
                    _pct(curves["train_accuracy"][e]),
                    _num(curves["val_loss"][e]),
                    _pct(curves["val_accuracy"][e]),
                    _num(curves["test_loss"][e]),
                    _pct(curves["test_accuracy"][e]),
                    _pct(curves["test_top5"][e]),
                )
                for e in range(epochs)
            ),
        ),
    ]
    sections["results"] = [
        Block(
            "table",
            header=("measure", "value"),
            rows=(
                ("test accuracy (top-1)", _pct(experiment.test_accuracy)),
                ("test top-5 accuracy", _pct(experiment.test_top5)),
                ("test images", f"{split['test']['images']:,}"),
                ("run time (split, training, evaluation)", f"{experiment.seconds:.0f} s"),
            ),
        ),
    ]
    pairs, worst = confusion_summary(experiment.confusion, experiment.class_names)
    sections["confusion"] = [
        Block(
            "text",
            "The ten most frequent mistakes on the test set (true class taken for another):"
            if pairs
            else "No test image was misclassified.",
        ),
        Block("table", header=("true class", "predicted as", "images", "share of the true class"), rows=tuple(pairs)),
        Block("text", "Per-class test accuracy of the worst classes:"),
        Block("table", header=("class", "test images", "correct", "accuracy"), rows=tuple(worst)),
    ]
    runs = load_runs(out) or [experiment.to_dict()]
    sections["comparison"] = [
        Block(
            "text",
            "Every backbone run into this report folder (one row per backbone and tier; rerun with another backbone to add a row).",
        ),
        Block(
            "table",
            header=(
                "backbone",
                "tier",
                "weights",
                "epochs",
                "trainable params",
                "frozen params",
                "val. acc.",
                "test acc.",
                "test top-5",
                "time",
            ),
            rows=tuple(
                (
                    r["backbone"],
                    r["tier"],
                    Path(str(r["weights"])).name,
                    str(r["epochs"]),
                    f"{r['trainable_params']:,}",
                    f"{r['frozen_params']:,}",
                    _pct(r["curves"]["val_accuracy"][-1]) if r["curves"].get("val_accuracy") else "n/a",
                    _pct(r["test_accuracy"]),
                    _pct(r["test_top5"]),
                    f"{r['seconds']:.0f} s",
                )
                for r in sorted(runs, key=lambda r: -r["test_accuracy"])
            ),
        ),
    ]
    if experiment.notes:
        sections["comparison"].append(Block("text", "Notes: " + " ".join(experiment.notes)))
    return sections


def _viewable_range(preprocess: Callable[[Any, bool], Any]) -> tuple[str, str]:
    import keras

    values = []
    for level in (0, 255):
        out = np.asarray(
            keras.ops.convert_to_numpy(preprocess(np.full((256, 256, 3), level, np.uint8), False)), dtype=np.float64
        )
        values.append("(" + ", ".join(f"{v:.3g}" for v in out.mean(axis=(0, 1))) + ")")
    return values[0], values[1]


# --- rendering ------------------------------------------------------------------------------------

STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 1080px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; } th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; height: auto; } .meta { color: #666; }
"""
CHECK_SCRIPT = (
    "<script>window.addEventListener('load',function(){var i=Array.prototype.slice.call(document.images);"
    "document.body.setAttribute('data-images-loaded',i.filter(function(x){return x.complete&&x.naturalWidth>0;}).length+'/'+i.length);});</script>"
)


def render_html(title: str, subtitle: str, sections: Mapping[str, list[Block]]) -> str:
    parts = [
        f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
    ]
    parts.append(f"<h1>{html.escape(title)}</h1><p class='meta'>{html.escape(subtitle)}</p>")
    parts.append(
        "<nav><ol>"
        + "".join(f"<li><a href='#{key}'>{html.escape(heading)}</a></li>" for key, heading in SECTIONS)
        + "</ol></nav>"
    )
    for key, heading in SECTIONS:
        parts.append(f"<section id='{key}'><h2>{html.escape(heading)}</h2>")
        for block in sections.get(key, []):
            if block.kind == "text":
                parts.append(f"<p>{html.escape(block.text)}</p>")
            elif block.kind == "table" and block.rows:
                head = "".join(f"<th>{html.escape(h)}</th>" for h in block.header)
                body = "".join(
                    "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in block.rows
                )
                parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif block.kind == "image":
                data = base64.b64encode(block.png).decode("ascii")
                parts.append(
                    f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(block.name)}' data-figure='{html.escape(block.name)}'></figure>"
                )
        parts.append("</section>")
    parts.append(CHECK_SCRIPT + "</body></html>\n")
    return "\n".join(parts)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(title: str, subtitle: str, sections: Mapping[str, list[Block]], images: Path) -> str:
    """The same content as the HTML; figures are written as PNG files next to it."""
    lines = [f"# {title}", "", f"_{subtitle}_", ""]
    images.mkdir(parents=True, exist_ok=True)
    for key, heading in SECTIONS:
        lines += [f"## {heading}", ""]
        for block in sections.get(key, []):
            if block.kind == "text":
                lines += [block.text, ""]
            elif block.kind == "table" and block.rows:
                lines.append("| " + " | ".join(_md_cell(h) for h in block.header) + " |")
                lines.append("|" + "|".join("---" for _ in block.header) + "|")
                lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
                lines.append("")
            elif block.kind == "image":
                (images / f"{block.name}.png").write_bytes(block.png)
                lines += [f"![{block.name}]({images.name}/{block.name}.png)", ""]
    return "\n".join(lines)


def write_report(
    out: Path,
    experiment: Experiment,
    data: FlowersData,
    preprocess: Callable[[Any, bool], Any],
    parts: Sequence[np.ndarray],
) -> tuple[Path, Path]:
    """Write OUT/report.html (self-contained) and OUT/report.md (+ OUT/images/*.png)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sections = build_sections(out, experiment, data, preprocess, parts)
    title = (
        "Transfer learning on the Oxford 102 flowers"
        if data.kind != "synthetic"
        else "Transfer learning (quick tier, generated flowers)"
    )
    subtitle = (
        f"{experiment.backbone}, {experiment.tier} tier, weights={experiment.weights}: test accuracy {_pct(experiment.test_accuracy)}, "
        f"top-5 {_pct(experiment.test_top5)}; generated {datetime.datetime.now():%Y-%m-%d %H:%M}."
    )
    html_path, md_path = out / "report.html", out / "report.md"
    html_path.write_text(render_html(title, subtitle, sections), encoding="utf-8")
    md_path.write_text(render_markdown(title, subtitle, sections, out / "images"), encoding="utf-8")
    return html_path, md_path
