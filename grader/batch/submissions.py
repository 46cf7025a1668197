"""Submissions of a class: finding each student's folder, and staging its files for grading.

A submission is a folder per student holding exercise files (`q1_lenet.py`, ...) or
notebooks (`*.ipynb`, nbgrader-style: every code cell above the test cell `<qN>_test`
and the written answers `<qN>_<name>` become the question's file, see `notebook_modules`;
a notebook without nbgrader metadata contributes all its code cells). nbgrader's
`submitted/<student>/<assignment>/` layout works too (pass the `submitted` folder): only
the assignment's folder is graded.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime
import hashlib
import io
import json
import tokenize
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..checks import Question
from ..text import clean, parse_timestamp

MAX_FILE_BYTES = 5 * 1024 * 1024  # per file; a notebook is measured without its outputs
MAX_RAW_NOTEBOOK_BYTES = 64 * 1024 * 1024  # a notebook file larger than this is not even read
SUBMISSION_SUFFIXES = (".py", ".ipynb", ".txt", ".json", ".csv")


@dataclasses.dataclass
class Submission:
    """One student's folder: the files to grade, their digest and timestamp."""

    student: str
    folder: Path
    files: dict[str, bytes]
    timestamp: str | None
    timestamp_problem: str | None = None  # why timestamp.txt could not be used
    problems: list[str] = dataclasses.field(default_factory=list)  # files left out, and why

    @property
    def problem(self) -> str | None:
        """Everything the TA should know about this submission, in one line (None: nothing)."""
        notes = [*self.problems, *([self.timestamp_problem] if self.timestamp_problem else [])]
        return "; ".join(notes) or None

    @property
    def digest(self) -> str:
        sha = hashlib.sha256()
        for name in sorted(self.files):
            sha.update(name.encode() + b"\0" + hashlib.sha256(self.files[name]).digest())
        return sha.hexdigest()


def discover(root: Path, *, assignment: str | None = None) -> list[Submission]:
    """Every student folder under `root` (sorted by student id).

    In nbgrader's layout (`<student>/<assignment>/`) only the folder named `assignment` is
    graded, never another assignment's folder in its place; without `assignment`, a student's
    only folder. A file over the size limit (a notebook measured without its outputs) is left
    out and reported in the submission's `problems`; a student left with nothing to grade is
    still listed (and scores 0), so the TA sees why.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of submissions")
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files, problems = _collect_files(folder)
        if not files and not problems:  # nbgrader: submitted/<student>/<assignment>/
            inner = [p for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")]
            chosen = [p for p in inner if p.name == assignment] if assignment else inner[:1] if len(inner) == 1 else []
            if not chosen:
                continue
            folder = chosen[0]
            files, problems = _collect_files(folder)
        if files or problems:
            student = folder.name if folder.parent == root else folder.parent.name
            timestamp, problem = _timestamp(folder)
            found.append(Submission(student, folder, files, timestamp, problem, problems))
    return found


def cleared_notebook(data: bytes) -> bytes | None:
    """A notebook file's bytes without its outputs and execution counts (None: not a notebook)."""
    try:
        notebook = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells", []), list):
        return None
    for cell in notebook.get("cells", []):
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    return json.dumps(notebook, ensure_ascii=False).encode("utf-8")


def _collect_files(folder: Path) -> tuple[dict[str, bytes], list[str]]:
    """The gradable files of `folder` and, for each file left out for its size, why."""
    files, problems = {}, []
    for path in sorted(folder.iterdir()):
        if not (path.is_file() and not path.is_symlink() and path.suffix in SUBMISSION_SUFFIXES):
            continue
        size = path.stat().st_size
        if path.suffix == ".ipynb" and size <= MAX_RAW_NOTEBOOK_BYTES:
            data = path.read_bytes()
            cleared = cleared_notebook(data)
            size = len(cleared) if cleared is not None else size
            data = cleared if cleared is not None else data
        elif size <= MAX_FILE_BYTES:
            data = path.read_bytes()
        else:
            data = b""
        if size > MAX_FILE_BYTES or not data and size:
            without = " without its outputs" if path.suffix == ".ipynb" else ""
            megabytes = f"{size / 2**20:.1f} MB{without}, over the {MAX_FILE_BYTES / 2**20:g} MB limit"
            problems.append(f"{path.name} is {megabytes}: not graded")
            continue
        files[path.name] = data
    if not any(name.endswith((".py", ".ipynb")) for name in files):
        return {}, problems
    return files, problems


def _timestamp(folder: Path) -> tuple[str | None, str | None]:
    """When the student submitted, as 'YYYY-MM-DD HH:MM:SS' (UTC if the file gives a zone), and a problem if any.

    nbgrader writes `timestamp.txt`; it is the student's own file too, so it is parsed as a
    date and never taken as text: one that is not a date gives no timestamp and a problem.
    Without the file, the newest file's modification time stands in.
    """
    stamp = folder / "timestamp.txt"
    if stamp.is_file():
        raw = stamp.read_bytes()[:200].decode("utf-8", "replace").strip()
        when = parse_timestamp(raw)
        if when is None:
            return None, f"timestamp.txt is not a date ({clean(raw, 40, newlines=False)!r}): left empty"
        return when.isoformat(sep=" ", timespec="seconds"), None
    mtimes = [p.stat().st_mtime for p in folder.iterdir() if p.is_file()]
    if not mtimes:
        return None, None
    return datetime.datetime.fromtimestamp(max(mtimes)).isoformat(sep=" ", timespec="seconds"), None


# --------------------------------------------------------------------------- notebooks


def notebook_modules(notebook: Mapping[str, Any], questions: Sequence[Question]) -> dict[str, str]:
    """The question files a notebook stands for: {filename: source}.

    A question's file is every code cell above its test cell (`<qN>_test`; test cells
    themselves left out), so helpers and earlier answers are visible as in the kernel, then
    its written answers (`<qN>_<name>` markdown cells) as strings. Each cell runs on its own:
    one that raises or does not compile stops neither the next cells nor the file, as in a
    kernel. A notebook without nbgrader metadata contributes all its code cells that call no
    `check(`; one whose test cell is gone, all its code cells but test cells.
    """
    found = notebook.get("cells", [])
    cells = [c for c in found if isinstance(c, Mapping)] if isinstance(found, list) else []
    tagged = any(_grade_id(c) for c in cells)
    modules = {}
    for question in questions:
        if tagged:
            test = next((i for i, c in enumerate(cells) if _grade_id(c) == f"{question.id}_test"), len(cells))
            code = [_code(c) for c in cells[:test] if c.get("cell_type") == "code" and not _is_test(c)]
        else:
            code = [_code(c) for c in cells if c.get("cell_type") == "code" and "check(" not in _text(c)]
        answers = []
        for name in question.names:
            wanted = f"{question.id}_{name.lower()}"
            written = [_text(c) for c in cells if c.get("cell_type") == "markdown" and _grade_id(c) == wanted]
            if written:
                answers.append(f"{name} = {written[0]!r}\n")
        if any(part.strip() for part in code) or answers:
            modules[question.filename] = _module(code) + "".join(answers)
    return modules


def _grade_id(cell: Mapping[str, Any]) -> str:
    meta = cell.get("metadata", {})
    nbgrader = meta.get("nbgrader", {}) if isinstance(meta, Mapping) else {}
    return str(nbgrader.get("grade_id", "")) if isinstance(nbgrader, Mapping) else ""


def _is_test(cell: Mapping[str, Any]) -> bool:
    """An nbgrader test cell: graded, not a solution (the grader's, restored by nbgrader at autograde)."""
    meta = cell.get("metadata", {})
    nbgrader = meta.get("nbgrader", {}) if isinstance(meta, Mapping) else {}
    return isinstance(nbgrader, Mapping) and bool(nbgrader.get("grade")) and not nbgrader.get("solution")


def _text(cell: Mapping[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(str(s) for s in source) if isinstance(source, list) else str(source)


def _code(cell: Mapping[str, Any]) -> str:
    """A code cell's Python: IPython's `%magic` and `!shell` lines blanked."""
    lines = []
    for line in _text(cell).splitlines():
        lines.append("" if line.lstrip().startswith(("%", "!")) else line)
    return "\n".join(lines)


def _module(cells: Sequence[str]) -> str:
    """One module of cells that each run on their own, as in a kernel (an error ends its own cell only)."""
    future, blocks = [], []
    for number, code in enumerate(cells, 1):
        if not code.strip():
            continue
        try:
            tree = ast.parse(code)
            compile(tree, f"cell {number}", "exec")
        except (SyntaxError, ValueError, MemoryError, RecursionError) as error:
            why = f"{type(error).__name__}: {getattr(error, 'msg', error)}"
            blocks.append(f"# cell {number} was left out: it is not valid Python ({why!r})\n")
            continue
        lines = code.splitlines()
        for node in tree.body:  # `from __future__` must open the module: moved up
            if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                future.append("\n".join(lines[node.lineno - 1 : node.end_lineno]))
                for index in range(node.lineno - 1, node.end_lineno or node.lineno):
                    lines[index] = ""
        block = (
            "try:\n" + _indented("\n".join(lines)) + "    pass\n"
            f"except BaseException:  # cell {number} failed: the next cells run all the same\n    pass\n"
        )
        try:
            compile(block, f"cell {number}", "exec")
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            block = "\n".join(lines) + "\n"  # cannot be indented (e.g. mixed tabs): runs unguarded
        blocks.append(block)
    return "".join(line + "\n" for line in future) + "\n".join(blocks)


def _indented(code: str) -> str:
    """`code` indented one level, except lines inside multi-line strings (indenting them would change the string)."""
    inside: set[int] = set()  # 1-based numbers of lines that continue a string
    fstring_start = getattr(tokenize, "FSTRING_START", None)
    fstring_end = getattr(tokenize, "FSTRING_END", None)
    opened: list[int] = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(code).readline):
            if token.type == fstring_start:
                opened.append(token.start[0])
            elif token.type == fstring_end and opened:
                inside.update(range(opened.pop() + 1, token.end[0] + 1))
            elif token.type == tokenize.STRING and token.end[0] > token.start[0]:
                inside.update(range(token.start[0] + 1, token.end[0] + 1))
    except (tokenize.TokenError, SyntaxError):
        pass  # compiled already: cannot happen
    out = []
    for number, line in enumerate(code.splitlines(), 1):
        out.append(line if number in inside or not line.strip() else "    " + line)
    return "".join(line + "\n" for line in out)


def stage_files(files: Mapping[str, bytes], folder: Path, questions: Sequence[Question]) -> None:
    """Write a job's files into `folder`; notebooks become question files (a .py file of the same name wins).

    A file that is not a notebook at all (e.g. `[]` in `notes.ipynb`) contributes nothing.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if "/" in name or name.startswith("."):
            continue
        (folder / name).write_bytes(data)
    for name, data in files.items():
        if name.endswith(".ipynb"):
            try:
                notebook = json.loads(data.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                continue
            if not isinstance(notebook, Mapping):
                continue
            for filename, source in notebook_modules(notebook, questions).items():
                if filename not in files:
                    (folder / filename).write_text(source)
