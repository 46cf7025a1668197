"""The q7 report: `grader report q7` end to end on generated data, its content, and its rendering in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from grader.cli import main
from grader.flowers import report as transfer_report
from grader.flowers.experiment import NAMES, Experiment
from grader.flowers.synthetic import make_synthetic_flowers, synthetic_flowers
from grader.grading import reference_namespace
from grader.questions import get_question

FIGURES = ("samples", "preprocessing", "curves")


@pytest.fixture(scope="module")
def report_dir() -> Path:
    """One quick-tier report of the reference solution, shared by the tests below."""
    out = Path(tempfile.mkdtemp(prefix="q7-report-test-"))
    result = CliRunner().invoke(main, ["report", "q7", "--solutions", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "epoch 3:" in result.output
    return out


def test_report_writes_html_markdown_and_the_run(report_dir):
    page = (report_dir / "report.html").read_text()
    for key, heading in transfer_report.SECTIONS:
        assert f"<section id='{key}'><h2>{heading}</h2>" in page
    assert page.count("src='data:image/png;base64,") == len(FIGURES)
    assert "http://" not in page and "https://" not in page  # self-contained
    markdown = (report_dir / "report.md").read_text()
    for _, heading in transfer_report.SECTIONS:
        assert f"## {heading}" in markdown
    for name in FIGURES:
        assert f"![{name}](images/{name}.png)" in markdown
        assert (report_dir / "images" / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    run = json.loads(next((report_dir / "runs").glob("*.json")).read_text())
    assert run["backbone"] == "efficientnetb0" and run["tier"] == "quick"
    assert len(run["curves"]["test_accuracy"]) == 3 and len(run["curves"]["val_loss"]) == 3


def test_report_content_matches_the_run(report_dir):
    markdown = (report_dir / "report.md").read_text()
    run = json.loads(next((report_dir / "runs").glob("*.json")).read_text())
    assert "| train | 16 | 50.0% | 4–4 |" in markdown and "| test | 8 | 25.0% | 2–2 |" in markdown
    assert f"| trainable (the head) | {run['trainable_params']:,} |" in markdown
    assert "256 x 1,281 + 257 x 4 = 328,964" in markdown
    assert f"| test accuracy (top-1) | {100 * run['test_accuracy']:.1f}% |" in markdown
    epoch_rows = [line for line in markdown.splitlines() if re.match(r"\| [123] \| \d", line)]
    assert len(epoch_rows) == 3
    assert "Per-class test accuracy of the worst classes" in markdown


def test_comparison_lists_every_backbone_run(report_dir, tmp_path):
    out = tmp_path / "report"
    shutil.copytree(report_dir, out)
    run = json.loads(next((out / "runs").glob("*.json")).read_text())
    other = run | {"backbone": "resnet50", "test_accuracy": 0.9, "test_top5": 0.98, "trainable_params": 550_758}
    (out / "runs" / "resnet50-quick.json").write_text(json.dumps(other))
    data = synthetic_flowers(tmp_path / "flowers")
    reference = reference_namespace(get_question("q7"))
    parts = reference["split_indices"](data.labels, seed=0)
    experiment = Experiment.from_dict({k: v for k, v in run.items() if k != "finished"})
    _, markdown = transfer_report.write_report(out, experiment, data, reference["preprocess"], parts)
    table = markdown.read_text().split("## Backbones compared")[1]
    rows = [line for line in table.splitlines() if line.startswith("| resnet50") or line.startswith("| efficientnetb0")]
    assert len(rows) == 2 and rows[0].startswith("| resnet50 | quick")  # best first
    assert "| 550,758 |" in rows[0] and "| 90.0% | 98.0% |" in rows[0]


def test_confusion_summary_ranks_pairs_and_worst_classes():
    confusion = np.array([[5, 3, 0], [1, 8, 0], [0, 4, 2]])
    pairs, worst = transfer_report.confusion_summary(confusion, ["a", "b", "c"])
    assert pairs[0] == ("c", "b", "4", "66.7%") and pairs[1] == ("a", "b", "3", "37.5%") and len(pairs) == 3
    assert [row[0] for row in worst] == ["c", "a", "b"]


def test_report_refuses_a_leaking_split(tmp_path):
    reference = dict(reference_namespace(get_question("q7")))

    def split_indices(labels, seed=0):
        train, val, test = reference["split_indices"](labels, seed)
        return train, val, np.concatenate([test, train[:1]])

    functions = {name: reference[name] for name in NAMES} | {"split_indices": split_indices}
    with pytest.raises(transfer_report.ReportError, match="split leaks"):
        transfer_report.report(
            functions, out=tmp_path, data=str(make_synthetic_flowers(tmp_path / "f", num_classes=2, per_class=4))
        )


def test_report_command_only_for_q7():
    result = CliRunner().invoke(main, ["report", "q1", "--solutions"])
    assert result.exit_code != 0 and "q1 has no report (questions with one: q7)" in result.output


def test_report_errors_reach_the_user_without_a_traceback(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(
        main, ["report", "q7", "--solutions", "--out", str(tmp_path / "r"), "--data", str(empty)]
    )
    assert (
        result.exit_code == 3  # the grader could not do its job (the data are missing): not a failed check
        and "The Oxford 102 flowers were not found" in result.output
        and "Traceback" not in result.output
    )


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_report_renders_in_headless_chromium(report_dir, tmp_path):
    browser = chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("headless Chromium is needed for this test: install.sh installs Debian's chromium package")
        pytest.skip("Chromium is not installed (install.sh installs it); CI runs this test")
    page = (report_dir / "report.html").resolve().as_uri()
    flags = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=10000",
    ]
    dom = subprocess.run([*flags, "--dump-dom", page], capture_output=True, text=True, timeout=120, check=True).stdout
    for key, heading in transfer_report.SECTIONS:
        assert re.search(rf"<section id=\"{key}\"><h2>{re.escape(heading)}</h2>", dom), (
            f"section {key} missing in the rendered page"
        )
    loaded = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom)
    assert loaded, "the page's load handler did not run"
    assert loaded.group(1) == loaded.group(2) == str(len(FIGURES)), f"images decoded: {loaded.group(0)}"
    for name in FIGURES:
        assert f'data-figure="{name}"' in dom
    shot = tmp_path / "report.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1200,2400", page], capture_output=True, timeout=120, check=True
    )
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 20_000
