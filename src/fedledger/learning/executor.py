"""Where learning jobs run: the job executor interface.

A host hands each job to an executor as a call (``submit(fn, *args) -> Future``) and
reads the result from the future when it needs it. ``InlineExecutor`` runs the call at
once in the caller's thread (the simulator: results computed lazily at a job's
completion event, in the same order every run); ``ThreadExecutor`` runs calls one at a
time in a worker thread (a real node: its event loop keeps answering peers while it
trains). The Ray executor (``fedledger.runtime.ray``, issue 18) runs calls on a Ray
cluster; it lives in the runtime layer (it starts processes and talks to a cluster) and
is chosen by name there, so nothing here imports ray.

``max_in_flight`` tells a host how many jobs are worth submitting before their results
are needed: 0 for an executor that runs a call when it is submitted (submitting early
would only compute early), more for one that runs calls in parallel elsewhere. The
futures an executor returns are :class:`JobFuture`: besides the result they carry the
call's measured CPU and wall seconds where the executor measured them (a host charges
those to the node, not its own waiting), and :meth:`JobExecutor.report` sums them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from fedledger.errors import FedledgerError
from fedledger.registry import Registry

T = TypeVar("T")


class JobFuture(Future[T]):
    """A future that also carries what its call cost where it ran (None: not measured)."""

    cpu_seconds: float | None = None
    wall_seconds: float | None = None


class JobLostError(FedledgerError, RuntimeError):
    """A call could not be completed: the worker running it died, more often than the
    executor retries. The host names the node and job; the message names the worker."""


@dataclass(frozen=True)
class ExecutorReport:
    """What an executor did: its name, how many workers and machines ran calls, how many
    calls finished, the wall seconds they took where they ran, the retries after a
    worker died, and the wall seconds spent starting workers (part of the host's wait
    for its first job, not of any job)."""

    executor: str
    workers: int
    machines: int
    jobs: int
    job_seconds: float
    retries: int = 0
    startup_seconds: float = 0.0


class JobExecutor(Protocol):
    """Runs calls and gives their results as futures."""

    name: str
    max_in_flight: int

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]: ...

    def report(self) -> ExecutorReport: ...

    def shutdown(self) -> None: ...


class _Tally:
    """Counts finished calls and their wall seconds (one executor's ``report``)."""

    def __init__(self) -> None:
        self.jobs = 0
        self.seconds = 0.0

    def run(self, future: JobFuture[T], fn: Callable[..., T], args: tuple[Any, ...]) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            result = fn(*args)
        except BaseException as exc:  # the caller reads it from the future
            future.set_exception(exc)
            return
        finally:
            future.wall_seconds = time.perf_counter() - wall
            future.cpu_seconds = time.process_time() - cpu
            self.jobs += 1
            self.seconds += future.wall_seconds
        future.set_result(result)


class InlineExecutor:
    """Runs each call immediately in the calling thread; the future is already done."""

    name = "inline"
    max_in_flight = 0

    def __init__(self) -> None:
        self._tally = _Tally()

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        future: JobFuture[T] = JobFuture()
        self._tally.run(future, fn, args)
        return future

    def report(self) -> ExecutorReport:
        return ExecutorReport(self.name, 1, 1, self._tally.jobs, self._tally.seconds)

    def shutdown(self) -> None:
        return None


class ThreadExecutor:
    """Runs calls one after another in one worker thread (``threads`` > 1: a pool).

    Not for the simulator's jobs: they share one learner, so ``max_in_flight`` is 0."""

    name = "thread"
    max_in_flight = 0

    def __init__(self, threads: int = 1, prefix: str = "jobs") -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self._threads = threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix=prefix)
        self._tally = _Tally()

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        future: JobFuture[T] = JobFuture()
        queued = self._pool.submit(self._tally.run, future, fn, args)
        queued.add_done_callback(lambda q: future.cancel() if q.cancelled() else None)
        return future

    def report(self) -> ExecutorReport:
        return ExecutorReport(self.name, self._threads, 1, self._tally.jobs, self._tally.seconds)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def pool(self) -> ThreadPoolExecutor:
        """The thread pool, for asyncio's ``run_in_executor``."""
        return self._pool


EXECUTORS: Registry[JobExecutor] = Registry("executor")
EXECUTORS.add("inline", InlineExecutor, summary="run jobs in the caller's thread (simulator)")
EXECUTORS.add("thread", ThreadExecutor, summary="run jobs in a worker thread (real node)")
