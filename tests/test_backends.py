"""The structural questions pass on the JAX backend: the grader and solutions use only Keras 3's public API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GRADER = Path(sys.executable).with_name("grader")


@pytest.mark.slow
@pytest.mark.parametrize("question", ["q1", "q4", "q5", "q6"])
def test_reference_gets_full_marks_on_jax(question, tmp_path):
    import importlib.util

    assert importlib.util.find_spec("jax"), "install jax for CPU (it is in the test extra: pip install -e '.[test]')"
    env = {**os.environ, "KERAS_BACKEND": "jax", "KERAS_HOME": str(tmp_path), "JAX_PLATFORMS": "cpu"}
    command = (
        [str(GRADER), "check", question, "--solutions", "--json"]
        if GRADER.exists()
        else [sys.executable, "-m", "grader", "check", question, "--solutions", "--json"]
    )
    completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    report = json.loads(completed.stdout)
    assert report["question"] == question
    assert report["score"] == report["max_score"] > 0
    assert all(check["passed"] for check in report["checks"])
