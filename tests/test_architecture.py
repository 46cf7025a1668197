"""The package's shape: small modules, no import cycle, no question named outside `grader/questions/`."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "grader"
MAX_LINES = 500
QUESTION_ID = re.compile(r"\bq[1-9]\b")


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that `name` imports anywhere in its file (function-local imports included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {target for target in targets if target in known}
    return found - {name}


def strings_in_code(tree: ast.AST) -> list[ast.Constant]:
    """String constants that are not docstrings."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_no_module_is_over_the_size_limit() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert {name: lines for name, lines in sizes.items() if lines > MAX_LINES} == {}


def test_no_import_cycle_even_through_function_local_imports() -> None:
    table = modules()
    graph = {name: imported_modules(name, path, set(table)) for name, path in table.items()}
    # A package's __init__ that re-exports its own submodules is not a cycle with them.
    for name in graph:
        graph[name] = {t for t in graph[name] if not (name.startswith(t + ".") and table[t].name == "__init__.py")}
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_no_question_id_in_generic_code() -> None:
    offenders = []
    for name, path in modules().items():
        if name.startswith("grader.questions"):
            continue
        for node in strings_in_code(ast.parse(path.read_text())):
            if QUESTION_ID.search(node.value):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value[:60]!r}")
    assert offenders == []


def test_the_checks_see_what_they_look_for(tmp_path: Path) -> None:
    """The three detectors above find a planted long module, cycle and question id."""
    (tmp_path / "a.py").write_text("from .b import x\n\ndef f():\n    return 'grade q3 now'\n" + "\n" * MAX_LINES)
    (tmp_path / "b.py").write_text("def g():\n    from .a import f\n    return f\n")
    known = {"pkg.a", "pkg.b"}
    assert imported_modules("pkg.a", tmp_path / "a.py", known) == {"pkg.b"}
    assert imported_modules("pkg.b", tmp_path / "b.py", known) == {"pkg.a"}
    strings = strings_in_code(ast.parse((tmp_path / "a.py").read_text()))
    assert [s.value for s in strings if QUESTION_ID.search(s.value)] == ["grade q3 now"]
    assert len((tmp_path / "a.py").read_text().splitlines()) > MAX_LINES
