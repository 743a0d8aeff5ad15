"""DFL records and messages.

On chain (signed, content-addressed):

- a model transaction is a ``ledger.Transaction`` of kind ``dfl.model`` whose payload is
  a :class:`ModelTx` (expire_time, the model's content id and hash, ttl, genesis
  digest); ``sender`` is the generator, ``timestamp`` the create_time, ``nonce`` the
  generator's transaction count. Its id (digest) excludes the receipts, which travel
  beside it;
- receipts and confirmations are :mod:`.records` (codec tags ``ledger.Receipt`` /
  ``ledger.Confirmation``);
- a block is a ``ledger.Block`` of the generator's own transactions whose header
  ``extra`` is a :class:`BlockBody` (genesis digest, receipts, confirmations). The draft
  has no confirmations; the final block has them and chains on the previous final hash.

Between nodes: :class:`Gossip` (a transaction with its receipts), :class:`ConfirmRequest`
(a draft block) and :class:`ConfirmReply` (a confirmation).
"""

from __future__ import annotations

from dataclasses import dataclass

from fedledger.codec import record
from fedledger.ledger.records import Block, ModelRef, Transaction
from fedledger.protocols.base import Message
from fedledger.protocols.dfl.records import Confirmation, Receipt

TX_KIND = "dfl.model"


@record("dfl.ModelTx")
@dataclass(frozen=True)
class ModelTx:
    """Payload of a DFL model transaction (signed with it by the generator)."""

    expire_time: float
    model: ModelRef
    ttl: int
    genesis: bytes


@record("dfl.BlockBody")
@dataclass(frozen=True)
class BlockBody:
    """Header extra of a DFL block: the receipts of its transactions and the
    confirmations gathered for them (none in the draft)."""

    genesis: bytes
    receipts: tuple[Receipt, ...]
    confirmations: tuple[Confirmation, ...] = ()


@record("dfl.Gossip")
@dataclass(frozen=True)
class Gossip(Message):
    """A model transaction and the receipts appended so far."""

    tx: Transaction
    receipts: tuple[Receipt, ...] = ()


@record("dfl.ConfirmRequest")
@dataclass(frozen=True)
class ConfirmRequest(Message):
    """A draft block sent to the creators of its receipts."""

    draft: Block


@record("dfl.ConfirmReply")
@dataclass(frozen=True)
class ConfirmReply(Message):
    """A receipt creator's confirmation of a draft block."""

    confirmation: Confirmation
