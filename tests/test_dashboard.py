"""The class dashboard: a generated class of 42 graded by `run_batch`, then its figures, misconceptions,
similar pairs, rendering in headless Chromium, `grader dashboard` and the LMS exports."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import REPO

from grader.batch import run_batch
from grader.batch.lms import CANVAS_IDENTITY, MOODLE_IDENTITY
from grader.dashboard import similarity
from grader.options import Limits
from grader.paths import exercises_dir, solutions_dir

QUESTIONS = ["q1", "q5", "q6"]
LIMITS = Limits(wall_s=40, memory_mb=2048, processes=96)
DUEDATE = "2025-03-01 12:00:00"
FILES = {"q1": "q1_lenet.py", "q5": "q5_params.py", "q6": "q6_dropout.py"}
REFERENCE = {q: (solutions_dir() / name).read_text() for q, name in FILES.items()}
STUB = {q: (exercises_dir() / name).read_text() for q, name in FILES.items()}


def edited(question: str, old: str, new: str) -> str:
    assert old in REFERENCE[question], old
    return REFERENCE[question].replace(old, new)


# Planted mistakes: the diagnosis id each one must carry, and its source.
VALID_PADDING = edited("q1", 'padding="same", ', "")
HARD_CODED = edited("q1", 'layers.Dense(num_classes, activation="softmax"', 'layers.Dense(10, activation="softmax"')
NO_BIAS = edited(
    "q5",
    "kh * kw * in_channels * out_channels + (out_channels if use_bias else 0)",
    "kh * kw * in_channels * out_channels",
)
COUNT_PARAMS = edited(
    "q5",
    "    return sum(math.prod(weight.shape) for layer in _leaf_layers(model) for weight in layer.weights)",
    "    return int(model.count_params())",
)
PERCENT = edited(
    "q6",
    "    return weights_in(model, dense_only=True) / weights_in(model, dense_only=False)",
    "    return 100 * weights_in(model, dense_only=True) / weights_in(model, dense_only=False)",
)
COMPLEMENT = edited(
    "q6",
    "    return weights_in(model, dense_only=True) / weights_in(model, dense_only=False)",
    "    return 1 - weights_in(model, dense_only=True) / weights_in(model, dense_only=False)",
)

OWN_LENET = '''import keras
from keras import layers


def build_lenet5(input_shape=(28, 28, 1), num_classes=10):
    """LeNet-5 in the functional API, padded to 32x32 as in the paper."""
    inputs = keras.Input(shape=input_shape)
    x = layers.ZeroPadding2D(padding=2)(inputs)
    x = layers.Conv2D(filters=6, kernel_size=(5, 5), activation="tanh")(x)
    x = layers.AveragePooling2D(pool_size=(2, 2), strides=2)(x)
    x = layers.Conv2D(filters=16, kernel_size=(5, 5), activation="tanh")(x)
    x = layers.AveragePooling2D(pool_size=(2, 2), strides=2)(x)
    x = layers.Conv2D(filters=120, kernel_size=(5, 5), activation="tanh")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(units=84, activation="tanh")(x)
    outputs = layers.Dense(units=num_classes, activation="softmax")(x)
    model = keras.Model(inputs=inputs, outputs=outputs, name="my_lenet")
    return model
'''
# The same code with its variables renamed, reformatted, commented: the near-copy.
COPIED_LENET = '''import keras
from keras import layers

# Exercise 1a


def build_lenet5(input_shape=(28, 28, 1), num_classes=10):
    """Returns my LeNet."""
    img = keras.Input(shape = input_shape)
    h = layers.ZeroPadding2D(padding = 2)(img)  # 28 -> 32
    h = layers.Conv2D(filters = 6, kernel_size = (5, 5),
                      activation = 'tanh')(h)
    h = layers.AveragePooling2D(pool_size = (2, 2), strides = 2)(h)
    h = layers.Conv2D(filters = 16, kernel_size = (5, 5), activation = 'tanh')(h)
    h = layers.AveragePooling2D(pool_size = (2, 2), strides = 2)(h)

    h = layers.Conv2D(filters = 120, kernel_size = (5, 5), activation = 'tanh')(h)  # C5
    h = layers.Flatten()(h)
    h = layers.Dense(units = 84, activation = 'tanh')(h)
    logits = layers.Dense(units = num_classes,
                          activation = 'softmax')(h)
    net = keras.Model(inputs = img, outputs = logits, name = 'my_lenet')
    return net
'''
# Two honest students who wrote their own LeNet differently.
OWN_SEQUENTIAL = """import keras
from keras import layers


def build_lenet5(input_shape=(28, 28, 1), num_classes=10):
    model = keras.Sequential(name="lenet")
    model.add(keras.Input(input_shape))
    model.add(layers.Conv2D(6, (5, 5), padding="same", activation="relu"))
    model.add(layers.MaxPooling2D())
    model.add(layers.Conv2D(16, (5, 5), activation="relu"))
    model.add(layers.MaxPooling2D())
    model.add(layers.Flatten())
    model.add(layers.Dense(120, activation="relu"))
    model.add(layers.Dense(84, activation="relu"))
    model.add(layers.Dense(num_classes, activation="softmax"))
    return model
"""
OWN_LOOPS = """import keras
from keras import layers


def build_lenet5(input_shape=(28, 28, 1), num_classes=10):
    stack = [keras.Input(shape=input_shape)]
    for filters, pad in ((6, "same"), (16, "valid")):
        stack.append(layers.Conv2D(filters, 5, padding=pad, activation="relu"))
        stack.append(layers.MaxPooling2D(2))
    stack.append(layers.Flatten())
    for units in (120, 84):
        stack.append(layers.Dense(units, activation="relu"))
    stack.append(layers.Dense(num_classes, activation="softmax"))
    return keras.Sequential(stack)
"""

# student -> ({question: source}, planted diagnosis ids)
CLASS: dict[str, tuple[dict[str, str], set[str]]] = {}
for i in range(10):
    CLASS[f"a{i:02d}-reference"] = ({}, set())
for i in range(4):
    CLASS[f"b{i:02d}-stub"] = (dict(STUB), set())
for i in range(5):
    CLASS[f"c{i:02d}-valid-padding"] = ({"q1": VALID_PADDING}, {"c1-valid-padding"})
for i in range(5):
    CLASS[f"d{i:02d}-percent"] = ({"q6": PERCENT}, {"percentage-not-fraction"})
for i in range(2):
    CLASS[f"e{i:02d}-padding-and-percent"] = (
        {"q1": VALID_PADDING, "q6": PERCENT},
        {"c1-valid-padding", "percentage-not-fraction"},
    )
for i in range(4):
    CLASS[f"f{i:02d}-no-bias"] = ({"q5": NO_BIAS}, {"biases-omitted"})
for i in range(3):
    CLASS[f"g{i:02d}-count-params"] = ({"q5": COUNT_PARAMS}, {"count-params-called"})
for i in range(3):
    CLASS[f"h{i:02d}-hard-coded"] = ({"q1": HARD_CODED}, {"num-classes-hard-coded"})
for i in range(2):
    CLASS[f"i{i:02d}-complement"] = ({"q6": COMPLEMENT}, {"complement-returned"})
CLASS["j00-own"] = ({"q1": OWN_LENET}, set())
CLASS["j01-copy"] = ({"q1": COPIED_LENET}, set())
CLASS["k00-sequential"] = ({"q1": OWN_SEQUENTIAL}, set())
CLASS["k01-loops"] = ({"q1": OWN_LOOPS}, set())
LATE = {"a09-reference", "d04-percent", "k01-loops"}
PLANTED = [
    "c1-valid-padding",
    "percentage-not-fraction",
    "biases-omitted",
    "count-params-called",
    "num-classes-hard-coded",
    "complement-returned",
]


def write_class(root: Path) -> None:
    for student, (overrides, _) in CLASS.items():
        folder = root / student
        folder.mkdir(parents=True)
        for q, name in FILES.items():
            (folder / name).write_text(overrides.get(q, REFERENCE[q]))
        day = "2025-03-02 09:00:00" if student in LATE else "2025-02-28 18:30:00"
        (folder / "timestamp.txt").write_text(day)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    assert len(CLASS) >= 40
    root = tmp_path_factory.mktemp("dashboard-class")
    subs, out = root / "submissions", root / "out"
    write_class(subs)
    report = run_batch(subs, out_dir=out, questions=QUESTIONS, workers=2, limits=LIMITS, duedate=DUEDATE)
    assert sorted(report.graded) == sorted(CLASS)
    return out


class Tables(HTMLParser):
    """Every <table> of a page as rows of cell texts, under the id of the <h2> before it."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.section = ""
        self.cell: list[str] | None = None
        self.row: list[str] | None = None
        self.in_h2 = False

    def handle_starttag(self, tag, attrs):
        if tag == "h2":
            self.section, self.in_h2 = dict(attrs).get("id", ""), True
        elif tag == "tr":
            self.row = []
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if tag == "h2":
            self.in_h2 = False
        elif tag in ("td", "th") and self.cell is not None and self.row is not None:
            self.row.append("".join(self.cell).strip())
            self.cell = None
        elif tag == "tr" and self.row is not None:
            self.tables.setdefault(self.section, []).append(self.row)
            self.row = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def page_tables(out: Path) -> dict[str, list[list[str]]]:
    parser = Tables()
    parser.feed((out / "dashboard.html").read_text())
    return parser.tables


def store_rows(out: Path) -> list[tuple[str, str, float, list[dict]]]:
    with sqlite3.connect(out / "results.sqlite") as db:
        return [
            (s, q, score, json.loads(checks))
            for s, q, score, checks in db.execute("SELECT student, question, score, checks FROM results")
        ]


def test_the_dashboards_figures_match_the_store(graded):
    rows = store_rows(graded)
    tables = page_tables(graded)
    stats = {row[0].split(" ")[0]: row for row in tables["scores"][1:]}
    totals: dict[str, float] = {}
    for q in QUESTIONS:
        scores = sorted(score for _, question, score, _ in rows if question == q)
        q1, _, q3 = statistics.quantiles(scores, n=4, method="inclusive")
        expected = [
            len(scores),
            round(statistics.fmean(scores), 2),
            statistics.median(scores),
            round(q1, 2),
            round(q3, 2),
            min(scores),
            max(scores),
        ]
        assert [float(v) for v in stats[q][2:9]] == pytest.approx([float(v) for v in expected])
    for student, _, score, _ in rows:
        totals[student] = totals.get(student, 0.0) + score
    assert float(stats["total"][2]) == len(CLASS)
    assert float(stats["total"][3]) == pytest.approx(round(statistics.fmean(totals.values()), 2))
    # every check's pass count, as the page shows it and as summary.json holds it
    passes: dict[tuple[str, str], list[bool]] = {}
    for _, q, _, checks in rows:
        for check in checks:
            passes.setdefault((q, check["name"]), []).append(check["passed"])
    shown = {(r[0], r[1]): r[3] for r in tables["checks"][1:]}
    assert shown == {key: f"{sum(v)}/{len(v)}" for key, v in passes.items()}
    rates = [float(r[2].rstrip("%")) for r in tables["checks"][1:]]
    assert rates == sorted(rates)  # hardest first
    summary = json.loads((graded / "summary.json").read_text())
    assert {(c["question"], c["check"]): c["passed"] for c in summary["checks"]} == {
        k: sum(v) for k, v in passes.items()
    }
    assert summary["students"] == len(CLASS) and summary["mean"] == pytest.approx(
        round(statistics.fmean(totals.values()), 2)
    )
    assert all("discrimination" in c for c in summary["checks"])
    # per-student table: scores and late flags
    students = {r[0]: r for r in tables["students"][1:]}
    assert set(students) == set(CLASS)
    header = tables["students"][0]
    for student, q, score, _ in rows:
        assert float(students[student][header.index(q)]) == score
    assert {s for s, r in students.items() if r[header.index("late")] == "late"} == LATE


def test_the_misconception_table_counts_each_planted_mistake_exactly(graded):
    rows = {r[0]: r for r in page_tables(graded)["misconceptions"][1:]}
    for diagnosis in PLANTED:
        planted = sorted(s for s, (_, ids) in CLASS.items() if diagnosis in ids)
        assert diagnosis in rows, f"{diagnosis} not in the table"
        assert int(rows[diagnosis][2]) == len(planted), diagnosis
        assert rows[diagnosis][4].split(", ") == planted
    stubs = sorted(s for s in CLASS if s.endswith("-stub"))
    assert rows["not-implemented"][4].split(", ") == stubs
    summary = json.loads((graded / "summary.json").read_text())
    by_id = {m["id"]: m for m in summary["misconceptions"]}
    assert {d: by_id[d]["count"] for d in PLANTED} == {d: sum(d in ids for _, ids in CLASS.values()) for d in PLANTED}
    html = (graded / "dashboard.html").read_text()
    assert 'href="feedback/c00-valid-padding.md"' in html and (graded / "feedback" / "c00-valid-padding.md").is_file()


def test_the_similar_pairs_are_the_near_copies_and_no_honest_pair(graded):
    html = (graded / "dashboard.html").read_text()
    pairs = re.findall(r"<summary>(q\d): (\S+) and (\S+), (\d+)% similar", html)
    assert [(q, a, b) for q, a, b, _ in pairs] == [("q1", "j00-own", "j01-copy")]
    assert int(pairs[0][3]) >= 90
    assert 'class="diff"' in html  # the side-by-side diff


def test_similarity_ignores_names_comments_layout_and_the_reference():
    toks = similarity.tokens
    same_docstring = COPIED_LENET.replace(
        '"""Returns my LeNet."""', '"""LeNet-5 in the functional API, padded to 32x32."""'
    )
    assert toks(OWN_LENET) == toks(same_docstring)  # names, comments, quotes, spaces and line breaks do not count
    reference_pairs = similarity.similar_pairs(
        {f"r{i}": REFERENCE["q1"] for i in range(5)} | {"s": STUB["q1"]},
        question="q1",
        reference=REFERENCE["q1"],
        stub=STUB["q1"],
    )
    assert reference_pairs == []  # copies of the reference or the stub are nobody's own code


def test_the_page_renders_in_headless_chromium_with_every_chart(graded, tmp_path):
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("chromium is not installed (install.sh installs it)")
    page = (graded / "dashboard.html").as_uri()
    flags = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}",
    ]
    dom = subprocess.run(
        [*flags, "--window-size=1400,2000", "--dump-dom", page], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert not re.search(r"Uncaught|CONSOLE\(\d+\).*(?:Error|error)", dom.stderr), dom.stderr[-2000:]
    charts = dom.stdout.count('class="chart"')
    assert charts == len(QUESTIONS) + 2  # total, one per question, pass rates
    assert f'data-charts-visible="{charts}"' in dom.stdout  # the page's script ran and laid every chart out
    shot = tmp_path / "dashboard.png"
    flags[-1] = f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}"
    run = subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1400,2000", page], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0 and shot.stat().st_size > 20_000, run.stderr[-2000:]
    if os.environ.get("CNN_GRADER_UPDATE_SCREENSHOT"):
        shutil.copy(shot, REPO / "docs" / "img" / "dashboard.png")


def test_grader_dashboard_rebuilds_the_page_from_the_store_alone(graded, tmp_path):
    copy = tmp_path / "out"
    copy.mkdir()
    shutil.copy(graded / "results.sqlite", copy / "results.sqlite")
    done = subprocess.run(
        [sys.executable, "-m", "grader", "dashboard", str(copy)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rebuilt = page_tables(copy)
    original = page_tables(graded)
    assert rebuilt["misconceptions"] == original["misconceptions"] and rebuilt["checks"] == original["checks"]
    assert "j00-own and j01-copy" in (copy / "dashboard.html").read_text()


def write_roster(path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student_id", "first_name", "last_name", "email", "canvas_id", "section"])
        for i, student in enumerate(sorted(CLASS)):
            if student != "k01-loops":  # one graded student missing from the roster
                last = '=HYPERLINK("http://x")' if student == "a00-reference" else f"Last{i}"
                writer.writerow([student, f"First{i}", last, f"{student}@example.edu", str(1000 + i), "A"])


@pytest.mark.parametrize("lms", ["canvas", "moodle"])
def test_lms_export_writes_the_gradebook_each_imports(graded, tmp_path, lms):
    roster = tmp_path / "roster.csv"
    write_roster(roster)
    out = tmp_path / f"{lms}.csv"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "grader",
            "export",
            "--to",
            lms,
            str(graded),
            "--roster",
            str(roster),
            "--csv",
            str(out),
            "--assignment",
            "CNN lab",
            "--canvas-id",
            "77",
            "--per-question",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "k01-loops" in done.stderr  # not in the roster: reported
    with open(out, newline="") as handle:
        rows = list(csv.reader(handle))
    totals: dict[str, float] = {}
    for student, _, score, _ in store_rows(graded):
        totals[student] = totals.get(student, 0.0) + score
    if lms == "canvas":
        assert rows[0] == [*CANVAS_IDENTITY, "CNN lab (77)", "CNN lab q1", "CNN lab q5", "CNN lab q6"]
        assert rows[1][0].strip() == "Points Possible" and rows[1][5:] == ["23", "10", "10", "3"]
        body = {r[2]: r for r in rows[2:]}  # SIS User ID
        i = sorted(CLASS).index("c00-valid-padding")
        assert body["c00-valid-padding"][:5] == [f"Last{i}, First{i}", str(1000 + i), "c00-valid-padding", "", "A"]
        assert body["a00-reference"][0].startswith("'=HYPERLINK")  # spreadsheet-safe
        grade = 5
    else:
        assert rows[0] == [*MOODLE_IDENTITY, "CNN lab", "CNN lab q1", "CNN lab q5", "CNN lab q6"]
        body = {r[2]: r for r in rows[1:]}  # ID number
        assert body["c00-valid-padding"][3] == "c00-valid-padding@example.edu"
        assert body["a00-reference"][1].startswith("'=HYPERLINK")
        grade = 4
    assert set(body) == set(CLASS)
    assert {s: float(r[grade]) for s, r in body.items()} == totals
