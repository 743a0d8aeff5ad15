"""μDFL rules as pure functions: PoC threshold (Eq. 1-2, Alg. 1), rules ii-iii, VCF
Rules 1-3 on the finality tracker, credits and incentives (Section VII)."""

from __future__ import annotations

import math

import pytest

from fedledger.ledger.finality import Checkpoint
from fedledger.protocols.mudfl import credits, poc
from fedledger.protocols.mudfl.messages import ArbitratorDecision, LinkVote
from fedledger.protocols.mudfl.vcf import VcfTracker, epoch_height, link_quorum, rule1_problem


def test_poc_threshold_is_strict_and_exact():
    xi = 8
    # d_cond = (2^8 - 1) * 1/4 = 63.75: proofs 0..63 win, 64 loses
    assert poc.wins(63, 1000, 4000, xi)
    assert not poc.wins(64, 1000, 4000, xi)
    # equal share of everything: TB < 2^xi - 1, so only the all-ones value loses
    assert poc.wins(254, 1, 1, xi) and not poc.wins(255, 1, 1, xi)
    assert not poc.wins(0, 0, 10, xi)  # zero credit never wins
    with pytest.raises(ValueError):
        poc.wins(1, 11, 10, xi)


def test_low_bits_takes_the_lower_xi_bits():
    hc = bytes(31) + b"\xff"
    assert poc.low_bits(hc, 4) == 0xF
    assert poc.low_bits(b"\x01" + bytes(31), 256) == 1 << 248
    with pytest.raises(ValueError):
        poc.low_bits(hc, 0)


def test_proposal_frequency_matches_uniform_credits():
    """P(b = 0) = (1 - 1/K)^K for K validators of equal credit."""
    k, slots, xi = 4, 3000, 64
    committee = [bytes([i + 1]) * 32 for i in range(k)]
    empty = 0
    for slot in range(slots):
        b = sum(
            poc.wins(
                poc.low_bits(poc.poc_hash(b"\0" * 32, (), a, 1000, 1, slot), xi), 1000, 4000, xi
            )
            for a in committee
        )
        empty += b == 0
    expected = (1 - 1 / k) ** k
    sd = math.sqrt(expected * (1 - expected) / slots)
    assert abs(empty / slots - expected) < 4 * sd


def test_fallback_proposer_is_rank_height_mod_k():
    committee = [b"\x03" * 32, b"\x01" * 32, b"\x02" * 32]
    assert poc.fallback_proposer(committee, 4) == b"\x02" * 32  # 4 mod 3 = 1 of ascending
    assert poc.fallback_proposer(committee, 4, "desc") == b"\x02" * 32
    assert poc.fallback_proposer(committee, 3, "desc") == b"\x03" * 32
    with pytest.raises(ValueError):
        poc.fallback_proposer([], 1)


def _vote(voter: int, s: tuple[int, bytes], t: tuple[int, bytes]) -> LinkVote:
    return LinkVote(bytes([voter]) * 32, s[1], s[0], t[1], t[0], 0, 0, b"")


class _Line:
    """A chain index: blocks on one line plus optional forks (hash -> (height, parent))."""

    def __init__(self, blocks: dict[bytes, tuple[int, bytes | None]]) -> None:
        self.blocks = blocks

    def height_of(self, h: bytes) -> int | None:
        return self.blocks[h][0] if h in self.blocks else None

    def is_ancestor(self, a: bytes, d: bytes) -> bool:
        while d is not None:
            if d == a:
                return True
            d = self.blocks[d][1]
        return False


G, B3, B3x, B6 = b"g" * 32, b"a" * 32, b"x" * 32, b"b" * 32
INDEX = _Line({G: (0, None), B3: (3, G), B3x: (3, G), B6: (6, B3)})


def test_rule1_links_only_to_the_next_epoch_at_the_heads_epoch():
    assert epoch_height(7, 3) == 2
    assert rule1_problem(_vote(1, (0, G), (3, B3)), 4, 3) is None
    assert "local head" in rule1_problem(_vote(1, (0, G), (3, B3)), 6, 3)
    assert "H_e(source)" in rule1_problem(_vote(1, (0, G), (6, B6)), 6, 3)


def test_more_than_two_thirds_commit_and_finalize():
    assert not link_quorum(2, 3) and link_quorum(3, 4) and not link_quorum(8, 12)
    committee = [bytes([i]) * 32 for i in range(1, 5)]
    vcf = VcfTracker(3, committee, Checkpoint(0, G))
    for i in (1, 2):
        assert vcf.add_link_vote(_vote(i, (0, G), (3, B3)), INDEX).accepted
    assert not vcf.is_committed(Checkpoint(3, B3))  # 2 of 4 is not > 2/3
    res = vcf.add_link_vote(_vote(3, (0, G), (3, B3)), INDEX)
    assert res.committed == (Checkpoint(3, B3),)  # genesis is finalized already
    for i in (1, 2, 3):
        vcf.add_link_vote(_vote(i, (3, B3), (6, B6)), INDEX)
    assert vcf.finalized == Checkpoint(3, B3)


def test_rule2_double_vote_is_evidence_and_voids_the_voter():
    committee = [bytes([i]) * 32 for i in range(1, 5)]
    vcf = VcfTracker(3, committee, Checkpoint(0, G))
    assert vcf.add_link_vote(_vote(1, (0, G), (3, B3)), INDEX).accepted
    res = vcf.add_link_vote(_vote(1, (0, G), (3, B3x)), INDEX)
    assert not res.accepted and res.evidence is not None
    assert bytes([1]) * 32 in vcf.slashed()
    assert not vcf.add_link_vote(_vote(1, (3, B3), (6, B6)), INDEX).accepted


def test_rule3_arbitrator_commits_and_a_committee_per_dynasty():
    committee = [bytes([i]) * 32 for i in range(1, 5)]
    vcf = VcfTracker(3, committee, Checkpoint(0, G))
    decision = ArbitratorDecision(b"\x09" * 32, G, 0, B3, 3, 5, b"")
    vcf.arbitrate(decision)
    assert vcf.is_committed(Checkpoint(3, B3))
    with pytest.raises(ValueError):
        vcf.arbitrate(ArbitratorDecision(b"\x09" * 32, B6, 6, B6, 9, 5, b""))
    vcf.set_committee([bytes([i]) * 32 for i in range(5, 9)])
    assert not vcf.add_link_vote(_vote(1, (3, B3), (6, B6)), INDEX).accepted  # old member
    for i in (5, 6, 7):
        vcf.add_link_vote(_vote(i, (3, B3), (6, B6)), INDEX)
    assert vcf.finalized == Checkpoint(3, B3)


def test_credits_rewards_fees_and_deposits():
    assert credits.next_credit(1000, 1, 0, 1000, 1000, 1500) == 1500  # capped at C_max
    assert credits.next_credit(1500, 0, 2, 1000, 1000, 1500) == 0  # floored at 0
    g = credits.worker_rewards({"a": 0.9, "b": 0.3, "c": 0.0}, 120.0)
    assert g == pytest.approx({"a": 90.0, "b": 30.0, "c": 0.0})
    assert credits.fee_shares(30.0, ["a", "b", "c"], ["b"]) == {"a": 15.0, "c": 15.0}
    s = credits.settle_deposits(["a", "b"], 10.0, ["b"], 1.0)
    assert s["a"] == credits.Settlement(10.0, 0.0) and s["b"] == credits.Settlement(0.0, 10.0)
    assert credits.adversary_control(20, 0.4) == pytest.approx(0.1275, abs=1e-4)
