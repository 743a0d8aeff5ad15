"""The discrete-event simulator: many sans-IO nodes, one process, a virtual clock.

Events sit in a priority queue ordered by (virtual time, insertion number), so two runs
with the same config and seed process the same events in the same order and produce the
same metrics. Effects are executed here: messages go through the network model, timers
and jobs become future events, reports and metrics go to the observer.

Jobs run lazily: in ``modelled`` compute mode a job's duration is known when it is asked
for, and its result is computed when its completion event is processed. That lets an
omniscient attacker's job first force the pending honest jobs of the same round (same
``TrainJob.tag``), so it can read their results, whatever order the jobs were issued in.
"""

from __future__ import annotations

import heapq
import time as wallclock
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from fedledger.codec import decode, encode
from fedledger.errors import FedledgerError
from fedledger.learning.executor import InlineExecutor, JobExecutor, JobLostError
from fedledger.protocols.base import (
    BASE_EFFECTS,
    BlobReceived,
    EmitMetric,
    Event,
    FetchBlob,
    Job,
    JobFinished,
    JobResult,
    MessageReceived,
    NodeId,
    ProtocolNode,
    RunJob,
    Start,
    TimerFired,
    TrainJob,
    wire_size,
)
from fedledger.protocols.meter import CpuMeter
from fedledger.runtime.effects import EffectTable
from fedledger.runtime.sim.blobshare import BlobShare
from fedledger.runtime.sim.compute import ComputeModel
from fedledger.runtime.sim.network import NetworkModel

if TYPE_CHECKING:
    from concurrent.futures import Future

    from fedledger.assembly.jobs import HonestSource, JobRunner
    from fedledger.runtime.sim.chainhost import ChainHost
    from fedledger.storage.blobs import BlobStore


class SimObserver(Protocol):
    def on_report(self, node_id: NodeId, time: float, step: int, weights: np.ndarray) -> None: ...

    def on_metric(self, node_id: NodeId, time: float, metric: EmitMetric) -> None: ...


@dataclass
class SimStats:
    events: int = 0
    messages_sent: int = 0
    messages_lost: int = 0
    bytes_sent: dict[NodeId, int] = field(default_factory=dict)
    jobs: int = 0
    virtual_time: float = 0.0
    wall_seconds: float = 0.0
    halted: int = 0
    cpu: dict[NodeId, dict[str, float]] = field(default_factory=dict)  # node -> activity -> s
    work_seconds: dict[NodeId, float] = field(default_factory=dict)  # virtual, meter.work
    blobs_refused: dict[NodeId, int] = field(default_factory=dict)  # fetches it would not serve


@dataclass(frozen=True)
class _PendingJob:
    node_id: NodeId
    job_id: str
    job: Job


class SimulationError(FedledgerError, RuntimeError):
    """A node's handler raised: a bug in protocol code, reported with its context."""


_DELIVER, _TIMER, _JOB, _BLOB, _EXTERNAL = 0, 1, 2, 3, 4
_FETCH_REQUEST_BYTES = 64  # a blob request: the content id and framing
_HONEST_TAGS_KEPT = 4


class Simulator:
    def __init__(
        self,
        nodes: Mapping[NodeId, ProtocolNode],
        peers: Mapping[NodeId, tuple[NodeId, ...]],
        jobs: JobRunner,
        network: NetworkModel,
        compute: ComputeModel,
        observer: SimObserver,
        seed: int = 0,
        max_time: float | None = None,
        blobs: Mapping[NodeId, BlobStore] | None = None,
        meters: Mapping[NodeId, CpuMeter] | None = None,
        encode_messages: bool = False,
        declared_effects: tuple[type, ...] = (),
        executor: JobExecutor | None = None,
        chain: ChainHost | None = None,
    ) -> None:
        self.nodes = dict(nodes)
        self.blobs = dict(blobs or {})
        self.blob_share = BlobShare()  # one copy of each blob for every fetch of it
        self.meters = {n: (meters or {}).get(n) or CpuMeter() for n in self.nodes}
        self.encode_messages = encode_messages
        self._peers = dict(peers)
        self._peer_sets: dict[NodeId, frozenset[NodeId]] = {}  # made on a node's first send
        self.executor: JobExecutor = executor or InlineExecutor()
        self.effects = EffectTable.for_host("simulator", self)
        if chain is not None:  # chain effects; receipts and logs come back as events
            chain.attach(self.effects, self._deliver_event, lambda: self._now)
        self.effects.require((*BASE_EFFECTS, *declared_effects), "the protocol")
        self.jobs = jobs
        self.network = network
        self.compute = compute
        self.observer = observer
        self.max_time = max_time
        self.stats = SimStats(bytes_sent={n: 0 for n in self.nodes})
        self._queue: list[tuple[float, int, int, NodeId, Any]] = []
        self._seq = 0
        self._now = 0.0
        self._halted: set[NodeId] = set()
        self._timer_gen: dict[tuple[NodeId, str], int] = {}  # live timer -> its generation
        self._timer_seq = 0  # generations of all timers; never reset (see set_timer)
        self._speeds = compute.speeds(sorted(self.nodes), seed)
        self._busy_until: dict[NodeId, float] = {}  # end of each node's declared work
        self._pending_by_tag: dict[str, list[_PendingJob]] = {}
        self._early: dict[tuple[NodeId, str], JobResult] = {}
        self._honest_by_tag: OrderedDict[str, list[np.ndarray]] = OrderedDict()
        self._track_honest = any(self.jobs.is_omniscient(n) for n in self.nodes)
        # eager jobs (an executor that runs them elsewhere, in parallel): submitted in
        # start order, at most max_in_flight at once; results read at completion events
        self._max_in_flight = max(0, int(getattr(self.executor, "max_in_flight", 0)))
        self._queued: OrderedDict[tuple[NodeId, str], _PendingJob] = OrderedDict()
        self._in_flight: dict[tuple[NodeId, str], Future[JobResult]] = {}
        self.job_wait_seconds = 0.0  # wall seconds spent submitting and awaiting jobs

    # ------------------------------------------------------------ driving

    def run(self) -> SimStats:
        started = wallclock.perf_counter()
        for node_id in sorted(self.nodes):
            self._dispatch(node_id, Start(time=0.0))
        while self._queue and len(self._halted) < len(self.nodes):
            at, _, kind, node_id, payload = heapq.heappop(self._queue)
            if self.max_time is not None and at > self.max_time:
                break
            self._now = at
            if kind == _EXTERNAL and callable(payload):  # a chain host's block (chainhost)
                payload()
                continue
            if node_id in self._halted:
                continue
            event = self._event(kind, node_id, payload)
            if event is not None:
                self._dispatch(node_id, event)
        self.stats.virtual_time = self._now
        self.stats.halted = len(self._halted)
        self.stats.cpu = {n: dict(m.seconds) for n, m in sorted(self.meters.items())}
        self.stats.wall_seconds = wallclock.perf_counter() - started
        return self.stats

    def _event(self, kind: int, node_id: NodeId, payload: Any) -> Event | None:
        if kind == _DELIVER:
            sender, message = payload
            return MessageReceived(time=self._now, sender=sender, message=message)
        if kind == _TIMER:
            key, gen = payload
            if self._timer_gen.get((node_id, key)) != gen:
                return None  # replaced or cancelled
            del self._timer_gen[(node_id, key)]
            return TimerFired(time=self._now, key=key)
        if kind == _EXTERNAL:
            return payload  # type: ignore[no-any-return]
        if kind == _BLOB:
            cid, source, data = payload
            return BlobReceived(time=self._now, cid=cid, source=source, data=data)
        pending, result = payload
        if result is None:
            result = self._result_of(pending)
        return JobFinished(time=self._now, job_id=pending.job_id, result=result)

    def _dispatch(self, node_id: NodeId, event: Event) -> None:
        self.stats.events += 1
        meter = self.meters[node_id]
        started, inside = wallclock.process_time(), meter.measured
        mark = self.compute.work_mark(meter)
        try:
            effects = self.nodes[node_id].handle(event)
        except Exception as exc:
            raise SimulationError(
                f"node {node_id} failed on {type(event).__name__} at t={self._now:.6f}: {exc!r}"
            ) from exc
        elapsed = wallclock.process_time() - started
        meter.add("protocol", elapsed - (meter.measured - inside))
        delay = self.compute.work_delay(meter, mark)
        if delay > 0.0:
            self._execute_after_work(node_id, effects, delay * self._speeds[node_id])
            return
        for effect in effects:
            self._execute(node_id, effect)

    def _execute_after_work(self, node_id: NodeId, effects: list[Any], delay: float) -> None:
        """Effects of a handler that declared ``delay`` seconds of work (``meter.work``:
        homomorphic encryption, say) happen when that work is done. A node works on one
        such piece at a time: work declared while it is still busy queues behind it."""
        start = max(self._now, self._busy_until.get(node_id, 0.0)) + delay
        self._busy_until[node_id] = start
        self.stats.work_seconds[node_id] = self.stats.work_seconds.get(node_id, 0.0) + delay
        now, self._now = self._now, start
        try:
            for effect in effects:
                self._execute(node_id, effect)
        finally:
            self._now = now

    def _push(self, at: float, kind: int, node_id: NodeId, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, kind, node_id, payload))

    # ------------------------------------------------------------ effects

    def _execute(self, node_id: NodeId, effect: object) -> None:
        self.effects.execute(node_id, effect)

    # the host primitives of the effect table (runtime.effects.HostOps)

    def peers(self, node_id: NodeId) -> tuple[NodeId, ...]:
        return self._peers.get(node_id, ())

    def _linked(self, a: NodeId, b: NodeId) -> bool:
        """Whether a real network connects ``a`` and ``b`` (localnet's dial plan: either
        lists the other as a peer)."""
        return a == b or b in self._peer_set(a) or a in self._peer_set(b)

    def _peer_set(self, node_id: NodeId) -> frozenset[NodeId]:
        found = self._peer_sets.get(node_id)
        if found is None:
            found = self._peer_sets[node_id] = frozenset(self._peers.get(node_id, ()))
        return found

    def set_timer(self, node_id: NodeId, key: str, delay: float) -> None:
        """Arm (or re-arm) timer ``key``: only this setting fires, at now + ``delay``.

        Each setting gets a generation from one counter that never restarts, so an event
        queued for an earlier setting of the same key (replaced, cancelled, or cancelled
        and set again) never matches the live one and is dropped when it comes up."""
        self._timer_seq += 1
        self._timer_gen[(node_id, key)] = self._timer_seq
        self._push(self._now + delay, _TIMER, node_id, (key, self._timer_seq))

    def cancel_timer(self, node_id: NodeId, key: str) -> None:
        self._timer_gen.pop((node_id, key), None)

    def run_job(self, node_id: NodeId, job_id: str, job: Job) -> None:
        self._start_job(node_id, RunJob(job_id, job))

    def fetch_blob(self, node_id: NodeId, cid: str, source: NodeId) -> None:
        self._fetch(node_id, FetchBlob(cid, source))

    def report_model(self, node_id: NodeId, step: int, weights: np.ndarray) -> None:
        self.observer.on_report(node_id, self._now, step, weights)

    def emit_metric(self, node_id: NodeId, metric: EmitMetric) -> None:
        self.observer.on_metric(node_id, self._now, metric)

    def halt(self, node_id: NodeId, reason: str) -> None:
        self._halted.add(node_id)

    def _deliver_event(self, node_id: NodeId, event: Any) -> None:
        """Queue an event a chain host made (it carries its own time)."""
        self._push(event.time, _EXTERNAL, node_id, event)

    def send(self, sender: NodeId, to: NodeId, message: Any) -> None:
        self._send(sender, to, message)

    def _send(self, sender: NodeId, to: NodeId, message: Any) -> None:
        if to not in self.nodes:
            raise SimulationError(f"node {sender} sent to unknown node {to!r}")
        if not self._linked(sender, to):
            raise SimulationError(
                f"node {sender} sent {type(message).__name__} to {to!r}, which is not its "
                "neighbour (neither lists the other in its NodePlan.peers): a real network "
                "connects only neighbours, so the message would never arrive there"
            )
        started = wallclock.process_time()
        if self.encode_messages:
            data = encode(message)
            size = len(data)
            message = decode(data)  # the receiver gets its own decoded copy, as over TCP
        else:
            size = wire_size(message)
        self.meters[sender].add("network", wallclock.process_time() - started)
        self.stats.messages_sent += 1
        self.stats.bytes_sent[sender] += size
        arrival = self.network.transmit(sender, to, size, self._now)
        if arrival is None:
            self.stats.messages_lost += 1
            return
        self._push(arrival, _DELIVER, to, (sender, message))

    def _fetch(self, node_id: NodeId, effect: FetchBlob) -> None:
        """A request travels to the source, the blob (if it has it) travels back."""
        store = self.blobs.get(effect.source)
        if effect.source not in self.nodes:
            raise SimulationError(f"node {node_id} fetched from unknown node {effect.source!r}")
        self.stats.messages_sent += 1
        self.stats.bytes_sent[node_id] += _FETCH_REQUEST_BYTES
        asked = self.network.transmit(node_id, effect.source, _FETCH_REQUEST_BYTES, self._now)
        data = self.blob_share.read(store, effect.cid)
        if data is not None and not self.nodes[effect.source].may_serve(node_id, effect.cid):
            refused = self.stats.blobs_refused
            refused[effect.source] = refused.get(effect.source, 0) + 1
            data = None
        answer = _FETCH_REQUEST_BYTES + (len(data) if data is not None else 0)
        arrival = None
        if asked is not None:
            self.stats.messages_sent += 1
            self.stats.bytes_sent[effect.source] += answer
            arrival = self.network.transmit(effect.source, node_id, answer, asked)
        if arrival is None:
            self.stats.messages_lost += 1
            data, arrival = None, self._now + 2 * self.network.link(node_id, effect.source).latency
        self._push(arrival, _BLOB, node_id, (effect.cid, effect.source, data))

    # ------------------------------------------------------------ jobs

    def _start_job(self, node_id: NodeId, effect: RunJob) -> None:
        self.stats.jobs += 1
        pending = _PendingJob(node_id, effect.job_id, effect.job)
        speed = self._speeds[node_id]
        if self.compute.mode == "measured":
            t0 = wallclock.process_time()
            result = self._result_of(pending)
            seconds = (wallclock.process_time() - t0) * self.compute.measured_scale
            self._push(self._now + seconds * speed, _JOB, node_id, (pending, result))
            return
        num = self.jobs.num_samples(node_id)
        seconds = self.compute.modelled_seconds(effect.job, num, self.jobs.num_eval(node_id))
        tracked = self._track_honest and isinstance(effect.job, TrainJob)
        if tracked and self.jobs.is_honest(node_id):
            self._pending_by_tag.setdefault(effect.job.tag, []).append(pending)
        self._push(self._now + seconds * speed, _JOB, node_id, (pending, None))
        if self._max_in_flight and not self.jobs.needs_honest(node_id, effect.job):
            # a job that reads the honest results of its round stays lazy
            self._queued[(node_id, effect.job_id)] = pending
            self._submit_queued()

    def _submit_queued(self) -> None:
        """Submit queued jobs in start order while fewer than max_in_flight run."""
        started = wallclock.perf_counter()
        if len(self._in_flight) >= self._max_in_flight and self._halted:
            for key in [k for k in self._in_flight if k[0] in self._halted]:
                del self._in_flight[key]  # a halted node never reads its result
        while self._queued and len(self._in_flight) < self._max_in_flight:
            key, pending = self._queued.popitem(last=False)
            if pending.node_id not in self._halted:
                self._in_flight[key] = self.executor.submit(
                    self.jobs.run, pending.node_id, pending.job, None
                )
        self.job_wait_seconds += wallclock.perf_counter() - started

    def _result_of(self, pending: _PendingJob) -> JobResult:
        key = (pending.node_id, pending.job_id)
        if key in self._early:
            return self._early.pop(key)
        job = pending.job
        if isinstance(job, TrainJob) and self.jobs.needs_honest(pending.node_id, job):
            for other in self._pending_by_tag.pop(job.tag, []):
                self._early[(other.node_id, other.job_id)] = self._compute(other)
            honest = tuple(self._honest_by_tag.get(job.tag, []))
            return self._run_job(pending, honest=lambda _tag: honest)
        return self._compute(pending)

    def _run_job(self, pending: _PendingJob, honest: HonestSource | None = None) -> JobResult:
        """Run the job on its node's data (or take the result of the job submitted when
        it started), charging its CPU time to the node's ``ml``: as measured where it ran
        when the executor measured it, else this process's."""
        started, waited = wallclock.process_time(), wallclock.perf_counter()
        key = (pending.node_id, pending.job_id)
        future = self._in_flight.pop(key, None)
        if future is None:
            self._queued.pop(key, None)
            future = self.executor.submit(self.jobs.run, pending.node_id, pending.job, honest)
        try:
            result = future.result()
        except JobLostError as exc:
            raise SimulationError(
                f"job {pending.job_id} of node {pending.node_id} "
                f"({type(pending.job).__name__}) was lost: {exc}"
            ) from exc
        finally:
            self.job_wait_seconds += wallclock.perf_counter() - waited
        cpu = getattr(future, "cpu_seconds", None)
        self.meters[pending.node_id].add(
            "ml", wallclock.process_time() - started if cpu is None else cpu
        )
        if self._queued:
            self._submit_queued()
        return result

    def _compute(self, pending: _PendingJob) -> JobResult:
        job = pending.job
        if isinstance(job, TrainJob) and self._track_honest:
            tagged = self._pending_by_tag.get(job.tag)
            if tagged and pending in tagged:
                tagged.remove(pending)
        result = self._run_job(pending)
        if (
            self._track_honest
            and isinstance(job, TrainJob)
            and self.jobs.is_honest(pending.node_id)
        ):
            bucket = self._honest_by_tag.setdefault(job.tag, [])
            bucket.append(result.weights)  # type: ignore[union-attr]
            self._honest_by_tag.move_to_end(job.tag)
            while len(self._honest_by_tag) > _HONEST_TAGS_KEPT:
                self._honest_by_tag.popitem(last=False)
        return result
