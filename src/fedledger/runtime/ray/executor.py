"""The Ray executor: learning jobs run by worker processes of a Ray cluster.

The object whose bound method is submitted (the simulator's job runner: every node's
data partition, the model, the attacks) goes to the cluster once, through the object
store (``ray.put``), and again only when a bound method of another object comes (the
next run of a sweep reusing the executor); each worker (an actor reserving
``cpus_per_job`` CPUs, with ``threads_per_job`` torch threads) holds it, and a job
travels as the method's name and its arguments (weights as float32 arrays). Any other
callable travels whole (a sweep's runs). Jobs are seeded per job, not per worker, so
results are those of the inline executor with the same torch thread count, whichever
worker runs them.

A worker that dies (its process killed, its machine gone) is replaced and its job sent
again, up to ``max_retries`` times; then the job's future raises
:class:`~fedledger.learning.executor.JobLostError` naming the worker's machine (the host
adds the node and job).
"""

from __future__ import annotations

import contextlib
import pickle
import socket
import threading
import time
import types
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fedledger.learning.executor import ExecutorReport, JobFuture, JobLostError
from fedledger.runtime.ray.options import RayOptions, RayUnavailableError
from fedledger.runtime.ray.worker import JobWorker

T = TypeVar("T")
_START_TIMEOUT = 180.0  # seconds for the workers to start and report where they run


@dataclass
class _Slot:
    """One worker: its actor, where it runs (filled in once known), jobs it holds."""

    index: int
    actor: Any
    where: Any  # ObjectRef of (pid, node id, address) until resolved, then the tuple
    outstanding: int = 0
    alive: bool = True


@dataclass
class _Call:
    future: JobFuture[Any]
    kind: str  # "call": a method of the shared object by name; "run": a callable
    target: Any
    args: tuple[Any, ...]
    attempt: int = 0
    tried: list[_Slot] = field(default_factory=list)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError(
            f"the ray executor needs the ray package ({exc}); install it with "
            "`pip install ray`, or use --executor inline"
        ) from None
    return ray


def _probe(address: str, timeout: float = 5.0) -> None:
    """Raise OSError unless a TCP connection to ``address`` (HOST:PORT, optionally
    ``ray://``) opens; "auto" (the cluster this machine joined) is left to Ray."""
    if address == "auto":
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address must be HOST:PORT, ray://HOST:PORT or auto, got {address!r}")
    with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
        pass


class RayExecutor:
    """Runs calls on Ray workers (see the module doc)."""

    name = "ray"

    def __init__(self, options: RayOptions | None = None) -> None:
        self.options = options or RayOptions()
        self._ray = _import_ray()
        self._owns_ray = self._connect()
        cpus = float(self._ray.cluster_resources().get("CPU", 0.0))
        fit = int(cpus // self.options.cpus_per_job)
        if self.options.workers is None and fit < 1:
            if self._owns_ray:
                self._ray.shutdown()
            raise RayUnavailableError(
                f"the Ray cluster has {cpus:g} CPUs, fewer than the {self.options.cpus_per_job:g}"
                " CPUs per job asked (--ray-cpus-per-job)"
            )
        self.workers = self.options.workers or fit
        self.max_in_flight = self.options.max_in_flight or 2 * self.workers
        self._lock = threading.Lock()
        self._helper = ThreadPoolExecutor(1, thread_name_prefix="ray-retries")
        self._shared: Any = None
        self._shared_ref: Any = None
        self._slots: list[_Slot] = []
        self._closing = False
        self._jobs = 0
        self._seconds = 0.0
        self._retries = 0
        self._startup = 0.0
        self._used: set[int] = set()

    def _connect(self) -> bool:
        """Join the cluster; True when this executor started Ray (and stops it)."""
        ray = self._ray
        if ray.is_initialized():
            return False
        address = self.options.address
        if address is None:
            ray.init(
                num_cpus=self.options.num_cpus,
                object_store_memory=self.options.object_store_memory,
                include_dashboard=False,
                log_to_driver=False,
            )
            return True
        try:
            _probe(address)  # ray.init itself retries an unreachable address for minutes
            ray.init(address=address, log_to_driver=False)
        except (OSError, RuntimeError, ValueError) as exc:
            raise RayUnavailableError(
                f"cannot reach the Ray cluster at {address!r}: {exc}; start one with "
                "`ray start --head` and pass its address (HOST:PORT), or leave "
                "--ray-address unset for a local Ray"
            ) from None
        return True

    # ------------------------------------------------------------ submitting

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        future: JobFuture[T] = JobFuture()
        if isinstance(fn, types.MethodType) and self._shares(fn.__self__):
            call = _Call(future, "call", fn.__name__, args)
        else:
            call = _Call(future, "run", fn, args)
        self._send(call)
        return future

    def _shares(self, owner: object) -> bool:
        """Make ``owner`` the object the workers hold, if it is not yet: one executor
        serves run after run (a sweep, a test), each run's job runner sent once."""
        with self._lock:
            if owner is self._shared:
                return True
            self._shared = owner
            if not self._slots:
                return True
            self._shared_ref = self._ray.put(owner)
            for slot in self._slots:
                if slot.alive:  # a worker runs its calls in order: the next ones see it
                    slot.actor.share.remote(self._shared_ref)
            return True

    def _start_workers(self) -> None:
        began = time.perf_counter()
        ray = self._ray
        shared = ray.put(self._shared) if self._shared is not None else None
        self._shared_ref = shared
        slots = [self._new_slot(i) for i in range(self.workers)]
        ready, waiting = ray.wait([s.where for s in slots], num_returns=len(slots),
                                  timeout=_START_TIMEOUT)
        if waiting:
            for slot in slots:
                ray.kill(slot.actor)
            raise RayUnavailableError(
                f"only {len(ready)} of {len(slots)} Ray workers started within "
                f"{_START_TIMEOUT:.0f} s (each reserves {self.options.cpus_per_job:g} CPUs; "
                f"cluster: {ray.cluster_resources()})"
            )
        for slot in slots:
            slot.where = ray.get(slot.where)
        self._slots = slots
        self._startup = time.perf_counter() - began

    def _new_slot(self, index: int) -> _Slot:
        remote = self._ray.remote(JobWorker).options(
            num_cpus=self.options.cpus_per_job, max_restarts=0, max_task_retries=0
        )
        actor = remote.remote(self._shared_ref, self.options.threads_per_job)
        return _Slot(index, actor, actor.where.remote())

    def _send(self, call: _Call) -> None:
        with self._lock:
            if not self._slots:
                self._start_workers()
            live = [s for s in self._slots if s.alive]
            slot = min(live, key=lambda s: (s.outstanding, s.index))
            slot.outstanding += 1
            call.tried.append(slot)
        ref = getattr(slot.actor, call.kind).remote(call.target, *call.args)
        ref.future().add_done_callback(lambda done: self._finished(call, slot, done))

    # ------------------------------------------------------------ results

    def _finished(self, call: _Call, slot: _Slot, done: Future[Any]) -> None:
        with self._lock:
            slot.outstanding -= 1
        error = done.exception()
        if error is None:
            ok, value, cpu, wall = pickle.loads(done.result())
            with self._lock:
                self._jobs += 1
                self._seconds += wall
                self._used.add(slot.index)
            call.future.cpu_seconds, call.future.wall_seconds = cpu, wall
            if ok:
                call.future.set_result(value)
            else:
                call.future.set_exception(value)
            return
        if self._closing:
            call.future.cancel()
            return
        died = (self._ray.exceptions.RayActorError, self._ray.exceptions.WorkerCrashedError)
        if not isinstance(error, died):
            call.future.set_exception(error)
            return
        # replacing the worker and sending the job again start Ray calls: not on Ray's
        # own callback thread
        self._helper.submit(self._retry, call, slot, error)

    def _retry(self, call: _Call, slot: _Slot, error: BaseException) -> None:
        try:
            with self._lock:
                if slot.alive:
                    slot.alive = False
                    self._slots.append(self._new_slot(len(self._slots)))
            if call.attempt < self.options.max_retries:
                call.attempt += 1
                with self._lock:
                    self._retries += 1
                self._send(call)
                return
            places = ", ".join(self._describe(s) for s in call.tried)
            call.future.set_exception(
                JobLostError(
                    f"its Ray worker died {call.attempt + 1} times ({places}); "
                    f"retried {self.options.max_retries} times; last: {type(error).__name__}"
                )
            )
        except Exception as exc:  # never leave the future unresolved
            call.future.set_exception(exc)

    def _describe(self, slot: _Slot) -> str:
        where = self._where(slot)
        if where is None:
            return f"worker {slot.index}"
        pid, node_id, address = where
        return f"worker {slot.index} pid {pid} on node {address} ({node_id[:12]})"

    def _where(self, slot: _Slot) -> tuple[int, str, str] | None:
        if isinstance(slot.where, tuple):
            return slot.where
        try:
            slot.where = self._ray.get(slot.where, timeout=10)
        except Exception:  # a worker that died before it said where it runs
            return None
        return slot.where  # type: ignore[no-any-return]

    # ------------------------------------------------------------ reporting

    def report(self) -> ExecutorReport:
        with self._lock:
            used = [s for s in self._slots if s.index in self._used]
            jobs, seconds, retries = self._jobs, self._seconds, self._retries
        machines = {w[1] for w in (self._where(s) for s in used) if w is not None}
        return ExecutorReport(
            self.name, len(used), len(machines), jobs, seconds, retries, self._startup
        )

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (for tests that kill one)."""
        return [w[0] for w in (self._where(s) for s in self._slots if s.alive) if w]

    def shutdown(self) -> None:
        self._closing = True
        for slot in self._slots if self._ray.is_initialized() else ():
            with contextlib.suppress(Exception):  # already gone
                self._ray.kill(slot.actor)
        self._helper.shutdown(wait=True)
        if self._owns_ray:
            self._ray.shutdown()
