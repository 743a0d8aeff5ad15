"""The DFL node state machine.

Training (left phase of the paper's Fig. 1): data arrives on a timer; each full batch is
trained, the model goes to the node's blob store, and a signed transaction naming it
(content id and hash) is gossiped to the neighbours.

Receiving (right phase): a transaction is verified, deduplicated and checked for expiry;
its model is fetched from the node that sent it and checked against the hash, evaluated
on local data, and a signed receipt with eq. 1's received_at_ttl is appended; the
transaction goes back to its generator and on to the neighbours while ttl allows. The
model enters the buffer; a full buffer updates the node's model with the update rule.

Blocks and confirmations are in :mod:`.chain`. The reputation table and the update
count are kept in the node's store after every update (:mod:`.state`) and restored on
``Start``, with the chain and the newest recorded model.
"""

from __future__ import annotations

import numpy as np

from fedledger.learning.jobs import JobResult
from fedledger.ledger.records import Transaction, record_id
from fedledger.ledger.verify import Rejected
from fedledger.protocols.base import (
    BlobReceived,
    Broadcast,
    Effect,
    EmitMetric,
    EvalJob,
    EvalResult,
    FetchBlob,
    Halt,
    JobFinished,
    MessageReceived,
    NodeSetup,
    ReportModel,
    RunJob,
    Send,
    SetTimer,
    Start,
    TimerFired,
    TrainJob,
    TrainResult,
)
from fedledger.protocols.dfl import state
from fedledger.protocols.dfl import transactions as txs
from fedledger.protocols.dfl.arrival import DataArrival
from fedledger.protocols.dfl.buffer import ModelBuffer
from fedledger.protocols.dfl.chain import BLOCK_TIMER, CONFIRM_TIMER, ChainWork
from fedledger.protocols.dfl.messages import ConfirmReply, ConfirmRequest, Gossip, ModelTx
from fedledger.protocols.dfl.params import DflParams
from fedledger.protocols.dfl.records import Receipt
from fedledger.protocols.dfl.reputation import ReceivedModel, build_rule
from fedledger.protocols.kit.blobs import ModelBlobs
from fedledger.protocols.kit.gate import Reject
from fedledger.protocols.kit.ids import JobId
from fedledger.protocols.kit.node import KitNode, handles
from fedledger.seeding import derive_seed

DATA, REPORT, END = "dfl-data", "dfl-report", "dfl-end"
TRAIN, EVAL, SELF_EVAL = "train", "eval", "self"
OBSERVER = "observer"
DUPLICATE = "duplicate"


class DflNode(KitNode[DflParams]):
    unexpected_message = "unknown_message"

    def __init__(self, setup: NodeSetup[DflParams]) -> None:
        super().__init__(setup)
        params = setup.params
        self.p = params
        self.svc = setup.services
        self.verifier = self.gate.verifier
        self.chain = ChainWork(self.svc, params, self.verifier, self._drop)
        self.rule = build_rule(params.update_rule)
        self.weights = np.asarray(setup.initial_weights, dtype=np.float32)
        self.blobs = ModelBlobs(self.svc.blob_store, self.weights.shape)
        self.observer = setup.plan.role == OBSERVER
        self.arrival = DataArrival(
            setup.seed,
            self.node_id,
            params.train_interval,
            params.samples_per_interval,
            params.batch_size,
            setup.num_train_samples,
        )
        self.buffer = ModelBuffer(params.buffer_size)
        self.reputation: dict[str, float] = {}
        self.seen: set[bytes] = set()
        self.verified: set[bytes] = set()  # (record id + signature) checked before
        self.fetching: dict[str, list[tuple[Gossip, bytes, str]]] = {}
        self.evaluating: dict[JobId, tuple[Gossip, bytes, np.ndarray]] = {}
        self.evaluations = 0
        self.nonce = 0
        self.trainings = 0
        self.training = False
        self.updates = 0
        self.updating: tuple[ReceivedModel, ...] = ()
        self.latest_received: np.ndarray | None = None
        self.momentum: np.ndarray | None = None  # the solver's buffer (keep_solver)

    # ------------------------------------------------------------ dispatch

    @property
    def drops(self) -> dict[str, int]:
        """The protocol-level rejections so far by reason (the verifier's left out)."""
        return self.gate.protocol_counts()

    def _drop(self, reason: str) -> None:
        self.gate.fail(reason)

    @handles(ConfirmRequest, ConfirmReply)
    def on_chain_message(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        with self.setup.meter.section("blockchain"):
            if isinstance(msg, ConfirmRequest):
                return self.chain.on_request(event.sender, msg, event.time)
            assert isinstance(msg, ConfirmReply)
            return self.chain.on_reply(msg, event.time)

    # ------------------------------------------------------------ timers

    def on_start(self, event: Start) -> list[Effect]:
        now = event.time
        with self.setup.meter.section("blockchain"):
            self.nonce, self.seen, last = self.chain.restore()
        if last is not None:
            self._restore_model(last)
        with self.setup.meter.section("storage"):
            saved = state.load(self.svc.ledger, self._drop)
        effects: list[Effect] = []
        if saved is not None:
            self.updates, self.reputation = saved.updates, dict(saved.reputation)
            effects += self._reputation_metrics(round(now))  # what it resumed with
        effects.append(SetTimer(END, max(0.0, self.setup.horizon.length - now)))
        effects.append(SetTimer(REPORT, self._until_report(now)))
        if not self.observer:
            effects.append(SetTimer(DATA, self.arrival.next_delay()))
        return effects

    def _until_report(self, now: float) -> float:
        every = self.p.report_every
        return (int(now) // every + 1) * every - now

    def _restore_model(self, block) -> None:  # type: ignore[no-untyped-def]
        me = self.svc.keys.address
        own = [tx for tx in block.transactions if tx.sender == me]
        ref = own[-1].payload.model if own and isinstance(own[-1].payload, ModelTx) else None
        weights = None if ref is None else self.blobs.own(ref)
        if weights is not None:
            self.weights = weights

    def on_timer(self, key: str, event: TimerFired) -> list[Effect]:
        now = event.time
        if key == DATA:
            self.arrival.arrive()
            return [SetTimer(DATA, self.arrival.next_delay()), *self._maybe_train(now)]
        if key == REPORT:
            return [*self._report(now), SetTimer(REPORT, self._until_report(now))]
        if key == END:
            return [*self._report(now), Halt()]
        with self.setup.meter.section("blockchain"):
            if key == BLOCK_TIMER:
                return self.chain.start_draft(now)
            if key == CONFIRM_TIMER:
                return self.chain.finish(now)
        return []

    def _report(self, now: float) -> list[Effect]:
        step = round(now)
        effects: list[Effect] = [ReportModel(step, self.weights)]
        effects += self._reputation_metrics(step)
        effects += self.gate.new_metrics(step)
        effects.append(EmitMetric("blocks", float(self.chain.blocks), step))
        return effects

    def _reputation_metrics(self, step: int) -> list[Effect]:
        return [
            EmitMetric("reputation", value, step, (("peer", peer),))
            for peer, value in sorted(self.reputation.items())
        ]

    # ------------------------------------------------------------ training

    def _maybe_train(self, now: float) -> list[Effect]:
        if self.training:
            return []
        window = self.arrival.take_batch()
        if window is None:
            return []
        self.training = True
        self.trainings += 1
        job = TrainJob(
            weights=self.weights,
            settings=self.setup.train,
            seed=derive_seed(self.setup.seed, "dfl-train", self.node_id, self.trainings),
            samples=window,
            tag=f"dfl-{self.node_id}-{self.trainings}",
            momentum_buffer=self.momentum if self.p.keep_solver else None,
        )
        return [RunJob(str(JobId(TRAIN, self.trainings)), job)]

    def _shared_model(self, trained: np.ndarray) -> np.ndarray:
        """The model put in the transaction: the trained one, or for the duplication
        fault a slightly perturbed copy of the last model received from another node."""
        if DUPLICATE not in self.setup.faults or self.latest_received is None:
            return trained
        rng = np.random.default_rng(
            derive_seed(self.setup.seed, "dfl-dup", self.node_id, self.nonce)
        )
        noise = rng.normal(0.0, 1e-6, self.latest_received.shape)
        return (self.latest_received + noise).astype(np.float32)

    def _publish(self, trained: TrainResult, now: float) -> list[Effect]:
        shared = self._shared_model(np.asarray(trained.weights, dtype=np.float32))
        with self.setup.meter.section("network"):
            ref = self.blobs.store(shared, trained.num_samples)
        with self.setup.meter.section("blockchain"):
            tx = txs.make_transaction(
                self.svc.keys,
                self.chain.genesis,
                now,
                self.p.expire_after,
                ref,
                self.p.ttl,
                self.nonce,
            )
            self.nonce += 1
            tx_id = self.chain.own.add(tx)
            self.seen.add(tx_id)
            self.verified.add(tx_id + tx.signature)  # signed here: not checked when it returns
            effects: list[Effect] = [Broadcast(Gossip(tx))]
            effects += self.chain.after_own_tx()
        return effects

    # ------------------------------------------------------------ receiving

    @handles(Gossip)
    def on_gossip(self, event: MessageReceived) -> list[Effect]:
        sender, gossip, now = event.sender, event.message, event.time
        assert isinstance(gossip, Gossip)
        with self.setup.meter.section("blockchain"):
            try:
                tx_id = txs.check_gossip(
                    self.verifier, gossip, self.chain.genesis, now, self.verified
                )
            except Rejected:
                return []
            except Reject as reject:
                self.gate.count(reject)
                return []
            if gossip.tx.sender == self.svc.keys.address:
                self.chain.own.add_receipts(tx_id, gossip.receipts)
                return []
            if tx_id in self.seen:
                self._drop("duplicate")
                return []
            self.seen.add(tx_id)
        generator = self.svc.node_of(gossip.tx.sender) or ""
        cid = gossip.tx.payload.model.cid
        self.fetching.setdefault(cid, []).append((gossip, tx_id, generator))
        return [FetchBlob(cid, sender)]

    def on_blob(self, event: BlobReceived) -> list[Effect]:
        waiting = self.fetching.pop(event.cid, [])
        effects: list[Effect] = []
        for gossip, tx_id, _generator in waiting:
            weights = self._model_of(gossip.tx, event.data)
            if weights is None:
                continue
            self.evaluations += 1
            job_id = JobId(EVAL, self.evaluations, tx_id.hex())
            self.evaluating[job_id] = (gossip, tx_id, weights)
            effects.append(RunJob(str(job_id), EvalJob(weights)))
        return effects

    def _model_of(self, tx: Transaction, data: bytes | None) -> np.ndarray | None:
        with self.setup.meter.section("network"):
            try:
                weights = self.blobs.check(data, tx.payload.model)
            except Reject as reject:
                self.gate.count(reject)
                return None
            if txs.received_at_ttl(tx, ()) > 1:
                assert data is not None
                self.svc.blob_store.put(data)  # it will be forwarded: serve it from here too
        return weights

    def on_job(self, job_id: JobId | None, result: JobResult, event: JobFinished) -> list[Effect]:
        now = event.time
        kind = job_id.kind if job_id is not None else ""
        if kind == TRAIN and isinstance(result, TrainResult):
            self.training = False
            self.momentum = result.momentum_buffer
            if not self.observer:
                self.weights = np.asarray(result.weights, dtype=np.float32)
            return [*self._publish(result, now), *self._maybe_train(now)]
        if kind == EVAL and isinstance(result, EvalResult):
            assert job_id is not None
            entry = self.evaluating.pop(job_id, None)
            return [] if entry is None else self._evaluated(*entry, result.accuracy, now)
        if kind == SELF_EVAL and isinstance(result, EvalResult):
            return self._update(result.accuracy, now)
        return []

    def on_job_failed(self, job_id: JobId | None, event: JobFinished) -> list[Effect]:
        """Its own job came back with a bad result (counted by the kit): carry on."""
        kind = job_id.kind if job_id is not None else ""
        if kind == TRAIN:
            self.training = False
            return self._maybe_train(event.time)
        if kind == EVAL and job_id is not None:
            self.evaluating.pop(job_id, None)
        elif kind == SELF_EVAL:
            self.updating = ()  # the buffered models are dropped with the failed update
            return self._maybe_update()
        return []

    def _evaluated(
        self, gossip: Gossip, tx_id: bytes, weights: np.ndarray, accuracy: float, now: float
    ) -> list[Effect]:
        with self.setup.meter.section("blockchain"):
            receipt: Receipt = txs.make_receipt(
                self.svc.keys, gossip.tx, gossip.receipts, accuracy, now
            )
            self.chain.my_receipts.add(record_id(receipt))
        onward = Gossip(gossip.tx, (*gossip.receipts, receipt))
        generator = self.svc.node_of(gossip.tx.sender) or ""
        effects: list[Effect] = []
        if generator:
            effects.append(Send(generator, onward))
        if receipt.received_at_ttl > 0:
            others = tuple(p for p in self.setup.plan.peers if p != generator)
            if others:
                effects.append(Broadcast(onward, to=others))
        self.latest_received = weights
        self.buffer.add(ReceivedModel(weights, float(accuracy), generator))
        return effects + self._maybe_update()

    # ------------------------------------------------------------ updating

    def _maybe_update(self) -> list[Effect]:
        if self.updating or not self.buffer.full():
            return []
        self.updating = self.buffer.take()
        self.updates += 1
        return [RunJob(str(JobId(SELF_EVAL, self.updates)), EvalJob(self.weights))]

    def _update(self, own_accuracy: float, now: float) -> list[Effect]:
        received, self.updating = self.updating, ()
        if not received:
            return []
        with self.setup.meter.section("ml"):
            model, table = self.rule.update_model(
                self.weights, own_accuracy, received, dict(self.reputation)
            )
        self.weights = np.asarray(model, dtype=np.float32)
        self.reputation = dict(table)
        with self.setup.meter.section("storage"):
            state.save(self.svc.ledger, self.updates, self.reputation)
        return [EmitMetric("updates", float(self.updates), int(now)), *self._maybe_update()]
