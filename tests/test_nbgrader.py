"""The nbgrader course: generation (fast tests) and a real end-to-end grading run (slow).

The slow test builds a course with the structural questions, runs the real nbgrader
(generate_assignment, autograde with real kernels, generate_feedback, export) on seven
submissions through `grader nbgrader grade`, and reads the SQLite gradebook.
"""

from __future__ import annotations

import ast
import csv
import re
import time
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner

from grader.cli import main
from grader.grading import grade_folder
from grader.nbgrader.build import IGNORE_PATTERN, build_course, make_notebook, solution_cell_source
from grader.nbgrader.grade import run_nbgrader
from grader.notebook import checks_graded_by_hand
from grader.questions import QUESTIONS, get_question
from grader.questions.q6_dropout import MANUAL_POINTS

ASSIGNMENT = "cnn"
TEST_QUESTIONS = ("q1", "q5", "q6")
TIMEOUT = 60  # seconds per cell in the slow test: far above a real cell, short for a loop

WRONG_LENET = '''\
import keras
from keras import layers


def build_lenet5(input_shape=(28, 28, 1), num_classes=10):
    """LeNet-5 without padding in C1: every later shape is off."""
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(6, 5, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(16, 5, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(120, activation="relu"),
            layers.Dense(84, activation="relu"),
            layers.Dense(num_classes, activation="softmax"),
        ]
    )
'''


def _meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


# ---------------------------------------------------------------- fast: the generated course


def test_build_writes_every_registered_question(tmp_path: Path) -> None:
    path = build_course(tmp_path)
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    ids = [_meta(c).get("grade_id") for c in notebook.cells]
    for question in QUESTIONS.values():
        assert f"{question.id}_task" in ids and f"{question.id}_solution" in ids and f"{question.id}_test" in ids
    assert ids[1] == "setup" and "import_keras()" in notebook.cells[1].source
    config = (tmp_path / "nbgrader_config.py").read_text()
    for needle in ("course_id", "gradebook.db", "Execute.timeout = 600", "IgnorePattern.pattern", "add_missing_cells = True", "ClearHiddenTests"):
        assert needle in config
    assert list((tmp_path / "source" / ASSIGNMENT).iterdir()) == [path]  # no solutions or data beside it


def test_release_of_the_full_course_hides_solutions_tests_and_rubrics(tmp_path: Path) -> None:
    """Real `nbgrader generate_assignment` on the default course (every question)."""
    build_course(tmp_path)
    run_nbgrader(tmp_path, "generate_assignment", ASSIGNMENT)
    release = tmp_path / "release" / ASSIGNMENT
    assert [p.name for p in release.iterdir()] == [f"{ASSIGNMENT}.ipynb"]
    notebook = nbformat.read(release / f"{ASSIGNMENT}.ipynb", as_version=4)
    text = "\n".join(c.source for c in notebook.cells)
    for secret in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS", "grading_time", "MARK SCHEME", "Rubric for graders", "About 96%"):
        assert secret not in text
    for question in QUESTIONS.values():
        assert "raise NotImplementedError()" in _cell(notebook, f"{question.id}_solution").source
        assert _cell(notebook, f"{question.id}_test").source.rstrip().endswith(")")
    assert _cell(notebook, "q6_answer").source == "YOUR ANSWER HERE"


def test_build_cli_rejects_unknown_questions(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["nbgrader", "build", str(tmp_path), "-q", "q99"])
    assert result.exit_code == 2 and "unknown question 'q99'" in result.output


def test_cells_follow_nbgrader_schema_and_points() -> None:
    notebook = make_notebook([get_question(q) for q in ("q1", "q6")])
    cells = {_meta(c)["grade_id"]: c for c in notebook.cells}
    for cell in notebook.cells:
        assert _meta(cell)["schema_version"] == 3
    test = cells["q1_test"]
    assert _meta(test) | {"points": None} == {
        "grade": True, "solution": False, "locked": True, "task": False, "grade_id": "q1_test", "schema_version": 3, "points": None,
    }
    assert _meta(test)["points"] == get_question("q1").max_score
    assert test.source.strip().splitlines()[-1] == 'check("q1")'
    assert "from grader.notebook import check" in test.source  # a student's own `check` is shadowed
    assert re.search(r"### BEGIN HIDDEN TESTS\n.*grading_time\(\)\n### END HIDDEN TESTS", test.source, re.S)
    # q6: the written answer is a hand-graded markdown cell, its rubric a mark scheme in a task cell
    answer, rubric = cells["q6_answer"], cells["q6_answer_rubric"]
    assert answer.cell_type == "markdown" and _meta(answer)["grade"] and _meta(answer)["solution"]
    assert _meta(answer)["points"] == MANUAL_POINTS
    assert rubric.cell_type == "markdown" and _meta(rubric)["task"] and "### BEGIN MARK SCHEME" in rubric.source
    assert cells["q6_test"].source.strip().endswith("check(\"q6\", by_hand=('ANSWER',))")
    written = {c.points for c in get_question("q6").checks if c.name in checks_graded_by_hand(get_question("q6"), ("ANSWER",))}
    assert _meta(cells["q6_test"])["points"] == get_question("q6").max_score - sum(written) == 3


def test_solution_cell_keeps_stub_interface_and_hides_reference() -> None:
    q5 = get_question("q5")
    source = solution_cell_source(q5)
    compile(source, "q5", "exec")
    released = re.sub(r"( *)### BEGIN SOLUTION.*?### END SOLUTION", r"\1raise NotImplementedError()", source, flags=re.S)
    tree = ast.parse(released)
    functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert functions == ["conv2d_params", "dense_params", "count_parameters"]  # the reference's helper is nested
    assert "_leaf_layers" not in released and "math.prod" not in released
    q6 = solution_cell_source(get_question("q6"))
    assert "0.9596" not in q6 and "ANSWER" not in q6  # the stub's docstrings; the answer is its own cell


def test_solution_cell_nests_helpers_and_literals_but_keeps_state_module_level() -> None:
    from grader.checks import Question

    question = Question("qx", "x", "qx_demo", ("f", "ANSWER"), ())
    stub = 'import numpy as np\n\n\ndef f(x):\n    """Stub doc."""\n    raise NotImplementedError\n\n\nANSWER = "YOUR ANSWER HERE"\n'
    reference = (
        '"""Reference."""\nimport math\n\nSCALE = 3\nRNG = object()\n\n\n'
        'def _helper(x):\n    return x * SCALE\n\n\n'
        'def f(x):\n    """Reference doc (0.9596)."""\n    return math.floor(_helper(x)) if RNG else 0\n\n\n'
        'ANSWER = "the written answer"\n'
    )
    cell = solution_cell_source(question, reference, stub)
    namespace: dict = {}
    exec(cell, namespace)
    assert namespace["f"](1.5) == 4  # the nested reference still works
    released = re.sub(r"( *)### BEGIN SOLUTION.*?### END SOLUTION", r"\1raise NotImplementedError()", cell, flags=re.S)
    assert "Stub doc." in released and "0.9596" not in released and "written answer" not in released
    assert "_helper" not in released and "SCALE" not in released  # nested into f's solution
    assert "RNG = object()" in released  # state is not duplicated into functions
    assert "import numpy as np" in released and "import math" in released


def test_ignore_pattern_matches_tensorflow_startup_lines() -> None:
    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
        "I0000 00:00:1700000000.000000  123 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.\n",
        "oneDNN custom operations are on. You may see slightly different numerical results. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.\n",
    ]
    assert all(re.search(IGNORE_PATTERN, line) for line in noise)
    assert not re.search(IGNORE_PATTERN, "Traceback (most recent call last):\nValueError: boom\n")


def test_hidden_checks_are_redacted_at_grading_time(monkeypatch, capsys) -> None:
    import grader.notebook as notebook

    def classifier_parameter_fraction(model):
        return 0.9596  # right for AlexNet only: the hidden check (another model) fails

    public = notebook.check("q6", classifier_parameter_fraction, by_hand=("ANSWER",))
    shown = capsys.readouterr().out
    monkeypatch.setattr(notebook, "_GRADING_TIME", True)
    graded = notebook.check("q6", classifier_parameter_fraction, by_hand=("ANSWER",))
    report = capsys.readouterr().out
    assert type(public) is float and type(graded) is float
    assert public == graded == 2.0
    assert "hidden check 1" in report and "details are not shown" in report
    hidden = next(c for c in get_question("q6").checks if c.hidden)
    assert hidden.name not in report and "LeNet" not in report and "another model" not in report
    assert "hidden check" not in shown and hidden.name not in shown
    assert "written answer" not in report  # graded by hand in the notebook


# ---------------------------------------------------------------- slow: real nbgrader end to end


def _reference_submission(release: nbformat.NotebookNode, source: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The released notebook with every solution cell (code and the written answer) filled in from the source."""
    answers = {_meta(c)["grade_id"]: c.source for c in source.cells if _meta(c).get("solution")}
    notebook = nbformat.from_dict(release)
    for cell in notebook.cells:
        if _meta(cell).get("solution"):
            cell.source = re.sub(r"\s*### (BEGIN|END) SOLUTION\n?", "\n", answers[_meta(cell)["grade_id"]]).strip() + "\n"
    return notebook


def _cell(notebook: nbformat.NotebookNode, grade_id: str):
    return next(c for c in notebook.cells if _meta(c).get("grade_id") == grade_id)


def _submissions(release: nbformat.NotebookNode, source: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    reference = _reference_submission(release, source)

    def variant(q1_code: str | None = None, **cells: str) -> nbformat.NotebookNode:
        notebook = nbformat.from_dict(reference)
        if q1_code is not None:
            _cell(notebook, "q1_solution").source = q1_code
        for grade_id, code in cells.items():
            _cell(notebook, grade_id).source = code
        return notebook

    wrong = variant(WRONG_LENET)
    crash = variant(
        "def build_lenet5(input_shape=(28, 28, 1), num_classes=10):\n    return 1 / 0\n",
        q5_solution='raise RuntimeError("student code crashed at import")\n',
    )
    loop = variant("def build_lenet5(input_shape=(28, 28, 1), num_classes=10):\n    while True:\n        pass\n")
    deleted = variant(WRONG_LENET)
    deleted.cells = [c for c in deleted.cells if _meta(c).get("grade_id") != "q1_test"]
    edited = variant(WRONG_LENET, q1_test='print("q1: 10/10, all checks passed")\n10.0\n')
    redefined = variant(WRONG_LENET + "\n\ndef check(*args, **kwargs):\n    return 10.0\n")
    # replaces the real check for every later test cell of its kernel with full marks: only the sandbox sees through it
    patched = variant(
        WRONG_LENET + "\n\nimport grader.notebook\n"
        "grader.notebook.check = lambda question, **kwargs: {'q1': 10.0, 'q5': 10.0, 'q6': 3.0}[question]\n"
    )
    return {
        "reference": reference, "wrong": wrong, "crash": crash, "loop": loop,
        "deleted": deleted, "edited": edited, "redefined": redefined, "patched": patched,
    }


@pytest.fixture(scope="module")
def graded_course(tmp_path_factory) -> dict:
    """Build, release, submit seven notebooks and run `grader nbgrader grade` (the real nbgrader)."""
    course = tmp_path_factory.mktemp("course")
    runner = CliRunner()
    built = runner.invoke(main, ["nbgrader", "build", str(course), *sum((["-q", q] for q in TEST_QUESTIONS), []), "--timeout", str(TIMEOUT)])
    assert built.exit_code == 0, built.output
    run_nbgrader(course, "generate_assignment", ASSIGNMENT)
    release = nbformat.read(course / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    source = nbformat.read(course / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    submissions = _submissions(release, source)
    for student, notebook in submissions.items():
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        nbformat.write(notebook, folder / f"{ASSIGNMENT}.ipynb")
    broken = course / "submitted" / "broken" / ASSIGNMENT  # a file nbgrader cannot read at all
    broken.mkdir(parents=True)
    (broken / f"{ASSIGNMENT}.ipynb").write_text("{ not a notebook")
    start = time.monotonic()
    graded = runner.invoke(main, ["nbgrader", "grade", str(course), ASSIGNMENT])
    elapsed = time.monotonic() - start
    # the unreadable submission fails autograde, but the batch, feedback and export go on
    assert graded.exit_code == 1, graded.output
    assert "could not autograde some submissions" in graded.output and "$ nbgrader export" in graded.output
    return {"course": course, "release": release, "output": graded.output, "elapsed": elapsed, "submissions": submissions}


def _scores(course: Path) -> dict[str, dict[str, float]]:
    from nbgrader.api import Gradebook

    with Gradebook("sqlite:///" + str(course / "gradebook.db")) as gradebook:
        return {
            submission.student_id: {g.name: g.score for nb in submission.notebooks for g in nb.grades}
            for submission in gradebook.assignment_submissions(ASSIGNMENT)
        }


def _needs_manual(course: Path, student: str) -> list[str]:
    from nbgrader.api import Gradebook

    with Gradebook("sqlite:///" + str(course / "gradebook.db")) as gradebook:
        submission = gradebook.find_submission(ASSIGNMENT, student)
        return [g.name for nb in submission.notebooks for g in nb.grades if g.needs_manual_grade and g.max_score > 0]


def _autograded(course: Path, student: str) -> nbformat.NotebookNode:
    return nbformat.read(course / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)


def _text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", "") or output.get("data", {}).get("text/plain", ""))
        parts.extend(output.get("traceback", []))
    return "\n".join(parts)


def _local_score(tmp_path: Path, question: str, code: str) -> float:
    """What `grader check` gives on the same code (hidden checks included, as at grading)."""
    spec = get_question(question)
    folder = tmp_path / question
    folder.mkdir()
    (folder / spec.filename).write_text(code)
    return grade_folder(spec, folder).score


@pytest.mark.slow
def test_reference_gets_full_marks_and_agrees_with_grader_check(graded_course, tmp_path) -> None:
    scores = _scores(graded_course["course"])
    print(f"grading 7 submissions took {graded_course['elapsed']:.0f} s")
    assert set(scores) == set(graded_course["submissions"]) | {"broken"}
    reference = scores["reference"]
    for question in TEST_QUESTIONS:
        spec = get_question(question)
        expected = spec.max_score if question != "q6" else spec.max_score - 2
        assert reference[f"{question}_test"] == expected
    assert reference["q6_answer"] == 0 and _needs_manual(graded_course["course"], "reference") == ["q6_answer"]
    notebook = _autograded(graded_course["course"], "reference")
    for cell in notebook.cells:
        assert not [o for o in cell.get("outputs", []) if o.get("name") == "stderr" or o.output_type == "error"], cell.source
    # hidden checks ran at grading time (reported without details)
    assert "hidden check 1" in _text(_cell(notebook, "q1_test"))
    # the q1 score equals `grader check q1` on the same code
    code = _cell(graded_course["submissions"]["wrong"], "q1_solution").source
    assert scores["wrong"]["q1_test"] == _local_score(tmp_path, "q1", code)


@pytest.mark.slow
def test_wrong_model_gets_partial_credit(graded_course) -> None:
    scores = _scores(graded_course["course"])["wrong"]
    q1 = get_question("q1")
    assert 0 < scores["q1_test"] < q1.max_score
    failed = {"layer output shapes match LeNet-5", "parameter count"}
    assert scores["q1_test"] == q1.max_score - sum(c.points for c in q1.checks if c.name in failed)
    assert scores["q5_test"] == get_question("q5").max_score  # the other questions are untouched


@pytest.mark.slow
def test_crash_scores_zero_with_a_clear_message(graded_course) -> None:
    scores = _scores(graded_course["course"])["crash"]
    assert scores["q1_test"] == 0 and scores["q5_test"] == 0
    notebook = _autograded(graded_course["course"], "crash")
    assert "`build_lenet5()` raised ZeroDivisionError" in _text(_cell(notebook, "q1_test"))
    crashed = _cell(notebook, "q5_solution")
    assert crashed.outputs[0].output_type == "error" and "student code crashed at import" in _text(crashed)
    assert "`conv2d_params` is not defined" in _text(_cell(notebook, "q5_test"))
    assert scores["q6_test"] == 3  # a crash in one question costs only that question


@pytest.mark.slow
def test_endless_loop_times_out_without_stopping_the_batch(graded_course) -> None:
    scores = _scores(graded_course["course"])
    assert scores["loop"]["q1_test"] == 0
    assert "CellTimeoutError" in _text(_cell(_autograded(graded_course["course"], "loop"), "q1_test"))
    assert scores["loop"]["q5_test"] == get_question("q5").max_score  # later cells still ran
    assert {"deleted", "edited", "redefined"} <= set(scores)  # and so did the students after


@pytest.mark.slow
def test_tampered_test_cells_are_restored(graded_course) -> None:
    scores = _scores(graded_course["course"])
    honest = scores["wrong"]["q1_test"]
    course = graded_course["course"]
    test_source = _cell(graded_course["release"], "q1_test").source
    for student in ("deleted", "edited", "redefined"):
        assert scores[student]["q1_test"] == honest, student
        restored = _cell(_autograded(course, student), "q1_test")
        assert "from grader.notebook import check" in restored.source and "grading_time()" in restored.source
        assert 'check("q1")' in restored.source and "10/10" not in _text(restored)
    assert test_source in _cell(_autograded(course, "edited"), "q1_test").source.replace(
        "### BEGIN HIDDEN TESTS\nfrom grader.notebook import grading_time\n\ngrading_time()\n### END HIDDEN TESTS\n", ""
    )


@pytest.mark.slow
def test_a_check_patched_in_the_kernel_is_overridden_by_the_sandbox(graded_course) -> None:
    from nbgrader.api import Gradebook

    scores = _scores(graded_course["course"])
    assert scores["patched"]["q1_test"] == scores["wrong"]["q1_test"] < 10  # the kernel said 10.0
    assert scores["patched"]["q6_test"] == 3 and scores["patched"]["q5_test"] == 10
    with Gradebook("sqlite:///" + str(graded_course["course"] / "gradebook.db")) as gradebook:
        grade = gradebook.find_grade("q1_test", ASSIGNMENT, ASSIGNMENT, "patched")
        assert grade.auto_score == 10 and grade.manual_score == scores["wrong"]["q1_test"]
    disagreements = [line for line in graded_course["output"].splitlines() if line.startswith("sandbox disagrees:")]
    assert len(disagreements) == 1 and disagreements[0].startswith("sandbox disagrees: patched q1_test")
    assert f"patched q1_test: notebook 10, sandbox {scores['wrong']['q1_test']:g} (the sandbox's score now counts)" in graded_course["output"]
    feedback = graded_course["course"] / "sandbox-grading" / ASSIGNMENT / "feedback" / "patched.md"
    assert "layer output shapes match LeNet-5" in feedback.read_text()


@pytest.mark.slow
def test_feedback_hides_hidden_checks_and_rubrics(graded_course) -> None:
    course = graded_course["course"]
    for student in graded_course["submissions"]:
        html = (course / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
        assert "BEGIN HIDDEN TESTS" not in html and "grading_time" not in html
        assert "MARK SCHEME" not in html and "Rubric for graders" not in html
        for question in TEST_QUESTIONS:
            for check in get_question(question).checks:
                if check.hidden:
                    assert check.name not in html, (student, check.name)
        # what the hidden checks report (q1: another input shape, q5: more models, q6: a LeNet-5)
        assert "(28, 28, 3)" not in html and "more models" not in html and "on a LeNet-5" not in html
    html = (course / "feedback" / "wrong" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "hidden check 1" in html and "layer output shapes match LeNet-5" in html
    html = (course / "feedback" / "loop" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "the cell ran past the time limit" in html  # the timeout, told without the test's source
    html = (course / "feedback" / "crash" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "student code crashed at import" in html  # the student's own traceback stays


@pytest.mark.slow
def test_export_csv_and_summary(graded_course) -> None:
    course = graded_course["course"]
    scores = _scores(course)
    with open(course / "grades.csv", newline="") as handle:
        rows = {row["student_id"]: row for row in csv.DictReader(handle)}
    assert set(rows) == set(scores)
    for student, row in rows.items():
        assert row["assignment"] == ASSIGNMENT
        assert float(row["score"]) == pytest.approx(sum(s or 0 for s in scores[student].values()))
        assert float(row["max_score"]) == 10 + 10 + 3 + MANUAL_POINTS
    assert float(rows["reference"]["score"]) == 23
    output = graded_course["output"]
    assert "$ nbgrader autograde cnn --create" in output and "q6_answer" in output
    assert re.search(r"reference\s.*\b10\b.*\b10\b.*\b3\b.*\b23/28\b", output)
    assert re.search(r"broken\s.*\b0/28\b.*not autograded", output)
    assert re.search(r"loop\s.*q1_test timed out", output) and re.search(r"crash\s.*q5_solution raised RuntimeError", output)


@pytest.mark.slow
def test_hand_grade_reaches_summary_and_csv(graded_course) -> None:
    """A TA grades q6_answer (as the formgrader does); the summary and a new export include it."""
    from nbgrader.api import Gradebook

    from grader.nbgrader.grade import summarise

    course = graded_course["course"]
    with Gradebook("sqlite:///" + str(course / "gradebook.db")) as gradebook:
        grade = gradebook.find_grade("q6_answer", ASSIGNMENT, ASSIGNMENT, "reference")
        grade.manual_score = MANUAL_POINTS
        grade.needs_manual_grade = False  # what the formgrader's save does
        gradebook.db.commit()
    row = next(r for r in summarise(course, ASSIGNMENT) if r.student == "reference")
    assert row.scores["q6"] == 3 + MANUAL_POINTS and row.needs_manual == [] and row.total == row.max_total == 28
    run_nbgrader(course, "export", "--to", "grades.csv")
    with open(course / "grades.csv", newline="") as handle:
        assert {r["student_id"]: float(r["score"]) for r in csv.DictReader(handle)}["reference"] == 28
