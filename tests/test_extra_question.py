"""Adding a question is one module, a stub, a reference and one registry line (the README's recipe).

The test follows the recipe on a copy of the package: it writes `q8_conv_size`, a small
question of its own, registers it with one line, and sees it in `grader list`, `grader
check` (sandboxed), the notebook API, `grader nbgrader build` and `grader batch`. Nothing
else in the copy changes, so no generic module can be naming the questions it knows.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

QUESTION_MODULE = '''"""q8 - the output size of a convolution (a question added by the test of the README's recipe)."""

from __future__ import annotations

from ..checks import Check, CheckFailed, Context, Question, describe_call

FUNCTION = "conv_output_size"
CASES = ((28, 5, 1, "valid"), (28, 5, 1, "same"), (224, 11, 4, "valid"))
HIDDEN_CASES = ((227, 11, 4, "valid"), (13, 3, 2, "same"))


def _compare(ctx: Context, cases) -> str:
    for case in cases:
        expected = ctx.reference_call(FUNCTION, *case)
        value = ctx.call(FUNCTION, *case)
        if value != expected:
            raise CheckFailed(f"`{describe_call(FUNCTION, case)}` returned {value!r}, expected {expected}.")
    return f"{len(cases)} cases right"


def public_cases(ctx: Context) -> str:
    return _compare(ctx, CASES)


def hidden_cases(ctx: Context) -> str:
    return _compare(ctx, HIDDEN_CASES)


QUESTION = Question(
    id="q8",
    title="Output size of a convolution",
    module="q8_conv_size",
    names=(FUNCTION,),
    checks=(
        Check("conv_output_size on the course's layers", 2, public_cases),
        Check("conv_output_size on other layers", 1, hidden_cases, hidden=True),
    ),
)
'''

STUB = '''"""Q8 - output size of a convolution.

Return the spatial output size of a convolution of `kernel` with `stride` over `size` pixels.
"""


def conv_output_size(size, kernel, stride=1, padding="valid"):
    raise NotImplementedError()
'''

REFERENCE = '''"""Q8 - output size of a convolution.

Return the spatial output size of a convolution of `kernel` with `stride` over `size` pixels.
"""

import math


def conv_output_size(size, kernel, stride=1, padding="valid"):
    if padding == "same":
        return math.ceil(size / stride)
    return (size - kernel) // stride + 1
'''

WRONG = REFERENCE.replace("(size - kernel) // stride + 1", "(size - kernel) // stride")


@pytest.fixture(scope="module")
def course_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the checkout with q8 added by the recipe: module, stub, reference, one registry line."""
    root = tmp_path_factory.mktemp("course-with-q8")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("grader", "exercises", "solutions"):
        shutil.copytree(REPO / folder, root / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE", "datasets/fashion-mnist.sha256"):  # the student package's
        (root / name).parent.mkdir(exist_ok=True)
        shutil.copy2(REPO / name, root / name)
    (root / "grader" / "questions" / "q8_conv_size.py").write_text(QUESTION_MODULE)
    (root / "exercises" / "q8_conv_size.py").write_text(STUB)
    (root / "solutions" / "q8_conv_size.py").write_text(REFERENCE)
    registry = root / "grader" / "questions" / "__init__.py"
    text = registry.read_text()
    registered = re.sub(r"^(MODULES = \(.*?)(\)\n)", r"\1    q8_conv_size,\n\2", text, count=1, flags=re.S | re.M)
    registered = re.sub(r"^(from \. import .*)$", r"\1\nfrom . import q8_conv_size", registered, count=1, flags=re.M)
    assert registered.count("q8_conv_size") == 2, (
        "the registry's shape changed: update the README's recipe and this test"
    )
    registry.write_text(registered)
    return root


def run(root: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.pop("CNN_GRADER_SOLUTIONS", None)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd or root, env=env, capture_output=True, text=True, timeout=900
    )


def test_the_copy_imports_its_own_grader(course_copy: Path) -> None:
    done = run(course_copy, "-c", "import grader; print(grader.__file__)")
    assert done.stdout.strip() == str(course_copy / "grader" / "__init__.py")


def test_list_shows_the_new_question(course_copy: Path) -> None:
    done = run(course_copy, "-m", "grader", "list")
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("q8"))
    assert "3 points" in line and "q8_conv_size.py" in line


def test_check_grades_reference_stub_and_a_mistake_in_the_sandbox(course_copy: Path, tmp_path: Path) -> None:
    done = run(course_copy, "-m", "grader", "check", "q8", "--solutions", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["score"] == report["max_score"] == 3
    assert report["meta"]["isolation"]  # graded in the sandboxed child

    stub = json.loads(run(course_copy, "-m", "grader", "check", "q8", "--json").stdout)
    assert stub["score"] == 0 and all("not implemented yet" in c["message"] for c in stub["checks"])

    (tmp_path / "q8_conv_size.py").write_text(WRONG)
    wrong = json.loads(run(course_copy, "-m", "grader", "check", "q8", "--path", str(tmp_path), "--json").stdout)
    failed = {c["name"]: c["message"] for c in wrong["checks"] if not c["passed"]}
    assert set(failed) == {"conv_output_size on the course's layers", "conv_output_size on other layers"}
    assert "returned 23, expected 24" in failed["conv_output_size on the course's layers"]


def test_notebook_api_grades_the_new_question(course_copy: Path) -> None:
    code = (
        REFERENCE + "\nfrom grader.notebook import check\nprint('SCORE', check('q8', conv_output_size, hidden=True))\n"
    )
    done = run(course_copy, "-c", code)
    assert done.returncode == 0, done.stderr
    assert "SCORE 3.0" in done.stdout


def test_nbgrader_build_and_batch_include_the_new_question(course_copy: Path, tmp_path: Path) -> None:
    course = tmp_path / "course"
    done = run(course_copy, "-m", "grader", "nbgrader", "build", str(course), "-q", "q1", "-q", "q8")
    assert done.returncode == 0, done.stderr
    # the student package built beside the notebook grades q8's public checks from data, never the hidden ones
    (wheel,) = (course / "source" / "cnn").glob("cnn_grader-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        released = json.loads(archive.read("grader/data/reference.json"))
    used = {label for entry in released["calls"].values() for label in entry["checks"]}
    assert "q8: conv_output_size on the course's layers" in used
    assert not [label for label in used if label.startswith("q8: conv_output_size on other layers")]
    assert len([key for key in released["calls"] if "conv_output_size" in key]) == 3  # the public cases only
    notebook = json.loads((course / "source" / "cnn" / "cnn.ipynb").read_text())
    ids = [cell["metadata"].get("nbgrader", {}).get("grade_id") for cell in notebook["cells"]]
    assert {"q8_task", "q8_solution", "q8_test"} <= set(ids)
    test_cell = notebook["cells"][ids.index("q8_test")]
    assert test_cell["metadata"]["nbgrader"]["points"] == 3
    assert 'check("q8")' in "".join(test_cell["source"])

    submissions = tmp_path / "submissions"
    for student, source in (("alice", REFERENCE), ("bob", WRONG), ("carol", STUB)):
        (submissions / student).mkdir(parents=True)
        (submissions / student / "q8_conv_size.py").write_text(source)
    out = tmp_path / "out"
    done = run(course_copy, "-m", "grader", "batch", str(submissions), "-q", "q8", "--out", str(out), "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    with open(out / "grades.csv", newline="") as handle:
        rows = {row["student_id"]: row for row in csv.DictReader(handle)}
    assert {student: float(row["q8"]) for student, row in rows.items()} == {"alice": 3.0, "bob": 0.0, "carol": 0.0}
    assert "q8 Output size of a convolution: 0 / 3" in (out / "feedback" / "bob.md").read_text()
