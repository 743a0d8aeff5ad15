"""A Casper-FFG finality gadget, as the μDFL paper's Voting-based Chain Finality uses it.

A protocol configures a :class:`FinalityRule`: checkpoints are the blocks whose height
is a multiple of ``interval`` (R); committee members vote for links ``source -> target``
between checkpoints, where ``target`` descends from ``source``. The rules:

- the genesis checkpoint is committed ("justified") and finalized;
- a link with votes from MORE than ``threshold`` of the committee (a "committed-majority
  link", threshold 2/3 in the paper) whose source is committed makes its target
  committed;
- a committed checkpoint ``s`` with a committed-majority link ``s -> t`` to its direct
  child checkpoint (``t.height == s.height + R``, same chain) becomes finalized.

Votes are refused (and the refusal counted) from non-members, for blocks that are not
checkpoints, not known, or not on one chain; votes that break a slashing condition are
refused and kept as :class:`SlashingEvidence`, and every later vote of that voter is
refused too (the paper's Rule 2):

- double vote: one voter, two different targets at the same height;
- surround vote: one voter, ``s1 < s2 < t2 < t1`` by height.

Since no accepted vote breaks a slashing condition and the threshold is at least 1/2,
two conflicting checkpoints are never both finalized in one node's view (Casper's
accountable-safety argument: two committed-majority links share a voter). Different
nodes agree as long as fewer than a third of the committee equivocates.

Votes whose source is not committed yet are kept and counted once it is. Votes for
blocks a node does not know are refused (``UNKNOWN_BLOCK``); a host may buffer and replay
them. This module is pure state; :class:`~fedledger.ledger.store.ChainStore` persists
accepted votes, evidence and marks, and restores a tracker with :meth:`FinalityTracker.restore`.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

from fedledger.errors import FedledgerError


class FinalityConflictError(FedledgerError):
    """Two conflicting checkpoints were finalized (impossible unless state was forged)."""


@dataclass(frozen=True, order=True)
class Checkpoint:
    """A checkpoint block: its height (a multiple of the interval) and hash."""

    height: int
    hash: bytes


@dataclass(frozen=True)
class FinalityVote:
    """A committee member's vote for the link ``source -> target``.

    ``voter`` is the member's address. Signatures are checked where the vote enters the
    node (the protocol's signed message); the gadget sees only verified content.
    """

    voter: bytes
    source: Checkpoint
    target: Checkpoint


@dataclass(frozen=True)
class FinalityRule:
    """Checkpoints every ``interval`` blocks; links need votes from more than
    ``threshold`` of ``committee`` (addresses)."""

    interval: int
    threshold: Fraction
    committee: frozenset[bytes]

    def __post_init__(self) -> None:
        if isinstance(self.interval, bool) or not isinstance(self.interval, int):
            raise ValueError(f"finality interval must be an int, got {self.interval!r}")
        if self.interval < 1:
            raise ValueError(f"finality interval must be >= 1, got {self.interval}")
        if isinstance(self.threshold, float | bool):
            raise ValueError(
                f"finality threshold must be exact (a Fraction, e.g. Fraction(2, 3), or a "
                f"string like '2/3'), got {self.threshold!r}"
            )
        try:
            threshold = Fraction(self.threshold)
        except (TypeError, ValueError):
            raise ValueError(
                f"finality threshold must be a fraction like 2/3, got {self.threshold!r}"
            ) from None
        if not Fraction(1, 2) <= threshold < 1:
            raise ValueError(
                f"finality threshold must be in [1/2, 1) (a link needs MORE than it), got "
                f"{threshold}; 2/3 tolerates fewer than a third of faulty voters"
            )
        object.__setattr__(self, "threshold", threshold)
        committee = frozenset(self.committee)
        if not committee:
            raise ValueError("finality committee is empty; give at least one member address")
        bad = [m for m in committee if not isinstance(m, bytes) or not m]
        if bad:
            raise ValueError(f"committee members must be non-empty bytes, got {bad[0]!r}")
        object.__setattr__(self, "committee", committee)

    def is_checkpoint(self, height: int) -> bool:
        return height >= 0 and height % self.interval == 0

    def quorum(self, votes: int) -> bool:
        """Whether ``votes`` members are MORE than ``threshold`` of the committee."""
        return Fraction(votes, len(self.committee)) > self.threshold

    @property
    def min_votes(self) -> int:
        """The smallest number of votes that makes a committed-majority link."""
        k = len(self.committee)
        return int(self.threshold * k) + 1


class BlockIndex(Protocol):
    """What the gadget needs to know about the block tree."""

    def height_of(self, block_hash: bytes) -> int | None:
        """The height of a known block, or None when the block is unknown."""
        ...

    def is_ancestor(self, ancestor: bytes, descendant: bytes) -> bool:
        """Whether ``ancestor`` is ``descendant`` or one of its ancestors."""
        ...


class VoteStatus(enum.StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    NOT_MEMBER = "not_member"
    NOT_CHECKPOINT = "not_checkpoint"
    BAD_LINK = "bad_link"
    UNKNOWN_BLOCK = "unknown_block"
    WRONG_HEIGHT = "wrong_height"
    NOT_DESCENDANT = "not_descendant"
    SLASHED_VOTER = "slashed_voter"
    DOUBLE_VOTE = "double_vote"
    SURROUND_VOTE = "surround_vote"


@dataclass(frozen=True)
class SlashingEvidence:
    """Two votes of one voter that break a slashing condition (``kind``)."""

    kind: VoteStatus  # DOUBLE_VOTE or SURROUND_VOTE
    voter: bytes
    earlier: FinalityVote
    offending: FinalityVote


@dataclass(frozen=True)
class VoteResult:
    """What one vote did: its status, a reason, and the marks it caused."""

    status: VoteStatus
    detail: str = ""
    committed: tuple[Checkpoint, ...] = ()
    finalized: tuple[Checkpoint, ...] = ()
    evidence: SlashingEvidence | None = None

    @property
    def accepted(self) -> bool:
        return self.status is VoteStatus.ACCEPTED


def _short(h: bytes) -> str:
    return h.hex()[:16]


def _cp(c: Checkpoint) -> str:
    return f"{c.height}:{_short(c.hash)}"


class FinalityTracker:
    """Votes, committed and finalized checkpoints, and slashing evidence of one node."""

    def __init__(self, rule: FinalityRule, genesis: Checkpoint) -> None:
        if genesis.height != 0:
            raise ValueError(f"genesis checkpoint has height 0, got {genesis.height}")
        self.rule = rule
        self.genesis = genesis
        self._votes: dict[bytes, list[FinalityVote]] = defaultdict(list)
        self._links: dict[tuple[Checkpoint, Checkpoint], set[bytes]] = defaultdict(set)
        self._from: dict[Checkpoint, set[Checkpoint]] = defaultdict(set)
        self._committed: set[Checkpoint] = {genesis}
        self._finalized: list[Checkpoint] = [genesis]
        self._slashed: set[bytes] = set()
        self._evidence: list[SlashingEvidence] = []
        self.rejected: dict[VoteStatus, int] = defaultdict(int)
        """Refused votes this session, by reason."""

    # ------------------------------------------------------------ queries

    @property
    def finalized(self) -> Checkpoint:
        """The highest finalized checkpoint."""
        return self._finalized[-1]

    def finalized_checkpoints(self) -> tuple[Checkpoint, ...]:
        return tuple(self._finalized)

    def committed(self) -> tuple[Checkpoint, ...]:
        return tuple(sorted(self._committed))

    def is_committed(self, cp: Checkpoint) -> bool:
        return cp in self._committed

    @property
    def highest_committed(self) -> Checkpoint:
        return max(self._committed)

    def evidence(self) -> tuple[SlashingEvidence, ...]:
        return tuple(self._evidence)

    def slashed(self) -> frozenset[bytes]:
        return frozenset(self._slashed)

    def votes_for(self, source: Checkpoint, target: Checkpoint) -> frozenset[bytes]:
        return frozenset(self._links.get((source, target), ()))

    # ------------------------------------------------------------ votes

    def add_vote(self, vote: FinalityVote, index: BlockIndex) -> VoteResult:
        """Check ``vote`` against the rule and the tree; count it if it is valid."""
        result = self._check(vote, index)
        if result is not None:
            self.rejected[result.status] += 1
            if result.evidence is not None:
                self._evidence.append(result.evidence)
                self._slashed.add(vote.voter)
            return result
        committed, finalized = self._count(vote, index)
        return VoteResult(VoteStatus.ACCEPTED, "", committed, finalized)

    def _check(self, vote: FinalityVote, index: BlockIndex) -> VoteResult | None:
        rule, s, t = self.rule, vote.source, vote.target
        if vote.voter not in rule.committee:
            return VoteResult(
                VoteStatus.NOT_MEMBER,
                f"voter {_short(vote.voter)} is not in the committee of "
                f"{len(rule.committee)} members",
            )
        if vote.voter in self._slashed:
            return VoteResult(
                VoteStatus.SLASHED_VOTER,
                f"voter {_short(vote.voter)} broke a slashing condition; its votes are refused",
            )
        for name, cp in (("source", s), ("target", t)):
            if not rule.is_checkpoint(cp.height):
                return VoteResult(
                    VoteStatus.NOT_CHECKPOINT,
                    f"{name} height {cp.height} is not a checkpoint height "
                    f"(allowed: multiples of {rule.interval})",
                )
        if t.height <= s.height:
            return VoteResult(
                VoteStatus.BAD_LINK,
                f"target height {t.height} must be above source height {s.height}",
            )
        for name, cp in (("source", s), ("target", t)):
            known = index.height_of(cp.hash)
            if known is None:
                return VoteResult(VoteStatus.UNKNOWN_BLOCK, f"{name} block {_cp(cp)} is unknown")
            if known != cp.height:
                return VoteResult(
                    VoteStatus.WRONG_HEIGHT,
                    f"{name} block {_short(cp.hash)} has height {known}, vote says {cp.height}",
                )
        if not index.is_ancestor(s.hash, t.hash):
            return VoteResult(
                VoteStatus.NOT_DESCENDANT,
                f"target {_cp(t)} does not descend from source {_cp(s)}",
            )
        for earlier in self._votes.get(vote.voter, ()):
            if earlier == vote:
                return VoteResult(VoteStatus.DUPLICATE, "vote already counted")
            kind = _violation(earlier, vote)
            if kind is not None:
                return VoteResult(
                    kind,
                    f"voter {_short(vote.voter)} voted {_cp(earlier.source)}->"
                    f"{_cp(earlier.target)} and {_cp(s)}->{_cp(t)}",
                    evidence=SlashingEvidence(kind, vote.voter, earlier, vote),
                )
        return None

    def _count(
        self, vote: FinalityVote, index: BlockIndex | None
    ) -> tuple[tuple[Checkpoint, ...], tuple[Checkpoint, ...]]:
        s, t = vote.source, vote.target
        self._votes[vote.voter].append(vote)
        self._links[(s, t)].add(vote.voter)
        self._from[s].add(t)
        return self._propagate([(s, t)], index)

    def _propagate(
        self, links: Iterable[tuple[Checkpoint, Checkpoint]], index: BlockIndex | None
    ) -> tuple[tuple[Checkpoint, ...], tuple[Checkpoint, ...]]:
        committed: list[Checkpoint] = []
        finalized: list[Checkpoint] = []
        queue = list(links)
        while queue:
            s, t = queue.pop()
            if s not in self._committed or not self.rule.quorum(len(self._links[(s, t)])):
                continue
            if t.height == s.height + self.rule.interval and self._finalize(s, index):
                finalized.append(s)
            if t not in self._committed:
                self._committed.add(t)
                committed.append(t)
                queue.extend((t, u) for u in sorted(self._from.get(t, ())))
        return tuple(committed), tuple(sorted(finalized))

    def _finalize(self, cp: Checkpoint, index: BlockIndex | None) -> bool:
        if cp in self._finalized:
            return False
        below = [c for c in self._finalized if c.height < cp.height]
        above = [c for c in self._finalized if c.height > cp.height]
        clash = [c for c in self._finalized if c.height == cp.height]
        if index is not None:
            if below and not index.is_ancestor(below[-1].hash, cp.hash):
                clash.append(below[-1])
            if above and not index.is_ancestor(cp.hash, above[0].hash):
                clash.append(above[0])
        if clash:
            raise FinalityConflictError(
                f"checkpoint {_cp(cp)} and finalized {_cp(clash[0])} are not on one chain; "
                "this needs conflicting votes from one voter, which are refused"
            )
        self._finalized = [*below, cp, *above]
        return True

    # ------------------------------------------------------------ persistence

    @classmethod
    def restore(
        cls,
        rule: FinalityRule,
        genesis: Checkpoint,
        votes: Iterable[FinalityVote],
        evidence: Iterable[SlashingEvidence] = (),
    ) -> FinalityTracker:
        """Rebuild from accepted votes (in acceptance order) and recorded evidence.

        Accepted votes were checked when they arrived, so they are counted without the
        tree; the marks follow from them deterministically.
        """
        tracker = cls(rule, genesis)
        for ev in evidence:
            tracker._evidence.append(ev)
            tracker._slashed.add(ev.voter)
        for vote in votes:
            tracker._count(vote, None)
        return tracker


def _violation(a: FinalityVote, b: FinalityVote) -> VoteStatus | None:
    """The slashing condition two distinct votes of one voter break, if any."""
    if a.target.height == b.target.height and a.target != b.target:
        return VoteStatus.DOUBLE_VOTE
    sa, ta, sb, tb = a.source.height, a.target.height, b.source.height, b.target.height
    if (sa < sb and tb < ta) or (sb < sa and ta < tb):
        return VoteStatus.SURROUND_VOTE
    return None
