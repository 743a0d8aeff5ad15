"""The miner role: verify the validators' votes, aggregate them per update, and build a
signed candidate block with the aggregated votes and all rewards of eq. 1-3.

Faults (protocol-level misbehaviour switched on per node in the config):
``forge_block`` accepts every update and credits the miner an extra reward, so the
block's outcomes and rewards disagree with its votes (every honest device refuses it);
``withhold_block`` builds the block but never sends it.
"""

from __future__ import annotations

import dataclasses

from fedledger.ledger.records import Block, Transaction, Vote, record_id
from fedledger.protocols.kit.gate import REFUSED
from fedledger.protocols.posbfl.chainstate import LedgerState
from fedledger.protocols.posbfl.context import FAULT_FORGE_BLOCK, DeviceContext
from fedledger.protocols.posbfl.messages import (
    REWARD_MINER,
    Outcome,
    Reward,
    RoundRecord,
    VoteBatch,
)
from fedledger.protocols.posbfl.rewards import round_rewards, tally
from fedledger.protocols.posbfl.roles import RoundRoles
from fedledger.protocols.posbfl.selection import find_nonce

FORGED_BONUS = 1e6


class MinerRole:
    def __init__(self, ctx: DeviceContext, roles: RoundRoles, state: LedgerState) -> None:
        self.ctx = ctx
        self.roles = roles
        self.state = state
        self.open = True
        self.updates: dict[bytes, Transaction] = {}
        self.reports: dict[bytes, Transaction] = {}
        self.votes: dict[tuple[bytes, bytes], Vote] = {}

    def on_batch(self, msg: VoteBatch, sender: str) -> None:
        """Verify a validator's batch; keep its valid report, updates and votes."""
        if not self.open:
            return
        gate, checks = self.ctx.gate, self.ctx.checks
        try:
            checks.report(msg.report, self.roles, self.state)
        except REFUSED:
            return
        if self.ctx.services.node_of(msg.report.sender) != sender:
            gate.fail("wrong_role", f"{sender} relayed another validator's report")
            return
        if msg.report.sender in self.reports:
            gate.fail("duplicate", f"second report from {sender}")
            return
        self.reports[msg.report.sender] = msg.report
        for tx in msg.worker_txs:
            try:
                tx_id = record_id(tx)
                if tx_id not in self.updates:
                    checks.worker_tx(tx, self.roles, self.state, tx_id)
                    self.updates[tx_id] = tx
            except REFUSED:
                continue
            except (ValueError, TypeError):
                gate.fail("bad_payload", "worker-transaction cannot be encoded")
        known = set(self.updates)
        for vote in msg.votes:
            try:
                checks.vote(vote, self.roles, self.state, known)
            except REFUSED:
                continue
            if vote.voter != msg.report.sender:
                gate.fail("wrong_role", f"{sender} relayed another validator's vote")
                continue
            key = (vote.target, vote.voter)
            if key in self.votes:
                gate.fail("duplicate", f"second vote of {sender} on one update")
                continue
            self.votes[key] = vote

    def build(self, now: float, parent: Block) -> Block:
        """The signed candidate block of this round on ``parent``."""
        self.open = False
        ctx = self.ctx
        votes = tuple(self.votes[k] for k in sorted(self.votes))
        voted = {v.target for v in votes}
        updates = [self.updates[t] for t in sorted(voted)]
        reports = [self.reports[a] for a in sorted(self.reports)]
        outcomes = tally(updates, votes)
        rewards = round_rewards(
            updates, reports, votes, outcomes, ctx.address, ctx.params.unit_reward
        )
        if ctx.has_fault(FAULT_FORGE_BLOCK):
            outcomes = tuple(
                Outcome(o.update, o.worker, o.positive + o.negative, 0) for o in outcomes
            )
            rewards = (*rewards, Reward(ctx.address, REWARD_MINER, FORGED_BONUS))
        txs = tuple(sorted([*updates, *reports], key=record_id))
        record = RoundRecord(self.roles.round, votes, outcomes, rewards)
        block = Block.create(parent.hash, parent.height + 1, ctx.address, now, txs, record)
        if ctx.params.consensus == "pow":
            nonce = find_nonce(block.header, ctx.params.pow_difficulty)
            sealed = dataclasses.replace(record, nonce=nonce)
            block = Block.create(parent.hash, parent.height + 1, ctx.address, now, txs, sealed)
        return ctx.sign(block)
