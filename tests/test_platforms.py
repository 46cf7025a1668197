"""Student platforms without the sandbox (macOS, Windows): the CLI starts, grades unconfined and says so once.

CI runs on Linux, so the other platforms are simulated: a subprocess in which the
Unix-only modules cannot be imported, and the platform probe forced to "unavailable".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO
from test_cli_and_notebook import BAD_LENET

from grader.grading import grade_folder
from grader.nbgrader.build import SETUP_SOURCE, STUDENT_PACKAGE
from grader.questions import get_question
from grader.sandbox import probe
from grader.sandbox.probe import SANDBOX_VARIABLE, SandboxUnavailable

UNIX_ONLY = ("resource", "fcntl", "termios", "pwd", "grp")


def blocking(modules: tuple[str, ...], then: str) -> str:
    """Python code that makes `modules` unimportable (as on Windows), then runs `then`."""
    return textwrap.dedent(
        f"""
        import sys

        class Blocker:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {modules!r}:
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None

        sys.meta_path.insert(0, Blocker())
        for name in {modules!r}:
            sys.modules.pop(name, None)
        """
    ) + textwrap.dedent(then)


def run_python(code: str, *, sandbox: str | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop(SANDBOX_VARIABLE, None)
    if sandbox is not None:
        env[SANDBOX_VARIABLE] = sandbox
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, env=env, timeout=900, check=False
    )


def test_the_cli_starts_and_lists_without_unix_only_modules():
    done = run_python(
        blocking(
            UNIX_ONLY,
            """
            import grader.cli, grader.grading, grader.report, grader.sandbox.probe
            loaded = [name for name in {UNIX_ONLY!r} if name in sys.modules]
            assert not loaded, loaded
            sys.argv = ["grader", "list"]
            grader.cli.main()
            """.replace("{UNIX_ONLY!r}", repr(UNIX_ONLY)),
        )
    )
    assert done.returncode == 0, done.stderr
    assert "q1" in done.stdout and "points" in done.stdout


def test_the_probe_says_why_the_sandbox_cannot_run(monkeypatch):
    monkeypatch.delenv(SANDBOX_VARIABLE, raising=False)
    assert probe.available() == (True, "")  # CI: Linux
    monkeypatch.setattr(sys, "platform", "darwin")
    runs, why = probe.available()
    assert not runs and "needs Linux" in why
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv(SANDBOX_VARIABLE, "off")
    assert probe.available() == (False, f"switched off by {SANDBOX_VARIABLE}=off")


def test_grading_for_marks_refuses_to_run_student_code_unconfined(monkeypatch, tmp_path):
    """A student cannot switch the sandbox off for the TA: without `unconfined_ok`, nothing of theirs runs."""
    monkeypatch.setenv(SANDBOX_VARIABLE, "off")
    marker = tmp_path / "ran"
    (tmp_path / "q1_lenet.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    with pytest.raises(SandboxUnavailable, match="never runs it unconfined"):
        grade_folder(get_question("q1"), tmp_path, isolated=True)
    assert not marker.exists()


@pytest.mark.slow
def test_without_a_sandbox_check_grades_q1_like_the_sandbox_and_says_so_once(tmp_path):
    """`grader check` on a platform without the sandbox: full marks for the reference, the same messages for a
    wrong LeNet as in the sandbox, and one notice at the top of the report."""
    (tmp_path / "q1_lenet.py").write_text(BAD_LENET)
    check = """
        import sys
        from grader.cli import main
        sys.argv = ["grader", "check", "q1", *sys.argv[1:]]
        main()
    """

    def grader_check(*args: str) -> subprocess.CompletedProcess:
        code = blocking(UNIX_ONLY, check).replace("sys.argv[1:]", repr(list(args)))
        return run_python(code, sandbox="off")

    reference = grader_check("--solutions")
    assert reference.returncode == 0, reference.stdout + reference.stderr
    assert "score 10/10" in reference.stdout
    notice = "your code ran without the grader's sandbox"
    assert reference.stdout.count(notice) == 1 and f"{SANDBOX_VARIABLE}=off" in reference.stdout

    wrong = grader_check("--path", str(tmp_path), "--json")
    assert wrong.returncode == 1, wrong.stderr
    unconfined = json.loads(wrong.stdout)
    assert unconfined["meta"]["isolation"]["mode"] == "unconfined"

    sandboxed = grade_folder(get_question("q1"), tmp_path, isolated=True).to_dict()
    assert sandboxed["meta"]["isolation"]["process"] is True
    assert [(c["name"], c["passed"], c["message"]) for c in unconfined["checks"]] == [
        (c["name"], c["passed"], c["message"]) for c in sandboxed["checks"]
    ]
    assert unconfined["score"] == sandboxed["score"] < sandboxed["max_score"]


def test_the_notebook_setup_cell_says_how_to_install_the_grader(tmp_path):
    """Run where `grader` cannot be imported, the first cell stops with the one install command, no traceback."""
    done = run_python(blocking(("grader",), "exec(compile(" + repr(SETUP_SOURCE) + ", 'setup', 'exec'))"), cwd=tmp_path)
    assert done.returncode == 1
    assert f"pip install {STUDENT_PACKAGE}" in done.stderr
    assert "No module named 'grader'" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
