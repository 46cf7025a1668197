"""The nbgrader course: generation and sandboxed autograde (fast tests), a real end-to-end grading run (slow).

The slow tests build a course with the structural questions and run the real nbgrader
(generate_assignment, autograde graded in the sandbox, generate_feedback, export) through
`grader nbgrader grade` on a class of honest, broken and hostile notebooks (the rows of
issue 17), in two rounds (a TA's hand grade and a resubmission in between), then read the
SQLite gradebook, the autograded notebooks, the feedback and the CSV.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import os
import re
import shutil
import tempfile
import textwrap
import time
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner

from grader.batch.submissions import discover, notebook_modules, stage_files
from grader.cli import main
from grader.grading import grade_folder
from grader.nbgrader.autograde import SandboxGrade, confinement_problem, grade_notebook, write_grades
from grader.nbgrader.build import IGNORE_PATTERN, build_course, make_notebook, solution_cell_source
from grader.nbgrader.grade import run_nbgrader
from grader.options import Limits
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
    needles = ("course_id", "gradebook.db", "SandboxGrade.timeout = 600", "add_missing_cells", "ClearHiddenTests")
    for needle in needles:
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
    for secret in (
        "BEGIN SOLUTION",
        "BEGIN HIDDEN TESTS",
        "grading_time",
        "MARK SCHEME",
        "Rubric for graders",
        "About 96%",
    ):
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
        "grade": True,
        "solution": False,
        "locked": True,
        "task": False,
        "grade_id": "q1_test",
        "schema_version": 3,
        "points": None,
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
    written = {
        c.points for c in get_question("q6").checks if c.name in get_question("q6").checks_screening(("ANSWER",))
    }
    assert _meta(cells["q6_test"])["points"] == get_question("q6").max_score - sum(written) == 3


def test_solution_cell_keeps_stub_interface_and_hides_reference() -> None:
    q5 = get_question("q5")
    source = solution_cell_source(q5)
    compile(source, "q5", "exec")
    released = re.sub(
        r"( *)### BEGIN SOLUTION.*?### END SOLUTION", r"\1raise NotImplementedError()", source, flags=re.S
    )
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
        "def _helper(x):\n    return x * SCALE\n\n\n"
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


def test_autograde_runs_nbgraders_steps_with_the_sandbox_in_place_of_the_kernel(tmp_path: Path) -> None:
    """The course's config: nbgrader's own autograde preprocessors, `Execute` (a kernel) replaced by `SandboxGrade`."""
    from nbgrader.converters.autograde import Autograde
    from nbgrader.preprocessors import Execute
    from traitlets.config.loader import PyFileConfigLoader

    build_course(tmp_path, ["q1"], timeout=45)
    config = PyFileConfigLoader("nbgrader_config.py", str(tmp_path)).load_config()
    default = Autograde.autograde_preprocessors.default()
    assert Execute in default
    assert config.Autograde.autograde_preprocessors == [SandboxGrade if p is Execute else p for p in default]
    assert config.SandboxGrade.course_dir == str(tmp_path) and config.SandboxGrade.timeouts == {ASSIGNMENT: 45}
    grade = SandboxGrade(config=config)
    assert grade._seconds(ASSIGNMENT) == 45 and grade._seconds("another") == 600


def _config(course: Path):
    from traitlets.config.loader import PyFileConfigLoader

    return PyFileConfigLoader("nbgrader_config.py", str(course)).load_config()


def test_rebuilding_merges_the_config_and_keeps_the_tas_settings(tmp_path: Path) -> None:
    """A rebuild rewrites only the grader's block: other assignments' time limits and the TA's lines stay."""
    runner = CliRunner()
    built = runner.invoke(
        main, ["nbgrader", "build", str(tmp_path), "-q", "q5", "--question-time-limit", "45", "--no-student-package"]
    )
    assert built.exit_code == 0 and built.stderr == ""
    path = tmp_path / "nbgrader_config.py"
    path.write_text(
        path.read_text() + 'c.Exchange.root = "/srv/exchange"\nc.ZipCollectApp.archive_directory = "zips"\n'
    )
    training = [
        "nbgrader",
        "build",
        str(tmp_path),
        "-q",
        "q2",
        "--assignment",
        "training",
        "--question-time-limit",
        "1800",
        "--no-student-package",
    ]
    assert runner.invoke(main, training).exit_code == 0
    again = runner.invoke(
        main, ["nbgrader", "build", str(tmp_path), "-q", "q5", "--question-time-limit", "60", "--no-student-package"]
    )
    assert again.exit_code == 0
    assert (
        "cnn's seconds per question change from 45 to 60" in again.stderr and "other assignments keep" in again.stderr
    )
    config = _config(tmp_path)
    assert config.SandboxGrade.timeouts == {ASSIGNMENT: 60, "training": 1800}
    assert config.Exchange.root == "/srv/exchange" and config.ZipCollectApp.archive_directory == "zips"
    assert path.read_text().count("c.Exchange.root") == 1


def test_a_config_without_the_grader_block_is_kept_and_its_settings_carried_over(tmp_path: Path) -> None:
    """An older grader's config (one timeout for the course): backed up, the TA's lines carried, its timeout kept."""
    (tmp_path / "source" / "training").mkdir(parents=True)
    old = (
        "c = get_config()\n"
        "c.CourseDirectory.course_id = 'cnn-grader'\n"
        "c.SandboxGrade.timeout = 1800\n"
        "c.Autograde.autograde_preprocessors = []\n"
        "c.Exchange.root = '/srv/exchange'\n"
        "import mylms\nc.ZipCollectApp.collector_plugin = mylms.Plugin\n"
    )
    (tmp_path / "nbgrader_config.py").write_text(old)
    done = CliRunner().invoke(main, ["nbgrader", "build", str(tmp_path), "-q", "q5", "--no-student-package"])
    assert done.exit_code == 0
    assert "not written by this grader version" in done.stderr and "1 of your settings carried over" in done.stderr
    assert "c.ZipCollectApp.collector_plugin = mylms.Plugin" in done.stderr  # not carried: it needs `mylms`
    assert (tmp_path / "nbgrader_config.py.bak").read_text() == old
    config = _config(tmp_path)
    assert config.Exchange.root == "/srv/exchange"
    assert config.SandboxGrade.timeouts == {"training": 1800, ASSIGNMENT: 600}  # the assignment built before keeps its
    assert SandboxGrade in config.Autograde.autograde_preprocessors  # the grader's own settings are never carried


def test_deprecated_spellings_work_and_warn_once(tmp_path: Path) -> None:
    done = CliRunner().invoke(
        main, ["nbgrader", "build", str(tmp_path), "-q", "q5", "--timeout", "45", "--no-student-package"]
    )
    assert done.exit_code == 0
    assert done.stderr.splitlines() == [
        "warning: --timeout is deprecated and goes away in the next release; use --question-time-limit"
    ]
    assert _config(tmp_path).SandboxGrade.timeouts == {ASSIGNMENT: 45}
    help_text = CliRunner().invoke(main, ["nbgrader", "build", "--help"]).output
    assert "--question-time-limit" in help_text and "--timeout" not in help_text  # hidden


def test_one_student_regrade_runs_nbgrader_for_that_student_only_with_the_tier(tmp_path: Path, monkeypatch) -> None:
    """`--regrade --student alice --tier full`: autograde and feedback for alice alone; the tier reaches the sandbox."""
    import grader.nbgrader.grade as grade

    build_course(tmp_path, ["q5"])
    for student in ("alice", "bob"):
        (tmp_path / "submitted" / student / ASSIGNMENT).mkdir(parents=True)
    calls: list[tuple[tuple[str, ...], dict]] = []

    def fake(course_dir, *args, echo=None, environment=None):
        calls.append((args, dict(environment or {})))

    monkeypatch.setattr(grade, "run_nbgrader", fake)
    monkeypatch.setattr(grade, "write_class_dashboard", lambda *args: None)
    monkeypatch.setattr(grade, "summarise", lambda *args: [])  # no gradebook: nbgrader did not run
    result = CliRunner().invoke(
        main,
        ["nbgrader", "grade", str(tmp_path), ASSIGNMENT, "--regrade", "--student", "alice", "--tier", "full",
         "--time-limit", "90"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    commands = [args for args, _ in calls]
    assert commands == [
        ("generate_assignment", ASSIGNMENT, "--force"),
        ("autograde", ASSIGNMENT, "--create", "--force", "--student=alice"),
        ("generate_feedback", ASSIGNMENT, "--force", "--student=alice"),
        ("export", "--to", str(tmp_path.resolve() / "grades.csv")),
    ]
    autograde_env = calls[1][1]
    assert autograde_env["CNN_GRADER_TIER"] == "full" and float(autograde_env["CNN_GRADER_TIME_LIMIT"]) == 90


def test_grade_refuses_a_student_without_a_submission(tmp_path: Path) -> None:
    build_course(tmp_path, ["q5"])
    (tmp_path / "submitted" / "alice" / ASSIGNMENT).mkdir(parents=True)
    runner = CliRunner()
    ghost = runner.invoke(main, ["nbgrader", "grade", str(tmp_path), ASSIGNMENT, "--no-generate", "--student", "bob"])
    assert ghost.exit_code == 2
    assert "no submission of cnn for bob" in ghost.output and "students with one: alice" in ghost.output
    pattern = runner.invoke(main, ["nbgrader", "grade", str(tmp_path), ASSIGNMENT, "--student", "*"])
    assert pattern.exit_code == 2 and "is not a student id" in pattern.output


def _filled(questions=TEST_QUESTIONS) -> nbformat.NotebookNode:
    """The source notebook with the solution markers removed: what a student with full marks hands in."""
    notebook = make_notebook([get_question(q) for q in questions])
    for cell in notebook.cells:
        if _meta(cell).get("solution"):
            cell.source = re.sub(r"\s*### (BEGIN|END) SOLUTION\n?", "\n", cell.source).strip() + "\n"
    return notebook


def test_a_questions_module_is_every_code_cell_above_its_test_cell() -> None:
    notebook = _filled()
    index = next(i for i, c in enumerate(notebook.cells) if _meta(c).get("grade_id") == "q6_solution")
    failing = "HELPER = 41\nraise RuntimeError('a failing cell')\nLATER = 1"
    notebook.cells.insert(index, nbformat.v4.new_code_cell(failing))
    notebook.cells.insert(index, nbformat.v4.new_code_cell("def broken(:\n    pass"))
    notebook.cells.append(nbformat.v4.new_code_cell("AFTER_Q6 = True"))
    modules = notebook_modules(notebook, [get_question(q) for q in TEST_QUESTIONS])
    q1, q5, q6 = (modules[get_question(q).filename] for q in TEST_QUESTIONS)
    assert "def build_lenet5" in q1 and "def count_parameters" not in q1 and "HELPER" not in q1
    assert "def build_lenet5" in q6 and "def count_parameters" in q6 and "HELPER = 41" in q6
    assert "AFTER_Q6" not in q6 and "check(" not in q6  # nothing below the test cell, no test cell
    assert q6.rstrip().splitlines()[-1].startswith("ANSWER = ")  # the written answer, from its markdown cell
    namespace: dict = {}
    exec(compile(q6, "q6", "exec"), namespace)  # noqa: S102 - the reference notebook
    assert namespace["HELPER"] == 41 and "LATER" not in namespace  # a failing cell stops itself only
    assert callable(namespace["classifier_parameter_fraction"]) and "broken" not in namespace


def test_multiline_strings_keep_their_text_in_the_module() -> None:
    cell = 'def f():\n    """Doc\n  of f."""\n    return f"""a\n{1 + 1}\nb""" + """\nc"""\n'
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
    [source] = notebook_modules(notebook, [get_question("q1")]).values()
    namespace: dict = {}
    exec(compile(source, "m", "exec"), namespace)  # noqa: S102 - test data
    assert namespace["f"]() == "a\n2\nb\nc" and namespace["f"].__doc__ == "Doc\n  of f."


def test_discover_grades_only_the_assignments_folder_and_reports_what_it_leaves_out(tmp_path: Path) -> None:
    notebook = _filled()
    huge = nbformat.from_dict(notebook)
    huge.metadata["padding"] = "x" * (6 * 2**20)
    with_outputs = nbformat.from_dict(notebook)
    with_outputs.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="y" * (6 * 2**20))]
    for student, assignments in {"big": {"cnn": huge, "training": notebook}, "plots": {"cnn": with_outputs}}.items():
        for assignment, content in assignments.items():
            folder = tmp_path / student / assignment
            folder.mkdir(parents=True)
            nbformat.write(content, folder / f"{assignment}.ipynb")
    (tmp_path / "other" / "training").mkdir(parents=True)
    nbformat.write(notebook, tmp_path / "other" / "training" / "training.ipynb")
    found = {s.student: s for s in discover(tmp_path, assignment="cnn")}
    assert set(found) == {"big", "plots"}  # "other" has no cnn folder: nothing of it is graded as cnn
    assert found["big"].files == {} and found["big"].folder.name == "cnn"  # never the training folder instead
    assert "cnn.ipynb is 6.0 MB without its outputs, over the 5 MB limit" in (found["big"].problem or "")
    assert list(found["plots"].files) == ["cnn.ipynb"] and found["plots"].problem is None  # outputs do not count
    assert len(found["plots"].files["cnn.ipynb"]) < 2**20


def test_a_file_that_is_no_notebook_stages_nothing(tmp_path: Path) -> None:
    files = {"notes.ipynb": b"[]", "cnn.ipynb": b"{ not json", "x.ipynb": b'{"cells": 3}'}
    stage_files(files, tmp_path, [get_question("q1")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cnn.ipynb", "notes.ipynb", "x.ipynb"]


def test_confinement_is_required() -> None:
    good = {"user": "uid 522017 (unprivileged)", "network": "off", "hidden": ["/srv/course", "/work/solutions"]}
    assert confinement_problem(good, ["/srv/course"]) is None
    assert "uid of its own" in confinement_problem({**good, "user": "not dropped: uid 1000"}, ["/srv/course"])
    assert "network" in confinement_problem({**good, "network": "not available: unshare"}, ["/srv/course"])
    assert "hidden" in confinement_problem({**good, "hidden": "not available: EPERM"}, ["/srv/course"])
    assert "/" in (confinement_problem(good, ["/"]) or "")  # an existing folder that was not hidden


def test_a_notebook_the_sandbox_cannot_grade_scores_zero_with_the_reason() -> None:
    notebook = _filled(("q1",))
    notebook.metadata["padding"] = "x" * (6 * 2**20)
    extra = {"nbgrader": {"grade": True, "grade_id": "extra", "points": 1}}
    notebook.cells.append(nbformat.v4.new_code_cell("1", metadata=extra))
    grades = grade_notebook(notebook, hide=[], limits=Limits(wall_s=30))
    assert all("without its outputs, over the 5 MB limit" in (g.not_graded or "") for g in grades.values())
    summary = write_grades(notebook, grades)
    assert set(summary["not_graded"]) == {"q1_test", "extra"}
    for index in grades:
        [output] = notebook.cells[index].outputs
        assert output.output_type == "error"  # nbgrader scores an error 0 (no output at all would be full marks)
    # no sandbox needed for these: a graded cell the grader does not know, a test cell worth other points
    test = nbformat.from_dict(_cell(notebook, "q1_test"))
    test.metadata.nbgrader.points = 7
    other = nbformat.v4.new_notebook(cells=[notebook.cells[-1], test])
    reasons = [g.not_graded for g in grade_notebook(other, hide=[], limits=Limits(wall_s=30)).values()]
    worth = "the cell is worth 7 points but q1's checks give 10: rebuild the course"
    assert reasons == ["extra is not a test cell of the grader", worth]


# ---------------------------------------------------------------- slow: real nbgrader end to end


def _reference_submission(release: nbformat.NotebookNode, source: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The released notebook with every solution cell (code and the written answer) filled in from the source."""
    answers = {_meta(c)["grade_id"]: c.source for c in source.cells if _meta(c).get("solution")}
    notebook = nbformat.from_dict(release)
    for cell in notebook.cells:
        if _meta(cell).get("solution"):
            cell.source = (
                re.sub(r"\s*### (BEGIN|END) SOLUTION\n?", "\n", answers[_meta(cell)["grade_id"]]).strip() + "\n"
            )
    return notebook


def _cell(notebook: nbformat.NotebookNode, grade_id: str):
    return next(c for c in notebook.cells if _meta(c).get("grade_id") == grade_id)


def _index(notebook: nbformat.NotebookNode, grade_id: str) -> int:
    return next(i for i, c in enumerate(notebook.cells) if _meta(c).get("grade_id") == grade_id)


# The hostile notebooks of issue 17. Each is the release with its solution cells emptied (so
# nothing of the student's overrides what an attack might have brought in) and one attack
# cell under the setup cell, so that it runs before every test cell. {course} is the course
# folder. Each attack swallows its own errors, as a real one would.
ATTACKS = {
    "selfgrade": """
from nbgrader.api import Gradebook
with Gradebook("sqlite:///{course}/gradebook.db") as gb:  # its own grades, set as if by a TA
    for nb in gb.find_submission("cnn", "selfgrade").notebooks:
        for grade in nb.grades:
            grade.manual_score = grade.max_score
    gb.db.commit()
""",
    "copier": """
import os, shutil
from grader.paths import solutions_dir
for name in os.listdir(solutions_dir()):
    path = os.path.join(solutions_dir(), name)
    shutil.copy(path, os.path.join("{course}/submitted/copier/cnn", name))
    exec(open(path).read(), globals())
""",
    "poisoner": """
import os, sqlite3
os.makedirs("{course}/sandbox-grading/cnn", exist_ok=True)
db = sqlite3.connect("{course}/sandbox-grading/cnn/results.sqlite")
db.execute("CREATE TABLE IF NOT EXISTS results (student, question, score, max_score, checks, meta, run)")
for question in ("q1", "q5", "q6"):
    db.execute("INSERT INTO results VALUES ('poisoner', ?, 10, 10, '[]', '{{}}', 1)", (question,))
db.commit()
""",
    "saboteur": """
import shutil
shutil.copy("{course}/release/cnn/cnn.ipynb", "{course}/submitted/victim/cnn/cnn.ipynb")
from nbgrader.api import Gradebook
with Gradebook("sqlite:///{course}/gradebook.db") as gb:
    gb.find_grade("q6_answer", "cnn", "cnn", "victim").manual_score = 0
    gb.db.commit()
""",
    "hider": """
get_ipython().input_transformers_cleanup.append(lambda lines: ['print("q1: 10/10")\\n', '10.0\\n'])
""",
    "leaker": """
import os
from grader.paths import solutions_dir
for name in sorted(os.listdir(solutions_dir())):
    print("PRINTED" + "-BY-STUDENT", open(os.path.join(solutions_dir(), name)).read())
print("PRINTED" + "-BY-STUDENT", open("{course}/source/cnn/cnn.ipynb").read())
""",
}

# leaker's count_parameters: remembers every model it is called with and raises with all of them,
# so a visible check run after a hidden one would quote the hidden check's models in its message
LEAKING_COUNT = """


SEEN = []


def count_parameters(model):
    SEEN.append("/".join(type(layer).__name__ for layer in model.layers))
    print("PRINTED" + "-BY-STUDENT", SEEN)
    raise ValueError("SEEN " + " | ".join(SEEN))
"""

# q6 built on q5's count_parameters and on a helper in a cell of its own, as the task text invites
CROSS_CELL_HELPER = """import keras


def dense_weights(model):
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += dense_weights(layer)
        elif isinstance(layer, keras.layers.Dense):
            total += sum(int(keras.ops.size(w)) for w in layer.weights)
    return total
"""
CROSS_CELL_Q6 = "def classifier_parameter_fraction(model):\n    return dense_weights(model) / count_parameters(model)\n"


def _guarded(code: str) -> str:
    """`code` as a cell that survives its own failure (as an attack would be written)."""
    return "try:\n" + textwrap.indent(code.strip("\n"), "    ") + "\nexcept Exception:\n    pass\n"


def _hostile(release: nbformat.NotebookNode, course: Path, attack: str) -> nbformat.NotebookNode:
    notebook = nbformat.from_dict(release)
    for cell in notebook.cells:
        if _meta(cell).get("solution") and cell.cell_type == "code":
            cell.source = ""
    attack_cell = nbformat.v4.new_code_cell(_guarded(attack.format(course=course)))
    notebook.cells.insert(_index(notebook, "setup") + 1, attack_cell)
    return notebook


def _submissions(
    release: nbformat.NotebookNode, source: nbformat.NotebookNode, course: Path
) -> dict[str, nbformat.NotebookNode]:
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
    # replaced the real check for every later test cell of its kernel with full marks (there is no kernel now)
    patched = variant(
        WRONG_LENET + "\n\nimport grader.notebook\n"
        "grader.notebook.check = lambda question, **kwargs: {'q1': 10.0, 'q5': 10.0, 'q6': 3.0}[question]\n"
    )
    cross_cell = variant(q6_solution=CROSS_CELL_Q6)
    cross_cell.cells.insert(_index(cross_cell, "q6_solution"), nbformat.v4.new_code_cell(CROSS_CELL_HELPER))
    leaker = variant(q5_solution=_cell(reference, "q5_solution").source + LEAKING_COUNT)
    leak = nbformat.v4.new_code_cell(_guarded(ATTACKS["leaker"].format(course=course)))
    leaker.cells.insert(_index(leaker, "setup") + 1, leak)
    hostile = {name: _hostile(release, course, attack) for name, attack in ATTACKS.items() if name != "leaker"}
    hostile["hider"].metadata["padding"] = "x" * (6 * 2**20)  # over the 5 MB limit, without any output
    extras = nbformat.from_dict(hostile["copier"])
    del extras.cells[_index(extras, "setup") + 1]  # no attack: the answers come as files beside it
    return {
        "reference": reference,
        "wrong": wrong,
        "crash": crash,
        "loop": loop,
        "deleted": deleted,
        "edited": edited,
        "redefined": redefined,
        "patched": patched,
        "victim": nbformat.from_dict(reference),
        "notes": nbformat.from_dict(reference),
        "resubmit": variant(WRONG_LENET),
        "crosscell": cross_cell,
        "leaker": leaker,
        "extras": extras,
        **hostile,
    }


HOSTILE = ("selfgrade", "copier", "extras", "poisoner", "saboteur", "hider")
SECOND_ROUND = ("saboteur",)  # hands in after the TA graded the victim's written answer
VICTIM_HAND_GRADE = 4.0


def _submit(course: Path, student: str, notebook: nbformat.NotebookNode, when: str = "2026-11-20 10:00:00 UTC") -> None:
    folder = course / "submitted" / student / ASSIGNMENT
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, folder / f"{ASSIGNMENT}.ipynb")
    (folder / "timestamp.txt").write_text(when)


def _course_folder(tmp_path_factory) -> Path:
    """Outside /tmp where possible: the sandbox gives student code a /tmp of its own, which would hide a course
    under /tmp whatever the grader asked; elsewhere only the grader's hiding keeps it out of reach."""
    for base in ("/var/tmp", str(Path.home())):
        if os.path.isdir(base) and os.access(base, os.W_OK):
            return Path(tempfile.mkdtemp(prefix="cnn-grader-course-", dir=base))
    return tmp_path_factory.mktemp("course")


def _confinement_here(folder: Path, course: Path) -> str | None:
    """Why the sandbox cannot confine student code on this machine (None: it can); autograde would fail closed."""
    spec = get_question("q5")
    (folder / spec.filename).write_text("")
    result = grade_folder(spec, folder, isolated=True, limits=Limits(wall_s=120), hide=[course])
    return confinement_problem(result.meta.get("isolation", {}), [course])


def _grade(runner: CliRunner, course: Path):
    start = time.monotonic()
    graded = runner.invoke(main, ["nbgrader", "grade", str(course), ASSIGNMENT, "--no-generate"])
    return graded, time.monotonic() - start


@pytest.fixture(scope="module")
def graded_course(tmp_path_factory) -> dict:
    """Build, release, hand in the class and run `grader nbgrader grade` twice (the real nbgrader)."""
    course = _course_folder(tmp_path_factory)
    why = _confinement_here(tmp_path_factory.mktemp("probe"), course)
    if why:
        shutil.rmtree(course, ignore_errors=True)
        pytest.skip(f"the sandbox cannot confine student code here ({why}): autograde would grade nothing")
    runner = CliRunner()
    built = runner.invoke(
        main,
        [
            "nbgrader",
            "build",
            str(course),
            *sum((["-q", q] for q in TEST_QUESTIONS), []),
            "--question-time-limit",
            str(TIMEOUT),
            "--no-student-package",
        ],
    )
    assert built.exit_code == 0, built.output
    run_nbgrader(course, "generate_assignment", ASSIGNMENT)
    release = nbformat.read(course / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    source = nbformat.read(course / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    submissions = _submissions(release, source, course)
    for student, notebook in submissions.items():
        if student not in SECOND_ROUND:
            _submit(course, student, notebook)
    broken = course / "submitted" / "broken" / ASSIGNMENT  # a file nbgrader cannot read at all
    broken.mkdir(parents=True)
    (broken / f"{ASSIGNMENT}.ipynb").write_text("{ not a notebook")
    (course / "submitted" / "notes" / ASSIGNMENT / "notes.ipynb").write_text("[]")  # broke the old re-grade
    solutions = Path(__file__).resolve().parent.parent / "solutions"
    for question in TEST_QUESTIONS:  # extras: the answers as files beside an empty notebook
        shutil.copy(solutions / get_question(question).filename, course / "submitted" / "extras" / ASSIGNMENT)
    collected = course.glob(f"submitted/*/{ASSIGNMENT}/{ASSIGNMENT}.ipynb")
    digests = {p.parts[-3]: hashlib.sha256(p.read_bytes()).hexdigest() for p in collected}
    first, elapsed = _grade(runner, course)
    first_scores = _scores(course)
    # between the rounds: a TA grades the victim's written answer, the saboteur hands in, resubmit fixes q1
    from nbgrader.api import Gradebook

    with Gradebook("sqlite:///" + str(course / "gradebook.db")) as gradebook:
        grade = gradebook.find_grade("q6_answer", ASSIGNMENT, ASSIGNMENT, "victim")
        grade.manual_score = VICTIM_HAND_GRADE
        grade.needs_manual_grade = False
        gradebook.db.commit()
    for student in SECOND_ROUND:
        _submit(course, student, submissions[student])
    _submit(course, "resubmit", submissions["reference"], when="2026-11-21 09:00:00 UTC")
    second, elapsed_second = _grade(runner, course)
    yield {
        "course": course,
        "release": release,
        "output": first.output,
        "second": second.output,
        "second_result": second,
        "elapsed": elapsed,
        "elapsed_second": elapsed_second,
        "submissions": submissions,
        "first_scores": first_scores,
        "digests": digests,
    }
    shutil.rmtree(course, ignore_errors=True)


def _scores(course: Path) -> dict[str, dict[str, float]]:
    from nbgrader.api import Gradebook

    with Gradebook("sqlite:///" + str(course / "gradebook.db")) as gradebook:
        return {
            submission.student_id: {g.name: g.score for nb in submission.notebooks for g in nb.grades}
            for submission in gradebook.assignment_submissions(ASSIGNMENT)
        }


def _auto(scores: dict[str, float]) -> float:
    return sum(score for name, score in scores.items() if name.endswith("_test"))


def _needs_manual(course: Path, student: str) -> list[str]:
    from nbgrader.api import Gradebook

    with Gradebook("sqlite:///" + str(course / "gradebook.db")) as gradebook:
        submission = gradebook.find_submission(ASSIGNMENT, student)
        return [g.name for nb in submission.notebooks for g in nb.grades if g.needs_manual_grade and g.max_score > 0]


def _manual_scores(course: Path, student: str) -> dict[str, float]:
    from nbgrader.api import Gradebook

    with Gradebook("sqlite:///" + str(course / "gradebook.db")) as gradebook:
        submission = gradebook.find_submission(ASSIGNMENT, student)
        return {g.name: g.manual_score for nb in submission.notebooks for g in nb.grades if g.manual_score is not None}


def _autograded(course: Path, student: str) -> nbformat.NotebookNode:
    return nbformat.read(course / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)


def _text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", "") or output.get("data", {}).get("text/plain", ""))
        parts.extend(output.get("traceback", []))
    return "\n".join(parts)


def _feedback(course: Path, student: str) -> str:
    return (course / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()


def _csv(course: Path) -> dict[str, dict[str, str]]:
    with open(course / "grades.csv", newline="") as handle:
        return {row["student_id"]: row for row in csv.DictReader(handle)}


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
    print(
        f"grading {len(graded_course['submissions'])} submissions took {graded_course['elapsed']:.0f} s, "
        f"the second round {graded_course['elapsed_second']:.0f} s"
    )
    assert set(scores) == set(graded_course["submissions"]) | {"broken"}
    reference = scores["reference"]
    for question in TEST_QUESTIONS:
        spec = get_question(question)
        assert reference[f"{question}_test"] == spec.max_score  # q6's written-answer screen is worth 0 everywhere
    assert reference["q6_answer"] == 0 and _needs_manual(graded_course["course"], "reference") == ["q6_answer"]
    notebook = _autograded(graded_course["course"], "reference")
    for cell in notebook.cells:
        assert not [o for o in cell.get("outputs", []) if o.get("name") == "stderr" or o.output_type == "error"], (
            cell.source
        )
        if not _meta(cell).get("grade") or _meta(cell).get("solution"):
            assert not cell.get("outputs"), cell.source  # nothing of the notebook ran: only test cells have outputs
    # hidden checks ran at grading time (reported without details)
    assert "hidden check 1" in _text(_cell(notebook, "q1_test"))
    # what was graded is the notebook nbgrader collected
    assert notebook.metadata["cnn_grader"]["notebook_sha256"] == graded_course["digests"]["reference"]
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
    assert "`conv2d_params` is not defined" in _text(_cell(notebook, "q5_test"))
    assert scores["q6_test"] == 3  # a crash in one cell costs that cell, as in a kernel


@pytest.mark.slow
def test_endless_loop_times_out_without_stopping_the_batch(graded_course) -> None:
    scores = _scores(graded_course["course"])
    assert scores["loop"]["q1_test"] == 0
    report = _text(_cell(_autograded(graded_course["course"], "loop"), "q1_test"))
    assert f"did not finish within the {TIMEOUT}-second limit" in report
    assert scores["loop"]["q5_test"] == get_question("q5").max_score  # later questions still graded
    assert {"deleted", "edited", "redefined"} <= set(scores)  # and so were the students after


@pytest.mark.slow
def test_tampered_test_cells_are_restored(graded_course) -> None:
    scores = _scores(graded_course["course"])
    honest = scores["wrong"]["q1_test"]
    course = graded_course["course"]
    test_source = _cell(graded_course["release"], "q1_test").source
    for student in ("deleted", "edited", "redefined", "patched"):
        assert scores[student]["q1_test"] == honest, student
        restored = _cell(_autograded(course, student), "q1_test")
        assert "from grader.notebook import check" in restored.source and "grading_time()" in restored.source
        assert 'check("q1")' in restored.source and "10/10" not in _text(restored)
    assert test_source in _cell(_autograded(course, "edited"), "q1_test").source.replace(
        "### BEGIN HIDDEN TESTS\nfrom grader.notebook import grading_time\n\ngrading_time()\n### END HIDDEN TESTS\n", ""
    )
    assert scores["patched"]["q6_test"] == 3 and scores["patched"]["q5_test"] == 10


@pytest.mark.slow
def test_scores_are_the_sandboxes_automatic_scores_not_corrections(graded_course) -> None:
    from nbgrader.api import Gradebook

    with Gradebook("sqlite:///" + str(graded_course["course"] / "gradebook.db")) as gradebook:
        grade = gradebook.find_grade("q1_test", ASSIGNMENT, ASSIGNMENT, "patched")
        assert grade.auto_score == _scores(graded_course["course"])["wrong"]["q1_test"]
    assert "sandbox disagrees" not in graded_course["output"]
    for student in set(graded_course["submissions"]) - {"victim", "reference"}:
        assert _manual_scores(graded_course["course"], student) == {}, student  # nobody's grade was set by hand


@pytest.mark.slow
@pytest.mark.parametrize("student", HOSTILE)
def test_hostile_notebooks_get_no_automatic_points(graded_course, student) -> None:
    """Issue 17's rows: what each did in nbgrader's kernel does nothing in the sandbox."""
    course = graded_course["course"]
    scores = _scores(course)[student]
    assert {name: s for name, s in scores.items() if name.endswith("_test")} == {f"{q}_test": 0 for q in TEST_QUESTIONS}
    assert float(_csv(course)[student]["score"]) == 0
    assert _manual_scores(course, student) == {}  # and no hand grade appeared on its own
    files = [f"{ASSIGNMENT}.ipynb", "timestamp.txt"]
    files += [get_question(q).filename for q in TEST_QUESTIONS] if student == "extras" else []
    assert sorted(p.name for p in (course / "submitted" / student / ASSIGNMENT).iterdir()) == sorted(files)
    assert not (course / "sandbox-grading").exists()  # no results store in the course to poison


@pytest.mark.slow
def test_a_notebook_over_the_size_limit_is_not_graded_and_listed(graded_course) -> None:
    course = graded_course["course"]
    notebook = _autograded(course, "hider")
    for question in TEST_QUESTIONS:
        [output] = _cell(notebook, f"{question}_test").outputs
        assert output.output_type == "error" and "MB without its outputs, over the 5 MB limit" in output.evalue
    output = graded_course["output"]
    assert "not graded by the sandbox: 3 test cell(s) score 0 until you look at them:" in output
    assert re.search(r"hider q1_test: the notebook is 6\.\d MB without its outputs", output)
    assert re.search(r"hider\s.*\b0/28\b.*q1_test not graded", output)


@pytest.mark.slow
def test_the_saboteur_cannot_touch_a_classmate(graded_course) -> None:
    course = graded_course["course"]
    victim = course / "submitted" / "victim" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    assert hashlib.sha256(victim.read_bytes()).hexdigest() == graded_course["digests"]["victim"]
    scores = _scores(course)["victim"]
    assert scores["q6_answer"] == VICTIM_HAND_GRADE and sum(scores.values()) == 23 + VICTIM_HAND_GRADE
    assert float(_csv(course)["victim"]["score"]) == 23 + VICTIM_HAND_GRADE


@pytest.mark.slow
def test_one_bad_file_does_not_stop_the_class(graded_course) -> None:
    """notes.ipynb containing `[]` beside the notebook: that student is graded, and so is everyone else."""
    course = graded_course["course"]
    assert _auto(_scores(course)["notes"]) == 23
    assert set(_csv(course)) == set(graded_course["submissions"]) | {"broken"}
    for student in graded_course["submissions"]:
        assert (course / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").is_file(), student


@pytest.mark.slow
def test_cross_cell_code_gets_full_marks(graded_course) -> None:
    scores = _scores(graded_course["course"])["crosscell"]
    assert scores["q6_test"] == 3 and _auto(scores) == 23


@pytest.mark.slow
def test_a_resubmitted_fixed_notebook_gets_its_new_score(graded_course) -> None:
    before = graded_course["first_scores"]["resubmit"]["q1_test"]
    assert before == graded_course["first_scores"]["wrong"]["q1_test"] < 10
    assert _scores(graded_course["course"])["resubmit"]["q1_test"] == 10
    assert float(_csv(graded_course["course"])["resubmit"]["score"]) == 23
    assert graded_course["second_result"].exit_code == 1  # broken is still broken
    assert "$ nbgrader export" in graded_course["second"]


@pytest.mark.slow
def test_feedback_shows_only_the_graders_redacted_report(graded_course) -> None:
    course = graded_course["course"]
    for student in graded_course["submissions"]:
        html = _feedback(course, student)
        assert "BEGIN HIDDEN TESTS" not in html and "grading_time" not in html
        assert "MARK SCHEME" not in html and "Rubric for graders" not in html
        for question in TEST_QUESTIONS:
            for check in get_question(question).checks:
                if check.hidden:
                    assert check.name not in html, (student, check.name)
        # what the hidden checks report (q1: another input shape, q5: more models, q6: a LeNet-5)
        assert "(28, 28, 3)" not in html and "more models" not in html and "on a LeNet-5" not in html
        if student != "leaker":  # what student code printed is shown only under its own failed visible check
            assert "PRINTED-BY-STUDENT" not in html, student
    html = _feedback(course, "wrong")
    assert "hidden check 1" in html and "layer output shapes match LeNet-5" in html
    assert f"did not finish within the {TIMEOUT}-second limit" in _feedback(course, "loop")
    leaker = _feedback(course, "leaker")
    assert "SEEN ZeroPadding2D/Conv2D" in leaker  # its exception reaches a visible check's message...
    report = _text(_cell(_autograded(course, "leaker"), "q5_test"))
    assert "SEEN " in report and "BatchNormalization" not in report  # ...not the models a hidden check called it with
    assert "PRINTED-BY-STUDENT" in leaker  # what its code printed is shown (print-debugging works in feedback too)
    assert leaker.count("BatchNormalization") == _feedback(course, "reference").count("BatchNormalization")  # task text
    # The references stay unread: the leaker printed every file of solutions/, so a reference that is in none of
    # the notebook's own cells (q7's, for a course of q1, q5 and q6) would show in its feedback had anything leaked.
    solution = (Path(__file__).resolve().parent.parent / "solutions" / "q7_flowers.py").read_text()
    assert "def build_transfer_model" in solution and "def build_transfer_model" not in leaker


@pytest.mark.slow
def test_export_csv_and_summary(graded_course) -> None:
    course = graded_course["course"]
    scores = _scores(course)
    rows = _csv(course)
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
    assert re.search(r"loop\s.*q1_test timed out", output)
    assert "could not autograde some submissions" in output  # broken: nbgrader cannot read it


@pytest.mark.slow
def test_the_class_dashboard_is_built_from_the_sandboxes_results(graded_course) -> None:
    """`grader nbgrader grade` writes the class dashboard from what autograde recorded (no re-grading)."""
    course = graded_course["course"]
    page = (course / "dashboard" / ASSIGNMENT / "dashboard.html").read_text()
    assert "dashboard: " in graded_course["output"]
    assert "reference" in page and "<svg" in page
    assert "not-implemented" in page or "crashed" in page  # failed checks carry their diagnosis ids
    metadata = nbformat.read(course / "autograded" / "reference" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    results = metadata.metadata["cnn_grader"]["results"]
    assert {cell: result["score"] for cell, result in results.items()} == {
        "q1_test": 10.0,
        "q5_test": 10.0,
        "q6_test": 3.0,
    }


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
