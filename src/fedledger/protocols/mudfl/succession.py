"""What a node does about dynasty changes in the slot clock: RandShare deals and reveals
as transactions, the takeover once the dynasty block is finalized, and the dynasties
rebuilt from the chain on restart (the rules themselves are in :mod:`rotation`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedledger.ledger.finality import Checkpoint
from fedledger.ledger.records import Transaction
from fedledger.protocols.base import Broadcast, Effect, EmitMetric
from fedledger.protocols.kit.gate import Reject
from fedledger.protocols.mudfl import randshare as rs
from fedledger.protocols.mudfl import rotation as rot
from fedledger.protocols.mudfl import settlement as st
from fedledger.protocols.mudfl.dynasty import Dynasty, DynastyRecord
from fedledger.protocols.mudfl.messages import TxMsg

if TYPE_CHECKING:
    from fedledger.protocols.mudfl.chain import Microchain


def randshare_step(chain: Microchain) -> list[Effect]:
    """At a slot's start: a running committee member deals in the deal window and reveals
    its shares of the qualified dealings on chain in the reveal window (once each)."""
    ctx = chain.ctx
    if not ctx.in_committee:
        return []
    number = ctx.dynasty.number + 1
    win = rot.window(chain.store, chain.parent.hash, number, chain.params)
    if win is None or chain.parent.height >= win.switch:
        return []
    phase = win.phase(chain.slot)
    done = (number, phase)
    if phase is None or done in chain.randshare_done:
        return []
    chain.randshare_done.add(done)
    members = ctx.rotation.members(ctx.dynasty)
    txs: list[Transaction] = []
    if phase == rot.DEAL:
        secret = ctx.rotation.secret_seed(ctx.node_id, number)
        deal = rs.deal(number, ctx.address, secret, members)
        txs.append(Transaction(ctx.address, 0.0, rs.DEAL_TX, deal, number))
    else:
        deals, _ = rot.randshare_records(chain.store, chain.parent.hash, win)
        qualified, _ = rs.qualify(number, members, deals)
        index = 1 + ctx.dynasty.committee.index(ctx.node_id)
        key = rs.member_key(ctx.setup.seed, ctx.node_id)
        for r in rs.reveal(number, key, ctx.address, index, list(qualified.values())):
            txs.append(Transaction(ctx.address, 0.0, rs.REVEAL_TX, r, number))
    effects: list[Effect] = []
    to = tuple(n for n in ctx.dynasty.committee if n != ctx.node_id)
    for tx in txs:
        signed = ctx.sign(tx)
        try:
            chain.add_tx(signed)
        except Reject:
            continue  # already pooled or on chain (a restart repeats the same record)
        effects.append(Broadcast(TxMsg(signed), to=to))
    return effects


def pending_record(chain: Microchain) -> tuple[int, DynastyRecord] | None:
    """The next dynasty's record on the canonical chain (its height and record), if any."""
    ctx = chain.ctx
    number = ctx.dynasty.number + 1
    height = rot.span(chain.params) * number
    block = chain.store.at_height(height)
    claim = rot.claim_of(block) if block is not None else None
    if claim is None or claim.record is None or claim.record.number != number:
        return None
    return height, claim.record


def takeover(chain: Microchain) -> list[Effect]:
    """At a slot's start: once the next dynasty's block is finalized, its committee takes
    over; an outgoing member hands its pool to the incoming members."""
    found = pending_record(chain)
    if found is None:
        return []
    height, rec = found
    fin = chain.vcf.finalized
    block = chain.store.at_height(height)
    assert block is not None
    if fin.height < height or not chain.store.is_ancestor(block.hash, fin.hash):
        return []
    ctx = chain.ctx
    was_member = ctx.in_committee
    old = set(ctx.dynasty.committee)
    new = rec.dynasty()
    install(chain, new, height)
    effects: list[Effect] = [EmitMetric("dynasty", float(new.number), chain.slot)]
    if rec.settlement is not None:
        settled = rec.settlement
        cut = sum(c for _, _, c in settled.deposits)
        cut += sum(c for _, _, c in st.late_charges(settled))  # evidence that came late
        paid = sum(r for _, r in settled.rewards)
        effects += [
            EmitMetric("deposits_slashed", float(cut), chain.slot),
            EmitMetric("fee_pool", float(settled.fee_pool), chain.slot),
            EmitMetric("worker_rewards", float(paid), chain.slot),
        ]
    incoming = tuple(n for n in new.committee if n != ctx.node_id and n not in old)
    if was_member and chain.pool and incoming:
        effects += [Broadcast(TxMsg(tx), to=incoming) for _, tx in sorted(chain.pool.items())]
    if not ctx.in_committee:
        chain.pool.clear()
    return effects


def install(chain: Microchain, dyn: Dynasty, height: int) -> None:
    """Make ``dyn`` the dynasty in charge and count later votes against its committee."""
    state = chain.ctx.state
    state.current = dyn
    state.known[dyn.number] = dyn
    state.heights[dyn.number] = height
    chain.vcf.set_committee(chain.ctx.committee_addresses())


def chain_dynasties(chain: Microchain) -> dict[int, tuple[int, Dynasty]]:
    """Every dynasty record on the canonical chain: number -> (height, dynasty)."""
    out: dict[int, tuple[int, Dynasty]] = {}
    step = rot.span(chain.params)
    height = step
    while True:
        block = chain.store.at_height(height)
        if block is None:
            return out
        claim = rot.claim_of(block)
        if claim is None or claim.record is None:
            return out
        out[claim.record.number] = (height, claim.record.dynasty())
        height += step


def committees(chain: Microchain, initial: Dynasty) -> dict[int, frozenset[bytes]]:
    """Committee addresses per dynasty number (dynasty 0 and every record on chain)."""
    address = chain.ctx.services.address_of
    out = {initial.number: frozenset(address(n) for n in initial.committee)}
    for number, (_, dyn) in chain_dynasties(chain).items():
        out[number] = frozenset(address(n) for n in dyn.committee)
    return out


def restore_current(chain: Microchain, initial: Dynasty) -> None:
    """After the tracker is rebuilt: the dynasty in charge is the last whose record block
    is finalized (dynasty 0 when none is)."""
    state = chain.ctx.state
    state.current = initial
    state.known = {initial.number: initial}
    state.heights = {}
    fin: Checkpoint = chain.vcf.finalized
    for _, (height, dyn) in sorted(chain_dynasties(chain).items()):
        block = chain.store.at_height(height)
        if block is None or fin.height < height:
            break
        if not chain.store.is_ancestor(block.hash, fin.hash):
            break
        if dyn.number != state.current.number + 1:
            break
        install(chain, dyn, height)
