"""The node's side of the ``bad_pvss`` fault and of its detection, at a slot's start.

- A member with the fault deals a garbled transcript (:func:`faults_pvss.garble`) in its
  RandShare deal window instead of a valid one; its reveals stay honest.
- Every honest member of the running committee, at its first slot of the reveal window,
  checks every deal on chain in the deal window and reports each that fails public
  verification as :class:`faults_pvss.PvssEvidence` (once per run and dealing). The bad
  dealing itself is already out of the qualified set: :func:`randshare.qualify` redoes
  the check on every node.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedledger.ledger.records import Transaction
from fedledger.protocols.base import Broadcast, Effect
from fedledger.protocols.kit.gate import Reject
from fedledger.protocols.mudfl import faults_pvss as fp
from fedledger.protocols.mudfl import randshare as rs
from fedledger.protocols.mudfl import rotation as rot
from fedledger.protocols.mudfl import succession
from fedledger.protocols.mudfl.messages import TxMsg

if TYPE_CHECKING:
    from fedledger.protocols.mudfl.chain import Microchain

EVIDENCE = "pvss-evidence"  # randshare_done key: this run's deals were checked


def randshare_step(chain: Microchain) -> list[Effect]:
    """succession.randshare_step, with the ``bad_pvss`` dealer's garbled deal and the
    honest members' reports of bad deals."""
    effects = bad_deal(chain) if chain.ctx.has_fault(fp.BAD_PVSS) else []
    effects += succession.randshare_step(chain)
    effects += report_bad_deals(chain)
    return effects


def _window(chain: Microchain) -> rot.Window | None:
    ctx = chain.ctx
    if not ctx.in_committee:
        return None
    win = rot.window(chain.store, chain.parent.hash, ctx.dynasty.number + 1, chain.params)
    if win is None or chain.parent.height >= win.switch:
        return None
    return win


def _send(chain: Microchain, tx: Transaction) -> list[Effect]:
    signed = chain.ctx.sign(tx)
    try:
        chain.add_tx(signed)
    except Reject:
        return []  # already pooled or on chain (a restart repeats the same record)
    to = tuple(n for n in chain.ctx.dynasty.committee if n != chain.ctx.node_id)
    return [Broadcast(TxMsg(signed), to=to)]


def bad_deal(chain: Microchain) -> list[Effect]:
    """In its deal window, the faulty member deals a garbled transcript (once); marking
    the phase done keeps :func:`succession.randshare_step` from dealing a valid one."""
    win = _window(chain)
    if win is None or win.phase(chain.slot) != rot.DEAL:
        return []
    ctx = chain.ctx
    done = (win.number, rot.DEAL)
    if done in chain.randshare_done:
        return []
    chain.randshare_done.add(done)
    members = ctx.rotation.members(ctx.dynasty)
    secret = ctx.rotation.secret_seed(ctx.node_id, win.number)
    deal = fp.garble(rs.deal(win.number, ctx.address, secret, members))
    return _send(chain, Transaction(ctx.address, 0.0, rs.DEAL_TX, deal, win.number))


def bad_deals(chain: Microchain, win: rot.Window) -> list[Transaction]:
    """The deal transactions of ``win`` on the chain (deal window, below the switch
    height) whose transcript fails public verification, in chain order."""
    members = chain.ctx.rotation.members(chain.ctx.dynasty)
    out = []
    for block in rot.chain_below(chain.store, chain.parent.hash, win.trigger + 1):
        claim = rot.claim_of(block)
        if block.height >= win.switch or claim is None or win.phase(claim.slot) != rot.DEAL:
            continue
        for tx in block.transactions:
            deal = tx.payload
            if tx.kind != rs.DEAL_TX or not isinstance(deal, rs.RandShareDeal):
                continue
            mine = deal.dynasty == win.number and deal.dealer == tx.sender
            if mine and fp.transcript_problem(deal, members) is not None:
                out.append(tx)
    return out


def report_bad_deals(chain: Microchain) -> list[Effect]:
    """At the first reveal slot: evidence for every bad deal of another dealer."""
    win = _window(chain)
    if win is None or win.phase(chain.slot) != rot.REVEAL:
        return []
    done = (win.number, EVIDENCE)
    if done in chain.randshare_done:
        return []
    chain.randshare_done.add(done)
    ctx = chain.ctx
    effects: list[Effect] = []
    for deal in bad_deals(chain, win):
        if deal.sender != ctx.address:
            ev = fp.PvssEvidence(deal)
            effects += _send(chain, Transaction(ctx.address, 0.0, fp.PVSS_TX, ev, 0))
    return effects
