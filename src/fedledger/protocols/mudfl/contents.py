"""What a μDFL block may hold: transaction kinds, no repeats on its own chain, RandShare
records only in their windows, and the next dynasty's record exactly at its switch
height (checked against the record recomputed from the chain)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from fedledger.ledger.merkle import merkle_root
from fedledger.ledger.records import Block, Transaction, record_id
from fedledger.ledger.store import ChainStore
from fedledger.ledger.verify import Rejected, Verifier
from fedledger.protocols.mudfl import faults_pvss as fp
from fedledger.protocols.mudfl import poc
from fedledger.protocols.mudfl import randshare as rs
from fedledger.protocols.mudfl import rotation as rot
from fedledger.protocols.mudfl.faults_pvss import PVSS_TX, PvssEvidence
from fedledger.protocols.mudfl.load import load_problem
from fedledger.protocols.mudfl.messages import (
    DOUBLE_VOTE,
    EQUIVOCATION,
    FAULT_TX,
    FORGED_CREDIT,
    GLOBAL_TX,
    INVALID_PROOF,
    LOAD_TX,
    MODEL_TX,
    SCORE_TX,
    SLASH_TX,
    Fault,
    GlobalModel,
    LoadData,
    ModelUpdate,
    PocClaim,
    Scores,
    SlashEvidence,
)

#: dynasty number -> its committee's credit table by address (None if unknown here)
CreditLookup = Callable[[int], Mapping[bytes, int] | None]

if TYPE_CHECKING:
    from fedledger.protocols.mudfl.chain import Microchain

TX_PAYLOADS = {
    GLOBAL_TX: GlobalModel,
    MODEL_TX: ModelUpdate,
    FAULT_TX: Fault,
    rs.DEAL_TX: rs.RandShareDeal,
    rs.REVEAL_TX: rs.RandShareReveal,
    SLASH_TX: SlashEvidence,
    SCORE_TX: Scores,
    LOAD_TX: LoadData,  # the load generator's data transactions (load.py)
    PVSS_TX: PvssEvidence,  # a bad PVSS transcript (faults_pvss.py)
}
RANDSHARE_TXS = (rs.DEAL_TX, rs.REVEAL_TX)


def check(chain: Microchain, block: Block, claim: PocClaim, sender: str) -> None:
    """The transactions (kinds, RandShare windows) and the dynasty record."""
    gate, ctx = chain.ctx.gate, chain.ctx
    win = rot.window(chain.store, block.parent, ctx.dynasty.number + 1, chain.params)
    # above the pruned height from memory; a pooled transaction is not on chain below it
    branch = chain.branch_ids(block.parent)
    for tx in block.transactions:
        payload_type = TX_PAYLOADS.get(tx.kind)
        if payload_type is None or not isinstance(tx.payload, payload_type):
            raise gate.fail("bad_tx", f"block from {sender} holds a {tx.kind!r} transaction")
        tid = record_id(tx)
        if tid in branch or (tid not in chain.pool and on_chain(chain.store, tid, block.parent)):
            raise gate.fail("duplicate_tx", f"block from {sender} repeats a transaction")
        if tx.kind in RANDSHARE_TXS:
            if randshare_author(tx) != tx.sender:
                raise gate.fail("bad_tx", f"block from {sender}: RandShare record by proxy")
            problem = rot.window_problem(tx, block.height, claim.slot, win)
            if problem is not None:
                raise gate.fail("randshare_window", f"block from {sender}: {problem}")
        if tx.kind == SLASH_TX:
            problem = evidence_problem(
                gate.verifier, tx.payload, chain.credit_table, chain.params.xi
            )
            if problem is not None:
                raise gate.fail("bad_evidence", f"block from {sender}: {problem}")
        if tx.kind == LOAD_TX and (bad := load_problem(tx.payload, chain.params, chain.now())):
            raise gate.fail("bad_load", f"block from {sender}: {bad}")
        if tx.kind == PVSS_TX:
            problem = fp.evidence_problem(gate.verifier, tx.payload, members_lookup(chain))
            if problem is not None:
                raise gate.fail("bad_evidence", f"block from {sender}: {problem}")
        if tx.kind == SCORE_TX and tx.sender != ctx.services.address_of(ctx.aggregator):
            raise gate.fail("bad_tx", f"block from {sender}: scores not from the aggregator")
    number = ctx.dynasty.number + 1
    if rot.record_number(block.height, chain.params) == number:
        problem = ctx.rotation.check_record(claim.record, block.parent, ctx.dynasty, number)
        if problem is not None:
            raise gate.fail("bad_dynasty_record", f"block from {sender}: {problem}")
    elif claim.record is not None:
        raise gate.fail("bad_dynasty_record", f"block from {sender} at {block.height}")


def evidence_problem(
    verifier: Verifier, ev: SlashEvidence, credits: CreditLookup, xi: int
) -> str | None:
    """Why ``ev`` does not prove the offence it names, or None. ``credits`` gives the
    credit table of the dynasty a header names (forged credit, invalid proof)."""
    try:
        if ev.kind in (FORGED_CREDIT, INVALID_PROOF) and len(ev.headers) == 1 and not ev.votes:
            return _claim_problem(verifier, ev, credits, xi)
        if ev.kind == EQUIVOCATION and len(ev.headers) == 2 and not ev.votes:
            a, b = ev.headers
            for h in ev.headers:
                verifier.check(h)
            slots = [getattr(h.extra, "slot", None) for h in ev.headers]
            if a.proposer != ev.offender or b.proposer != ev.offender:
                return "headers not both signed by the offender"
            if slots[0] is None or slots[0] != slots[1] or record_id(a) == record_id(b):
                return "not two different blocks of one slot"
            return None
        if ev.kind == DOUBLE_VOTE and len(ev.votes) == 2 and not ev.headers:
            v, w = ev.votes
            for vote in ev.votes:
                verifier.check(vote)
            if v.voter != ev.offender or w.voter != ev.offender:
                return "votes not both signed by the offender"
            if v.target_height != w.target_height or v.target == w.target:
                return "not two votes for different targets of one height"
            return None
    except Rejected as err:
        return f"evidence signature refused: {err}"
    return f"evidence of kind {ev.kind!r} with {len(ev.headers)} headers, {len(ev.votes)} votes"


def _claim_problem(
    verifier: Verifier, ev: SlashEvidence, credits: CreditLookup, xi: int
) -> str | None:
    header = ev.headers[0]
    verifier.check(header)
    claim = header.extra
    if header.proposer != ev.offender or not isinstance(claim, PocClaim):
        return "header not signed by the offender or without a PocClaim"
    table = credits(claim.dynasty)
    if table is None:
        return f"dynasty {claim.dynasty} is not known here"
    credit = table.get(ev.offender)
    if ev.kind == FORGED_CREDIT:
        return None if credit != claim.credit else "the claimed credit is the table's"
    if credit != claim.credit or claim.fallback:
        return "an invalid-proof claim needs the table's credit and a PoC (not fallback) block"
    vrf = isinstance(claim, poc.VrfPocClaim)  # hc is the VRF output: no ids needed
    if not vrf and merkle_root(list(ev.tx_ids)) != header.tx_root:
        return "transaction ids do not match the header's tx_root"
    if poc.wins(poc.header_proof(header, ev.tx_ids, xi), claim.credit, sum(table.values()), xi):
        return "the proof is under its threshold"
    return None


def members_lookup(chain: Microchain) -> fp.MembersLookup:
    """Dynasty number -> its committee with their PVSS keys, for dynasties this node
    knows (``bad_pvss`` evidence)."""
    ctx = chain.ctx

    def members(number: int) -> list[rs.Member] | None:
        dyn = ctx.state.known.get(number)
        return ctx.rotation.members(dyn) if dyn is not None else None

    return members


def on_chain(store: ChainStore, tid: bytes, tip: bytes) -> bool:
    """Whether transaction ``tid`` is in ``tip`` or one of its ancestors (a sibling
    block of the same slot holding it does not count)."""
    found = store.transaction(tid)
    return found is not None and store.is_ancestor(found[1], tip)


def randshare_author(tx: Transaction) -> bytes | None:
    p = tx.payload
    if isinstance(p, rs.RandShareDeal):
        return p.dealer
    if isinstance(p, rs.RandShareReveal):
        return p.member
    return None
