"""The validator role: collect worker-transactions (directly and forwarded), verify them,
fetch and evaluate each update against the previous global model on local data, and vote
by Algorithm 1; send signed votes and a signed report to the miners.

Vote rules (``params.validation``):

- ``paper`` (Algorithm 1): negative iff A(G_{j-1}) - A(L_j^w) > vh;
- ``reference``: negative iff max(A(G_{j-1}), A(R_v)) - A(L) > vh, where R_v is the
  validator's own model trained from G_{j-1} for ``reference_epochs`` (default: the
  workers' ``local_epochs``) on its local training data, as in Chen et al.'s validation
  [30]. A malicious device trains its reference model honestly (``TrainJob.shared`` is
  False): the paper's malicious devices add noise when they are workers. The stale
  global model alone is a weak yardstick: while it is still poor (the first rounds, or
  after noise got in) a noisy update loses little against it, but it loses a lot
  against a freshly trained model. The yardstick does not depend on the other workers,
  so it holds however many of them are malicious.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fedledger.ledger.records import Transaction, Vote, record_id
from fedledger.protocols.base import (
    BlobReceived,
    Broadcast,
    Effect,
    EmitMetric,
    EvalJob,
    EvalResult,
    FetchBlob,
    RunJob,
    TrainJob,
    TrainResult,
)
from fedledger.protocols.kit.ids import JobId
from fedledger.protocols.posbfl.app import PosBflApp
from fedledger.protocols.posbfl.chainstate import LedgerState
from fedledger.protocols.posbfl.context import FAULT_FLIP_VOTES, DeviceContext
from fedledger.protocols.posbfl.messages import (
    NEGATIVE,
    POSITIVE,
    VALIDATOR_TX,
    ValidatorReport,
    VoteBatch,
    WorkerTxMsg,
    WorkerUpdate,
)
from fedledger.protocols.posbfl.roles import RoundRoles
from fedledger.seeding import derive_seed


def vote_value(
    global_acc: float, update_acc: float, reference_acc: float | None, vh: float, rule: str
) -> int:
    """POSITIVE or NEGATIVE for one update (see the module doc for the rules)."""
    yardstick = global_acc
    if rule == "reference" and reference_acc is not None:
        yardstick = max(global_acc, reference_acc)
    return NEGATIVE if yardstick - update_acc > vh else POSITIVE


@dataclass
class _Pending:
    tx: Transaction
    update: WorkerUpdate
    source: str
    attempts: int = 0


class ValidatorRole:
    def __init__(
        self,
        ctx: DeviceContext,
        roles: RoundRoles,
        state: LedgerState,
        models: dict[str, np.ndarray],
        app: PosBflApp,
    ) -> None:
        self.ctx = ctx
        self.app = app  # its ``check`` admits worker-transactions
        self.roles = roles
        self.state = state
        self.open = True  # taking worker-transactions until tx_window
        self.txs: dict[bytes, Transaction] = {}
        self.fetching: dict[str, tuple[bytes, _Pending]] = {}
        self.evaluating: dict[JobId, bytes] = {}
        self.accuracy: dict[bytes, float] = {}
        self.global_acc: float | None = None
        self.reference_acc: float | None = None
        self.models = models  # the device's models of this round, by content id

    @property
    def global_job(self) -> JobId:
        return JobId("eval-global", self.roles.round)

    @property
    def reference_job(self) -> JobId:
        return JobId("reference", self.roles.round)

    @property
    def reference_eval_job(self) -> JobId:
        return JobId("reference-eval", self.roles.round)

    def start(self, global_weights: np.ndarray) -> list[Effect]:
        effects: list[Effect] = [RunJob(str(self.global_job), EvalJob(global_weights, "val"))]
        ctx = self.ctx
        if ctx.params.validation == "reference":
            job = TrainJob(
                weights=global_weights,
                settings=replace(ctx.setup.train, epochs=self.reference_epochs),
                seed=derive_seed(ctx.setup.seed, "posbfl-reference", ctx.node_id, self.roles.round),
                tag=f"posbfl-reference-{self.roles.round}",
                shared=False,  # the validator's yardstick: a model attack does not touch it
            )
            effects.append(RunJob(str(self.reference_job), job))
        return effects

    @property
    def reference_epochs(self) -> int:
        params = self.ctx.params
        return params.reference_epochs or params.local_epochs

    def on_trained(self, job_id: JobId | None, result: TrainResult) -> list[Effect]:
        """The reference model is trained: evaluate it on the local test data."""
        if job_id != self.reference_job:
            return []
        return [RunJob(str(self.reference_eval_job), EvalJob(result.weights, "val"))]

    def on_tx(self, msg: WorkerTxMsg, sender: str) -> list[Effect]:
        if not self.open:
            return []
        tx = msg.tx
        try:
            tx_id = record_id(tx)
        except (ValueError, TypeError):
            self.ctx.gate.fail("bad_payload", "worker-transaction cannot be encoded")
            return []
        if tx_id in self.txs:
            return []
        if not self.app.check(tx).ok:
            return []
        update = tx.payload
        assert isinstance(update, WorkerUpdate)  # check() admits only these
        worker = self.ctx.services.node_of(tx.sender)
        expected = self.roles.validators if msg.forwarded else (worker,)
        if sender not in expected:
            self.ctx.gate.fail("wrong_role", f"{sender} relayed a worker-transaction")
            return []
        assert worker is not None
        self.txs[tx_id] = tx
        effects: list[Effect] = []
        if not msg.forwarded:
            others = tuple(v for v in self.roles.validators if v != self.ctx.node_id)
            if others:
                effects.append(Broadcast(WorkerTxMsg(self.roles.round, tx, True), to=others))
        pending = _Pending(tx, update, worker, 1)
        self.fetching[update.model.cid] = (tx_id, pending)
        effects.append(FetchBlob(update.model.cid, worker))
        return effects

    def on_blob(self, event: BlobReceived) -> list[Effect]:
        entry = self.fetching.get(event.cid)
        if entry is None:
            return []
        tx_id, pending = entry
        if event.data is None:
            if pending.attempts >= self.ctx.params.fetch_attempts:
                del self.fetching[event.cid]
                return []
            pending.attempts += 1
            return [FetchBlob(event.cid, pending.source)]
        del self.fetching[event.cid]
        weights = self.ctx.blobs.load(event.data, pending.update.model)
        if weights is None:
            self.ctx.gate.fail("bad_blob", f"model {event.cid} does not match its reference")
            return []
        self.models[event.cid] = weights
        job_id = JobId("eval", self.roles.round, tx_id.hex())
        self.evaluating[job_id] = tx_id
        return [RunJob(str(job_id), EvalJob(weights, "val"))]

    def on_eval(self, job_id: JobId | None, result: EvalResult) -> None:
        if job_id == self.global_job:
            self.global_acc = result.accuracy
        elif job_id == self.reference_eval_job:
            self.reference_acc = result.accuracy
        elif job_id in self.evaluating:
            self.accuracy[self.evaluating.pop(job_id)] = result.accuracy

    def vote(self, now: float) -> list[Effect]:
        """Sign votes on every evaluated update and send them with the report to miners."""
        ctx = self.ctx
        self.open = False
        global_acc = self.global_acc if self.global_acc is not None else 0.0
        votes = []
        for tx_id in sorted(self.accuracy):
            value = vote_value(
                global_acc,
                self.accuracy[tx_id],
                self.reference_acc,
                ctx.params.vh,
                ctx.params.validation,
            )
            if ctx.has_fault(FAULT_FLIP_VOTES):
                value = -value
            votes.append(ctx.sign(Vote(ctx.address, tx_id, value, self.roles.round, now)))
        checked = tuple(sorted(self.txs))
        report = ctx.sign(
            Transaction(
                ctx.address,
                now,
                VALIDATOR_TX,
                ValidatorReport(self.roles.round, checked),
                nonce=self.roles.round,
            )
        )
        voted = tuple(self.txs[t] for t in sorted(self.accuracy))
        batch = VoteBatch(self.roles.round, report, tuple(votes), voted)
        positive = sum(1 for v in votes if v.value == POSITIVE)
        step = self.roles.round
        return [
            Broadcast(batch, to=self.roles.miners),
            EmitMetric("votes_cast", float(positive), step, (("value", "positive"),)),
            EmitMetric("votes_cast", float(len(votes) - positive), step, (("value", "negative"),)),
        ]
