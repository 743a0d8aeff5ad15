"""The process side of the Ray executor: one worker holds the shared object (the job
runner: every node's data, the model, the attacks), received once through the object
store, and runs the calls sent to it one at a time."""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Callable
from typing import Any


class JobWorker:
    """Wrapped with ``ray.remote`` by the executor; a plain class so it imports anywhere."""

    def __init__(self, shared: Any, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self._shared = shared

    def share(self, shared: Any) -> None:
        """Hold ``shared`` from now on (the next run's job runner)."""
        self._shared = shared

    def where(self) -> tuple[int, str, str]:
        """This worker's process id, Ray node id and node address."""
        import ray

        context = ray.get_runtime_context()
        return os.getpid(), context.get_node_id(), ray.util.get_node_ip_address()

    def call(self, method: str, *args: Any) -> bytes:
        """Run ``shared.method(*args)``; see :meth:`run`."""
        return self.run(getattr(self._shared, method), *args)

    def run(self, fn: Callable[..., Any], *args: Any) -> bytes:
        """Run ``fn(*args)``; the pickled (ok, value, cpu seconds, wall seconds).

        Pickled here so the caller gets writable arrays (the object store's are
        read-only) and the call's own error, not a wrapper."""
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            value, ok = fn(*args), True
        except Exception as exc:
            value, ok = exc, False
        cost = (time.process_time() - cpu, time.perf_counter() - wall)
        try:
            return pickle.dumps((ok, value, *cost), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # an error that cannot be pickled: its text travels
            error = RuntimeError(f"{type(value).__name__}: {value}; not picklable: {exc}")
            return pickle.dumps((False, error, *cost))
