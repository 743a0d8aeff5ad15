"""Federated learning over the microchain (Sections III-A, IV-C): the FL server, the
aggregator and its clients. Models travel off chain (blob store), their references on
chain; the aggregator aggregates a round only once its model transactions are in a
finalized (or committed) checkpoint."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from fedledger.learning.jobs import EvalJob, EvalResult
from fedledger.ledger.records import ModelRef, Transaction, record_id
from fedledger.protocols.base import (
    Broadcast,
    Effect,
    EmitMetric,
    FetchBlob,
    Halt,
    ReportModel,
    RunJob,
    Send,
    TrainJob,
    TrainResult,
)
from fedledger.protocols.kit.blobs import ModelBlobs
from fedledger.protocols.kit.gate import Reject
from fedledger.protocols.kit.ids import JobId
from fedledger.protocols.mudfl.chain import Microchain
from fedledger.protocols.mudfl.cipher import (
    ModelCipher,
    ModelCipherError,
    box_key,
    open_key,
    seal_key,
)
from fedledger.protocols.mudfl.context import FAULT_TAMPER_MODEL, Context, authenticator
from fedledger.protocols.mudfl.messages import (
    FAULT_TX,
    GLOBAL_TX,
    MODEL_TX,
    SCORE_TX,
    AggregateMsg,
    Fault,
    FinishMsg,
    GlobalModel,
    ModelUpdate,
    Scores,
    TaskMsg,
    TxMsg,
)
from fedledger.seeding import derive_seed


def _committee_tx(ctx: Context, chain: Microchain, tx: Transaction) -> list[Effect]:
    """Hand a transaction to the committee (and to the own pool if a member)."""
    if ctx.in_committee:
        chain.add_tx(tx)
    to = tuple(n for n in ctx.dynasty.committee if n != ctx.node_id)
    return [Broadcast(TxMsg(tx), to=to)]


def chain_globals(chain: Microchain) -> list[GlobalModel]:
    return [
        tx.payload
        for b in chain.store.canonical_chain()
        for tx in b.transactions
        if tx.kind == GLOBAL_TX and isinstance(tx.payload, GlobalModel)
    ]


class Server:
    """The FL server: publishes each round's global model and its authenticator."""

    def __init__(self, ctx: Context, chain: Microchain, initial: np.ndarray) -> None:
        self.ctx, self.chain = ctx, chain
        self.blobs = ModelBlobs(ctx.services.blob_store, tuple(initial.shape))
        self.weights = initial
        self.round = 0
        self.fetching: tuple[int, ModelRef] | None = None

    def resume(self) -> list[Effect]:
        done = chain_globals(self.chain)
        if done:
            last = done[-1]
            weights = self.blobs.own(last.model)
            if weights is not None:
                self.weights, self.round = weights, last.round
                return []
        return self.begin(1)

    def begin(self, rnd: int) -> list[Effect]:
        ctx = self.ctx
        self.round = rnd
        ref = self.blobs.store(self.weights, 0)
        auth = authenticator(ref.sha256)
        tx = ctx.sign(Transaction(ctx.address, 0.0, GLOBAL_TX, GlobalModel(rnd, ref, auth), rnd))
        return [*_committee_tx(ctx, self.chain, tx), Send(ctx.aggregator, TaskMsg(rnd, ref, auth))]

    def on_aggregate(self, msg: AggregateMsg, sender: str) -> list[Effect]:
        gate = self.ctx.gate
        if sender != self.ctx.aggregator:
            raise gate.fail("wrong_sender", f"aggregate from {sender}")
        if msg.round != self.round or self.fetching is not None:
            raise gate.fail("wrong_round", f"aggregate of round {msg.round} at {self.round}")
        self.fetching = (msg.round, msg.model)
        return [FetchBlob(msg.model.cid, sender)]

    def on_blob(self, cid: str, data: bytes | None) -> list[Effect]:
        if self.fetching is None or self.fetching[1].cid != cid:
            return []
        rnd, ref = self.fetching
        self.fetching = None
        weights = self.blobs.load(data, ref)
        if weights is None:
            raise self.ctx.gate.fail("bad_aggregate", f"aggregate {cid} does not match")
        self.weights = weights
        effects: list[Effect] = [ReportModel(rnd, weights)]
        if rnd >= self.ctx.setup.rounds:
            others = tuple(n for n in self.ctx.everyone if n != self.ctx.node_id)
            return [*effects, Broadcast(FinishMsg(rnd), to=others), Halt("all rounds done")]
        return effects + self.begin(rnd + 1)


@dataclass
class Pending:
    """The aggregator's round in progress."""

    round: int
    task: TaskMsg
    since: int  # the slot the task came
    updates: dict[bytes, tuple[bytes, ModelUpdate]] = field(default_factory=dict)
    fetches: dict[str, tuple[bytes, bytes, ModelUpdate]] = field(default_factory=dict)
    models: list[tuple[np.ndarray, int]] = field(default_factory=list)
    aggregating: bool = False
    scores: dict[bytes, int] = field(default_factory=dict)  # worker -> accuracy (permille)
    scoring: dict[int, bytes] = field(default_factory=dict)  # eval job index -> worker
    verified: dict[bytes, np.ndarray] = field(default_factory=dict)


class Aggregator:
    """Relays the task, waits for finality, fetches, decrypts, verifies, averages."""

    def __init__(self, ctx: Context, chain: Microchain, shape: tuple[int, ...]) -> None:
        self.ctx, self.chain = ctx, chain
        self.blobs = ModelBlobs(ctx.services.blob_store, shape)
        self.box = box_key(ctx.services.keys.derive_secret(b"mudfl/aggregator-box"))
        self.pending: Pending | None = None

    def on_task(self, msg: TaskMsg, sender: str) -> list[Effect]:
        gate = self.ctx.gate
        if sender != self.ctx.server:
            raise gate.fail("wrong_sender", f"task from {sender}")
        if msg.authenticator != authenticator(msg.model.sha256):
            raise gate.fail("bad_authenticator", f"task of round {msg.round}")
        if self.pending is not None and msg.round <= self.pending.round:
            raise gate.fail("wrong_round", f"task of round {msg.round}")
        task = TaskMsg(msg.round, msg.model, msg.authenticator, bytes(self.box.public_key))
        self.pending = Pending(msg.round, task, self.chain.slot)
        return [Broadcast(task, to=self.ctx.clients)]

    def check(self) -> list[Effect]:
        """At each slot: collect the round's model transactions below the finality
        mark; aggregate when every client's is in, or the round's slots are up."""
        p = self.pending
        if p is None or p.aggregating:
            return []
        top = self.chain.finalized_height()
        for block in self.chain.store.canonical_chain():
            if block.height > top:
                break
            for tx in block.transactions:
                u = tx.payload
                if tx.kind == MODEL_TX and isinstance(u, ModelUpdate) and u.round == p.round:
                    p.updates.setdefault(tx.sender, (record_id(tx), u))
        waited = self.chain.slot - p.since
        if len(p.updates) < len(self.ctx.clients) and waited < self.ctx.params.round_slots:
            return []
        if not p.updates:
            return []
        p.aggregating = True
        effects: list[Effect] = []
        for worker, (tid, u) in sorted(p.updates.items()):
            source = self.ctx.services.node_of(worker)
            if source is None:
                continue
            p.fetches[u.model.cid] = (worker, tid, u)
            effects.append(FetchBlob(u.model.cid, source))
        return effects

    def on_blob(self, cid: str, data: bytes | None) -> list[Effect]:
        p = self.pending
        if p is None or cid not in p.fetches:
            return []
        worker, tid, u = p.fetches.pop(cid)
        effects: list[Effect] = []
        try:
            key = open_key(u.sealed_key, self.box)
            cipher = ModelCipher(key, stretch=self.ctx.params.model_cipher == "pbkdf2-390k")
            blobs = ModelBlobs(self.blobs.store_, self.blobs.shape, cipher)
            weights = blobs.check(data, u.model)
            plain = cipher.decrypt(data or b"")
            if hashlib.sha256(plain).digest() != u.plain_sha256:
                raise Reject("bad_model_hash", "plaintext hash differs")
            p.models.append((weights, u.model.num_samples))
            p.verified[worker] = weights
        except (Reject, ModelCipherError) as err:
            reason = err.reason if isinstance(err, Reject) else "bad_model_key"
            self.ctx.gate.fail(reason, f"model of {self.ctx.services.node_of(worker)}")
            fault = Fault(p.round, worker, reason, tid)
            ctx = self.ctx
            tx = ctx.sign(Transaction(ctx.address, 0.0, FAULT_TX, fault, p.round))
            effects += _committee_tx(ctx, self.chain, tx)
            effects.append(EmitMetric("model_refused", 1.0, p.round))
            p.scores[worker] = 0
        if not p.fetches:
            effects += self._score(p)
        return effects

    def _score(self, p: Pending) -> list[Effect]:
        """Every verified model is scored on the aggregator's test set (its root set)
        before the round's scores go on chain and the average to the server."""
        if self.ctx.params.score_samples == 0 or not p.verified:
            return self._finish(p)
        effects: list[Effect] = []
        for i, (worker, weights) in enumerate(sorted(p.verified.items())):
            p.scoring[i] = worker
            effects.append(RunJob(str(JobId("score", i)), EvalJob(weights, split="train")))
        return effects

    def on_scored(self, index: int, result: EvalResult) -> list[Effect]:
        p = self.pending
        if p is None or index not in p.scoring:
            return []
        p.scores[p.scoring.pop(index)] = round(1000 * result.accuracy)
        return self._finish(p) if not p.scoring else []

    def _finish(self, p: Pending) -> list[Effect]:
        self.pending = None
        effects: list[Effect] = [EmitMetric("round_models", float(len(p.models)), p.round)]
        if p.scores and self.ctx.params.score_samples:
            ctx = self.ctx
            scores = Scores(p.round, tuple(sorted(p.scores.items())))
            tx = ctx.sign(Transaction(ctx.address, 0.0, SCORE_TX, scores, p.round))
            effects += _committee_tx(ctx, self.chain, tx)
        if not p.models:
            return effects
        total = sum(n for _, n in p.models) or len(p.models)
        avg = sum(w * ((n or 1) / total) for w, n in p.models)
        ref = self.blobs.store(np.asarray(avg, dtype=np.float32), total)
        return [*effects, Send(self.ctx.server, AggregateMsg(p.round, ref, len(p.models)))]


class Worker:
    """An FL client: fetch and check the global model, train, encrypt, commit."""

    def __init__(self, ctx: Context, chain: Microchain, shape: tuple[int, ...]) -> None:
        self.ctx, self.chain = ctx, chain
        self.blobs = ModelBlobs(ctx.services.blob_store, shape)
        self.box = box_key(ctx.services.keys.derive_secret(b"mudfl/worker-box"))
        self.task: TaskMsg | None = None
        self.done = 0

    def on_task(self, msg: TaskMsg, sender: str) -> list[Effect]:
        gate = self.ctx.gate
        if sender != self.ctx.aggregator:
            raise gate.fail("wrong_sender", f"task from {sender}")
        if msg.round <= self.done or len(msg.box_key) != 32:
            raise gate.fail("wrong_round", f"task of round {msg.round}")
        self.task = msg
        return [FetchBlob(msg.model.cid, self.ctx.server)]

    def on_blob(self, cid: str, data: bytes | None) -> list[Effect]:
        task = self.task
        if task is None or task.model.cid != cid:
            return []
        weights = self.blobs.load(data, task.model)
        if weights is None or authenticator(task.model.sha256) != task.authenticator:
            raise self.ctx.gate.fail("bad_global_model", f"round {task.round}")
        ctx = self.ctx
        job = TrainJob(
            weights=weights,
            settings=ctx.setup.train,
            seed=derive_seed(ctx.setup.seed, "mudfl-train", ctx.node_id, task.round),
            tag=f"mudfl-round-{task.round}",
        )
        return [RunJob(str(JobId("train", task.round)), job)]

    def on_trained(self, rnd: int, result: TrainResult, now: float) -> list[Effect]:
        task = self.task
        if task is None or task.round != rnd:
            return []
        ctx = self.ctx
        self.done, self.task = rnd, None
        key = ctx.services.keys.derive_secret(f"mudfl/model-key/{rnd}".encode())
        cipher = ModelCipher(key, stretch=ctx.params.model_cipher == "pbkdf2-390k")
        blobs = ModelBlobs(self.blobs.store_, self.blobs.shape, cipher)
        weights = np.asarray(result.weights, dtype=np.float32)
        plain = hashlib.sha256(self.blobs.encode(weights)).digest()
        ref = blobs.store(weights, result.num_samples)
        if ctx.has_fault(FAULT_TAMPER_MODEL):
            ref = blobs.store(np.ones_like(weights), result.num_samples)  # not `plain`
        sealed = seal_key(key, self.box, task.box_key, rnd)
        update = ModelUpdate(rnd, ref, plain, sealed)
        tx = ctx.sign(Transaction(ctx.address, now, MODEL_TX, update, rnd))
        return [*_committee_tx(ctx, self.chain, tx), EmitMetric("train_loss", result.loss, rnd)]
