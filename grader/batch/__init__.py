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
    results: dict[str, dict[str, QuestionResult]] = dataclasses.field(
        default_factory=dict
    )  # student -> question -> result


def run_batch(
    submissions_dir: Path,
    *,
    out_dir: Path,
    questions: Sequence[str] | None = None,
    workers: int = 2,
    regrade: Sequence[str] = (),
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

    `questions` defaults to every question.
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
        unknown = set(regrade) - {s.student for s in submissions}
        if unknown:
            raise KeyError(f"no submission for {', '.join(sorted(unknown))} in {submissions_dir}")
        pending = set(store.pending([s.student for s in submissions], question_ids, regrade))
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
    )
    problems = {s.student: s.problem for s in submissions if s.problem}
    summary_path = write_summary(out_dir, everything, question_ids, problems=problems)
    feedback_dir = write_feedback(out_dir / "feedback", everything, question_ids)
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
    )
