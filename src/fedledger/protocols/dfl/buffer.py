"""The model buffer: received models wait here until ``size`` of them trigger an update,
and the chain-side bookkeeping of a node's own transactions awaiting a block."""

from __future__ import annotations

from dataclasses import dataclass, field

from fedledger.ledger.records import Transaction, record_id
from fedledger.protocols.dfl.records import Receipt
from fedledger.protocols.dfl.reputation import ReceivedModel


@dataclass
class ModelBuffer:
    size: int
    models: list[ReceivedModel] = field(default_factory=list)

    def add(self, model: ReceivedModel) -> None:
        self.models.append(model)

    def full(self) -> bool:
        return len(self.models) >= self.size

    def take(self) -> tuple[ReceivedModel, ...]:
        """The oldest ``size`` models, removed from the buffer."""
        batch, self.models = self.models[: self.size], self.models[self.size :]
        return tuple(batch)


@dataclass
class OwnTransactions:
    """A node's own transactions not yet in a block, with the receipts gathered."""

    pending: list[Transaction] = field(default_factory=list)
    receipts: dict[bytes, dict[bytes, Receipt]] = field(default_factory=dict)

    def add(self, tx: Transaction) -> bytes:
        tx_id = record_id(tx)
        self.pending.append(tx)
        self.receipts[tx_id] = {}
        return tx_id

    def add_receipts(self, tx_id: bytes, receipts: tuple[Receipt, ...]) -> int:
        """Keep the receipts of a pending transaction (first one per creator); the count
        of new ones."""
        known = self.receipts.get(tx_id)
        if known is None:
            return 0
        new = 0
        for r in receipts:
            if r.creator not in known:
                known[r.creator] = r
                new += 1
        return new

    def oldest(self, count: int) -> tuple[Transaction, ...]:
        return tuple(self.pending[:count])

    def receipts_of(self, txs: tuple[Transaction, ...]) -> list[Receipt]:
        return [r for tx in txs for r in self.receipts.get(record_id(tx), {}).values()]

    def remove(self, txs: tuple[Transaction, ...]) -> None:
        ids = {record_id(tx) for tx in txs}
        self.pending = [tx for tx in self.pending if record_id(tx) not in ids]
        for tx_id in ids:
            self.receipts.pop(tx_id, None)
