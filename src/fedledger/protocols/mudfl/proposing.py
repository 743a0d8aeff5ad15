"""Proposing on the microchain: the slot start (PoC proposals, takeover, RandShare step,
evidence and late blocks sent on) and the rule-iii fallback block at ``T_Δ``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedledger.ledger.records import Block, record_id
from fedledger.protocols.base import Broadcast, Effect
from fedledger.protocols.mudfl import poc, succession, tickets
from fedledger.protocols.mudfl import rotation as rot
from fedledger.protocols.mudfl.context import FAULT_EQUIVOCATE, FAULT_FORGE_CREDIT, FAULT_WITHHOLD
from fedledger.protocols.mudfl.messages import BlockMsg, PocClaim, TxMsg

if TYPE_CHECKING:
    from fedledger.protocols.mudfl.chain import Microchain


def begin_slot(chain: Microchain, slot: int) -> list[Effect]:
    """Slot start: forget the last slot's blocks, propose if the PoC proof wins."""
    effects = chain.slot_metrics()
    chain.slot = slot
    chain.slot_blocks = {}
    chain.parent = chain.store.head()
    effects += succession.takeover(chain)
    effects += succession.randshare_step(chain)
    effects += tickets.send_own(chain)
    if chain.outbox:
        to = tuple(n for n in chain.ctx.dynasty.committee if n != chain.ctx.node_id)
        effects += [Broadcast(TxMsg(tx), to=to) for tx in chain.outbox]
        chain.outbox = []
    if chain.withheld is not None:
        late, chain.withheld = chain.withheld, None
        effects.append(chain.broadcast(BlockMsg(slot - 1, late)))
    if not chain.ctx.in_committee:
        return effects
    block = propose(chain, fallback=False)
    if block is None:
        return effects
    if chain.ctx.has_fault(FAULT_WITHHOLD):
        chain.withheld = block
        return effects
    chain.slot_blocks[block.header.proposer] = block
    chain.append(block)
    effects.append(chain.broadcast(BlockMsg(slot, block)))
    if chain.ctx.has_fault(FAULT_EQUIVOCATE):
        twin = propose(chain, fallback=False, drop_one=True)
        if twin is not None and twin.hash != block.hash:
            effects.append(chain.broadcast(BlockMsg(slot, twin)))
    return effects


def fallback(chain: Microchain) -> list[Effect]:
    """Rule iii at T_Δ: the ranked validator proposes when no valid block came."""
    if chain.slot_blocks or not chain.ctx.in_committee:
        return []
    chosen = poc.fallback_proposer(
        chain.ctx.committee_addresses(), chain.parent.height + 1, chain.params.fallback_order
    )
    if chosen != chain.ctx.address:
        return []
    block = propose(chain, fallback=True)
    assert block is not None
    chain.slot_blocks[block.header.proposer] = block
    chain.append(block)
    return [chain.broadcast(BlockMsg(chain.slot, block))]


def propose(chain: Microchain, fallback: bool, drop_one: bool = False) -> Block | None:
    ctx = chain.ctx
    head = chain.parent
    height = head.height + 1
    txs = chain.pool_txs(height)
    if drop_one:
        txs = txs[1:] if txs else ()
    credit = ctx.dynasty.credit_of(ctx.node_id)
    if ctx.has_fault(FAULT_FORGE_CREDIT):
        credit = max(credit, ctx.params.credit_max) * 4
    if not fallback:
        ids = [record_id(tx) for tx in txs]
        proof = poc.low_bits(
            poc.poc_hash(head.hash, ids, ctx.address, credit, height, chain.slot),
            chain.params.xi,
        )
        total = ctx.dynasty.total_credit - ctx.dynasty.credit_of(ctx.node_id) + credit
        if not poc.wins(proof, credit, total, chain.params.xi):
            return None
    number = ctx.dynasty.number + 1
    record = None
    if rot.record_number(height, chain.params) == number:
        held = tickets.held(chain, number)
        record = ctx.rotation.expected_record(head.hash, ctx.dynasty, number, held)
    claim = PocClaim(chain.slot, ctx.dynasty.number, credit, fallback, record)
    block = Block.create(head.hash, height, ctx.address, chain.now(), txs, claim)
    return ctx.sign(block)
