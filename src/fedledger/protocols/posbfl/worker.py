"""The worker role: train on the previous global model, store the update, send a signed
worker-transaction to one associated validator."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from fedledger.ledger.records import Transaction
from fedledger.protocols.base import Effect, RunJob, Send, TrainJob, TrainResult
from fedledger.protocols.kit.ids import JobId
from fedledger.protocols.posbfl.context import DeviceContext
from fedledger.protocols.posbfl.messages import WORKER_TX, WorkerTxMsg, WorkerUpdate
from fedledger.protocols.posbfl.rewards import expected_worker_reward
from fedledger.protocols.posbfl.roles import RoundRoles, associated_validator
from fedledger.seeding import derive_seed

TRAIN = "train"


def train_job_id(rnd: int) -> JobId:
    return JobId(TRAIN, rnd)


class WorkerRole:
    def __init__(self, ctx: DeviceContext, roles: RoundRoles) -> None:
        self.ctx = ctx
        self.roles = roles

    def start(self, global_weights: np.ndarray) -> list[Effect]:
        ctx = self.ctx
        job = TrainJob(
            weights=global_weights,
            settings=replace(ctx.setup.train, epochs=ctx.params.local_epochs),
            seed=derive_seed(ctx.setup.seed, "posbfl-train", ctx.node_id, self.roles.round),
            tag=f"posbfl-round-{self.roles.round}",
        )
        return [RunJob(str(train_job_id(self.roles.round)), job)]

    def trained(self, result: TrainResult, now: float) -> tuple[list[Effect], str, np.ndarray]:
        """Store the update, sign its worker-transaction and send it; (effects, cid, weights)."""
        ctx = self.ctx
        weights = np.asarray(result.weights, dtype=np.float32)
        ref = ctx.blobs.store(weights, result.num_samples)
        epochs = ctx.params.local_epochs
        reward = expected_worker_reward(epochs, result.num_samples, ctx.params.unit_reward)
        payload = WorkerUpdate(self.roles.round, ref, epochs, reward)
        tx = ctx.sign(Transaction(ctx.address, now, WORKER_TX, payload, nonce=self.roles.round))
        validator = associated_validator(self.roles, ctx.node_id, ctx.setup.seed)
        return [Send(validator, WorkerTxMsg(self.roles.round, tx))], ref.cid, weights
