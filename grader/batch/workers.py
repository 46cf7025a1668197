"""Where jobs run: worker processes of this machine (`LocalPool`) or a Dask cluster (`run_on_cluster`).

A local worker imports Keras once, then grades the jobs it reads as JSON lines on stdin
and writes each result as a JSON line on its own pipe. It dies with the batch (parent
death signal), and a worker that dies mid-job has its job retried once, then failed; a
fresh worker takes its place while jobs are waiting.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import IO, Any

from ..options import worker_threads
from .jobs import failed_job, grade_job


def worker_main(result_fd: int) -> None:
    """A local worker: jobs as JSON lines on stdin, results as JSON lines on `result_fd`."""
    from ..quiet import import_keras, silence_frameworks
    from ..sandbox import die_with_parent, limit_threads, warm_up

    die_with_parent()  # a SIGKILLed batch leaves no worker behind
    out = os.fdopen(result_fd, "w", buffering=1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)  # nothing printed by TensorFlow or a grader bug can corrupt the protocol
    silence_frameworks()
    import_keras()
    # One TensorFlow thread per worker: workers already run in parallel, and idle pool
    # threads spin while the worker waits for its sandbox, stealing the sandbox's CPU.
    limit_threads(worker_threads())
    warm_up()
    out.write(json.dumps({"ready": os.getpid()}) + "\n")
    for line in sys.stdin:
        job = json.loads(line)
        out.write(json.dumps(grade_job(job)) + "\n")


@dataclasses.dataclass
class _Worker:
    """One local worker process: its job stream in, its result stream out, and the job it holds."""

    process: subprocess.Popen[str]
    results: IO[str]
    job: Mapping[str, Any] | None = None
    ready: bool = False

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, job: Mapping[str, Any]) -> None:
        self.job = job
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(json.dumps(job) + "\n")
            self.process.stdin.flush()
        except OSError:
            pass  # the worker died: its result stream reports it


class LocalPool:
    """`workers` grading processes of this machine, each importing Keras once."""

    def __init__(self, workers: int) -> None:
        self.env = os.environ.copy()
        if not self.env.get("KERAS_HOME"):
            self.env["KERAS_HOME"] = tempfile.mkdtemp(prefix="cnn-grader-keras-")
        self.size = workers
        self.workers: list[_Worker] = [self._spawn() for _ in range(workers)]

    def _spawn(self) -> _Worker:
        read_fd, write_fd = os.pipe()
        process = subprocess.Popen(
            [sys.executable, "-c", f"from grader.batch.workers import worker_main; worker_main({write_fd})"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=[write_fd],
            env=self.env,
            text=True,
            start_new_session=True,  # Ctrl-C reaches the main process only
        )
        os.close(write_fd)
        return _Worker(process, os.fdopen(read_fd, "r"))

    def run(self, jobs: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
        """Yield each job's result as it finishes."""
        queue = list(jobs)
        queue.reverse()
        busy = 0
        replacements = self.size + len(queue)  # dead workers are replaced, within reason (a broken setup kills all)
        while queue or busy:
            for worker in self.workers:
                if worker.job is None and worker.ready and queue and worker.alive:
                    worker.send(queue.pop())
                    busy += 1
            streams = {w.results: w for w in self.workers if w.alive or w.job is not None}
            if not streams:
                raise RuntimeError("every grading worker died")
            ready, _, _ = select.select(list(streams), [], [], 1.0)
            for stream in ready:
                worker = streams[stream]
                line = stream.readline()
                if not line:  # the worker died: its job goes back to the queue once, then fails
                    job, worker.job = worker.job, None
                    self.workers.remove(worker)
                    if job is not None:
                        busy -= 1
                        if job.get("_retried"):
                            yield failed_job(job, "the grading worker died while grading this submission")
                        else:
                            queue.append({**job, "_retried": True})
                    with contextlib.suppress(OSError):
                        stream.close()
                    worker.process.kill()  # its pipe is closed: whatever is left of it goes too
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        worker.process.wait(5)
                    if queue and replacements > 0 and len(self.workers) < self.size:
                        replacements -= 1
                        self.workers.append(self._spawn())
                    if not self.workers:
                        raise RuntimeError("every grading worker died")
                    continue
                message = json.loads(line)
                if "ready" in message:
                    worker.ready = True
                    continue
                worker.job = None
                busy -= 1
                yield message

    def close(self, *, kill: bool = False) -> None:
        """Let the workers finish and exit (or, with `kill`, stop them now: unfinished jobs stay pending)."""
        for worker in self.workers:
            if kill:
                worker.process.kill()
            with contextlib.suppress(OSError):
                if worker.process.stdin is not None:
                    worker.process.stdin.close()
        for worker in self.workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(10)
            worker.process.kill()


SINGLE_THREAD_ADVICE = "start the workers with one thread each (`dask worker SCHEDULER --nthreads 1 --nworkers N`)"


class ThreadedWorkerError(RuntimeError):
    """A Dask worker runs more than one thread: grading there is refused (Keras's global state is per process)."""


def grade_on_worker(job: Mapping[str, Any]) -> dict[str, Any]:
    """`grade_job` on a Dask worker, refused where the worker runs several threads (they would share Keras)."""
    from distributed import get_worker

    threads = int(get_worker().state.nthreads)
    if threads > 1:
        raise ThreadedWorkerError(f"this Dask worker runs {threads} threads; {SINGLE_THREAD_ADVICE}")
    return grade_job(job)


def run_on_cluster(address: Any, jobs: Sequence[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    """Send the jobs to a Dask distributed scheduler (an address, or a `Cluster`); yield results as they finish.

    Refused (`ThreadedWorkerError`, before any job runs) when a worker runs more than one
    thread: jobs on one worker would share Keras's global state and the grader's caches.
    """
    from distributed import Client, as_completed

    client = Client(address)
    try:
        threaded = {worker: n for worker, n in client.nthreads().items() if n > 1}
        if threaded:
            raise ThreadedWorkerError(
                f"refusing to grade on Dask workers with more than one thread ({len(threaded)} of them, e.g. "
                f"{next(iter(threaded))} with {max(threaded.values())}): {SINGLE_THREAD_ADVICE}"
            )
        futures = [
            client.submit(grade_on_worker, dict(job), key=f"grade-{job['student']}-{i}", pure=False)
            for i, job in enumerate(jobs)
        ]
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as error:  # noqa: BLE001 - a lost (or refused) worker fails only its job
                job = jobs[futures.index(future)]
                yield failed_job(job, f"the Dask worker failed ({type(error).__name__}: {error})")
    finally:
        client.close()
