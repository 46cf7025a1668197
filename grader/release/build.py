"""`release`: record the public checks' reference data, build the wheel, lay out the student folder."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from ..paths import REFERENCE_DATA, exercises_dir, solutions_dir
from .package import build_wheel, verify_wheel
from .record import Recording, record


@dataclasses.dataclass
class Released:
    """What `release` wrote, and what it left out."""

    wheel: Path
    data: Path | None  # None: only the wheel was written
    exercises: Path | None
    notebook: Path | None
    hidden_only: int  # reference results that only hidden checks used (not released)
    problems: list[str]  # reference results the public checks used that could not be written as data


def record_data() -> Recording:
    """Run the checks on the references and the stubs; what they took from the references."""
    from ..grading import solution_namespace
    from ..questions import QUESTIONS

    return record(QUESTIONS.values(), solutions_dir(), exercises_dir(), solution_namespace)


def release(out: Path, *, notebook: Path | None = None, wheel_only: bool = False) -> Released:
    """Write the student package into `out`: the wheel, the stubs, the released data and the notebook if given.

    `wheel_only`: just the wheel (it holds the stubs and the data too), e.g. beside an
    nbgrader assignment's notebook.
    """
    recording = record_data()
    data = recording.released()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("cnn_grader-*.whl"):  # one wheel: the one that matches this release's data
        old.unlink()
    wheel = build_wheel(data, out)
    verify_wheel(wheel, solutions_dir())
    if wheel_only:
        return Released(wheel, None, None, None, len(recording.hidden_only()), recording.problems)
    data_file = out / REFERENCE_DATA  # beside the wheel, for staff to read what students can read
    data_file.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    exercises = out / "exercises"
    if exercises.exists():
        shutil.rmtree(exercises)
    shutil.copytree(exercises_dir(), exercises, ignore=shutil.ignore_patterns("__pycache__"))
    shipped_notebook = None
    if notebook is not None:
        shipped_notebook = out / notebook.name
        shutil.copy2(notebook, shipped_notebook)
    return Released(wheel, data_file, exercises, shipped_notebook, len(recording.hidden_only()), recording.problems)
