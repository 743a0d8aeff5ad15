"""A ``pbft-ledger`` client: submits signed transactions at a rate, accepts each result on
f+1 matching replies (``consensus.pbft.Client``) and measures commit latency.

Request k comes due at ``offset + (k - 1) / rate`` (the offset staggers the clients over
one period). The engine's client keeps one request outstanding, so a request that comes
due while the previous one is unanswered is sent when that one is accepted. Per request
the client emits ``commit_latency`` (seconds from sending to acceptance, in the host's
time) and ``queue_delay`` (from coming due to sending), at step = its nonce; it halts
once all ``rounds`` requests are accepted.

PBFT needs a client's request numbers to grow (a replica runs nonce k once and refuses
one at or below its last executed), so a client stores its last nonce and its accepted
count in its chain store's state before it sends; a restarted client goes on from there.
"""

from __future__ import annotations

import hashlib

from fedledger.codec import decode, encode
from fedledger.consensus.pbft import BroadcastAll, CancelTimer, Client, SendTo, SetTimer
from fedledger.consensus.pbft.client import ClientAction
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
from fedledger.protocols.pbft_ledger.messages import Answer, Request
from fedledger.protocols.pbft_ledger.params import PbftLedgerParams
from fedledger.protocols.pbft_ledger.replica import CLIENT, REPLICA, TIMER_PREFIX

TICK = TimerKey("tick")
TX_KIND = "pbft_ledger.tx"
STATE_KEY = "pbft-ledger/client"


def payload_of(seed: int, node_id: str, nonce: int, size: int) -> bytes:
    """The deterministic payload of a client's request ``nonce``."""
    return hashlib.shake_256(f"pbft-ledger/{seed}/{node_id}/{nonce}".encode()).digest(size)


class ClientNode(KitNode[PbftLedgerParams]):
    """One client (see the module doc)."""

    def __init__(self, setup: NodeSetup[PbftLedgerParams]) -> None:
        super().__init__(setup)
        svc = setup.services
        self.replica_ids = tuple(p.node_id for p in setup.all_nodes if p.role == REPLICA)
        members: list[PublicKey] = [svc.directory[svc.address_of(r)] for r in self.replica_ids]
        self.engine = Client(svc.keys, members, retry=setup.params.client_retry)
        clients = [p.node_id for p in setup.all_nodes if p.role == CLIENT]
        self.offset = clients.index(self.node_id) / len(clients) / setup.params.rate
        self.requests = setup.horizon.length
        self.due: list[float] = []  # due times of requests not yet sent
        self.scheduled = 0  # requests that came due so far
        self.accepted = 0
        self.store = svc.ledger
        self.boundary = EngineGate(self.gate, self.engine.drops)

    def on_start(self, event: Start) -> list[Effect]:
        saved = self.store.get_state(STATE_KEY)
        if saved is not None:
            nonce, accepted = decode(saved)
            self.engine.nonce, self.accepted = int(nonce), int(accepted)
            self.scheduled = self.accepted
        if self.accepted >= self.requests:
            return [Halt("all requests accepted")]
        return [SetEffect(str(TICK), self.offset)]

    def _save(self) -> None:
        self.store.put_state(STATE_KEY, encode((self.engine.nonce, self.accepted)))

    def on_timer(self, key: str, event: TimerFired) -> list[Effect]:
        if key == str(TICK):
            self.scheduled += 1
            self.due.append(event.time)
            out: list[Effect] = []
            if self.scheduled < self.requests:
                out.append(SetEffect(str(TICK), 1.0 / self.setup.params.rate))
            return out + self._send_next()
        if key == f"{TIMER_PREFIX}retry":
            return self._effects(self.engine.on_timer(event.time, "retry"))
        raise self.gate.fail("unknown_timer", key)

    def on_job(self, job_id: JobId | None, result: JobResult, event: JobFinished) -> list[Effect]:
        raise self.gate.fail("unexpected_job", event.job_id)

    def on_blob(self, event: BlobReceived) -> list[Effect]:
        raise self.gate.fail("unexpected_blob", event.cid)

    @handles(Answer)
    def on_answer(self, event: MessageReceived) -> list[Effect]:
        if event.sender not in self.replica_ids:
            raise self.gate.fail("not_a_replica", event.sender)
        assert isinstance(event.message, Answer)
        nonce = self.engine.nonce
        had = nonce in self.engine.results
        reply = event.message.reply
        out = self._effects(self.boundary.call(lambda: self.engine.on_reply(event.time, reply)))
        if had or nonce not in self.engine.results:
            return out
        self.accepted += 1
        self._save()
        out.append(EmitMetric("commit_latency", self.engine.latency[nonce], nonce))
        if self.accepted >= self.requests:
            out += [*self.gate.new_metrics(nonce), Halt("all requests accepted")]
            return out
        return out + self._send_next()

    def _send_next(self) -> list[Effect]:
        if self.engine.busy or not self.due:
            return []
        due = self.due.pop(0)
        payload = payload_of(self.setup.seed, self.node_id, self.engine.nonce + 1,
                             self.setup.params.payload_size)
        actions = self.engine.request(self.now, TX_KIND, payload)
        self._save()  # the nonce is used: durable before the request leaves
        return [EmitMetric("queue_delay", self.now - due, self.engine.nonce),
                *self._effects(actions)]

    def _effects(self, actions: list[ClientAction]) -> list[Effect]:
        out: list[Effect] = []
        for a in actions:
            if isinstance(a, SendTo):
                out.append(Send(self.replica_ids[a.replica], Request(a.msg)))
            elif isinstance(a, BroadcastAll):
                out.append(Broadcast(Request(a.msg), to=self.replica_ids))
            elif isinstance(a, SetTimer):
                out.append(SetEffect(str(TimerKey(TIMER_PREFIX + a.key)), a.delay))
            elif isinstance(a, CancelTimer):
                out.append(CancelEffect(str(TimerKey(TIMER_PREFIX + a.key))))
        return out
