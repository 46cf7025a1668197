"""`grader batch`: grade a whole class in parallel, sandboxed, resumable, with CSV, summary and feedback.

A submission is a folder per student holding exercise files (`q1_lenet.py`, ...) or
notebooks (`*.ipynb`, nbgrader-style: the solution cells `<qN>_solution` and written
answers `<qN>_<name>` become the question's file; a notebook without nbgrader metadata
contributes all its code cells). nbgrader's `submitted/<student>/<assignment>/` layout
works too (pass the `submitted` folder).

Each job carries the submission's files (so a remote Dask worker needs no shared disk)
and is graded by a worker: a `grader.batch` worker process of this machine (`--workers`)
or a Dask worker (`--cluster`). Workers grade with the isolated executor: student code
runs only in sandboxed children (see `grader.isolation`). The main process alone writes
the SQLite store, one transaction per submission, so a crash, Ctrl-C or SIGKILL loses at
most the submissions being graded at that moment; re-running grades what is missing.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import dataclasses
import datetime
import hashlib
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .batch_store import BatchStore

MAX_FILE_BYTES = 5 * 1024 * 1024
NBGRADER_COLUMNS = (
    "assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
    "raw_score", "late_submission_penalty", "score", "max_score",
)
SUBMISSION_SUFFIXES = (".py", ".ipynb", ".txt", ".json", ".csv")


@dataclasses.dataclass
class Submission:
    """One student's folder: the files to grade, their digest and timestamp."""

    student: str
    folder: Path
    files: dict[str, bytes]
    timestamp: str | None

    @property
    def digest(self) -> str:
        sha = hashlib.sha256()
        for name in sorted(self.files):
            sha.update(name.encode() + b"\0" + hashlib.sha256(self.files[name]).digest())
        return sha.hexdigest()


def discover(root: Path, *, assignment: str | None = None) -> list[Submission]:
    """Every student folder under `root` (sorted by student id); in nbgrader's layout, `<student>/<assignment>/` first."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of submissions")
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = _collect_files(folder)
        if not files:  # nbgrader: submitted/<student>/<assignment>/
            inner = [p for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")]
            inner.sort(key=lambda p: p.name != assignment)  # the assignment's own folder first
            for sub in inner:
                files = _collect_files(sub)
                if files:
                    folder = sub
                    break
        if files:
            found.append(Submission(folder.name if folder.parent == root else folder.parent.name, folder, files, _timestamp(folder)))
    return found


def _collect_files(folder: Path) -> dict[str, bytes]:
    files = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.is_symlink() and path.suffix in SUBMISSION_SUFFIXES and path.stat().st_size <= MAX_FILE_BYTES:
            files[path.name] = path.read_bytes()
    if not any(name.endswith((".py", ".ipynb")) for name in files):
        return {}
    return files


def _timestamp(folder: Path) -> str | None:
    stamp = folder / "timestamp.txt"  # nbgrader writes one per submission
    if stamp.is_file():
        return stamp.read_text().strip()[:64]
    mtimes = [p.stat().st_mtime for p in folder.iterdir() if p.is_file()]
    return datetime.datetime.fromtimestamp(max(mtimes)).isoformat(sep=" ", timespec="seconds") if mtimes else None


# --------------------------------------------------------------------------- notebooks


def notebook_modules(notebook: Mapping[str, Any], questions: Sequence[Any]) -> dict[str, str]:
    """The question files a notebook stands for: {filename: source}."""
    cells = notebook.get("cells", [])

    def grade_id(cell: Mapping[str, Any]) -> str:
        return str(cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", ""))

    def text(cell: Mapping[str, Any]) -> str:
        source = cell.get("source", "")
        return "".join(source) if isinstance(source, list) else str(source)

    def code(cell: Mapping[str, Any]) -> str:
        lines = []
        for line in text(cell).splitlines():
            stripped = line.lstrip()
            lines.append("" if stripped.startswith(("%", "!")) else line)
        return "\n".join(lines)

    tagged = any(grade_id(c) for c in cells)
    modules = {}
    for question in questions:
        parts = []
        if tagged:
            parts = [code(c) for c in cells if c.get("cell_type") == "code" and grade_id(c) == f"{question.id}_solution"]
            for name in question.names:
                answer = [text(c) for c in cells if c.get("cell_type") == "markdown" and grade_id(c) == f"{question.id}_{name.lower()}"]
                if answer:
                    parts.append(f"{name} = {answer[0]!r}")
        else:
            parts = [code(c) for c in cells if c.get("cell_type") == "code" and "check(" not in text(c)]
        if parts:
            modules[question.filename] = "\n\n".join(parts) + "\n"
    return modules


def stage_files(files: Mapping[str, bytes], folder: Path, questions: Sequence[Any]) -> None:
    """Write a job's files into `folder`; notebooks become question files (a .py file of the same name wins)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if "/" in name or name.startswith("."):
            continue
        (folder / name).write_bytes(data)
    for name, data in files.items():
        if name.endswith(".ipynb"):
            try:
                notebook = json.loads(data.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                continue
            for filename, source in notebook_modules(notebook, questions).items():
                if filename not in files:
                    (folder / filename).write_text(source)


# --------------------------------------------------------------------------- one job (runs on a worker)


def make_job(submission: Submission, questions: Sequence[str], limits: Mapping[str, Any], hide: Sequence[str], options: Mapping[str, Any]) -> dict[str, Any]:
    """A self-contained job: plain JSON data, the files included."""
    return {
        "student": submission.student,
        "files": {name: base64.b64encode(data).decode() for name, data in submission.files.items()},
        "questions": list(questions),
        "limits": dict(limits),
        "hide": list(hide),
        "options": dict(options),
    }


def grade_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """Grade one submission on every question of the job; never raises (a grader error fails that question)."""
    from .checks import CheckResult, QuestionResult
    from .grading import grade_folder
    from .isolation import Limits
    from .questions import get_question

    started = time.monotonic()
    questions = [get_question(q) for q in job["questions"]]
    limits = Limits(**job.get("limits", {}))
    results = []
    staging_root = Path(tempfile.gettempdir()) / "cnn-grader-staging"
    staging_root.mkdir(mode=0o700, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=staging_root) as staging:
        folder = Path(staging) / "submission"
        files = {name: base64.b64decode(data) for name, data in job["files"].items()}
        stage_files(files, folder, questions)
        for question in questions:
            try:
                result = grade_folder(
                    question, folder, isolated=True, limits=limits, hide=[*job.get("hide", []), str(staging_root)],
                    include_hidden=True, options=job.get("options") or None,
                )
            except Exception as error:  # noqa: BLE001 - a grader bug costs this question, not the batch
                message = f"internal grader error ({type(error).__name__}: {error}); please tell your TA."
                result = QuestionResult(
                    question.id, question.title,
                    [CheckResult(c.name, False, 0.0, float(c.points), message) for c in question.checks],
                    {"error": message},
                )
            data = json.loads(json.dumps(result.to_dict(), default=str).replace(str(folder), f"your submission ({job['student']})"))
            data["title"] = question.title
            data["hidden"] = [c.name for c in question.checks if c.hidden]
            results.append(data)
    return {"student": job["student"], "results": results, "wall_s": round(time.monotonic() - started, 2)}


# --------------------------------------------------------------------------- local workers


def _set_parent_death_signal() -> None:
    """Die with the parent (Linux): a SIGKILLed batch leaves no worker behind."""
    from .isolation import die_with_parent

    die_with_parent()


def worker_main(result_fd: int) -> None:
    """A local worker: jobs as JSON lines on stdin, results as JSON lines on `result_fd`."""
    _set_parent_death_signal()
    out = os.fdopen(result_fd, "w", buffering=1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)  # nothing printed by TensorFlow or a grader bug can corrupt the protocol
    from .isolation import warm_up
    from .quiet import import_keras, silence_frameworks

    silence_frameworks()
    import_keras()
    # One TensorFlow thread per worker: workers already run in parallel, and idle pool
    # threads spin while the worker waits for its sandbox, stealing the sandbox's CPU.
    from .isolation import _limit_threads

    _limit_threads(int(os.environ.get("CNN_GRADER_WORKER_THREADS", "1")))
    warm_up()
    out.write(json.dumps({"ready": os.getpid()}) + "\n")
    for line in sys.stdin:
        job = json.loads(line)
        out.write(json.dumps(grade_job(job)) + "\n")


class LocalPool:
    """`workers` grading processes of this machine, each importing Keras once."""

    def __init__(self, workers: int) -> None:
        env = os.environ.copy()
        env.setdefault("KERAS_HOME", tempfile.mkdtemp(prefix="cnn-grader-keras-"))
        self.workers = []
        for _ in range(workers):
            read_fd, write_fd = os.pipe()
            process = subprocess.Popen(
                [sys.executable, "-c", f"from grader.batch import worker_main; worker_main({write_fd})"],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                pass_fds=[write_fd], env=env, text=True, start_new_session=True,  # Ctrl-C reaches the main process only
            )
            os.close(write_fd)
            self.workers.append({"process": process, "results": os.fdopen(read_fd, "r"), "job": None, "ready": False})

    def run(self, jobs: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
        """Yield each job's result as it finishes."""
        queue = list(jobs)
        queue.reverse()
        busy = 0
        while queue or busy:
            for worker in self.workers:
                if worker["job"] is None and worker["ready"] and queue and worker["process"].poll() is None:
                    job = queue.pop()
                    worker["job"] = job
                    busy += 1
                    try:
                        worker["process"].stdin.write(json.dumps(job) + "\n")
                        worker["process"].stdin.flush()
                    except OSError:
                        pass  # the worker died: its result stream reports it below
            streams = {w["results"]: w for w in self.workers if w["process"].poll() is None or w["job"] is not None}
            if not streams:
                raise RuntimeError("every grading worker died")
            ready, _, _ = select.select(list(streams), [], [], 1.0)
            for stream in ready:
                worker = streams[stream]
                line = stream.readline()
                if not line:  # the worker died: its job goes back to the queue once, then fails
                    job = worker["job"]
                    worker["job"] = None
                    self.workers.remove(worker)
                    if job is not None:
                        busy -= 1
                        if job.get("_retried"):
                            yield _failed_job(job, "the grading worker died while grading this submission")
                        else:
                            queue.append({**job, "_retried": True})
                    if not self.workers:
                        raise RuntimeError("every grading worker died")
                    continue
                message = json.loads(line)
                if "ready" in message:
                    worker["ready"] = True
                    continue
                worker["job"] = None
                busy -= 1
                yield message

    def close(self, *, kill: bool = False) -> None:
        """Let the workers finish and exit (or, with `kill`, stop them now: unfinished jobs stay pending)."""
        for worker in self.workers:
            with contextlib.suppress(Exception):
                if kill:
                    worker["process"].kill()
                worker["process"].stdin.close()
        for worker in self.workers:
            with contextlib.suppress(Exception):
                worker["process"].wait(10)
            with contextlib.suppress(Exception):
                worker["process"].kill()


def _failed_job(job: Mapping[str, Any], why: str) -> dict[str, Any]:
    from .questions import get_question

    results = []
    for qid in job["questions"]:
        question = get_question(qid)
        message = f"This submission could not be graded: {why}. Please tell your TA."
        results.append({
            "question": qid, "title": question.title, "score": 0.0, "max_score": question.max_score,
            "checks": [{"name": c.name, "passed": False, "points": 0.0, "max_points": float(c.points), "message": message} for c in question.checks],
            "meta": {"error": why}, "hidden": [c.name for c in question.checks if c.hidden],
        })
    return {"student": job["student"], "results": results, "wall_s": 0.0}


def run_on_cluster(address: Any, jobs: Sequence[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    """Send the jobs to a Dask distributed scheduler (an address, or a `Cluster`); yield results as they finish."""
    from distributed import Client, as_completed

    client = Client(address)
    try:
        futures = [client.submit(grade_job, dict(job), key=f"grade-{job['student']}-{i}", pure=False) for i, job in enumerate(jobs)]
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as error:  # noqa: BLE001 - a lost worker fails only its job
                job = jobs[futures.index(future)]
                yield _failed_job(job, f"the Dask worker failed ({type(error).__name__}: {error})")
    finally:
        client.close()


# --------------------------------------------------------------------------- the batch


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
    results: dict[str, dict[str, dict[str, Any]]] = dataclasses.field(default_factory=dict)  # student -> question -> result


def run_batch(
    submissions_dir: Path,
    *,
    out_dir: Path,
    questions: Sequence[str] | None = None,
    workers: int = 2,
    regrade: Sequence[str] = (),
    cluster: Any = None,
    limits: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
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
    from .questions import QUESTIONS, get_question

    started = time.monotonic()
    question_ids = [get_question(q).id for q in questions] if questions else list(QUESTIONS)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(out_dir, 0o700)
    submissions = discover(submissions_dir, assignment=assignment)
    store = BatchStore(out_dir / "results.sqlite")
    try:
        for submission in submissions:
            store.register(submission.student, submission.digest, submission.timestamp)
        unknown = set(regrade) - {s.student for s in submissions}
        if unknown:
            raise KeyError(f"no submission for {', '.join(sorted(unknown))} in {submissions_dir}")
        pending = set(store.pending([s.student for s in submissions], question_ids, regrade))
        todo = [s for s in submissions if s.student in pending]
        hidden = [str(Path(p).resolve()) for p in (submissions_dir, out_dir, *hide)]
        run = store.start_run({"questions": question_ids, "workers": workers, "cluster": str(cluster) if cluster else None})
        options = {"plots": False, **(options or {})}  # no figures per student: the parent process would write them to its cwd
        jobs = [make_job(s, question_ids, limits or {}, hidden, options) for s in todo]
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
    csv_path = write_csv(out_dir / "grades.csv", everything, question_ids, timestamps, assignment=assignment, duedate=duedate, roster=people)
    summary_path = write_summary(out_dir, everything, question_ids)
    feedback_dir = write_feedback(out_dir / "feedback", everything, question_ids)
    return BatchReport(
        graded=graded, skipped=[s.student for s in submissions if s.student not in pending], out_dir=out_dir,
        csv_path=csv_path, summary_path=summary_path, feedback_dir=feedback_dir,
        wall_s=round(time.monotonic() - started, 1), interrupted=interrupted, results=everything,
    )


# --------------------------------------------------------------------------- outputs


def read_roster(path: Path) -> dict[str, dict[str, str]]:
    """student_id -> {first_name, last_name, email} from a CSV with those columns."""
    with open(path, newline="") as handle:
        return {row["student_id"]: row for row in csv.DictReader(handle) if row.get("student_id")}


def _total(results: Mapping[str, Mapping[str, Any]], question_ids: Sequence[str]) -> tuple[float, float]:
    from .questions import get_question

    score = sum(float(results[q]["score"]) for q in question_ids if q in results)
    total = sum(get_question(q).max_score for q in question_ids)
    return score, total


def write_csv(
    path: Path,
    everything: Mapping[str, Mapping[str, Mapping[str, Any]]],
    question_ids: Sequence[str],
    timestamps: Mapping[str, str | None],
    *,
    assignment: str,
    duedate: str = "",
    roster: Mapping[str, Mapping[str, str]] | None = None,
) -> Path:
    """nbgrader's `export` columns, then one column per question (its score)."""
    roster = roster or {}
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*NBGRADER_COLUMNS, *question_ids])
        for student in sorted(everything):
            results = everything[student]
            score, total = _total(results, question_ids)
            person = roster.get(student, {})
            writer.writerow([
                assignment, duedate, timestamps.get(student) or "", student, person.get("last_name", ""),
                person.get("first_name", ""), person.get("email", ""), f"{score:g}", "0", f"{score:g}", f"{total:g}",
                *[f"{float(results[q]['score']):g}" if q in results else "" for q in question_ids],
            ])
    return path


def summarise(everything: Mapping[str, Mapping[str, Mapping[str, Any]]], question_ids: Sequence[str]) -> dict[str, Any]:
    """Score distribution, per-question means, and each check's pass rate (most failed first)."""
    totals = []
    checks: dict[tuple[str, str], list[bool]] = {}
    per_question: dict[str, list[float]] = {q: [] for q in question_ids}
    max_total = 0.0
    for results in everything.values():
        score, max_total = _total(results, question_ids)
        totals.append(score)
        for q in question_ids:
            if q in results:
                per_question[q].append(float(results[q]["score"]))
                for check in results[q]["checks"]:
                    checks.setdefault((q, check["name"]), []).append(bool(check["passed"]))
    bins = 10
    histogram = [0] * bins
    for score in totals:
        index = min(bins - 1, int(bins * score / max_total)) if max_total else 0
        histogram[index] += 1
    rates = sorted(
        ({"question": q, "check": name, "passed": sum(v), "students": len(v), "pass_rate": round(sum(v) / len(v), 3)} for (q, name), v in checks.items()),
        key=lambda r: (r["pass_rate"], r["question"], r["check"]),
    )
    return {
        "students": len(totals),
        "max_score": max_total,
        "mean": round(statistics.fmean(totals), 2) if totals else None,
        "median": statistics.median(totals) if totals else None,
        "min": min(totals) if totals else None,
        "max": max(totals) if totals else None,
        "histogram": [{"from": round(max_total * i / bins, 2), "to": round(max_total * (i + 1) / bins, 2), "students": n} for i, n in enumerate(histogram)],
        "questions": {q: {"mean": round(statistics.fmean(v), 2) if v else None, "full_marks": sum(1 for s in v if s >= _qmax(q))} for q, v in per_question.items()},
        "checks": rates,
    }


def _qmax(question_id: str) -> float:
    from .questions import get_question

    return get_question(question_id).max_score


def write_summary(out_dir: Path, everything: Mapping[str, Mapping[str, Mapping[str, Any]]], question_ids: Sequence[str]) -> Path:
    """summary.txt (for people) and summary.json (for tools)."""
    data = summarise(everything, question_ids)
    (out_dir / "summary.json").write_text(json.dumps(data, indent=2))
    lines = [f"{data['students']} students graded on {', '.join(question_ids)} (out of {data['max_score']:g} points)"]
    if data["students"]:
        lines.append(f"mean {data['mean']:g}, median {data['median']:g}, min {data['min']:g}, max {data['max']:g}")
        lines.append("")
        lines.append("score distribution:")
        width = max(h["students"] for h in data["histogram"]) or 1
        for h in data["histogram"]:
            lines.append(f"  {h['from']:>6g} - {h['to']:<6g} {'#' * round(30 * h['students'] / width):<30} {h['students']}")
        lines.append("")
        lines.append("per question (mean, students with full marks):")
        for q, info in data["questions"].items():
            lines.append(f"  {q:<4} mean {info['mean']:g} / {_qmax(q):g}, full marks {info['full_marks']}")
        lines.append("")
        lines.append("checks by pass rate (the ones most students fail first):")
        for r in data["checks"]:
            lines.append(f"  {100 * r['pass_rate']:5.1f}%  {r['passed']:>4}/{r['students']:<4} {r['question']}: {r['check']}")
    path = out_dir / "summary.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_feedback(folder: Path, everything: Mapping[str, Mapping[str, Mapping[str, Any]]], question_ids: Sequence[str]) -> Path:
    """feedback/<student>.md: every check with its message; hidden checks say only passed/failed."""
    from .questions import get_question

    folder.mkdir(parents=True, exist_ok=True)
    for student, results in everything.items():
        score, total = _total(results, question_ids)
        lines = [f"# Feedback for {student}", "", f"**Total: {score:g} / {total:g}**", ""]
        for q in question_ids:
            question = get_question(q)
            hidden = {c.name for c in question.checks if c.hidden}
            result = results.get(q)
            if result is None:
                lines += [f"## {q} {question.title}: not graded", ""]
                continue
            lines += [f"## {q} {question.title}: {float(result['score']):g} / {float(result['max_score']):g}", ""]
            number = 0
            for check in result["checks"]:
                mark = "PASS" if check["passed"] else "FAIL"
                points = f"{float(check['points']):g}/{float(check['max_points']):g}"
                if check["name"] in hidden:
                    number += 1
                    message = "passed" if check["passed"] else "failed (details are not shown for hidden checks)"
                    lines.append(f"- {mark} {points} hidden check {number}: {message}")
                else:
                    lines.append(f"- {mark} {points} {check['name']}: {check['message']}")
            lines.append("")
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in student)
        (folder / f"{safe}.md").write_text("\n".join(lines))
    return folder
