"""Missed blocks: a node that gets a block whose parent it does not have (the parent
reached it after its slot, so it was refused as late, and the proposer built on it) asks
the sender for that block and its ancestors (``BlocksWanted``) and appends those it
lacks (``BlocksGiven``), each checked like a proposal except for the slot clock: the
signature and link to its stored parent, the proposer in the committee of the dynasty
its claim names, the claimed credit against that dynasty's credit table, the PoC proof
(with its VRF proof on a ``poc_input: vrf`` chain, or the rule-iii rank of a fallback
block) and, in the dynasty in charge, what the
block may hold. The fork choice then picks the head among all stored blocks, so nodes
that split over a late block converge on the higher branch (a choice of ours: the paper
assumes synchrony, under which no block is late).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedledger.ledger.records import Block
from fedledger.ledger.store import ChainStoreError
from fedledger.ledger.verify import Rejected
from fedledger.protocols.kit.gate import Reject
from fedledger.protocols.mudfl import contents, poc
from fedledger.protocols.mudfl.messages import PocClaim

if TYPE_CHECKING:
    from fedledger.protocols.mudfl.chain import Microchain

#: most blocks one reply carries
MAX_BLOCKS = 64


def blocks_for(chain: Microchain, tip: bytes, above: int) -> tuple[Block, ...]:
    """``tip`` and its ancestors above height ``above`` (oldest first), at most
    :data:`MAX_BLOCKS`; empty if ``tip`` is not stored here."""
    block = chain.store.get(tip)
    if block is None:
        return ()
    depth = max(0, min(MAX_BLOCKS - 1, block.height - above - 1))
    return (*reversed(chain.store.ancestors(tip, depth)), block)


def adopt(chain: Microchain, blocks: tuple[Block, ...], sender: str) -> int:
    """Append the blocks this node lacks (in height order); the number appended. A
    block that fails a check stops the batch (its descendants could not link)."""
    added = 0
    for block in sorted(blocks, key=lambda b: b.height):
        if chain.store.get(block.hash) is not None:
            continue
        problem = _problem(chain, block, sender)
        if problem is not None:
            raise chain.ctx.gate.fail("bad_fetched_block", problem)
        try:
            chain.store.append(block)
        except ChainStoreError as err:
            raise chain.ctx.gate.fail("bad_fetched_block", str(err)) from None
        added += 1
    if not added:
        raise chain.ctx.gate.fail("nothing_new", f"{len(blocks)} blocks from {sender}")
    return added


def _problem(chain: Microchain, block: Block, sender: str) -> str | None:
    ctx = chain.ctx
    parent = chain.store.get(block.parent)
    if parent is None or block.height != parent.height + 1:
        return f"block at {block.height} does not link to a stored parent"
    if block.height <= chain.vcf.finalized.height:
        return f"block at {block.height} is at or below the finalized checkpoint"
    try:
        ctx.gate.verifier.check_block(block, parent.header)
    except Rejected as err:
        return str(err)
    claim = block.header.extra
    if not isinstance(claim, PocClaim):
        return "block without a PocClaim"
    dyn = ctx.state.known.get(claim.dynasty)
    proposer = ctx.services.node_of(block.header.proposer)
    if dyn is None or proposer not in dyn.committee:
        return f"proposer {proposer} is not in dynasty {claim.dynasty}'s committee here"
    if claim.credit != dyn.credit_of(proposer):
        return f"{proposer} claims credit {claim.credit}, table has {dyn.credit_of(proposer)}"
    if claim.fallback:
        members = tuple(ctx.services.address_of(n) for n in dyn.committee)
        rank = poc.fallback_proposer(members, block.height, chain.params.fallback_order)
        if rank != block.header.proposer:
            return f"{proposer} is not the rule-iii proposer at {block.height}"
    elif problem := poc.vrf_problem(
        claim, block.parent, chain.params.poc_input, ctx.keys.public.get(proposer)
    ):
        return f"{proposer}: {problem}"
    elif not poc.wins(
        poc.block_proof(block, chain.params.xi), claim.credit, dyn.total_credit, chain.params.xi
    ):
        return f"{proposer}'s proof is over its threshold"
    if claim.dynasty == ctx.dynasty.number:
        try:
            contents.check(chain, block, claim, sender)
        except Reject as err:
            return f"{err.reason}: {err.detail}"
    return None
