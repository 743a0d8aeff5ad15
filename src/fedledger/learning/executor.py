"""Where learning jobs run: the job executor interface.

A host hands each job to an executor as a call (``submit(fn, *args) -> Future``) and
reads the result from the future when it needs it. ``InlineExecutor`` runs the call at
once in the caller's thread (the simulator: results computed lazily at a job's
completion event, in the same order every run); ``ThreadExecutor`` runs calls one at a
time in a worker thread (a real node: its event loop keeps answering peers while it
trains). A Ray executor (issue 18) plugs in here without changing either host.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from fedledger.registry import Registry

T = TypeVar("T")


class JobExecutor(Protocol):
    """Runs calls and gives their results as futures."""

    name: str

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]: ...

    def shutdown(self) -> None: ...


class InlineExecutor:
    """Runs each call immediately in the calling thread; the future is already done."""

    name = "inline"

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # the caller reads it from the future, as with threads
            future.set_exception(exc)
        return future

    def shutdown(self) -> None:
        return None


class ThreadExecutor:
    """Runs calls one after another in one worker thread (``threads`` > 1: a pool)."""

    name = "thread"

    def __init__(self, threads: int = 1, prefix: str = "jobs") -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix=prefix)

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        return self._pool.submit(fn, *args)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def pool(self) -> ThreadPoolExecutor:
        """The thread pool, for asyncio's ``run_in_executor``."""
        return self._pool


EXECUTORS: Registry[JobExecutor] = Registry("executor")
EXECUTORS.add("inline", InlineExecutor, summary="run jobs in the caller's thread (simulator)")
EXECUTORS.add("thread", ThreadExecutor, summary="run jobs in a worker thread (real node)")
