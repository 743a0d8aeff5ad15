"""Alg. 1's verify_block for a block received in a slot, plus what the paper leaves out:
the proposer's claimed credit against the dynasty's table, the slot rules (late
blocks, rule-iii fallback timing), the PoC input mode (a "vrf" chain's blocks carry an
ECVRF proof that must verify under the proposer's registered key) and slashing evidence
for equivocation, forged credit and proofs over their threshold."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedledger.ledger.records import record_id
from fedledger.protocols.mudfl import contents, poc
from fedledger.protocols.mudfl.messages import (
    EQUIVOCATION,
    FORGED_CREDIT,
    INVALID_PROOF,
    BlockMsg,
    PocClaim,
    SlashEvidence,
)

if TYPE_CHECKING:
    from fedledger.protocols.mudfl.chain import Microchain


def verify_block(chain: Microchain, msg: BlockMsg, sender: str) -> None:
    """Alg. 1 verify_block, plus the credit-table check and the slot rules."""
    gate, ctx = chain.ctx.gate, chain.ctx
    block = msg.block
    if msg.slot != chain.slot or chain.into_slot(chain.now()) >= 2 * chain.params.slot:
        raise gate.fail("late_block", f"block of slot {msg.slot} in slot {chain.slot}")
    claim = block.header.extra
    if not isinstance(claim, PocClaim) or claim.slot != msg.slot:
        raise gate.fail("bad_claim", f"block from {sender} without a PocClaim of its slot")
    proposer = block.header.proposer
    if ctx.services.node_of(proposer) != sender:
        raise gate.fail("wrong_sender", f"{sender} relayed another proposer's block")
    # the head at the slot's start, or a stored block of its height or above: a node
    # that missed a block (it came late) joins the branch the proposer built on
    head = chain.parent
    parent = head if block.parent == head.hash else chain.store.get(block.parent)
    if parent is None:
        raise gate.fail("unknown_parent", f"block at {block.height} from {sender}")
    if parent.height < head.height or block.height != parent.height + 1:
        raise gate.fail("wrong_parent", f"block at {block.height} not on head {head.height}")
    gate.verifier.check_block(block, parent.header)
    if sender not in ctx.dynasty.committee or claim.dynasty != ctx.dynasty.number:
        raise gate.fail("not_in_committee", f"{sender} in dynasty {claim.dynasty}")
    if proposer in chain.slashed:
        raise gate.fail("slashed_proposer", sender)
    known = chain.slot_blocks.get(proposer)
    if known is not None:
        if known.hash != block.hash:
            chain.slashed.add(proposer)
            chain.report(SlashEvidence(EQUIVOCATION, proposer, (known.header, block.header)))
            chain.save()
            raise gate.fail("equivocation", f"{sender} proposed two blocks in slot {chain.slot}")
        raise gate.fail("duplicate_block", sender)
    if claim.credit != ctx.dynasty.credit_of(sender):
        chain.slashed.add(proposer)
        chain.report(SlashEvidence(FORGED_CREDIT, proposer, (block.header,)))
        chain.save()
        raise gate.fail(
            "forged_credit",
            f"{sender} claims credit {claim.credit}, table has {ctx.dynasty.credit_of(sender)}",
        )
    if claim.fallback:
        chosen = poc.fallback_proposer(
            ctx.committee_addresses(), block.height, chain.params.fallback_order
        )
        if proposer != chosen or chain.into_slot(chain.now()) < chain.params.slot * 0.999:
            raise gate.fail("bad_fallback", f"{sender} is not the rule-iii proposer now")
    elif problem := poc.vrf_problem(
        claim, block.parent, chain.params.poc_input, ctx.keys.public.get(sender)
    ):
        raise gate.fail("bad_vrf", f"{sender}: {problem}")
    elif not poc.wins(
        poc.block_proof(block, chain.params.xi),
        claim.credit,
        ctx.dynasty.total_credit,
        chain.params.xi,
    ):
        chain.slashed.add(proposer)
        ids = tuple(record_id(tx) for tx in block.transactions)
        chain.report(SlashEvidence(INVALID_PROOF, proposer, (block.header,), tx_ids=ids))
        chain.save()
        raise gate.fail("bad_proof", f"{sender}'s proof is over its threshold")
    contents.check(chain, block, claim, sender)
    chain.slot_blocks[proposer] = block
    chain.append(block)
