"""The real node host's side of the effect table: event delivery and the primitives.

``NodeEvents`` is the half of ``NodeHost`` (host.py) that meets the protocol: it delivers
what the transport received (protocol messages to the node; blob and block requests
answered from the node's stores; replies to the waiting requests), dispatches events to the
node, and implements the host primitives of ``runtime.effects.HostOps`` on asyncio: timers
on the loop, jobs and model measurement in the worker thread, blob fetches as tasks.
``NodeHost`` owns the state these use and the node's life (start, sync, epoch, shutdown).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import numpy as np

from fedledger.assembly.metrics import MetricRow
from fedledger.protocols.base import (
    BlobReceived,
    EmitMetric,
    Event,
    FetchBlob,
    Job,
    JobFinished,
    Message,
    MessageReceived,
    TimerFired,
)
from fedledger.protocols.resources import CatchUp
from fedledger.runtime.node.blobs_fetch import fetch_blob, serve_blob
from fedledger.runtime.node.framing import DropReason
from fedledger.runtime.node.sync import serve_blocks
from fedledger.runtime.node.wire import BlobReply, BlobRequest, BlocksReply, BlocksRequest

if TYPE_CHECKING:
    from fedledger.assembly.build import Experiment
    from fedledger.assembly.metrics import MetricsRecorder
    from fedledger.learning.executor import ThreadExecutor
    from fedledger.protocols.base import NodePlan, ProtocolNode
    from fedledger.protocols.resources import NodeResources, NodeServices
    from fedledger.runtime.effects import EffectTable
    from fedledger.runtime.node.journal import Journal
    from fedledger.runtime.node.rpc import Rpc
    from fedledger.runtime.node.settings import NetSettings
    from fedledger.runtime.node.transport import Transport

log = logging.getLogger("fedledger.runtime.node.host")


class NodeEvents:
    """Event delivery and the effect primitives of one real node (mixed into ``NodeHost``,
    which sets every attribute below before the loop runs)."""

    node_id: str
    plan: NodePlan
    exp: Experiment
    node: ProtocolNode[Any]
    services: NodeServices
    resources: NodeResources
    net: NetSettings
    effects: EffectTable
    journal: Journal
    recorder: MetricsRecorder
    worker: ThreadExecutor
    transport: Transport
    rpc: Rpc
    handler_errors: int
    jobs: int
    _timers: dict[str, asyncio.TimerHandle]
    _early: list[tuple[str, Message]]
    _started: bool
    _fetches: set[asyncio.Task[None]]
    _halted: asyncio.Event

    if TYPE_CHECKING:

        def _now(self) -> float:
            """Network time (``NodeHost._now``)."""
            ...

    async def _pump(self) -> None:
        """Deliver what the transport received: protocol messages, requests, replies."""
        net = self.net
        while True:
            peer, payload = await self.transport.inbox.get()
            if isinstance(payload, BlobRequest):
                store = self.services.blobs
                if not self.node.may_serve(peer, payload.cid):
                    self.transport.counters.drop(DropReason.REFUSED_BLOB)
                    store = None  # answered as a blob this node does not have
                self.transport.send(peer, serve_blob(store, payload, net.chunk_size), False)
            elif isinstance(payload, BlocksRequest):
                spec = self.resources.chains.get(payload.chain)
                if spec is None or spec.catch_up != CatchUp.PEERS:
                    reply = BlocksReply(payload.req_id, 0, ())  # nothing shared to serve
                else:
                    store = self.services.chain(payload.chain)
                    reply = serve_blocks(store, payload, net.max_frame // 2)
                self.transport.send(peer, reply, False)
            elif isinstance(payload, BlobReply | BlocksReply):
                self.rpc.on_reply(peer, payload)
            elif isinstance(payload, Message):
                if self._started:
                    self._dispatch(MessageReceived(self._now(), peer, payload))
                elif len(self._early) < net.inbox_size:
                    self._early.append((peer, payload))

    def _dispatch(self, event: Event) -> None:
        if self._halted.is_set():
            return
        meter = self.exp.meters[self.node_id]
        started, inside = time.process_time(), meter.measured
        try:
            effects = self.node.handle(event)
        except Exception:
            self.handler_errors += 1
            log.exception("node %s failed on %s", self.node_id, type(event).__name__)
            return
        finally:
            # as the simulator: the handler's CPU time less its metered sections (process
            # time, as the meter's sections; a job running meanwhile is counted in too)
            meter.add("protocol", time.process_time() - started - (meter.measured - inside))
        for effect in effects:
            try:
                self._execute(effect)
            except Exception:
                self.handler_errors += 1
                log.exception("node %s could not execute %r", self.node_id, effect)

    def _execute(self, effect: object) -> None:
        self.effects.execute(self.node_id, effect)

    # the host primitives of the effect table (runtime.effects.HostOps); node_id is
    # always this process's node

    def peers(self, node_id: str) -> tuple[str, ...]:
        return self.plan.peers

    def send(self, node_id: str, to: str, message: Message) -> None:
        self.transport.send(to, message)

    def set_timer(self, node_id: str, key: str, delay: float) -> None:
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        self._timers[key] = asyncio.get_running_loop().call_later(delay, self._fire, key)

    def cancel_timer(self, node_id: str, key: str) -> None:
        handle = self._timers.pop(key, None)
        if handle is not None:
            handle.cancel()

    def run_job(self, node_id: str, job_id: str, job: Job) -> None:
        loop = asyncio.get_running_loop()
        self.jobs += 1
        future = self.worker.submit(self._run_job, job)
        future.add_done_callback(lambda f: loop.call_soon_threadsafe(self._job_done, job_id, f))

    def _run_job(self, job: Job) -> Any:
        """A job in the worker thread, its CPU time metered as ``ml``."""
        started = time.thread_time()
        try:
            return self.exp.jobs.run(self.node_id, job)
        finally:
            self.exp.meters[self.node_id].add("ml", time.thread_time() - started)

    def fetch_blob(self, node_id: str, cid: str, source: str) -> None:
        task = asyncio.create_task(self._fetch_for_protocol(FetchBlob(cid, source)))
        self._fetches.add(task)
        task.add_done_callback(self._fetches.discard)

    def report_model(self, node_id: str, step: int, weights: np.ndarray) -> None:
        self.worker.submit(self._measure_report, self._now(), step, weights)

    def emit_metric(self, node_id: str, metric: EmitMetric) -> None:
        # an undeclared name is refused here as in the simulator; the journal keeps the
        # name as emitted and localnet records it namespaced (MetricNames)
        assert self.recorder.names is not None
        self.recorder.names.qualify(metric.name)
        row = MetricRow(
            self.node_id, metric.name, metric.step, self._now(), metric.value, dict(metric.tags)
        )
        self.journal.metric(row)

    def halt(self, node_id: str, reason: str) -> None:
        log.info("node %s halts: %s", self.node_id, reason)
        self._halted.set()

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self._dispatch(TimerFired(self._now(), key))

    def _job_done(self, job_id: str, future: Future[Any]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            self.handler_errors += 1
            log.error("job %s of node %s failed: %r", job_id, self.node_id, error)
            return
        self._dispatch(JobFinished(self._now(), job_id, future.result()))

    async def _fetch(self, source: str, cid: str) -> bytes | None:
        net = self.net
        if source == self.node_id:
            store = self.services.blobs
            return store.get(cid) if store is not None and store.has(cid) else None
        if source not in self.transport.outboxes:
            return None
        return await fetch_blob(
            self.rpc, source, cid, net.chunk_size, net.request_timeout, 64 * net.max_frame
        )

    def _measure_report(self, time: float, step: int, weights: np.ndarray) -> None:
        """Measure a reported model (worker thread) and journal the test-set metrics the
        attacks of the network define (e.g. backdoor_asr) with it."""
        known = len(self.recorder.metrics)
        self.recorder.on_report(self.node_id, time, step, weights)
        for row in self.recorder.metrics[known:]:
            self.journal.metric(row)

    async def _fetch_for_protocol(self, effect: FetchBlob) -> None:
        data = await self._fetch(effect.source, effect.cid)
        self._dispatch(BlobReceived(self._now(), effect.cid, effect.source, data))
