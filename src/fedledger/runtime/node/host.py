"""One protocol node in its own process: the wall clock, asyncio TCP, a job thread.

The host builds the experiment exactly as the simulator does (``build_experiment(config,
data_dir, only=node_id)``: same data share, learner, attack, keys, ledger; with
``--genesis`` the keys and genesis block come from the signed genesis file and ``--key``,
and the transport speaks TLS) and executes
the node's effects the way the simulator does: ``Send``/``Broadcast`` (to the plan's
peers) through the transport; ``SetTimer`` replaces a timer of the same key;
``RunJob`` and model measurement run in one worker thread so the event loop keeps
answering peers; ``FetchBlob`` fetches in chunks and answers ``BlobReceived``; ``Halt``
flushes the outboxes and ends the process.

Every event carries the network time: wall seconds since the network's epoch
(``--epoch``, the same UNIX time for every node of a network; without it, the process's
own start). The host anchors it to the monotonic loop clock at start-up, so it never
jumps backwards within a process. With ``--epoch-file`` the epoch is not known yet: once
the node is ready (peers connected, shared chains synced) and the file does not exist,
it says ``ready`` in its status, polls the file every 50 ms, then anchors its clock to
the epoch read (before any timer is set) and journals an ``epoch`` line; a node started
or restarted once the file exists reads it at start-up, as ``--epoch``. A node that is
up before the epoch waits for it before ``Start`` (the whole network starts its protocol
at time 0); a node that starts late or restarts gets ``Start`` with the current network
time, so its protocol can tell where the others are. A protocol handler that raises is
logged and counted, and the node carries on (it never crashes on what a peer sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from dataclasses import replace
from pathlib import Path

from fedledger.assembly.build import build_experiment
from fedledger.assembly.metrics import recorder_for
from fedledger.assembly.services import node_keys
from fedledger.learning.executor import ThreadExecutor
from fedledger.ledger.verify import Verifier
from fedledger.protocols.base import BASE_EFFECTS, ChainSynced, Message, MessageReceived, Start
from fedledger.protocols.resources import CatchUp
from fedledger.runtime.effects import EffectTable
from fedledger.runtime.node.chain_rpc import RpcChainHost
from fedledger.runtime.node.framing import NetCounters
from fedledger.runtime.node.handshake import Identity
from fedledger.runtime.node.host_events import NodeEvents
from fedledger.runtime.node.journal import Journal
from fedledger.runtime.node.live_sync import peer_view, watch_chains
from fedledger.runtime.node.options import (
    NodeOptions,
    default_max_frame,
    load_membership,
    network_text,
    own_key,
    read_epoch_file,
)
from fedledger.runtime.node.rpc import Rpc
from fedledger.runtime.node.sync import catch_up
from fedledger.runtime.node.transport import Transport
from fedledger.runtime.node.wire import BlocksReply, BlocksRequest, network_digest
from fedledger.storage.layout import RunLayout

log = logging.getLogger(__name__)

#: seconds between two looks at the ``--epoch-file`` of a ready node
EPOCH_POLL = 0.05


class NodeHost(NodeEvents):
    """One node's process: its state, clock and life; the effect primitives and event
    delivery are ``NodeEvents`` (host_events.py)."""

    def __init__(self, options: NodeOptions) -> None:
        self.options = options
        config = options.config
        self.node_id = options.node_id
        membership = load_membership(options)
        self.exp = build_experiment(
            config, options.data_dir, only=self.node_id, membership=membership
        )
        self.node = self.exp.nodes[self.node_id]
        self.role = self.exp.role(self.node_id)
        self.plan = self.role.plan
        self.services = self.exp.services[self.node_id]
        self.resources = self.exp.protocol.resources(self.plan, self.exp.plans)
        self.dir = RunLayout(options.data_dir).node(self.node_id).root
        if membership is not None:
            key = membership.key
            members = dict(membership.genesis.members)
        else:
            keys = node_keys(self.exp.plans, config.seed)
            key = keys[self.node_id]
            if options.key_file is not None:
                key = own_key(options.key_file, key, self.node_id)
            members = {n: k.public for n, k in keys.items()}
        network = network_digest(network_text(config), self.services.genesis.hash)
        self.identity = Identity(self.node_id, key, network, members)
        self.net = options.net
        if options.max_frame is None:
            self.net = replace(options.net, max_frame=default_max_frame(self.node.setup))
        elif options.max_frame != options.net.max_frame:
            self.net = replace(options.net, max_frame=options.max_frame)
        if membership is not None:  # a real network: encrypted (derived keys: loopback only)
            self.net = replace(self.net, tls=True)
        self.counters = NetCounters()
        self.effects = EffectTable.for_host("real-node host", self)
        self.chain_rpc = RpcChainHost.for_node(self)  # contract effects over JSON-RPC
        self.effects.require((*BASE_EFFECTS, *self.exp.protocol.effects), "the protocol")
        self.journal = Journal(self.dir)
        self.recorder = recorder_for(
            self.exp,
            on_row=self.journal.model,
            node=self.node_id,
            on_summary=self.journal.step_summary,
        )
        # jobs and model measurement, one at a time off the event loop (the learning
        # layer's executor interface; a Ray executor would plug in here)
        self.worker = ThreadExecutor(1, prefix=f"jobs-{self.node_id}")
        self.state = "starting"
        self.port = 0
        self.handler_errors = 0
        self.jobs = 0
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._early: list[tuple[str, Message]] = []
        self._started = False
        self._fetches: set[asyncio.Task[None]] = set()
        self.epoch_given = options.epoch is not None
        self.epoch = options.epoch if options.epoch is not None else time.time()
        self._t0 = 0.0  # loop.time() at network time 0

    # ------------------------------------------------------------ life

    async def run(self) -> int:
        """Run until the protocol halts or a signal arrives; return the exit code."""
        loop = asyncio.get_running_loop()
        epoch_file = self.options.epoch_file
        if epoch_file is not None:
            try:
                found = read_epoch_file(epoch_file)
            except ValueError as exc:
                log.error("node %s: %s", self.node_id, exc)
                return 2
            if found is not None:  # a node (re)started once the network has its epoch
                self.epoch, self.epoch_given = found, True
        if not self.epoch_given:
            self.epoch = time.time()
        self._anchor(self.epoch)
        self.transport = Transport(self.identity, self.net, self.counters)
        self.rpc = Rpc(self.transport)
        self._halted = asyncio.Event()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        parent = os.getppid()
        host, port = self.options.listen
        self.port = await self.transport.listen(host, port)
        for address in self.options.peers:
            self.transport.dial(*address)
        tasks = [
            asyncio.create_task(self._pump()),
            asyncio.create_task(self._status_loop(parent, stop)),
        ]
        self.journal.write(
            "start",
            {
                "time": round(self._now(), 6),
                "epoch": self.epoch,
                "epoch_given": self.epoch_given,
                "epoch_file": None if epoch_file is None else str(epoch_file),
                "pid": os.getpid(),
                "port": self.port,
                # the model's layout, for the step metrics localnet combines
                "layout": [[n, list(shape)] for n, shape in self.exp.learner.layout.entries],
            },
        )
        log.info(
            "node %s listening on %s:%d; network time %.3f s (epoch %.3f, %s)",
            self.node_id,
            host,
            self.port,
            self._now(),
            self.epoch,
            self._epoch_source(),
        )
        main = asyncio.create_task(self._main())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait([main, stopper], return_when=asyncio.FIRST_COMPLETED)
        halted = main.done() and not main.cancelled() and main.exception() is None
        if not halted:
            main.cancel()
            self.state = "stopped"
            log.info("node %s stopping on a signal", self.node_id)
        stopper.cancel()
        await self._shutdown(tasks)
        if main.done() and not main.cancelled() and main.exception() is not None:
            log.error("node %s failed", self.node_id, exc_info=main.exception())
            return 1
        return 0

    async def _main(self) -> None:
        await self._wait_for_peers()
        shared = [n for n, c in self.resources.chains.items() if c.catch_up == CatchUp.PEERS]
        if shared:
            self.state = "syncing"
            for name in sorted(shared):
                await self._sync(name)
        if self.options.epoch_file is not None and not self.epoch_given:
            await self._await_epoch_file(self.options.epoch_file)
        ahead = -self._now()
        if ahead > 0:
            self.state = "waiting"
            log.info("node %s waits %.3f s for the network's epoch", self.node_id, ahead)
            await asyncio.sleep(ahead)
        self.state = "running"
        self._started = True
        if self.chain_rpc is not None:  # contract logs from now on (chain_rpc.py)
            self.chain_rpc.start(asyncio.get_running_loop())
        begin = max(0.0, self._now())
        self.journal.write("begin", {"time": round(begin, 6), "late": round(-ahead, 6)})
        self._dispatch(Start(begin))
        for peer, message in self._early:
            self._dispatch(MessageReceived(self._now(), peer, message))
        self._early.clear()
        chains = self.resources.chains
        watched = sorted(n for n in shared if chains[n].live)
        live = asyncio.create_task(self._live_sync(watched))  # catch-up while running
        try:
            await self._halted.wait()
        finally:
            live.cancel()
        self.state = "draining"
        await self.transport.drain(self.net.drain_timeout)
        await asyncio.get_running_loop().run_in_executor(self.worker.pool, self.recorder.finish)
        self.state = "halted"

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        for handle in self._timers.values():
            handle.cancel()
        if self.chain_rpc is not None:
            self.chain_rpc.close()
        self.worker.shutdown()
        self.journal.write(
            "halt" if self.state == "halted" else "stop",
            {"time": self._now(), "pid": os.getpid(), "handler_errors": self.handler_errors},
        )
        self.journal.write("transport", {"time": self._now(), **self.counters.as_dict()})
        cpu = {a: round(s, 6) for a, s in sorted(self.exp.meters[self.node_id].seconds.items())}
        self.journal.write("cpu", {"time": self._now(), "seconds": cpu})
        self._write_status()
        await self.transport.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.exp.close()  # the ledger (the job thread never touches it)

    async def _wait_for_peers(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.net.start_wait
        wanted = set(self.plan.peers)
        while loop.time() < deadline and not wanted <= set(self.transport.connected()):
            await asyncio.sleep(0.05)
        missing = sorted(wanted - set(self.transport.connected()))
        if missing:
            log.warning("starting without %s (not connected)", missing)

    async def _live_sync(self, chains: list[str]) -> None:
        """Catch a shared chain up whenever this running node falls behind its peers
        (``live_sync``); the protocol gets ``ChainSynced`` for what was appended."""
        if not chains:
            return

        def head(chain: str) -> tuple[int, bytes]:
            block = self.services.chain(chain).head()
            return block.height, block.hash

        await watch_chains(
            chains,
            self.net.sync_interval,
            self.net.sync_lag,
            self.transport.connected,
            head,
            lambda peer, chain, height, block: peer_view(
                self.rpc, peer, chain, height, block, self.net.request_timeout
            ),
            lambda chain: self._sync(chain, live=True),
        )

    async def _sync(self, chain: str, live: bool = False) -> int:
        """Catch chain ``chain`` up from the connected peers (its policy is PEERS); the
        number of blocks appended. ``live``: the protocol runs, and is told of them."""
        svc = self.services
        settings = self.net
        ledger = svc.chain(chain)

        async def ask_blocks(peer: str, start: int, limit: int) -> BlocksReply | None:
            request = BlocksRequest(0, start, limit, chain)
            return await self.rpc.request(peer, request, BlocksReply, settings.request_timeout)

        async def ask_blob(peer: str, cid: str) -> bytes | None:
            return await self._fetch(peer, cid)

        verifier = Verifier(svc.directory)
        report = await catch_up(
            ledger, svc.blobs, verifier, self.transport.connected(), ask_blocks, ask_blob
        )
        self.journal.write(
            "sync",
            {
                "chain": chain,
                "time": self._now(),
                "appended": report.appended,
                "blobs": report.blobs,
                "refused": report.refused,
                "peers": report.peers,
                "height": ledger.head().height,
                "live": live,
            },
        )
        if live and report.appended:
            self._dispatch(ChainSynced(self._now(), chain, report.appended, ledger.head().height))
        return report.appended

    async def _await_epoch_file(self, path: Path) -> None:
        """Say ``ready`` and wait for the network's epoch to appear in ``path``."""
        self.state = "ready"
        self._write_status()  # at once: the launcher writes the epoch when all are ready
        log.info("node %s is ready; waiting for the network's epoch in %s", self.node_id, path)
        while (epoch := read_epoch_file(path)) is None:
            await asyncio.sleep(EPOCH_POLL)
        self.epoch, self.epoch_given = epoch, True
        self._anchor(epoch)
        self.journal.write("epoch", {"time": round(self._now(), 6), "epoch": epoch})
        log.info("node %s: network time %.3f s (epoch %.3f)", self.node_id, self._now(), epoch)

    def _anchor(self, epoch: float) -> None:
        """Make network time 0 fall on ``epoch`` (UNIX seconds)."""
        self._t0 = asyncio.get_running_loop().time() - (time.time() - epoch)

    def _epoch_source(self) -> str:
        if self.options.epoch is not None:
            return "--epoch"
        if self.epoch_given:
            return f"--epoch-file {self.options.epoch_file}"
        if self.options.epoch_file is not None:
            return f"this process's start until --epoch-file {self.options.epoch_file} is written"
        return "this process's start: no --epoch"

    def _now(self) -> float:
        """Network time: wall seconds since the epoch (monotonic within this process)."""
        return asyncio.get_running_loop().time() - self._t0

    # ------------------------------------------------------------ status

    async def _status_loop(self, parent: int, stop: asyncio.Event) -> None:
        while True:
            self._write_status()
            if self.options.exit_with_parent and os.getppid() != parent:
                log.warning("parent process %d is gone; stopping", parent)
                stop.set()
            await asyncio.sleep(0.5)

    def _write_status(self) -> None:
        last = self.journal.last_model
        with contextlib.suppress(OSError):
            self.journal.status(
                {
                    "node": self.node_id,
                    "role": self.plan.role,
                    "pid": os.getpid(),
                    "port": self.port,
                    "state": self.state,
                    "time": round(self._now(), 3),
                    "step": last.step if last else 0,
                    "accuracy": last.accuracy if last else None,
                    "jobs": self.jobs,
                    "connected": self.transport.connected(),
                    "counters": self.counters.as_dict(),
                    "handler_errors": self.handler_errors,
                }
            )
