"""consensus.committee: the seeded role shuffle (pinned), Efraimidis-Spirakis sampling
from VRF outputs in exact arithmetic, binomial sortition, and VRF tickets."""

from __future__ import annotations

import hashlib
import itertools
import random
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.consensus.committee import (
    LOG_ERROR,
    OUTPUT_BITS,
    CommitteeError,
    Ticket,
    binomial_seats,
    committee_alpha,
    draw_committee,
    make_ticket,
    neg_log_fixed,
    sample_committee,
    seeded_choice,
    seeded_shuffle,
    sortition,
    split_roles,
)
from fedledger.consensus.committee import _es_before as es_before
from fedledger.crypto.vrf import derive_vrf_key
from fedledger.protocols.posbfl.roles import (
    RoleCounts,
    RoundRoles,
    assign_roles,
    associated_validator,
)

stats = pytest.importorskip("scipy.stats")

TEN = tuple(f"d{i:03d}" for i in range(10))
TWENTY = tuple(f"d{i:03d}" for i in range(20))


def fake_output(*parts: object) -> bytes:
    """A stand-in VRF output (uniform 64 bytes) for statistics over many draws."""
    return hashlib.sha512("/".join(map(str, parts)).encode()).digest()


# ---------------------------------------------------------------- the pinned shuffle

# Recorded from PoS-BFL's roles.py before the shuffle moved here (numpy PCG64 seeded with
# derive_seed(seed, "posbfl-roles", round)); the associated validators likewise.
PINNED = [
    (
        0,
        1,
        RoundRoles(1, ("d001", "d004", "d005", "d008", "d009"), ("d002", "d006", "d007"),
                   ("d000", "d003")),
        ["d007", "d006", "d002", "d002", "d007"],
    ),
    (
        7,
        3,
        RoundRoles(3, ("d002", "d003", "d005", "d006", "d007"), ("d001", "d008", "d009"),
                   ("d000", "d004")),
        ["d009", "d009", "d008", "d009", "d008"],
    ),
    (
        42,
        2,
        RoundRoles(2, ("d000", "d002", "d004", "d005", "d007"), ("d001", "d006", "d008"),
                   ("d003", "d009")),
        ["d001", "d001", "d008", "d006", "d006"],
    ),
]

# posbfl-mnist-quick (20 devices, 12/5/3, seed 0): (validators, miners) of rounds 1-3
PINNED_QUICK = {
    1: (("d001", "d003", "d010", "d011", "d013"), ("d007", "d014", "d016")),
    2: (("d008", "d012", "d013", "d015", "d019"), ("d003", "d005", "d006")),
    3: (("d001", "d002", "d010", "d018", "d019"), ("d004", "d012", "d016")),
}


@pytest.mark.parametrize(("seed", "rnd", "roles", "assoc"), PINNED)
def test_role_shuffle_is_pinned(seed, rnd, roles, assoc):
    assert assign_roles(TEN, RoleCounts(5, 3, 2), seed, rnd) == roles
    assert split_roles(TEN, (5, 3, 2), seed, "posbfl-roles", rnd) == (
        roles.workers,
        roles.validators,
        roles.miners,
    )
    assert [associated_validator(roles, w, seed) for w in roles.workers] == assoc
    assert [seeded_choice(roles.validators, seed, "posbfl-assoc", rnd, w)
            for w in roles.workers] == assoc


@pytest.mark.parametrize("rnd", [1, 2, 3])
def test_role_shuffle_of_the_quick_config_is_pinned(rnd):
    roles = assign_roles(TWENTY, RoleCounts(12, 5, 3), 0, rnd)
    assert (roles.validators, roles.miners) == PINNED_QUICK[rnd]


def test_shuffle_ignores_input_order_and_is_a_permutation():
    a = seeded_shuffle(TEN, 3, "x", 1)
    assert a == seeded_shuffle(tuple(reversed(TEN)), 3, "x", 1)
    assert sorted(a) == list(TEN)
    assert a != seeded_shuffle(TEN, 3, "x", 2)
    with pytest.raises(CommitteeError, match="do not fit"):
        split_roles(TEN, (8, 5, 0), 0, "x")
    with pytest.raises(CommitteeError, match="at least one option"):
        seeded_choice((), 0, "x")


# ---------------------------------------------------------------- exact arithmetic


def test_fixed_point_log_is_within_its_error_bound():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.prec = 700
    rng = random.Random(5)
    samples = [1, 2, 3, (1 << 511) + 1, (1 << 512) - 1, 1 << 512, 1 << 256]
    samples += [rng.randrange(1, (1 << 512) + 1) for _ in range(150)]
    samples += [rng.randrange(1, 1 << rng.randrange(2, 64)) for _ in range(50)]
    for a in samples:
        exact = -mpmath.log(mpmath.mpf(a) / mpmath.mpf(2) ** OUTPUT_BITS) * mpmath.mpf(2) ** 256
        assert abs(mpmath.mpf(neg_log_fixed(a)) - exact) <= LOG_ERROR, a
    assert neg_log_fixed(1 << 512) == 0
    with pytest.raises(CommitteeError, match="1 <= a"):
        neg_log_fixed(0)


def _exact_order(a_i: int, w_i: int, a_j: int, w_j: int) -> int:
    """-1 if (a_i/2**512)**(1/w_i) > (a_j/2**512)**(1/w_j), by Fractions."""
    left = Fraction(a_i, 1 << OUTPUT_BITS) ** w_j
    right = Fraction(a_j, 1 << OUTPUT_BITS) ** w_i
    return (left < right) - (left > right)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 1 << OUTPUT_BITS),
    st.integers(1, 6),
    st.integers(1, 1 << OUTPUT_BITS),
    st.integers(1, 6),
)
def test_key_comparison_is_exact(a_i, w_i, a_j, w_j):
    got = es_before(a_i, w_i, neg_log_fixed(a_i), a_j, w_j, neg_log_fixed(a_j))
    assert got == _exact_order(a_i, w_i, a_j, w_j)


def test_u_equal_to_one_ties_whatever_the_weights():
    top = 1 << OUTPUT_BITS  # u = 1 (an all-ones VRF output): the key is 1 for any weight
    assert es_before(top, 1, neg_log_fixed(top), top, 2, neg_log_fixed(top)) == 0
    assert _exact_order(top, 1, top, 2) == 0


def test_near_ties_are_decided_exactly():
    # u_i = k / 2**256 with weight 1 and u_j = u_i**2 with weight 2: equal keys
    k = (1 << 255) + 12345
    a_i, a_j = k << 256, k * k
    x_i, x_j = neg_log_fixed(a_i), neg_log_fixed(a_j)
    assert es_before(a_i, 1, x_i, a_j, 2, x_j) == 0
    # one unit more on a_j (2**-512 relative): j's key is larger, far below the log's margin
    assert es_before(a_i, 1, x_i, a_j + 1, 2, neg_log_fixed(a_j + 1)) == 1
    assert es_before(a_i, 1, x_i, a_j - 1, 2, neg_log_fixed(a_j - 1)) == -1
    # equal keys go to the smaller id
    outputs = {
        "b": (a_i - 1).to_bytes(64, "big"),
        "a": (a_j - 1).to_bytes(64, "big"),
    }
    assert sample_committee(2, outputs, {"b": 1, "a": 2}).members == ("a", "b")


# ---------------------------------------------------------------- weighted sampling

WEIGHTS = {"m0": 1, "m1": 2, "m2": 3, "m3": 4, "m4": 10}


def test_single_draw_frequencies_are_proportional_to_weight():
    draws = 4000
    counts = dict.fromkeys(WEIGHTS, 0)
    for d in range(draws):
        outputs = {m: fake_output("es", d, m) for m in WEIGHTS}
        (winner,) = sample_committee(1, outputs, WEIGHTS).members
        counts[winner] += 1
    total = sum(WEIGHTS.values())
    observed = [counts[m] for m in WEIGHTS]
    expected = [draws * w / total for w in WEIGHTS.values()]
    assert stats.chisquare(observed, expected).pvalue > 0.01
    # the test has power: uniform frequencies are rejected outright
    assert stats.chisquare(observed, [draws / len(WEIGHTS)] * len(WEIGHTS)).pvalue < 1e-9


def _pair_probabilities(weights: dict[str, int]) -> dict[frozenset[str], float]:
    """Exact probabilities of each unordered pair of a weighted draw of two without
    replacement (successive sampling, which Efraimidis-Spirakis reproduces)."""
    total = sum(weights.values())
    probs: dict[frozenset[str], float] = {}
    for a, b in itertools.permutations(weights, 2):
        p = weights[a] / total * weights[b] / (total - weights[a])
        key = frozenset((a, b))
        probs[key] = probs.get(key, 0.0) + p
    return probs


def test_two_member_committees_follow_sampling_without_replacement():
    draws = 4000
    probs = _pair_probabilities(WEIGHTS)
    counts = dict.fromkeys(probs, 0)
    for d in range(draws):
        outputs = {m: fake_output("pair", d, m) for m in WEIGHTS}
        committee = sample_committee(2, outputs, WEIGHTS)
        assert committee.seats == (1, 1)
        counts[frozenset(committee.members)] += 1
    keys = sorted(probs, key=sorted)
    observed = [counts[k] for k in keys]
    expected = [draws * probs[k] for k in keys]
    assert stats.chisquare(observed, expected).pvalue > 0.01


def test_zero_weight_never_serves_and_bad_inputs_are_named():
    outputs = {m: fake_output("z", m) for m in ("a", "b", "c")}
    committee = sample_committee(3, outputs, {"a": 1, "b": 0, "c": 5})
    assert set(committee.members) == {"a", "c"}
    with pytest.raises(CommitteeError, match=r"'a'.*int >= 0.*2\.5"):
        sample_committee(1, outputs, {"a": 2.5})
    with pytest.raises(CommitteeError, match="size must be an int >= 1, got 0"):
        sample_committee(0, outputs, {"a": 1})
    with pytest.raises(CommitteeError, match="64 bytes"):
        sample_committee(1, {"a": b"short"}, {"a": 1})


# ---------------------------------------------------------------- VRF tickets

MEMBERS = tuple(f"n{i}" for i in range(7))
STAKE = {m: i + 1 for i, m in enumerate(MEMBERS)}


@pytest.fixture(scope="module")
def vrf():
    keys = {m: derive_vrf_key(11, m) for m in MEMBERS}
    alpha = committee_alpha(11, 3, "hub")
    tickets = [make_ticket(m, keys[m], alpha) for m in MEMBERS]
    return {m: k.public for m, k in keys.items()}, alpha, tickets


def test_every_node_draws_the_same_committee(vrf):
    public, alpha, tickets = vrf
    first = draw_committee(tickets, public, STAKE, alpha, size=3)
    assert len(first.members) == 3 and not first.refused
    rng = random.Random(0)
    for _ in range(5):  # other nodes see the tickets in another order
        seen = tickets[:]
        rng.shuffle(seen)
        weights = dict(sorted(STAKE.items(), key=lambda kv: rng.random()))
        assert draw_committee(seen, public, weights, alpha, size=3) == first
    # another epoch's alpha gives other outputs
    other = committee_alpha(11, 4, "hub")
    assert committee_alpha(11, 3, "hub") == alpha and other != alpha


def test_tampered_proofs_are_refused(vrf):
    public, alpha, tickets = vrf
    honest = draw_committee(tickets, public, STAKE, alpha, size=7)
    victim = honest.members[0]
    proof = next(t.proof for t in tickets if t.member == victim)
    flipped = proof[:40] + bytes([proof[40] ^ 1]) + proof[41:]
    bad = [Ticket(victim, flipped) if t.member == victim else t for t in tickets]
    drawn = draw_committee(bad, public, STAKE, alpha, size=7)
    assert victim not in drawn.members
    assert [m for m, _ in drawn.refused] == [victim]
    assert "bad proof" in drawn.refused[0][1]
    # a stolen proof (another member's) does not verify under the thief's key
    thief = honest.members[-1]
    stolen = [Ticket(thief, proof) if t.member == thief else t for t in tickets]
    assert [m for m, _ in draw_committee(stolen, public, STAKE, alpha, size=7).refused] == [thief]
    # a proof for another alpha, an unknown member, a second ticket
    wrong = make_ticket(victim, derive_vrf_key(11, victim), committee_alpha(11, 9, "hub"))
    extra = [Ticket("nobody", proof), tickets[0]]
    replaced = [wrong if t.member == victim else t for t in tickets] + extra
    refused = draw_committee(replaced, public, STAKE, alpha, size=2).refused
    assert {(m, r.split(":")[0]) for m, r in refused} == {
        (victim, "bad proof"),
        ("nobody", "unknown member"),
        (tickets[0].member, "duplicate ticket"),
    }


def test_draw_needs_exactly_one_mode(vrf):
    public, alpha, tickets = vrf
    with pytest.raises(CommitteeError, match="exactly one"):
        draw_committee(tickets, public, STAKE, alpha)
    with pytest.raises(CommitteeError, match="exactly one"):
        draw_committee(tickets, public, STAKE, alpha, size=2, expected=3)
    by_lot = draw_committee(tickets, public, STAKE, alpha, expected=4)
    assert by_lot.size == sum(by_lot.seats) and not by_lot.refused


# ---------------------------------------------------------------- binomial sortition


def test_binomial_seats_boundaries_are_exact():
    half = (1 << 511).to_bytes(64, "big")  # u = 1/2 exactly
    below = ((1 << 511) - 1).to_bytes(64, "big")
    # Binomial(1, 1/2): CDF(0) = 1/2, so u = 1/2 is one seat and anything below none
    assert binomial_seats(half, 1, 2, 1) == 1
    assert binomial_seats(below, 1, 2, 1) == 0
    # Binomial(2, 1/2): CDF = 1/4, 3/4, 1
    quarter = (1 << 510).to_bytes(64, "big")
    three_q = (3 << 510).to_bytes(64, "big")
    assert binomial_seats(((1 << 510) - 1).to_bytes(64, "big"), 2, 4, 2) == 0
    assert binomial_seats(quarter, 2, 4, 2) == 1
    assert binomial_seats(three_q, 2, 4, 2) == 2
    assert binomial_seats(b"\xff" * 64, 3, 3, 3) == 3  # p = 1: every unit sits
    assert binomial_seats(b"\x00" * 64, 0, 3, 1) == 0
    with pytest.raises(CommitteeError, match="expected <= total"):
        binomial_seats(half, 1, 2, 5)


def test_binomial_seats_follow_the_binomial_distribution():
    weight, total, expected = 20, 100, 10  # Binomial(20, 0.1)
    draws = 3000
    seats = [binomial_seats(fake_output("seat", d), weight, total, expected)
             for d in range(draws)]
    assert abs(sum(seats) / draws - weight * expected / total) < 0.1
    top = 5  # pool j >= 5 into one bin
    observed = [sum(1 for s in seats if s == j) for j in range(top)]
    observed.append(sum(1 for s in seats if s >= top))
    pmf = [stats.binom.pmf(j, weight, expected / total) for j in range(top)]
    pmf.append(1 - sum(pmf))
    assert stats.chisquare(observed, [draws * p for p in pmf]).pvalue > 0.01


def test_sortition_seats_total_the_expected_committee_size():
    weights = {f"m{i}": w for i, w in enumerate((1, 5, 10, 20, 40, 24))}
    expected = 20  # of total weight 100
    sizes = []
    per_member = dict.fromkeys(weights, 0)
    draws = 600
    for d in range(draws):
        outputs = {m: fake_output("sort", d, m) for m in weights}
        committee = sortition(expected, outputs, weights)
        assert list(committee.seats) == sorted(committee.seats, reverse=True)
        sizes.append(committee.size)
        for m in committee.members:
            per_member[m] += committee.seats_of(m)
    assert abs(sum(sizes) / draws - expected) < 0.5  # sd of the mean about 0.16
    for m, w in weights.items():  # Binomial(w, 0.2) seats: mean 0.2 w, variance 0.16 w
        tolerance = 5 * (0.16 * w / draws) ** 0.5
        assert abs(per_member[m] / draws - 0.2 * w) < tolerance, m
