"""Proposing on the microchain: the slot start (PoC proposals, takeover, RandShare step,
evidence and late blocks sent on) and the rule-iii fallback block at ``T_Δ``."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING

from fedledger.crypto.vrf import proof_to_hash
from fedledger.ledger.records import Block, Transaction, record_id
from fedledger.protocols.base import Broadcast, Effect
from fedledger.protocols.mudfl import faults_step, poc, relay, succession, tickets
from fedledger.protocols.mudfl import rotation as rot
from fedledger.protocols.mudfl.context import (
    FAULT_EQUIVOCATE,
    FAULT_FORGE_CREDIT,
    FAULT_GRIND_POC,
    FAULT_WITHHOLD,
)
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
    effects += faults_step.randshare_step(chain)  # with the bad_pvss fault
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
    effects += relay.announce(chain, BlockMsg(slot, block))
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
    return relay.announce(chain, BlockMsg(chain.slot, block))


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
    vrf_proof = None
    if not fallback:
        total = ctx.dynasty.total_credit - ctx.dynasty.credit_of(ctx.node_id) + credit
        won = poc_attempt(chain, head.hash, height, txs, credit, total)
        if won is None:
            return None
        txs, vrf_proof = won
    number = ctx.dynasty.number + 1
    record = None
    if rot.record_number(height, chain.params) == number:
        held = tickets.held(chain, number)
        record = ctx.rotation.expected_record(head.hash, ctx.dynasty, number, held)
    claim = PocClaim(chain.slot, ctx.dynasty.number, credit, fallback, record)
    if vrf_proof is not None:
        claim = poc.VrfPocClaim(*_claim_fields(claim), vrf_proof=vrf_proof)
    block = Block.create(head.hash, height, ctx.address, chain.now(), txs, claim)
    return ctx.sign(block)


def _claim_fields(claim: PocClaim) -> tuple[object, ...]:
    return tuple(getattr(claim, f.name) for f in fields(PocClaim))


def poc_attempt(
    chain: Microchain,
    parent: bytes,
    height: int,
    txs: tuple[Transaction, ...],
    credit: int,
    total: int,
    tries: int | None = None,
) -> tuple[tuple[Transaction, ...], bytes | None] | None:
    """The transactions (and VRF proof, "vrf" mode) of a winning PoC proof in this
    slot, or None. A ``grind_poc`` proposer tries up to ``grind_tries`` transaction lists
    (``tries`` overrides; "txs" mode only: under "vrf" there is nothing to grind, hc
    depends on the parent and the slot only)."""
    ctx, xi = chain.ctx, chain.params.xi
    if chain.params.poc_input == poc.VRF:
        key = ctx.keys.own
        if key is None:  # only clients hold VRF keys; committees are drawn from them
            return None
        proof = key.prove(poc.vrf_alpha(parent, chain.slot))
        won = poc.wins(poc.low_bits(proof_to_hash(proof), xi), credit, total, xi)
        return (txs, proof) if won else None
    if tries is None:
        tries = chain.params.grind_tries if ctx.has_fault(FAULT_GRIND_POC) else 1
    for cand in poc.tx_variants(txs, tries):
        ids = [record_id(tx) for tx in cand]
        hc = poc.poc_hash(parent, ids, ctx.address, credit, height, chain.slot)
        if poc.wins(poc.low_bits(hc, xi), credit, total, xi):
            return cand, None
    return None
