"""`grader batch`: grade a whole class in parallel, sandboxed, resumable, with CSV, summary and feedback.

The package's parts, in the order a batch uses them: `submissions` finds each student's
folder and stages its files; `jobs` turns a submission into plain data and grades it (on
a worker); `workers` runs jobs in local worker processes or on a Dask cluster; `store`
keeps every result in SQLite; `outputs` writes grades.csv, the summary and feedback.
Workers grade with the isolated executor: student code runs only in sandboxed children
(see `grader.sandbox`). The main process alone writes the store, one transaction per
submission, so a crash, Ctrl-C or SIGKILL loses at most the submissions being graded at
that moment; re-running grades what is missing.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ..checks import QuestionResult
from ..dashboard import write_dashboard
from ..dashboard.similarity import staged_sources
from ..options import GradingOptions, Limits
from ..questions import QUESTIONS, get_question
from .hand_grades import HandGrades, HandGradesError, unknown_students
from .hand_grades import pending as hand_pending
from .jobs import make_job
from .outputs import NBGRADER_COLUMNS, read_roster, write_csv, write_feedback, write_summary
from .store import BatchStore
from .submissions import Submission, discover
from .workers import LocalPool, run_on_cluster

__all__ = ["NBGRADER_COLUMNS", "BatchReport", "Submission", "discover", "run_batch"]


@dataclasses.dataclass
class BatchReport:
    """What a `run_batch` call did and where its outputs are."""

    graded: list[str]
    skipped: list[str]
    out_dir: Path
    csv_path: Path
    summary_path: Path
    feedback_dir: Path
    wall_s: float
    interrupted: bool = False
    pending_hand_grading: str = ""  # e.g. "q6 (5 points) for 12 students": left out of the totals
    results: dict[str, dict[str, QuestionResult]] = dataclasses.field(
        default_factory=dict
    )  # student -> question -> result


def run_batch(
    submissions_dir: Path,
    *,
    out_dir: Path,
    questions: Sequence[str] | None = None,
    workers: int = 2,
    regrade: bool | Sequence[str] = (),
    students: Sequence[str] = (),
    hand_grades: HandGrades | None = None,
    cluster: Any = None,
    limits: Limits | None = None,
    options: GradingOptions | None = None,
    assignment: str = "cnn",
    duedate: str = "",
    roster: Path | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    hide: Sequence[Path] = (),
) -> BatchReport:
    """Grade every submission under `submissions_dir` that is not graded yet; write CSV, summary and feedback.

    `questions` defaults to every question. `regrade` grades again students already graded:
    True for all (of `students`, when given), or a list of students. `students` restricts the
    grading to those (the outputs still cover the whole class). `hand_grades` (student ->
    question -> points, `grader.batch.hand_grades`) adds the written answers graded by hand;
    those not imported are left out of the totals and marked pending.
    `hide` names more folders the sandboxes must not see (e.g. an nbgrader course's `source/`);
    the submissions and `out_dir` are always hidden. In nbgrader's layout
    (`<student>/<assignment>/`) the folder named `assignment` is graded.
    """
    started = time.monotonic()
    question_ids = [get_question(q).id for q in questions] if questions else list(QUESTIONS)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(out_dir, 0o700)
    submissions = discover(submissions_dir, assignment=assignment)
    store = BatchStore(out_dir / "results.sqlite")
    try:
        staged = [get_question(q) for q in question_ids]
        for submission in submissions:
            store.register(submission.student, submission.digest, submission.timestamp)
            store.keep_sources(submission.student, staged_sources(submission.files, staged))  # for the dashboard
        everyone = [s.student for s in submissions]
        chosen = list(students) or everyone
        again = chosen if regrade is True else [] if regrade is False else list(regrade)
        unknown = set(again) | set(students)
        unknown -= set(everyone)
        if unknown:
            raise KeyError(f"no submission for {', '.join(sorted(unknown))} in {submissions_dir}")
        strays = unknown_students(hand_grades, everyone)
        if strays:  # before any grading: a typo in the TA's file should not cost a class's grading time
            raise HandGradesError(f"hand grades for students without a submission: {', '.join(strays)}")
        pending = set(store.pending(chosen, question_ids, again))
        todo = [s for s in submissions if s.student in pending]
        hidden = [str(Path(p).resolve()) for p in (submissions_dir, out_dir, *hide)]
        where = str(cluster) if cluster else None
        run = store.start_run({"questions": question_ids, "workers": workers, "cluster": where, "duedate": duedate})
        # No figures per student: the parent process would write them to its cwd.
        options = (options or GradingOptions()).replace(plots=None)
        jobs = [make_job(s, question_ids, limits or Limits(), hidden, options) for s in todo]
        graded: list[str] = []
        interrupted = False
        if progress:
            progress(0, len(jobs), "")
        pool = None
        try:
            if not jobs:
                results: Iterable[dict[str, Any]] = []
            elif cluster is not None:
                results = run_on_cluster(cluster, jobs)
            else:
                pool = LocalPool(max(1, min(workers, len(jobs))))
                results = pool.run(jobs)
            for result in results:
                store.commit(result["student"], result["results"], run=run, wall_s=float(result.get("wall_s", 0.0)))
                graded.append(result["student"])
                if progress:
                    progress(len(graded), len(jobs), result["student"])
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if pool is not None:
                pool.close(kill=interrupted)
        everything = store.results(question_ids)
        timestamps = store.timestamps()
    finally:
        store.close()
    people = read_roster(roster) if roster else {}
    csv_path = write_csv(
        out_dir / "grades.csv",
        everything,
        question_ids,
        timestamps,
        assignment=assignment,
        duedate=duedate,
        roster=people,
        hand=hand_grades,
    )
    problems = {s.student: s.problem for s in submissions if s.problem}
    summary_path = write_summary(out_dir, everything, question_ids, problems=problems)
    feedback_dir = write_feedback(out_dir / "feedback", everything, question_ids, hand_grades)
    waiting = hand_pending(list(everything), question_ids, hand_grades)
    write_dashboard(out_dir, question_ids=question_ids, duedate=duedate)  # dashboard.html, from the store
    return BatchReport(
        graded=graded,
        skipped=[s.student for s in submissions if s.student not in pending],
        out_dir=out_dir,
        csv_path=csv_path,
        summary_path=summary_path,
        feedback_dir=feedback_dir,
        wall_s=round(time.monotonic() - started, 1),
        interrupted=interrupted,
        results=everything,
        pending_hand_grading=_describe_pending(waiting),
    )


def _describe_pending(waiting: dict[str, list[str]]) -> str:
    """'q6 (5 points) for 12 students' for the answers still to grade by hand ('' when none)."""
    counts: dict[str, int] = {}
    for questions in waiting.values():
        for q in questions:
            counts[q] = counts.get(q, 0) + 1
    return "; ".join(
        f"{q} ({get_question(q).manual_points:g} points) for {n} student{'s' if n > 1 else ''}"
        for q, n in counts.items()
    )
