"""DFL's own signed records: receipts and confirmations.

They keep the codec tags they had in the ledger package (``ledger.Receipt``,
``ledger.Confirmation``) so their encodings and record ids do not change; the ledger's
verifier checks them like any signed record (their ``SIGNER`` field is ``creator``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fedledger.codec import record
from fedledger.ledger.records import (
    HASH_SIZE,
    RecordError,
    _need_hash,
    _need_non_negative,
    _need_signature,
)


@record("ledger.Receipt")
@dataclass(frozen=True)
class Receipt:
    """DFL: ``creator`` received transaction ``tx_digest`` with ``received_at_ttl`` left
    and measured ``accuracy`` of its model on local data."""

    SIGNER: ClassVar[str] = "creator"

    creator: bytes
    tx_digest: bytes
    received_at_ttl: int
    accuracy: float
    timestamp: float
    signature: bytes = b""

    def __post_init__(self) -> None:
        _need_hash(self, "creator", "tx_digest")
        _need_non_negative(self, "received_at_ttl")
        _need_signature(self)


@record("ledger.Confirmation")
@dataclass(frozen=True)
class Confirmation:
    """DFL: ``creator`` confirms block ``block_digest`` and the receipts it relied on."""

    SIGNER: ClassVar[str] = "creator"

    creator: bytes
    block_digest: bytes
    receipt_ids: tuple[bytes, ...]
    timestamp: float
    signature: bytes = b""

    def __post_init__(self) -> None:
        _need_hash(self, "creator", "block_digest")
        for i, rid in enumerate(self.receipt_ids):
            if not isinstance(rid, bytes) or len(rid) != HASH_SIZE:
                raise RecordError(
                    f"Confirmation.receipt_ids[{i}] must be {HASH_SIZE} bytes, got {rid!r:.40}"
                )
        _need_signature(self)
