"""The student package: grading from released data gives the public checks' verdicts and messages of `solutions/`.

The release records what the public checks take from the references; with `solutions/`
out of reach the grader reads that data instead. Both ways must agree, check by check, on
the stubs, the references and wrong submissions. The slow test builds the wheel with
`grader release`, installs it in a fresh virtualenv that cannot see the checkout, and grades
there.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

from grader.grading import checked_when_graded, grade_folder, solution_namespace
from grader.paths import exercises_dir, solutions_dir
from grader.questions import QUESTIONS, get_question
from grader.references import DataReferences, ReferenceUnavailable
from grader.release.package import wheel_files
from grader.release.record import record, uses_by_check

STRUCTURAL = ("q1", "q4", "q5", "q6")  # the questions graded both ways here (the others train)
NOTEBOOK_QUESTIONS = STRUCTURAL  # the runbook's first assignment
ASSIGNMENT = "cnn"
SOLUTION = {q: (solutions_dir() / get_question(q).filename).read_text() for q in STRUCTURAL}


def _variant(question: str, old: str, new: str) -> str:
    source = SOLUTION[question]
    assert old in source, old
    return source.replace(old, new)


WRONG = {
    "q1-valid-padding": ("q1", _variant("q1", 'padding="same", ', "")),
    "q1-hard-coded-classes": ("q1", _variant("q1", "layers.Dense(num_classes,", "layers.Dense(10,")),
    "q4-fixed-dropout": ("q4", _variant("q4", "layers.Dropout(dropout,", "layers.Dropout(0.5,")),
    "q5-count-params": ("q5", SOLUTION["q5"] + "\n\ndef count_parameters(model):\n    return model.count_params()\n"),
    "q6-percentage": (
        "q6",
        _variant(
            "q6", "    return weights_in(model, dense_only=True)", "    return 100 * weights_in(model, dense_only=True)"
        ),
    ),
}


@pytest.fixture(scope="module")
def recording():
    return record([get_question(q) for q in STRUCTURAL], solutions_dir(), exercises_dir(), solution_namespace)


@pytest.fixture(scope="module")
def data_file(recording, tmp_path_factory):
    path = tmp_path_factory.mktemp("release") / "reference.json"
    path.write_text(json.dumps(recording.released()))
    return path


def _report(question: str, folder: Path) -> list[tuple]:
    result = grade_folder(get_question(question), folder, include_hidden=False)
    return [(c.name, c.passed, c.points, c.message) for c in result.checks], result.meta


def _both_ways(question: str, folder: Path, data_file: Path, monkeypatch, tmp_path: Path) -> tuple:
    with_solutions, _ = _report(question, folder)
    monkeypatch.setenv("CNN_GRADER_SOLUTIONS", str(tmp_path / "no-solutions"))
    monkeypatch.setenv("CNN_GRADER_REFERENCE_DATA", str(data_file))
    from_data, meta = _report(question, folder)
    monkeypatch.delenv("CNN_GRADER_SOLUTIONS")
    return with_solutions, from_data, meta


@pytest.mark.parametrize("question", STRUCTURAL)
@pytest.mark.parametrize("which", ["stubs", "references"])
def test_stubs_and_references_grade_the_same_from_data(question, which, data_file, monkeypatch, tmp_path):
    folder = exercises_dir() if which == "stubs" else solutions_dir()
    with_solutions, from_data, meta = _both_ways(question, folder, data_file, monkeypatch, tmp_path)
    assert from_data == with_solutions
    if which == "references":
        assert all(passed for _, passed, _, _ in from_data)
    hidden = [c for c in get_question(question).checks if c.hidden]
    assert ("hidden_checks" in meta) == bool(hidden)
    if hidden:
        assert "checked when your TA grades" in meta["hidden_checks"]


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_submissions_grade_the_same_from_data(name, data_file, monkeypatch, tmp_path):
    question, source = WRONG[name]
    folder = tmp_path / "submission"
    folder.mkdir()
    (folder / get_question(question).filename).write_text(source)
    with_solutions, from_data, _ = _both_ways(question, folder, data_file, monkeypatch, tmp_path)
    assert not all(passed for _, passed, _, _ in with_solutions)  # the variant is really wrong
    assert from_data == with_solutions


def test_hidden_checks_data_is_not_released(recording):
    data = recording.released()
    hidden = {f"{q.id}: {c.name}" for q in QUESTIONS.values() for c in q.checks if c.hidden}
    public = {f"{q.id}: {c.name}" for q in QUESTIONS.values() for c in q.checks if not c.hidden}
    used = uses_by_check(data)
    assert used and set(used) <= public
    assert not set(used) & hidden
    assert recording.hidden_only(), "some reference result is used by hidden checks only (e.g. another num_classes)"
    released = set(data["calls"]) | set(data["traces"])
    assert not released & set(recording.hidden_only())
    assert recording.problems == []


def test_what_was_not_released_says_it_runs_when_the_ta_grades(tmp_path, monkeypatch):
    empty = tmp_path / "reference.json"
    empty.write_text(json.dumps({"format": 1, "calls": {}, "traces": {}}))
    with pytest.raises(ReferenceUnavailable, match="checked when your TA grades"):
        DataReferences(json.loads(empty.read_text())).call_reference("build_lenet5", (), {"num_classes": 5})
    monkeypatch.setenv("CNN_GRADER_SOLUTIONS", str(tmp_path / "no-solutions"))
    monkeypatch.setenv("CNN_GRADER_REFERENCE_DATA", str(empty))
    messages = dict((name, message) for name, _, _, message in _report("q1", solutions_dir())[0])
    assert "checked when your TA grades" in messages["layer output shapes match LeNet-5"]


def test_fallback_lenet_from_data_is_the_reference_lenet_with_the_same_weights(data_file):
    """q2/q3 train the reference LeNet-5 when the student's q1 fails: rebuilt from data, it is the same model."""
    import numpy as np

    from grader.checks import Context
    from grader.references import SolutionReferences, load_data_references
    from grader.training.lenet import fresh_lenet

    training, lenet = get_question("q2"), get_question("q1")
    weights = []
    for reference in (SolutionReferences(solution_namespace(training)), load_data_references(data_file)):
        context = Context(training, {}, reference, source=str(data_file.parent / training.filename))
        model, which = fresh_lenet(context, 3, lenet=lenet, builder="build_lenet5")
        assert which.startswith("the reference LeNet-5")
        weights.append([w.numpy() for w in model.weights])
    assert len(weights[0]) == len(weights[1]) > 0
    assert all(np.array_equal(a, b) for a, b in zip(*weights))


def _fresh_venv(root: Path) -> Path:
    """A virtualenv that sees the project's dependencies but not the checkout; its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    dependencies = subprocess.run(
        [sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # A plain path line: the checkout's editable-install hook (a .pth in that folder) is not run.
    (Path(site) / "project-dependencies.pth").write_text(dependencies + "\n")
    return python


def _run(command: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CNN_GRADER_")}
    environ.update(TF_CPP_MIN_LOG_LEVEL="3", **env)
    return subprocess.run(command, cwd=cwd, env=environ, capture_output=True, text=True, timeout=600)


@dataclasses.dataclass
class StudentMachine:
    """What a student has: a fresh virtualenv with only the wheel the TA's course hands out, and a folder."""

    python: Path
    grader: Path
    released: Path  # the assignment as nbgrader hands it out: the notebook and the wheel
    source: Path  # the TA's source notebook (where the test takes the solutions a good student writes)
    student: Path  # the student's folder: `grader init` wrote the stubs into exercises/

    def run(self, *command: str, **env: str) -> subprocess.CompletedProcess:
        return _run(list(command), self.student, **env)


@pytest.fixture(scope="module")
def student_machine(tmp_path_factory) -> StudentMachine:
    """The course built as the TA runbook builds it, and a student machine that never saw the checkout."""
    from grader.nbgrader.grade import run_nbgrader

    root = tmp_path_factory.mktemp("student-machine")
    course = root / "course"
    questions = sum((["-q", q] for q in NOTEBOOK_QUESTIONS), [])
    built = _run([sys.executable, "-m", "grader", "nbgrader", "build", str(course), *questions], REPO)
    assert built.returncode == 0 and "student package" in built.stdout, built.stdout + built.stderr
    run_nbgrader(course, "generate_assignment", ASSIGNMENT)
    released = course / "release" / ASSIGNMENT
    (wheel,) = released.glob("cnn_grader-*.whl")

    python = _fresh_venv(root / "venv")
    installed = _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)], root
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    student = root / "student"
    student.mkdir()
    machine = StudentMachine(
        python, root / "venv" / "bin" / "grader", released, course / "source" / ASSIGNMENT, student
    )
    started = machine.run(str(machine.grader), "init")
    assert started.returncode == 0, started.stdout + started.stderr
    stubs = {p.name: p.read_text() for p in exercises_dir().glob("*.py")}
    assert {p.name: p.read_text() for p in (student / "exercises").glob("*.py")} == stubs
    where = machine.run(
        str(python), "-c", "import grader, grader.paths as p; print(grader.__file__, p.solutions_available())"
    )
    assert str(root / "venv") in where.stdout and "False" in where.stdout, where.stdout + where.stderr
    return machine


@pytest.mark.slow
def test_the_wheel_holds_no_solution_and_no_hidden_data(student_machine):
    (wheel,) = student_machine.released.glob("cnn_grader-*.whl")
    names = wheel_files(wheel)
    assert "grader/data/reference.json" in names and "grader/data/exercises/q1_lenet.py" in names
    assert not [n for n in names if n.startswith("solutions/") or "/solutions/" in n]
    solution_texts = {p.read_bytes() for p in solutions_dir().glob("*.py")}
    with zipfile.ZipFile(wheel) as archive:
        assert not [n for n in names if archive.read(n) in solution_texts]
        data = json.loads(archive.read("grader/data/reference.json"))
    hidden = {f"{q.id}: {c.name}" for q in QUESTIONS.values() for c in q.checks if c.hidden}
    assert uses_by_check(data) and not set(uses_by_check(data)) & hidden


@pytest.mark.slow
def test_a_wrong_lenet_gets_the_checkouts_report(student_machine):
    student = student_machine.student
    (student / "exercises" / "q1_lenet.py").write_text(WRONG["q1-valid-padding"][1])
    here = student_machine.run(str(student_machine.grader), "check", "q1", "--public")
    checkout = _run(
        [sys.executable, "-m", "grader", "check", "q1", "--public", "--path", str(student / "exercises")], REPO
    )
    assert here.returncode == checkout.returncode == 1, here.stdout + here.stderr
    empty = DataReferences({"format": 1})
    note = f"  ({checked_when_graded(get_question('q1'), empty)['hidden_checks']})"
    assert note in here.stdout.splitlines()
    assert [line for line in here.stdout.splitlines() if line != note] == checkout.stdout.splitlines()
    assert "FAIL" in checkout.stdout and "expected 28x28x6" in checkout.stdout


@pytest.mark.slow
def test_check_all_passes_every_public_check_on_the_references(student_machine):
    """`grader check all` on the reference code, training questions included (quick tier)."""
    for question in QUESTIONS.values():
        shutil.copyfile(solutions_dir() / question.filename, student_machine.student / "exercises" / question.filename)
    done = student_machine.run(str(student_machine.grader), "check", "all", "--json")
    results = json.loads(done.stdout)
    assert [r["question"] for r in results] == list(QUESTIONS), done.stderr[-3000:]
    failing = {r["question"]: [c["message"] for c in r["checks"] if not c["passed"]] for r in results}
    assert not any(failing.values()), failing
    assert done.returncode == 0
    for result in results:
        public = [c for c in get_question(result["question"]).checks if not c.hidden]
        assert [c["name"] for c in result["checks"]] == [c.name for c in public]


@pytest.mark.slow
def test_the_released_notebook_runs_its_test_cells(student_machine):
    """The notebook nbgrader hands out, answered with the reference code, run by the student's Python."""
    import nbformat
    from test_nbgrader import _reference_submission

    released = nbformat.read(student_machine.released / f"{ASSIGNMENT}.ipynb", as_version=4)
    source = nbformat.read(student_machine.source / f"{ASSIGNMENT}.ipynb", as_version=4)
    answered = _reference_submission(released, source)
    answered.cells.append(nbformat.v4.new_code_cell("import grader\nprint('GRADER FROM', grader.__file__)"))
    path = student_machine.student / f"{ASSIGNMENT}.ipynb"
    nbformat.write(answered, path)
    program = (
        "import sys, nbformat\nfrom nbclient import NotebookClient\n"
        "notebook = nbformat.read(sys.argv[1], as_version=4)\n"
        "NotebookClient(notebook, timeout=600, kernel_name='python3', resources={'metadata': {'path': '.'}}).execute()\n"
        "nbformat.write(notebook, sys.argv[1])\n"
    )
    done = student_machine.run(str(student_machine.python), "-c", program, str(path))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    executed = nbformat.read(path, as_version=4)
    printed = "".join(o.get("text", "") for o in executed.cells[-1].outputs)
    assert str(student_machine.python.parent.parent) in printed, printed  # the kernel ran the student's Python
    scores = {}
    for cell in executed.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and cell.cell_type == "code":
            assert not [o for o in cell.outputs if o.get("name") == "stderr" or o.output_type == "error"], cell.outputs
            (value,) = [o for o in cell.outputs if o.output_type == "execute_result"]
            scores[meta["grade_id"]] = float(value["data"]["text/plain"])
            question = get_question(meta["grade_id"].removesuffix("_test"))
            hidden = sum(c.points for c in question.checks if c.hidden)  # they run only when the TA grades
            assert scores[meta["grade_id"]] == pytest.approx(meta["points"] - hidden), cell.outputs
    assert sorted(scores) == sorted(f"{q}_test" for q in NOTEBOOK_QUESTIONS)
