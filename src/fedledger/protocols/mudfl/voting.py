"""Voting-based chain finality on one node (Section VI): checkpoint votes at ``2 T_Δ``,
vote checks (Rule 1, double votes: Rule 2) and the administrator's Rule-3 decisions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedledger.ledger.finality import Checkpoint
from fedledger.ledger.records import record_id
from fedledger.protocols.base import Broadcast, Effect, EmitMetric
from fedledger.protocols.mudfl.context import FAULT_DOUBLE_VOTE
from fedledger.protocols.mudfl.messages import (
    DOUBLE_VOTE,
    ArbitratorDecision,
    DecisionMsg,
    LinkVote,
    SlashEvidence,
    VoteMsg,
)
from fedledger.protocols.mudfl.vcf import rule1_problem

if TYPE_CHECKING:
    from fedledger.protocols.mudfl.chain import Microchain


def vote(chain: Microchain) -> list[Effect]:
    """At 2 T_Δ: the head is fixed; committee members vote if it is a checkpoint."""
    head = chain.store.head()
    for tid in [record_id(tx) for tx in head.transactions]:
        chain.pool.pop(tid, None)
    R = chain.params.epoch_size
    if head.height == 0 or head.height % R:
        return []
    if not chain.ctx.in_committee or chain.ctx.address in chain.slashed:
        return []
    source = chain.vcf.highest_committed
    if head.height != source.height + R:
        return []
    vote = chain.ctx.sign(
        LinkVote(
            chain.ctx.address,
            source.hash,
            source.height,
            head.hash,
            head.height,
            chain.ctx.dynasty.number,
            chain.slot,
        )
    )
    count(chain, vote)
    effects: list[Effect] = [chain.broadcast(VoteMsg(vote))]
    if chain.ctx.has_fault(FAULT_DOUBLE_VOTE):
        other = [b for b in chain.slot_blocks.values() if b.hash != head.hash]
        if other:
            twin = chain.ctx.sign(
                LinkVote(
                    chain.ctx.address,
                    source.hash,
                    source.height,
                    other[0].hash,
                    other[0].height,
                    chain.ctx.dynasty.number,
                    chain.slot,
                )
            )
            effects.append(chain.broadcast(VoteMsg(twin)))
    return effects


def on_vote(chain: Microchain, vote: LinkVote, sender: str) -> list[Effect]:
    gate = chain.ctx.gate
    if vote.slot != chain.slot or chain.into_slot(chain.now()) < 2 * chain.params.slot * 0.999:
        raise gate.fail("late_vote", f"vote of slot {vote.slot} in slot {chain.slot}")
    if chain.ctx.services.node_of(vote.voter) != sender:
        raise gate.fail("wrong_sender", f"{sender} relayed another voter's vote")
    gate.verifier.check(vote)
    if vote.dynasty != chain.ctx.dynasty.number:
        raise gate.fail("wrong_dynasty", f"vote of dynasty {vote.dynasty}")
    problem = rule1_problem(vote, chain.store.head().height, chain.params.epoch_size)
    if problem is not None:
        raise gate.fail("rule1", problem)
    return count(chain, vote)


def count(chain: Microchain, vote: LinkVote) -> list[Effect]:
    result = chain.vcf.add_link_vote(vote, chain.store)
    if result.evidence is not None:
        chain.slashed.add(vote.voter)
        first = [
            v
            for v in chain.votes
            if v.voter == vote.voter
            and v.target_height == vote.target_height
            and v.target != vote.target
        ]
        if first:
            chain.report(SlashEvidence(DOUBLE_VOTE, vote.voter, votes=(first[0], vote)))
        chain.save()
    if not result.accepted:
        raise chain.ctx.gate.fail(str(result.status.value), result.detail)
    chain.votes.append(vote)
    chain.save()
    effects: list[Effect] = []
    for cp in result.committed:
        chain.unquorate = 0
        effects.append(EmitMetric("committed", float(cp.height), chain.slot))
    for cp in result.finalized:
        effects.append(EmitMetric("finalized", float(cp.height), chain.slot))
    return effects


def on_decision(chain: Microchain, decision: ArbitratorDecision, sender: str) -> list[Effect]:
    """Rule 3: the administrator's signed decision commits the checkpoint."""
    gate = chain.ctx.gate
    if sender != chain.ctx.admin or decision.admin != chain.ctx.services.address_of(sender):
        raise gate.fail("wrong_sender", f"decision from {sender}")
    gate.verifier.check(decision)
    if chain.store.height_of(decision.target) != decision.target_height:
        raise gate.fail("unknown_block", "decided checkpoint is not stored here")
    try:
        chain.vcf.arbitrate(decision)
    except ValueError as err:
        raise gate.fail("bad_decision", str(err)) from None
    chain.decisions.append(decision)
    chain.save()
    return [EmitMetric("arbitrated", float(decision.target_height), chain.slot)]


def arbitrate(chain: Microchain) -> list[Effect]:
    """The administrator at a slot's start: after ``arbiter_timeout`` slots with an
    uncommitted checkpoint on its chain, decide it and every later checkpoint up to
    the head (Rule 3), so that the committee can vote again: Rule 1 only lets it
    vote for the checkpoint one epoch above the highest committed one."""
    R = chain.params.epoch_size
    source = chain.vcf.highest_committed
    head = chain.store.head()
    if head.height < source.height + R:
        return []
    chain.unquorate += 1
    if chain.unquorate < chain.params.arbiter_timeout:
        return []
    chain.unquorate = 0
    others = tuple(n for n in chain.ctx.everyone if n != chain.ctx.node_id)
    effects: list[Effect] = []
    while head.height >= source.height + R:
        target = chain.store.ancestor_at(head.hash, source.height + R)
        if target is None:
            break
        height = source.height + R
        decision = chain.ctx.sign(
            ArbitratorDecision(
                chain.ctx.address, source.hash, source.height, target, height, chain.slot
            )
        )
        chain.vcf.arbitrate(decision)
        chain.decisions.append(decision)
        effects += [
            Broadcast(DecisionMsg(decision), to=others),
            EmitMetric("arbitrated", float(height), chain.slot),
        ]
        source = Checkpoint(height, target)
    chain.save()
    return effects
