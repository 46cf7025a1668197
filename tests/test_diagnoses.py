"""Diagnoses as data: every id raised in the questions and the comparator is declared on a check (or generic)."""

from __future__ import annotations

import ast
import importlib

from conftest import REPO

from grader.diagnoses import GENERIC, Diagnosis
from grader.questions import QUESTIONS

SOURCES = sorted((REPO / "grader" / "questions").glob("*.py")) + [REPO / "grader" / "comparator.py"]


def declared() -> dict[str, list[str]]:
    """id -> every title it is declared with (checks of every question, and the generic ones)."""
    found: dict[str, list[str]] = {}
    for diagnosis in GENERIC:
        found.setdefault(diagnosis.id, []).append(diagnosis.title)
    for question in QUESTIONS.values():
        for check in question.checks:
            for diagnosis in check.diagnoses:
                found.setdefault(diagnosis.id, []).append(diagnosis.title)
    return found


def raised_ids() -> dict[str, set[str]]:
    """file -> the diagnosis ids it raises: `diagnosis="..."` literals, `X.id` of its Diagnosis constants, returned ids."""
    out: dict[str, set[str]] = {}
    for path in SOURCES:
        tree = ast.parse(path.read_text())
        module = None
        ids: set[str] = set()
        for node in ast.walk(tree):
            values = []
            if isinstance(node, ast.keyword) and node.arg == "diagnosis":
                values = [node.value]
            elif isinstance(node, ast.FunctionDef) and node.name in ("difference_id", "_bias_or_inputs_id"):
                values = [n.value for n in ast.walk(node) if isinstance(n, ast.Return) and n.value is not None]
            for value in values:
                for item in ast.walk(value):
                    if isinstance(item, ast.Constant) and isinstance(item.value, str) and item.value:
                        ids.add(item.value)
                    elif isinstance(item, ast.Attribute) and item.attr == "id" and isinstance(item.value, ast.Name):
                        if module is None:
                            name = "grader." + ".".join(path.relative_to(REPO / "grader").with_suffix("").parts)
                            module = importlib.import_module(name)
                        constant = getattr(module, item.value.id, None)
                        if isinstance(constant, Diagnosis):
                            ids.add(constant.id)
        out[path.name] = ids
    return out


def test_every_raised_diagnosis_id_is_declared_on_a_check_or_generic():
    known = declared()
    missing = {name: sorted(ids - set(known)) for name, ids in raised_ids().items() if ids - set(known)}
    assert missing == {}
    assert {
        "c1-valid-padding",
        "biases-omitted",
        "alexnet-notes-sum",
        "num-classes-hard-coded",
        "percentage-not-fraction",
        "complement-returned",
        "count-params-called",
        "trainable-only-count",
        "missing-layer",
        "extra-layer",
        "wrong-units",
        "wrong-kernel",
    } <= set(known)
    assert {"missing-layer", "extra-layer", "wrong-padding"} <= raised_ids()["comparator.py"]


def test_every_diagnosis_constant_of_the_questions_is_declared():
    known = declared()
    for path in (REPO / "grader" / "questions").glob("*.py"):
        module = importlib.import_module(f"grader.questions.{path.stem}")
        for name, value in vars(module).items():
            if isinstance(value, Diagnosis):
                assert value.id in known, f"{path.stem}.{name} ({value.id}) is declared on no check"


def test_no_two_diagnoses_share_an_id_with_different_titles():
    clashes = {i: sorted(set(titles)) for i, titles in declared().items() if len(set(titles)) > 1}
    assert clashes == {}


def test_known_alexnet_totals_have_their_diagnoses():
    from grader.questions.alexnet_slips import known_alexnet_diagnoses, known_alexnet_totals

    ids = known_alexnet_diagnoses()
    assert set(ids) == set(known_alexnet_totals())
    assert ids[61_910_632] == "alexnet-notes-sum" and set(ids.values()) <= set(declared())
