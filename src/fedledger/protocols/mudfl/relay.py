"""Compact block relay (``compact_blocks: true``): a proposer sends the committee its
block's header and transaction ids only, since every committee member already holds the
transactions in its pool (they were sent to the committee); nodes outside the committee
(no pool) get the whole block. A member rebuilds the block from its pool and checks it
exactly as a whole one (verify_block: the header's tx_root binds the ids); if a
transaction is missing it asks the proposer for the whole block (``FullBlockWanted``).

Only the relay changes, not what a valid block is: this saves each validator decoding
every transaction a second time (inside the block), the largest cost under load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fedledger.codec import record
from fedledger.ledger.records import Block, BlockHeader, RecordError, record_id
from fedledger.protocols.base import Broadcast, Effect, Message, Send
from fedledger.protocols.mudfl.messages import BlockMsg

if TYPE_CHECKING:
    from fedledger.protocols.mudfl.chain import Microchain


@record("mudfl.CompactBlockMsg")
@dataclass(frozen=True)
class CompactBlockMsg(Message):
    """A proposer's block of ``slot`` as its signed header and its transactions' ids."""

    slot: int
    header: BlockHeader
    tx_ids: tuple[bytes, ...]


@record("mudfl.FullBlockWanted")
@dataclass(frozen=True)
class FullBlockWanted(Message):
    """A committee member lacks transactions of the compact block ``block``: send it whole."""

    block: bytes


def announce(chain: Microchain, msg: BlockMsg) -> list[Effect]:
    """The effects that send a proposer's block: whole to everyone, or compact to the
    committee and whole to the others."""
    if not chain.params.compact_blocks:
        return [chain.broadcast(msg)]
    me = chain.ctx.node_id
    members = set(chain.ctx.dynasty.committee) - {me}
    others = tuple(n for n in chain.ctx.everyone if n != me and n not in members)
    ids = tuple(record_id(tx) for tx in msg.block.transactions)
    effects: list[Effect] = [
        Broadcast(CompactBlockMsg(msg.slot, msg.block.header, ids), to=tuple(sorted(members)))
    ]
    if others:
        effects.append(Broadcast(msg, to=others))
    return effects


def rebuild(chain: Microchain, msg: CompactBlockMsg) -> Block | None:
    """The block from this node's pool, or None if a transaction is missing. A header
    that does not fit the ids is refused later by verify_block (tx_root)."""
    txs = []
    for tid in msg.tx_ids:
        tx = chain.pool.get(tid)
        if tx is None:
            return None
        txs.append(tx)
    try:
        return Block(msg.header, tuple(txs))
    except RecordError:
        return None


def on_compact(
    chain: Microchain, msg: CompactBlockMsg, sender: str
) -> tuple[Block | None, list[Effect]]:
    """The rebuilt block, or None and the request for the whole block (counted as
    ``missing_txs``: a transaction that never reached this pool, or a made-up id)."""
    gate = chain.ctx.gate
    if not chain.params.compact_blocks:
        raise gate.fail("compact_off", f"compact block from {sender}")
    block = rebuild(chain, msg)
    if block is not None:
        return block, []
    gate.fail("missing_txs", f"compact block from {sender}")
    return None, [Send(sender, FullBlockWanted(record_id(msg.header)))]


def on_wanted(chain: Microchain, msg: FullBlockWanted, sender: str) -> list[Effect]:
    """Send a stored block whole (its slot from its claim)."""
    block = chain.store.get(msg.block)
    if block is None:
        raise chain.ctx.gate.fail("unknown_block", f"whole block wanted by {sender}")
    slot = getattr(block.header.extra, "slot", None)
    if not isinstance(slot, int):
        raise chain.ctx.gate.fail("unknown_block", f"block without a slot wanted by {sender}")
    return [Send(sender, BlockMsg(slot, block))]
