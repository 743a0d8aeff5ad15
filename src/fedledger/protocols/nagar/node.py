"""A Nagar node: requester, device or miner, on one schedule of steps.

A step (``step_length`` seconds on the network-time grid) is one of plan, stats, grad or
update (:func:`~fedledger.protocols.nagar.rules.steps_of`). At its start the requester
sends the signed plan to the miners (plan step); each selected device runs its job
(feature counts, gradient sum, or the local F-SVRG / FedAvg pass), clips and Laplace-
noises what leaves it, stores the vector as a blob and sends a signed submission to its
associated miner. Miners verify and forward submissions to each other; at ``mine_at``
each builds a candidate block (PoW: seals it and releases it after attempts x
seconds-per-hash; PoS: only the elected miner); at ``select_at`` every node validates
the candidates, takes the first sealed (PoW) or the leader's (PoS), appends it and
replays it into its chain state; devices fetch the block's vectors and compute the
global model themselves. On Start a node replays its chain (devices refetch the vectors),
so a restarted node resumes.

The node is layered: :mod:`.core` (state, schedule), :mod:`.applying`, :mod:`.mining`,
then this module (start, the device's submission, timers).
"""

from __future__ import annotations

import random

import numpy as np

from fedledger.learning.jobs import JobResult
from fedledger.ledger.records import Transaction, sign
from fedledger.privacy.dp.mechanisms import LaplaceMechanism
from fedledger.protocols.base import (
    Broadcast,
    ChainSynced,
    Effect,
    EmitMetric,
    Halt,
    JobFinished,
    Send,
    Start,
    TimerFired,
    TrainResult,
)
from fedledger.protocols.kit.ids import JobId
from fedledger.protocols.kit.stage import Stage
from fedledger.protocols.nagar.chainstate import rebuild
from fedledger.protocols.nagar.core import (
    DEVICE,
    END,
    KILLED_MIDWAY,
    MINE,
    MINER,
    POS_BACKUP,
    POW_SEND,
    REQUESTER,
    SELECT,
)
from fedledger.protocols.nagar.faults import DUPLICATE_SUBMISSION, VAULT_FLOOD, tamper
from fedledger.protocols.nagar.fold import ModelState
from fedledger.protocols.nagar.messages import (
    GRAD,
    SUBMIT_TX,
    UPDATE,
    PartialRequest,
    Submission,
    TxMsg,
    VaultMsg,
)
from fedledger.protocols.nagar.mining import Mining
from fedledger.protocols.nagar.rules import (
    associated_miner,
    phase_epsilon,
)
from fedledger.protocols.nagar.vault import member_parts, seal
from fedledger.protocols.resources import MAIN
from fedledger.seeding import derive_seed

__all__ = ["DEVICE", "KILLED_MIDWAY", "MINER", "REQUESTER", "NagarNode"]


class NagarNode(Mining):
    """A Nagar node: requester, device or miner (the role is its plan's)."""

    def on_start(self, event: Start) -> list[Effect]:
        self.state = rebuild(self.setup.services.ledger, self.setup.seed)
        if self.state.step >= len(self.steps):
            return [Halt("all steps are on the ledger")]
        if self.role != DEVICE or not self.state.blocks:
            return self._resume()
        self.stage = Stage.RESTORING
        effects: list[Effect] = []
        enc = tuple(b.header.extra.step for b in self.state.blocks if self._encrypted(b))
        if enc:
            effects.append(Broadcast(PartialRequest(enc), to=self.committee))
        return effects + self._gather(list(self.state.blocks))

    def on_chain_synced(self, event: ChainSynced) -> list[Effect]:
        """The host appended blocks this node missed while it ran behind (paused, cut
        off): its chain state, step and (a device's) model are stale. Forget what it
        derived from the chain and what was in flight, and replay the ledger as on Start
        (a device refetches the vectors and recomputes the global model)."""
        if event.chain != MAIN or event.appended < 1:
            return []
        self.model = ModelState(self.initial, self.params, self.address)
        self.fetches, self.to_fold, self.give_up = {}, [], False
        self.vault.clear()
        self.sealed, self.step = None, None
        return self.on_start(Start(event.time))

    def on_job(self, job_id: JobId | None, result: JobResult, event: JobFinished) -> list[Effect]:
        step, plan = self.step, self.state.plan
        if step is None or plan is None or job_id != JobId(step.phase, step.index):
            return []
        assert isinstance(result, TrainResult)
        vec = np.asarray(result.weights, dtype=np.float64)
        if step.phase == UPDATE:
            vec = vec - self.model.weights
        elif step.phase == GRAD:
            vec = vec / max(1, result.num_samples)  # the mean gradient g_k = G_k / n_k
        eps = phase_epsilon(plan, step.phase)
        if eps > 0:
            mech = LaplaceMechanism(self.params.dp_clip, eps, self.params.dp_norm)
            rng = np.random.default_rng(
                derive_seed(self.setup.seed, "nagar-dp", self.node_id, step.index)
            )
            vec = mech.apply(vec, rng)
        if self.secure is not None and step.phase in (GRAD, UPDATE):
            data = self.secure.encrypt(vec, step.index)
            ref = self.blobs.put(data, result.num_samples)
            self.ciphers[ref.cid] = data
        else:
            out = vec.astype(np.float32)
            ref = self.blobs.store(out, result.num_samples)
            self.vectors[ref.cid] = out
        effects: list[Effect] = []
        sealed = None
        if plan.vault_threshold:  # consortium: seal the blob, its parts to the miners
            data = self.ciphers.get(ref.cid) or self.blobs.store_.get(ref.cid)
            rng = random.Random(
                derive_seed(self.setup.seed, "nagar-vault", self.node_id, step.index)
            )
            sealed, chunks, shares = seal(data, plan.vault_threshold, len(self.miners), rng)
            for i, member in enumerate(self.miners):
                parts = member_parts(sealed, chunks, shares, i)
                effects.append(Send(member, VaultMsg(step.index, parts)))
                if VAULT_FLOOD in self.setup.faults:  # again, and one part more
                    junk = rng.randbytes(len(parts[0]))
                    effects.append(Send(member, VaultMsg(step.index, (*parts, junk))))
        sub = Submission(
            self.state.plan_id,
            step.index,
            step.phase,
            ref,
            event.time - self.job_started,
            eps,
            sealed,
        )
        sub = tamper(sub, self.setup.faults)
        keys = self.setup.services.keys
        tx = sign(Transaction(self.address, event.time, SUBMIT_TX, sub), keys)
        miner = self.setup.services.node_of(
            associated_miner(plan, self.state.rnd_seed, step, self.address)
        )
        effects.append(Send(miner or "", TxMsg(step.index, tx)))
        if DUPLICATE_SUBMISSION in self.setup.faults:  # a second, distinct transaction
            again = sign(Transaction(self.address, event.time + 1e-6, SUBMIT_TX, sub), keys)
            effects.append(Send(miner or "", TxMsg(step.index, again)))
        if step.phase in (GRAD, UPDATE):
            effects.append(
                EmitMetric("train_loss", result.loss, step.round, (("phase", step.phase),))
            )
        return effects

    def on_timer(self, key: str, event: TimerFired) -> list[Effect]:
        if self.step is None:
            if key == END:
                return self._next()
            return []
        if key == MINE and self.role == MINER and self.stage is Stage.ROUND:
            return self._mine()
        if key == POS_BACKUP and self.role == MINER and self.stage is Stage.ROUND:
            return self._backup()
        if key == POW_SEND and self.sealed is not None:
            block, self.sealed = self.sealed, None
            return [self._send_block(block)]
        if key == SELECT and self.stage is Stage.ROUND:
            return self._select()
        if key == END:
            if not self.stage.gathering:
                return self._next()
            self.stage = Stage.APPLYING_LATE
            if self.secure is not None and self.to_fold and not self.fetches:
                self.give_up = True  # only partial decryptions are missing: go on without
                return self._fold()
        return []
