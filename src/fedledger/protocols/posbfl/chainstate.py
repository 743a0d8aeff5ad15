"""Protocol state derived from the ledger: round, stakes, blacklist, last global update.

Everything a device needs to resume is a function of its canonical chain, so a restarted
node rebuilds it on Start with :func:`rebuild` (and the global model from the blobs of
the last block's accepted updates, see ``device``). A block's transactions are read back
with :func:`updates_of`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fedledger.ledger.records import Block, Transaction, record_id
from fedledger.ledger.store import ChainStore
from fedledger.protocols.posbfl.messages import (
    VALIDATOR_TX,
    WORKER_TX,
    RoundRecord,
    WorkerUpdate,
)
from fedledger.protocols.posbfl.rewards import credit_stakes


@dataclass(frozen=True)
class AcceptedUpdate:
    """An update a legal block accepted: its transaction id, worker and model."""

    tx_id: bytes
    worker: bytes
    update: WorkerUpdate


def worker_txs(block: Block) -> list[Transaction]:
    return [tx for tx in block.transactions if tx.kind == WORKER_TX]


def validator_txs(block: Block) -> list[Transaction]:
    return [tx for tx in block.transactions if tx.kind == VALIDATOR_TX]


def updates_of(block: Block) -> tuple[AcceptedUpdate, ...]:
    """The updates a PoS-BFL block accepted (N+ >= N-), in block order."""
    extra = block.header.extra
    if not isinstance(extra, RoundRecord):
        return ()
    accepted = {o.update for o in extra.outcomes if o.accepted}
    out = []
    for tx in worker_txs(block):
        tid = record_id(tx)
        if tid in accepted and isinstance(tx.payload, WorkerUpdate):
            out.append(AcceptedUpdate(tid, tx.sender, tx.payload))
    return tuple(out)


@dataclass
class LedgerState:
    """What the chain says: last round with a block, stakes, negative streaks, blacklist.

    ``last_updates`` are the accepted updates of the most recent block that accepted any:
    the current global model is their sample-weighted average.
    """

    blacklist_rounds: int
    round: int = 0
    height: int = 0
    stakes: dict[bytes, float] = field(default_factory=dict)
    streaks: dict[bytes, int] = field(default_factory=dict)
    blacklist: set[bytes] = field(default_factory=set)
    last_updates: tuple[AcceptedUpdate, ...] = ()

    def apply(self, block: Block) -> tuple[bytes, ...]:
        """Account for a legal block; return the workers it newly blacklisted."""
        extra = block.header.extra
        if not isinstance(extra, RoundRecord):
            raise ValueError(f"block at height {block.height} holds no PoS-BFL RoundRecord")
        self.round = extra.round
        self.height = block.height
        credit_stakes(self.stakes, extra.rewards)
        newly = []
        for outcome in extra.outcomes:
            worker = outcome.worker
            self.streaks[worker] = 0 if outcome.accepted else self.streaks.get(worker, 0) + 1
            if self.streaks[worker] >= self.blacklist_rounds and worker not in self.blacklist:
                self.blacklist.add(worker)
                newly.append(worker)
        accepted = updates_of(block)
        if accepted:
            self.last_updates = accepted
        return tuple(newly)


def rebuild(ledger: ChainStore, blacklist_rounds: int) -> LedgerState:
    """Replay the canonical chain (genesis excluded) into a fresh LedgerState."""
    state = LedgerState(blacklist_rounds)
    for block in ledger.canonical_chain():
        if block.height > 0:
            state.apply(block)
    return state
