"""A ``pbft-ledger`` replica: the PBFT engine behind the protocol seam.

The engine's actions become effects: ``SendTo`` -> ``Send`` to that replica,
``BroadcastAll`` -> ``Broadcast`` to the other replicas, ``SetTimer``/``CancelTimer`` ->
timer effects keyed ``TimerKey("pbft-<key>")``, ``ReplyTo`` -> ``Send`` to the client,
and ``Execute`` -> a block on the node's main chain at height ``seq`` carrying the batch
and its 2f+1 commit certificate (``consensus.pbft.block``). On ``Start`` the replica
rebuilds the engine's execution state from the blocks already on its chain (a restart
from its store) and rejoins through the engine's own catch-up; blocks it missed are
written by itself, from certificates, so its chain never forks.

It halts ``linger`` seconds after it executed every client's last request.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from fedledger.consensus.pbft import (
    Action,
    BroadcastAll,
    Byzantine,
    CancelTimer,
    CommitCertificate,
    Execute,
    Executed,
    Replica,
    ReplyTo,
    SendTo,
    SetTimer,
)
from fedledger.consensus.pbft.block import block_of
from fedledger.crypto.keys import PublicKey
from fedledger.learning.jobs import JobResult
from fedledger.protocols.base import (
    BlobReceived,
    Broadcast,
    Effect,
    EmitMetric,
    Halt,
    JobFinished,
    MessageReceived,
    NodeSetup,
    Send,
    Start,
    TimerFired,
)
from fedledger.protocols.base import CancelTimer as CancelEffect
from fedledger.protocols.base import SetTimer as SetEffect
from fedledger.protocols.kit import JobId, KitNode, TimerKey, handles
from fedledger.protocols.pbft_ledger.boundary import EngineGate
from fedledger.protocols.pbft_ledger.messages import Answer, Peer, Request
from fedledger.protocols.pbft_ledger.params import PbftLedgerParams

REPLICA = "replica"
CLIENT = "client"
LINGER = TimerKey("linger")
TIMER_PREFIX = "pbft-"
ENGINE_TIMERS = ("batch", "view", "resend", "catchup", "retry")

#: Protocol fault names, one per engine switch (``censor`` censors every client).
FAULTS = ("equivocate", "wrong_digest", "silent", "censor", "forge")


def byzantine_of(faults: Sequence[str], clients: frozenset[bytes]) -> Byzantine:
    """The engine's fault switches for a node's configured protocol faults."""
    on = set(faults)
    return Byzantine(
        equivocate="equivocate" in on,
        wrong_digest="wrong_digest" in on,
        silent="silent" in on,
        censor=clients if "censor" in on else frozenset(),
        forge="forge" in on,
    )


class ReplicaNode(KitNode[PbftLedgerParams]):
    """One replica of the committee (see the module doc)."""

    def __init__(self, setup: NodeSetup[PbftLedgerParams]) -> None:
        super().__init__(setup)
        svc = setup.services
        plans = setup.all_nodes
        self.replica_ids = tuple(p.node_id for p in plans if p.role == REPLICA)
        self.client_ids = tuple(p.node_id for p in plans if p.role == CLIENT)
        self.peers = tuple(r for r in self.replica_ids if r != self.node_id)
        members: list[PublicKey] = [svc.directory[svc.address_of(r)] for r in self.replica_ids]
        clients = {svc.address_of(c): svc.directory[svc.address_of(c)] for c in self.client_ids}
        config = dataclasses.replace(
            setup.params.engine(), byzantine=byzantine_of(setup.faults, frozenset(clients))
        )
        self.index = self.replica_ids.index(self.node_id)
        self.engine = Replica(self.index, members, svc.keys, clients, config)
        self.ledger = svc.ledger
        self.requests = setup.horizon.length  # per client
        self.done_clients: set[bytes] = set()
        self.clients = frozenset(clients)
        self.executed_requests = 0
        self.step = 0
        self.lingering = False
        self.view = 0
        self.boundary = EngineGate(self.gate, self.engine.drops)

    # ------------------------------------------------------------ events

    def on_start(self, event: Start) -> list[Effect]:
        entries = [Executed(b.header.extra, b.transactions)
                   for b in self.ledger.canonical_chain()
                   if b.height > 0 and isinstance(b.header.extra, CommitCertificate)]
        effects: list[Effect] = []
        if entries:
            effects.append(EmitMetric("restored_blocks", float(len(entries)), 0))
        actions = self.boundary.call(lambda: self.engine.restore(event.time, entries))
        for entry in entries:
            self._count(entry.batch)
        return effects + self._effects(actions) + self._check_done()

    @handles(Peer)
    def on_peer(self, event: MessageReceived) -> list[Effect]:
        if event.sender not in self.peers:
            raise self.gate.fail("not_a_replica", event.sender)
        assert isinstance(event.message, Peer)
        sender = self.replica_ids.index(event.sender)
        body = event.message.body
        return self._effects(
            self.boundary.call(lambda: self.engine.on_message(event.time, sender, body))
        )

    @handles(Request)
    def on_request(self, event: MessageReceived) -> list[Effect]:
        if event.sender not in self.client_ids:
            raise self.gate.fail("not_a_client", event.sender)
        assert isinstance(event.message, Request)
        tx = event.message.tx
        return self._effects(self.boundary.call(lambda: self.engine.on_request(event.time, tx)))

    def on_timer(self, key: str, event: TimerFired) -> list[Effect]:
        if key == str(LINGER):
            return [*self.gate.new_metrics(self.step), Halt("all requests executed")]
        name = key[len(TIMER_PREFIX):]
        if key.startswith(TIMER_PREFIX) and name in ENGINE_TIMERS:
            return self._effects(self.boundary.call(lambda: self.engine.on_timer(event.time, name)))
        raise self.gate.fail("unknown_timer", key)

    def on_job(self, job_id: JobId | None, result: JobResult, event: JobFinished) -> list[Effect]:
        raise self.gate.fail("unexpected_job", event.job_id)

    def on_blob(self, event: BlobReceived) -> list[Effect]:
        raise self.gate.fail("unexpected_blob", event.cid)

    # ------------------------------------------------------------ actions -> effects

    def _effects(self, actions: list[Action]) -> list[Effect]:
        out: list[Effect] = []
        for a in actions:
            if isinstance(a, SendTo):
                out.append(Send(self.replica_ids[a.replica], Peer(a.msg)))
            elif isinstance(a, BroadcastAll):
                out.append(Broadcast(Peer(a.msg), to=self.peers))
            elif isinstance(a, ReplyTo):
                client = self.setup.services.node_of(a.client)
                if client is not None:
                    out.append(Send(client, Answer(a.reply)))
            elif isinstance(a, SetTimer):
                out.append(SetEffect(str(TimerKey(TIMER_PREFIX + a.key)), a.delay))
            elif isinstance(a, CancelTimer):
                out.append(CancelEffect(str(TimerKey(TIMER_PREFIX + a.key))))
            elif isinstance(a, Execute):
                out += self._execute(a)
        if self.engine.view != self.view:
            self.view = self.engine.view
            out.append(EmitMetric("view", float(self.view), self.step))
        return out + self._check_done()

    def _execute(self, executed: Execute) -> list[Effect]:
        parent = self.ledger.head()
        if executed.seq != parent.height + 1:
            raise self.gate.fail("out_of_order",
                                 f"executed seq {executed.seq} on head {parent.height}")
        with self.setup.meter.section("blockchain"):
            self.ledger.append(block_of(executed, parent.hash, self.setup.services.keys))
        self._count(executed.fresh)
        out: list[Effect] = [
            EmitMetric("block", float(executed.seq), self.step,
                       (("txs", str(len(executed.batch))),)),
            EmitMetric("executed", float(len(executed.fresh)), self.step),
        ]
        if executed.seq % self.engine.config.checkpoint_interval == 0:
            out += self.gate.new_metrics(self.step)
        return out

    def _count(self, batch: Sequence) -> None:
        for tx in batch:
            if tx.sender not in self.clients:
                continue
            self.executed_requests += 1
            self.step = min(self.requests, max(self.step, tx.nonce))
            if tx.nonce >= self.requests:
                self.done_clients.add(tx.sender)

    def _check_done(self) -> list[Effect]:
        if self.lingering or self.done_clients != self.clients:
            return []
        self.lingering = True
        return [SetEffect(str(LINGER), self.setup.params.linger)]
