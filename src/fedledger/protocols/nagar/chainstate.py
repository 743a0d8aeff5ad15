"""What the chain says, replayed block by block: the plan and its randomness, the last
step with a block, every device's spent epsilon, stakes, claimed sample counts and the
submissions of each step (from which every device recomputes the global model)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fedledger.ledger.records import Block, Transaction, record_id
from fedledger.ledger.store import ChainStore
from fedledger.protocols.nagar.messages import (
    PLAN,
    PLAN_TX,
    STATS,
    SUBMIT_TX,
    FLPlan,
    StepRecord,
    Submission,
)
from fedledger.protocols.nagar.rules import chain_seed


@dataclass(frozen=True)
class Included:
    """A submission a block holds: its transaction id, sender and payload."""

    tx_id: bytes
    sender: bytes
    sub: Submission


def submissions(block: Block) -> tuple[Included, ...]:
    out = []
    for tx in block.transactions:
        if tx.kind == SUBMIT_TX and isinstance(tx.payload, Submission):
            out.append(Included(record_id(tx), tx.sender, tx.payload))
    return tuple(out)


def plan_tx(block: Block) -> Transaction | None:
    for tx in block.transactions:
        if tx.kind == PLAN_TX and isinstance(tx.payload, FLPlan):
            return tx
    return None


@dataclass
class ChainState:
    seed: int
    plan: FLPlan | None = None
    plan_id: bytes = b""
    rnd_seed: int = 0
    step: int = 0
    times: list[float] = field(default_factory=list)
    epsilon: dict[bytes, float] = field(default_factory=dict)
    stakes: dict[bytes, float] = field(default_factory=dict)
    samples: dict[bytes, int] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)

    def apply(self, block: Block) -> None:
        extra = block.header.extra
        if not isinstance(extra, StepRecord):
            raise ValueError(f"block at height {block.height} holds no Nagar StepRecord")
        self.step = extra.step
        self.times.append(block.header.timestamp)
        self.blocks.append(block)
        if extra.phase == PLAN:
            tx = plan_tx(block)
            if tx is not None:
                assert isinstance(tx.payload, FLPlan)
                self.plan, self.plan_id = tx.payload, record_id(tx)
                self.rnd_seed = chain_seed(self.seed, block.hash)
        for item in submissions(block):
            self.epsilon[item.sender] = self.epsilon.get(item.sender, 0.0) + item.sub.epsilon
            if item.sub.phase == STATS:
                self.samples[item.sender] = item.sub.model.num_samples
        for reward in extra.rewards:
            self.stakes[reward.address] = self.stakes.get(reward.address, 0.0) + reward.amount


def rebuild(ledger: ChainStore, seed: int) -> ChainState:
    """Replay the canonical chain into a fresh state (genesis timestamp first)."""
    state = ChainState(seed)
    for block in ledger.canonical_chain():
        if block.height == 0:
            state.times.append(block.header.timestamp)
        else:
            state.apply(block)
    return state
