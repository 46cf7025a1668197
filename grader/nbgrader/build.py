"""Generate the nbgrader course: `nbgrader_config.py` and the source notebook.

Everything comes from the package: the task text from each exercise's module docstring,
the reference code from `solutions/` (function bodies between `### BEGIN SOLUTION` and
`### END SOLUTION`), the points from the question's checks, the written answers with
their points and rubrics from the question's declaration. Adding a question to the
registry adds it to the notebook; nothing here names a question.

Per question the notebook holds:

* a locked markdown task cell (the exercise text);
* the solution cell (`<qN>_solution`): imports and signatures stay, bodies are cleared;
* a locked autograder test cell (`<qN>_test`) whose last expression is `check("qN")`, a
  plain float that nbgrader takes as partial credit. Its `### BEGIN HIDDEN TESTS` part
  (removed from the release, restored by autograde) calls `grading_time()`, which makes
  `check` run the hidden checks too and report them without names or messages;
* for a written answer (`Question.written_answers`): a manually graded markdown cell
  (`<qN>_answer`) and a 0-point task cell (`<qN>_answer_rubric`) whose rubric sits in a
  `### BEGIN MARK SCHEME` region, so students never see it. The checks that read the
  written answer are left out of the test cell (`check(..., by_hand=...)`).

The reference solutions are never copied into the course: the grading machine imports
them from the installed package (or `$CNN_GRADER_SOLUTIONS`).
"""

from __future__ import annotations

import ast
import json
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from ..checks import Question
from ..paths import exercises_dir, solutions_dir
from .config import DEFAULT_COURSE_ID, DEFAULT_TIMEOUT, write_config

DEFAULT_ASSIGNMENT = "cnn"
SCHEMA_VERSION = 3

# Harmless start-up lines that TensorFlow/absl/CUDA print on stderr before any Python code
# can silence them. The setup cell already captures them; this is the safety net, since a
# single stderr line scores a test cell 0. A stderr output is dropped if it matches.
IGNORE_PATTERN = (
    r"(All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|cudart_stub\.cc|Could not find cuda drivers|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|oneDNN custom operations are on|TF_ENABLE_ONEDNN_OPTS"
    r"|This TensorFlow binary is optimized to use available CPU instructions"
    r"|computation_placer\.cc|cuda_executor\.cc|failed call to cuInit"
    r"|Skipping registering GPU devices)"
)

GENERIC_RUBRIC = """\
Award up to {points} points for an answer that makes the points of the reference answer
below in the student's own words; partial credit for partial coverage."""


def _nbgrader_meta(
    grade_id: str,
    *,
    grade: bool = False,
    solution: bool = False,
    locked: bool = False,
    task: bool = False,
    points: float | None = None,
) -> dict:
    meta = {
        "grade": grade,
        "grade_id": grade_id,
        "locked": locked,
        "schema_version": SCHEMA_VERSION,
        "solution": solution,
        "task": task,
    }
    if grade or task:
        meta["points"] = points if points is not None else 0
    return {"nbgrader": meta}


def written_answers(question: Question, source: str | None = None) -> dict[str, str]:
    """The question's written answers (declared on it), each with the string the reference assigns to it."""
    declared = {answer.name for answer in question.written_answers}
    tree = ast.parse(source if source is not None else _solution_source(question))
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id in declared:
                    found[target.id] = node.value.value
    return found


def _solution_source(question: Question) -> str:
    return (solutions_dir() / question.filename).read_text()


def _task_text(question: Question) -> str:
    path = exercises_dir() / question.filename
    doc = ast.get_docstring(ast.parse(path.read_text())) or question.title
    first, _, rest = doc.partition("\n")
    heading = first.strip().rstrip(".")
    body = rest.strip("\n")
    return f"## {heading}\n\n{body}\n\nRun the test cell below the code to check your work."


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _first_line(node: ast.stmt) -> int:
    """0-based index of the node's first line (its first decorator, if any)."""
    decorators = getattr(node, "decorator_list", None)
    return (decorators[0].lineno if decorators else node.lineno) - 1


def _segment(lines: Sequence[str], node: ast.stmt) -> list[str]:
    return list(lines[_first_line(node) : node.end_lineno])


def _is_literal(node: ast.AST | None) -> bool:
    if node is None:
        return False
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError):
        return False
    return True


def _names_used(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def solution_cell_source(question: Question, source: str | None = None, stub: str | None = None) -> str:
    """The solution cell: the exercise stub's imports, signatures and docstrings (what students
    see), the reference's extra imports, and each function's reference body between solution
    markers. Reference helper functions and literal constants that the stub lacks are nested
    into the functions that use them, so the released cell defines what the stub defines;
    other module-level reference statements (stateful objects, calls) stay at the top."""
    source = source if source is not None else _solution_source(question)
    stub = stub if stub is not None else (exercises_dir() / question.filename).read_text()
    lines, stub_lines = source.splitlines(), stub.splitlines()
    tree, stub_tree = ast.parse(source), ast.parse(stub)
    answers = written_answers(question, source)
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    stub_functions = {n.name: n for n in stub_tree.body if isinstance(n, functions)}
    ref_functions = {n.name: n for n in tree.body if isinstance(n, functions)}
    interface = [name for name in ref_functions if name in stub_functions or name in question.names]
    stub_assigned = {
        t.id for n in stub_tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)
    }
    # reference-only definitions (helper functions, constants): nested where they are used
    helpers: dict[str, ast.stmt] = {name: node for name, node in ref_functions.items() if name not in interface}

    imports: list[str] = []
    for node in [*stub_tree.body, *tree.body]:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            text = "\n".join(_segment(stub_lines if node in stub_tree.body else lines, node))
            if text not in imports:
                imports.append(text)
    constants: list[str] = []  # top-level statements that the stub has too: the stub's version
    for node in stub_tree.body:
        targets = [t.id for t in node.targets if isinstance(t, ast.Name)] if isinstance(node, ast.Assign) else []
        if targets and not any(t in answers for t in targets):
            constants.append("\n".join(_segment(stub_lines, node)))
    for index, node in enumerate(tree.body):
        if isinstance(node, (ast.Import, ast.ImportFrom, *functions)) or (index == 0 and _is_docstring(node)):
            continue
        targets = [t.id for t in getattr(node, "targets", [getattr(node, "target", None)]) if isinstance(t, ast.Name)]
        if any(t in answers or t in stub_assigned for t in targets):
            continue
        if targets and _is_literal(getattr(node, "value", None)):
            helpers.update({t: node for t in targets})  # a literal constant: safe to repeat in a function
        else:
            constants.append("\n".join(_segment(lines, node)))  # state or a call: stays module-level

    blocks = ["\n".join(imports)] if imports else []
    if constants:
        blocks.append("\n".join(constants))
    for name in interface:
        node = ref_functions[name]
        body = node.body
        code = body[1:] if _is_docstring(body[0]) and len(body) > 1 else body
        header = lines[_first_line(node) : _first_line(body[0])]
        indent = lines[code[0].lineno - 1][: len(lines[code[0].lineno - 1]) - len(lines[code[0].lineno - 1].lstrip())]
        stub_node = stub_functions.get(name)
        if stub_node is not None and _is_docstring(stub_node.body[0]):
            doc = _segment(stub_lines, stub_node.body[0])
        elif _is_docstring(body[0]):
            doc = _segment(lines, body[0])
        else:
            doc = []
        # helpers the body needs (transitively), nested at the top of the solution
        needed, todo = [], list(_names_used(node))
        while todo:
            used = todo.pop()
            if used in helpers and used not in needed:
                needed.append(used)
                todo.extend(_names_used(helpers[used]))
        nested: list[str] = []
        for helper_node in sorted({id(helpers[h]): helpers[h] for h in needed}.values(), key=lambda n: n.lineno):
            text = textwrap.dedent("\n".join(_segment(lines, helper_node)))
            nested += [indent + line if line.strip() else "" for line in text.splitlines()]
            if isinstance(helper_node, functions):
                nested.append("")
        solution = nested + lines[_first_line(code[0]) : node.end_lineno]
        blocks.append("\n".join([*header, *doc, f"{indent}### BEGIN SOLUTION", *solution, f"{indent}### END SOLUTION"]))
    return "\n\n\n".join(blocks).strip("\n") + "\n"


def test_cell_source(question: Question, by_hand: Sequence[str] = ()) -> str:
    """The locked test cell: imports the real `check` itself, hidden checks on at grading time only."""
    names = ", ".join(n for n in question.names if n not in by_hand)
    call = f'check("{question.id}", by_hand={tuple(by_hand)!r})' if by_hand else f'check("{question.id}")'
    hidden = sum(c.points for c in question.checks if c.hidden)
    note = f", {hidden:g} of them from hidden checks that run only at grading" if hidden else ""
    same = (
        f"the written {' and '.join(by_hand)} is graded by hand below"
        if by_hand
        else f"`grader check {question.id}` gives the same score"
    )
    return (
        f"# Autograder test for {question.id}: {auto_points(question, by_hand):g} points{note}.\n"
        f"# It grades {names} from this notebook; {same}.\n"
        "# Do not edit: nbgrader restores this cell when grading.\n"
        "from grader.notebook import check\n"
        "### BEGIN HIDDEN TESTS\n"
        "from grader.notebook import grading_time\n"
        "\n"
        "grading_time()\n"
        "### END HIDDEN TESTS\n"
        f"{call}\n"
    )


def auto_points(question: Question, by_hand: Sequence[str] = ()) -> float:
    """The test cell's points: every check except those of answers graded by hand."""
    manual = set(question.checks_screening(by_hand))
    return float(sum(c.points for c in question.checks if c.name not in manual))


STUDENT_PACKAGE = "cnn-grader"  # what `pip install` gets a student (the TA may hand out its wheel file instead)
SETUP_SOURCE = f"""\
# Setup (do not edit): find the grader, and silence TensorFlow before anything imports it.
# nbgrader scores a test cell 0 when anything reaches stderr, and TensorFlow logs on start-up.
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

try:
    from grader.quiet import import_keras
except ImportError as error:  # not installed here: say how to get it, without a wall of traceback
    raise SystemExit(
        f"The grader is not installed in this notebook's Python ({{error}}). Install it with one command, "
        "in a new cell (Jupyter, JupyterHub, Colab) or without the % in a terminal:\\n\\n"
        "    %pip install {STUDENT_PACKAGE}\\n\\n"
        "(or %pip install the cnn_grader .whl file that came with this notebook), then restart the kernel and "
        "run this cell again."
    ) from None

keras = import_keras()
"""


def make_notebook(questions: Iterable[Question], *, title: str = "Convolutional networks") -> nbformat.NotebookNode:
    """The source notebook (with solutions and hidden tests) for `questions`, in order."""
    questions = list(questions)
    cells = [
        new_markdown_cell(
            f"# {title}\n\n"
            "Write your code in the cells marked `YOUR CODE HERE`, then run the test cell below "
            "each question: it prints what passes and what does not, and its value is your score. "
            "Some checks are hidden and run only when your notebook is graded. The locked cells "
            "(setup, tests) are restored when grading, so editing them changes nothing.",
            metadata=_nbgrader_meta("intro", locked=True),
        ),
        new_code_cell(SETUP_SOURCE, metadata=_nbgrader_meta("setup", locked=True)),
    ]
    for question in questions:
        source = _solution_source(question)
        answers = written_answers(question, source)
        qid = question.id
        cells.append(new_markdown_cell(_task_text(question), metadata=_nbgrader_meta(f"{qid}_task", locked=True)))
        cells.append(
            new_code_cell(
                solution_cell_source(question, source), metadata=_nbgrader_meta(f"{qid}_solution", solution=True)
            )
        )
        cells.append(
            new_code_cell(
                test_cell_source(question, tuple(answers)),
                metadata=_nbgrader_meta(
                    f"{qid}_test", grade=True, locked=True, points=auto_points(question, tuple(answers))
                ),
            )
        )
        for answer in question.written_answers:
            name, points, reference = answer.name, answer.points, answers.get(answer.name, "")
            cells.append(
                new_markdown_cell(
                    f"### BEGIN SOLUTION\n{reference.strip()}\n### END SOLUTION",
                    metadata=_nbgrader_meta(f"{qid}_{name.lower()}", grade=True, solution=True, points=points),
                )
            )
            rubric = (answer.rubric or GENERIC_RUBRIC).format(points=f"{points:g}")
            cells.append(
                new_markdown_cell(
                    f"**{qid} `{name}`** is graded by hand ({points:g} points): write it in the cell above.\n\n"
                    f"### BEGIN MARK SCHEME\n**Rubric for graders**\n\n{rubric}\n\n"
                    f"Reference answer:\n\n> {textwrap.fill(' '.join(reference.split()), 88).replace(chr(10), chr(10) + '> ')}\n"
                    "### END MARK SCHEME",
                    metadata=_nbgrader_meta(f"{qid}_{name.lower()}_rubric", task=True, locked=True, points=0),
                )
            )
    notebook = new_notebook(cells=cells)
    notebook.metadata.update(
        {
            "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        }
    )
    return notebook


def build_course(
    course_dir: Path,
    questions: Sequence[str] | None = None,
    *,
    assignment: str = DEFAULT_ASSIGNMENT,
    course_id: str = DEFAULT_COURSE_ID,
    timeout: int = DEFAULT_TIMEOUT,
) -> Path:
    """Write the course into `course_dir`; returns the source notebook's path.

    `questions` picks question ids (default: every registered question, in order).
    Rebuilding overwrites the source notebook and merges the config (`grader.nbgrader.config`:
    other assignments' settings and the TA's own are kept, changes are warned about on
    stderr); the gradebook and submissions are left alone (run
    `nbgrader generate_assignment --force` afterwards).
    """
    from ..questions import QUESTIONS, get_question

    chosen = [get_question(q) for q in questions] if questions else list(QUESTIONS.values())
    course_dir = Path(course_dir)
    source = course_dir / "source" / assignment
    source.mkdir(parents=True, exist_ok=True)
    write_config(course_dir, assignment=assignment, course_id=course_id, timeout=timeout, pattern=IGNORE_PATTERN)
    path = source / f"{assignment}.ipynb"
    notebook = make_notebook(chosen)
    nbformat.validate(notebook)
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
    return path
