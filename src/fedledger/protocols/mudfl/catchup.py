"""Vote catch-up: a node that restarted or whose chain the host synced from peers asks
for the checkpoint votes and Rule-3 decisions it missed and counts them (each checked
again), so its finality view (and the dynasty takeovers that wait on it) catches up."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedledger.ledger.verify import Rejected
from fedledger.protocols.base import Effect, EmitMetric
from fedledger.protocols.mudfl import succession
from fedledger.protocols.mudfl.messages import ArbitratorDecision, LinkVote

if TYPE_CHECKING:
    from fedledger.protocols.mudfl.chain import Microchain


def votes_above(chain: Microchain, above: int, limit: int = 2000) -> tuple[LinkVote, ...]:
    """The counted votes with a target above height ``above`` (oldest first)."""
    return tuple(v for v in chain.votes if v.target_height > above)[:limit]


def catch_up(
    chain: Microchain, votes: tuple[LinkVote, ...], decisions: tuple[ArbitratorDecision, ...]
) -> list[Effect]:
    """Count signed votes and decisions a peer had and this node missed (it was down
    or on a fork). Each is checked (signature; the voter in the committee of the
    dynasty the vote names, from the records on this node's chain; the admin's key)
    but not against the slot clock or Rule 1, which judge live votes only. A reply with
    nothing new is refused (counted)."""
    gate = chain.ctx.gate
    committees = succession.committees(chain, chain.initial)
    current = chain.vcf.rule.committee
    known = set(chain.votes)
    effects: list[Effect] = []
    changed = False
    for vote in sorted(votes, key=lambda v: (v.target_height, v.source_height)):
        committee = committees.get(vote.dynasty)
        if vote in known or committee is None or vote.voter not in committee:
            continue
        try:
            gate.verifier.check(vote)
        except Rejected:  # counted by the verifier
            continue
        chain.vcf.set_committee(committee)
        result = chain.vcf.add_link_vote(vote, chain.store)
        if result.accepted:
            chain.votes.append(vote)
            known.add(vote)
            changed = True
            for cp in result.finalized:
                effects.append(EmitMetric("finalized", float(cp.height), chain.slot))
    chain.vcf.set_committee(current)
    admin = chain.ctx.services.address_of(chain.ctx.admin)
    for decision in sorted(decisions, key=lambda d: d.target_height):
        if decision in chain.decisions or decision.admin != admin:
            continue
        try:
            gate.verifier.check(decision)
            chain.vcf.arbitrate(decision)
        except (Rejected, ValueError):  # a bad signature, or its source not committed
            continue
        chain.decisions.append(decision)
        changed = True
    if not changed:
        raise gate.fail("no_new_votes", f"{len(votes)} votes, {len(decisions)} decisions")
    chain.save()
    return effects
