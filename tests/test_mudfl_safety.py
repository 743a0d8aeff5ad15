"""μDFL safety and fairness by property test (small K).

- VCF safety (Section VI): two conflicting checkpoints A, B at epoch 1 (both children of
  the genesis), with C over A and D over B at epoch 2. Honest validators vote once per
  epoch for one branch; f equivocators vote for both. Two honest nodes see the votes in
  any order (hypothesis picks them). With f < K/3 no two conflicting checkpoints are
  ever both committed or both finalized, in one view or across views. The bound is the
  intersection of two quorums: with q = floor(2K/3) + 1 votes needed, a violation exists
  exactly when f >= 2q - K, which is ceil(K/3) when K mod 3 = 1 (K = 4, 7, 10) and one or
  two more otherwise (the strict > 2K/3 rounds up); we construct one for every such f.
- Proof of Credit: a member wins a slot with probability p_i = c_i / sum(c), so for
  any credits P(b = 0) = prod(1 - p_i) and member i's win frequency is p_i.
- Committee selection (Efraimidis-Spirakis over VRF outputs): the first seat goes to
  member i with probability c_i / sum(c); higher credit, more seats.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedledger.consensus.committee import sample_committee
from fedledger.ledger.finality import Checkpoint
from fedledger.protocols.mudfl import poc
from fedledger.protocols.mudfl.messages import LinkVote
from fedledger.protocols.mudfl.vcf import VcfTracker

R = 3
G, A, B, C, D = (bytes([i]) * 32 for i in range(1, 6))
PARENT = {G: None, A: G, B: G, C: A, D: B}
HEIGHT = {G: 0, A: R, B: R, C: 2 * R, D: 2 * R}


@dataclass
class Tree:
    """The block index every view shares: G <- A <- C and G <- B <- D."""

    extra: dict[bytes, bytes] = field(default_factory=dict)

    def height_of(self, h: bytes) -> int | None:
        return HEIGHT.get(h)

    def is_ancestor(self, ancestor: bytes, descendant: bytes) -> bool:
        node: bytes | None = descendant
        while node is not None:
            if node == ancestor:
                return True
            node = PARENT[node]
        return False


def voter(i: int) -> bytes:
    return hashlib.sha256(b"voter" + bytes([i])).digest()


def link(v: bytes, source: bytes, target: bytes) -> LinkVote:
    return LinkVote(v, source, HEIGHT[source], target, HEIGHT[target], 0, 0)


def all_votes(k: int, f: int, honest_a: int) -> list[LinkVote]:
    """Validators 0..f-1 equivocate (both branches, both epochs); the next ``honest_a``
    honest ones vote G->A->C, the rest G->B->D."""
    votes = []
    for i in range(k):
        v = voter(i)
        if i < f or i < f + honest_a:
            votes += [link(v, G, A), link(v, A, C)]
        if i < f or i >= f + honest_a:
            votes += [link(v, G, B), link(v, B, D)]
    return votes


def view(k: int, votes: list[LinkVote]) -> VcfTracker:
    tracker = VcfTracker(R, [voter(i) for i in range(k)], Checkpoint(0, G))
    tree = Tree()
    for vote in votes:
        tracker.add_link_vote(vote, tree)
    return tracker


def conflicts(views: list[VcfTracker]) -> tuple[bool, bool]:
    """(A and B both committed, A and B both finalized) over the union of the views."""
    committed = {cp.hash for t in views for cp in t.committed()}
    finalized = {cp.hash for t in views for cp in t.finalized_checkpoints()}
    return {A, B} <= committed, {A, B} <= finalized


def quorum(k: int) -> int:
    return math.floor(2 * k / 3) + 1


@st.composite
def scenario(draw):
    """K, f < K/3, the honest split and two views' vote orders."""
    k = draw(st.integers(4, 10))
    f = draw(st.integers(0, math.ceil(k / 3) - 1))
    honest_a = draw(st.integers(0, k - f))
    votes = all_votes(k, f, honest_a)
    orders = [draw(st.permutations(votes)) for _ in range(2)]
    return k, f, honest_a, orders


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario())
def test_fewer_than_k_over_3_equivocators_never_finalize_conflicting_checkpoints(case):
    k, f, honest_a, orders = case
    assert 3 * f < k
    views = [view(k, list(order)) for order in orders]
    both_committed, both_finalized = conflicts(views)
    assert not both_committed and not both_finalized
    # liveness of the setting: a branch with a quorum of honest votes is finalized
    for t in views:
        if k - f - honest_a >= quorum(k):
            assert B in {cp.hash for cp in t.finalized_checkpoints()}
        if honest_a >= quorum(k):
            assert A in {cp.hash for cp in t.finalized_checkpoints()}
    # every equivocator that a view saw on both branches is slashed there (Rule 2)
    for t in views:
        assert {e.voter for e in t.evidence()} <= {voter(i) for i in range(f)}


@settings(max_examples=30, deadline=None)
@given(st.integers(4, 12), st.data())
def test_at_the_quorum_intersection_bound_a_violation_is_found(k, data):
    """f >= 2q - K: honest split q - f / rest, one view hears the equivocators on A
    first, the other on B first; both finalize their branch."""
    f = data.draw(st.integers(2 * quorum(k) - k, k))
    assert 3 * f >= k
    honest_a = max(0, min(k - f, quorum(k) - f))
    votes = all_votes(k, f, honest_a)
    on_a = [v for v in votes if v.target in (A, C)]
    on_b = [v for v in votes if v.target in (B, D)]
    x, y = view(k, on_a + on_b), view(k, on_b + on_a)
    both_committed, both_finalized = conflicts([x, y])
    assert both_committed and both_finalized
    assert G in {cp.hash for cp in x.finalized_checkpoints()}


def test_the_bound_in_numbers():
    """f needed for a violation, K = 4..10: 2q - K, never below K/3."""
    need = {k: 2 * quorum(k) - k for k in range(4, 11)}
    assert need == {4: 2, 5: 3, 6: 4, 7: 3, 8: 4, 9: 5, 10: 4}
    assert all(3 * f >= k for k, f in need.items())


# ---------------------------------------------------------------- PoC frequencies


def test_proposal_frequencies_match_the_credit_distribution():
    """Credits 1, 1, 2, 4 (thousandths 1000..4000): member i wins with p_i and
    P(b = 0) = prod(1 - p_i); uniform credits give (1 - 1/K)^K (test_mudfl_rules)."""
    credits = [1000, 1000, 2000, 4000]
    total, xi, slots = sum(credits), 64, 4000
    members = [bytes([i + 7]) * 32 for i in range(len(credits))]
    wins = [0] * len(credits)
    empty = 0
    for slot in range(slots):
        b = 0
        for j, (a, c) in enumerate(zip(members, credits, strict=True)):
            hc = poc.poc_hash(b"\x05" * 32, (), a, c, 1, slot)
            if poc.wins(poc.low_bits(hc, xi), c, total, xi):
                wins[j] += 1
                b += 1
        empty += b == 0
    for j, c in enumerate(credits):
        p = c / total
        assert abs(wins[j] / slots - p) < 4 * math.sqrt(p * (1 - p) / slots)
    p0 = math.prod(1 - c / total for c in credits)
    assert abs(empty / slots - p0) < 4 * math.sqrt(p0 * (1 - p0) / slots)


def test_committee_selection_frequency_is_proportional_to_credit():
    """The first seat of the weighted sample: P(i) = c_i / sum(c), chi-square at 5
    degrees of freedom (critical value 20.5 at p = 0.001); with K = 3 seats the
    ordering by credit holds for the seat counts."""
    credits = {f"c{i}": c for i, c in enumerate([500, 1000, 1000, 1500, 2000, 4000])}
    total = sum(credits.values())
    draws = 3000
    first = dict.fromkeys(credits, 0)
    seats = dict.fromkeys(credits, 0)
    for d in range(draws):
        outputs = {
            n: hashlib.sha512(b"beta" + d.to_bytes(4, "big") + n.encode()).digest()
            for n in credits
        }
        first[sample_committee(1, outputs, credits).members[0]] += 1
        for n in sample_committee(3, outputs, credits).members:
            seats[n] += 1
    chi2 = sum(
        (first[n] - draws * c / total) ** 2 / (draws * c / total) for n, c in credits.items()
    )
    assert chi2 < 20.5, (chi2, first)
    assert seats["c0"] < seats["c1"] < seats["c4"] < seats["c5"]
    assert seats["c3"] > max(seats["c1"], seats["c2"])
