"""Voting-based Chain Finality (Section VI) on the ledger's Casper-style tracker.

:class:`VcfTracker` is the ledger's :class:`~fedledger.ledger.finality.FinalityTracker`
(> 2/3 links, committed and finalized checkpoints, Rule 2 double votes kept as slashing
evidence and every later vote of the voter refused) plus what μDFL adds:

- a committee per dynasty: votes count against the committee of the dynasty the vote
  names (:meth:`VcfTracker.set_committee`);
- Rule 1 (:func:`rule1_problem`): only links ``s -> t`` with ``H_e(t) = H_e(s) + 1``
  and ``H_e(t) = H_e(head)``;
- Rule 3 (:meth:`VcfTracker.arbitrate`): the administrator's decision commits a
  checkpoint that found no quorum.

Slot expiry (a vote counts only in its own finality slot) is the node's check.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction

from fedledger.ledger.finality import (
    BlockIndex,
    Checkpoint,
    FinalityRule,
    FinalityTracker,
    FinalityVote,
    SlashingEvidence,
    VoteResult,
)
from fedledger.protocols.mudfl.messages import ArbitratorDecision, LinkVote

THRESHOLD = Fraction(2, 3)


def epoch_height(height: int, epoch_size: int) -> int:
    """H_e(B) = floor(B.height / R)."""
    if epoch_size < 1 or height < 0:
        raise ValueError(f"height {height} and epoch size {epoch_size}: need >= 0 and >= 1")
    return height // epoch_size


def rule1_problem(vote: LinkVote, head_height: int, epoch_size: int) -> str | None:
    """Why Rule 1 refuses ``vote`` at a node whose head has ``head_height``, or None."""
    e_s = epoch_height(vote.source_height, epoch_size)
    e_t = epoch_height(vote.target_height, epoch_size)
    e_head = epoch_height(head_height, epoch_size)
    if e_t != e_s + 1:
        return f"H_e(target) {e_t} is not H_e(source) {e_s} + 1"
    if e_t != e_head:
        return f"H_e(target) {e_t} is not the local head's epoch {e_head}"
    return None


def as_finality_vote(vote: LinkVote) -> FinalityVote:
    return FinalityVote(
        vote.voter,
        Checkpoint(vote.source_height, vote.source),
        Checkpoint(vote.target_height, vote.target),
    )


def link_quorum(votes: int, committee_size: int) -> bool:
    """vote_count > 2K/3, exactly."""
    return Fraction(votes, committee_size) > THRESHOLD


class VcfTracker(FinalityTracker):
    """The finality tracker of one μDFL node: committee per dynasty, Rule 3."""

    def __init__(self, epoch_size: int, committee: Iterable[bytes], genesis: Checkpoint) -> None:
        super().__init__(FinalityRule(epoch_size, THRESHOLD, frozenset(committee)), genesis)
        self.epoch_size = epoch_size
        self.arbitrated: list[Checkpoint] = []

    def set_committee(self, committee: Iterable[bytes]) -> None:
        """Count later votes against ``committee`` (a new dynasty's)."""
        self.rule = FinalityRule(self.epoch_size, THRESHOLD, frozenset(committee))

    def add_link_vote(self, vote: LinkVote, index: BlockIndex) -> VoteResult:
        return self.add_vote(as_finality_vote(vote), index)

    def arbitrate(self, decision: ArbitratorDecision) -> tuple[Checkpoint, ...]:
        """Rule 3: commit the decided target (its source must be committed); the
        checkpoints it finalizes (none: a decision commits, it does not finalize)."""
        s = Checkpoint(decision.source_height, decision.source)
        t = Checkpoint(decision.target_height, decision.target)
        if s not in self._committed:
            raise ValueError(f"arbitrated source {s.height} is not committed")
        if t.height != s.height + self.epoch_size:
            raise ValueError(f"arbitrated link {s.height}->{t.height} is not to the next epoch")
        if t not in self._committed:
            self._committed.add(t)
            self.arbitrated.append(t)
            self._propagate([(t, u) for u in sorted(self._from.get(t, ()))], None)
        return (t,)

    @classmethod
    def rebuilt(
        cls,
        epoch_size: int,
        committees: dict[int, frozenset[bytes]],
        genesis: Checkpoint,
        votes: Iterable[LinkVote],
        decisions: Iterable[ArbitratorDecision],
        evidence: Iterable[SlashingEvidence] = (),
    ) -> VcfTracker:
        """Replay accepted votes and decisions (in order) without re-checking them."""
        tracker = cls(epoch_size, committees[min(committees)], genesis)
        for ev in evidence:
            tracker._evidence.append(ev)
            tracker._slashed.add(ev.voter)
        pending = sorted(decisions, key=lambda d: d.target_height)
        for vote in votes:
            while pending and pending[0].target_height <= vote.source_height:
                tracker.arbitrate(pending.pop(0))
            tracker.set_committee(committees.get(vote.dynasty, tracker.rule.committee))
            tracker._count(as_finality_vote(vote), None)
        for decision in pending:
            if Checkpoint(decision.source_height, decision.source) in tracker._committed:
                tracker.arbitrate(decision)
        return tracker
