"""Shamir secret sharing: exhaustive small fields, an independent solver, integer sharing."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from collections.abc import Iterator

import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.crypto.shamir import (
    ShamirError,
    Share,
    delta_of,
    lagrange_at_zero,
    reconstruct,
    reconstruct_scaled,
    scaled_lagrange_at_zero,
    split,
    split_mod,
)

P127 = 2**127 - 1  # Mersenne prime
P255 = 2**255 - 19


def _coeffs(values: list[int]) -> Iterator[int]:
    return iter(values)


def _fixed(values: tuple[int, ...]):  # randbelow that returns the given coefficients
    it = _coeffs(list(values))
    return lambda bound: next(it)


@pytest.mark.parametrize(("t", "m"), [(1, 1), (1, 3), (2, 3), (3, 3), (2, 4), (3, 5), (5, 5)])
def test_every_t_subset_reconstructs_every_secret_gf7(t: int, m: int) -> None:
    prime = 7 if m < 7 else 11
    rng = random.Random(t * 10 + m)
    for secret in range(prime):
        shares = split(secret, t, m, prime, lambda b: rng.randrange(b))
        assert [s.x for s in shares] == list(range(1, m + 1))
        for k in range(t, m + 1):
            for subset in itertools.combinations(shares, k):
                assert reconstruct(subset, t, prime) == secret


@pytest.mark.parametrize(("t", "m"), [(2, 3), (3, 4), (3, 5)])
def test_t_minus_one_shares_are_identically_distributed_for_every_secret(t: int, m: int) -> None:
    """Exhaustive over all polynomials of GF(7): any t-1 shares reveal nothing."""
    prime = 7
    polys = list(itertools.product(range(prime), repeat=t - 1))
    for subset in itertools.combinations(range(m), t - 1):
        dists = []
        for secret in range(prime):
            counts: Counter[tuple[int, ...]] = Counter()
            for coeffs in polys:
                shares = split(secret, t, m, prime, _fixed(coeffs))
                counts[tuple(shares[i].y for i in subset)] += 1
            dists.append(counts)
        # uniform over all prime**(t-1) tuples, the same for every secret
        assert all(d == dists[0] for d in dists)
        assert len(dists[0]) == prime ** (t - 1)
        assert set(dists[0].values()) == {1}


def test_t_shares_determine_the_secret_but_t_minus_one_are_consistent_with_all() -> None:
    prime, t, m = 11, 3, 5
    shares = split(4, t, m, prime, _fixed((3, 9)))
    partial = shares[:2]
    # each candidate secret fits exactly one polynomial through the two shares
    for cand in range(prime):
        fitting = [
            c for c in itertools.product(range(prime), repeat=2)
            if tuple(s.y for s in split(cand, t, m, prime, _fixed(c))[:2])
            == tuple(s.y for s in partial)
        ]  # fmt: skip
        assert len(fitting) == 1


def _vandermonde_secret(shares: list[Share], prime: int) -> int:
    """Independent check: solve for all coefficients with sympy over GF(prime)."""
    k = len(shares)
    mat = sympy.Matrix([[pow(s.x, j, prime) for j in range(k)] for s in shares])
    vec = sympy.Matrix([s.y for s in shares])
    coeffs = (mat.inv_mod(prime) * vec).applyfunc(lambda v: v % prime)
    return int(coeffs[0])


@settings(max_examples=30, deadline=None)
@given(
    secret=st.integers(0, P127 - 1),
    t=st.integers(1, 6),
    extra=st.integers(0, 3),
    seed=st.integers(0, 2**32),
)
def test_reconstruction_matches_an_independent_solver(
    secret: int, t: int, extra: int, seed: int
) -> None:
    m = t + extra
    rng = random.Random(seed)
    shares = list(split(secret, t, m, P127, lambda b: rng.randrange(b)))
    rng.shuffle(shares)
    subset = shares[:t]
    assert _vandermonde_secret(subset, P127) == secret
    assert reconstruct(subset, t, P127) == secret
    assert reconstruct(shares, t, P127) == secret  # extra shares are checked, then agree


@settings(max_examples=50, deadline=None)
@given(secret=st.integers(0, P255 - 1), t=st.integers(1, 8), extra=st.integers(0, 4))
def test_lagrange_coefficients_sum_to_one(secret: int, t: int, extra: int) -> None:
    xs = list(range(1, t + extra + 1))[-t:]
    # f = constant polynomial: sum lambda_i * secret = secret
    lam = lagrange_at_zero(xs, P255)
    assert sum(lam) % P255 == 1
    assert sum(li * secret for li in lam) % P255 == secret


def test_parameter_errors_name_the_value() -> None:
    with pytest.raises(ShamirError, match=r"t=4 with m=3"):
        split(1, 4, 3, 7)
    with pytest.raises(ShamirError, match=r"t=0"):
        split(1, 0, 3, 7)
    with pytest.raises(ShamirError, match=r"m=7 shares need m < prime"):
        split(1, 2, 7, 7)
    with pytest.raises(ShamirError, match=r"secret 7 outside"):
        split(7, 2, 3, 7)
    with pytest.raises(ShamirError, match=r"m=0"):
        split(1, 1, 0, 7)


def test_share_set_errors() -> None:
    shares = split(5, 3, 5, 11, random.Random(1).randrange)
    with pytest.raises(ShamirError, match=r"2 shares given; threshold t=3 needs at least 3"):
        reconstruct(shares[:2], 3, 11)
    with pytest.raises(ShamirError, match=r"duplicate share index x=1"):
        reconstruct([shares[0], shares[0], shares[1]], 3, 11)
    with pytest.raises(ShamirError, match=r"share index x=0"):
        reconstruct([Share(0, 5), *shares[:2]], 3, 11)
    with pytest.raises(ShamirError, match=r"share index x=-1"):
        lagrange_at_zero([-1, 2], 11)
    with pytest.raises(ShamirError, match=r"y=11"):
        reconstruct([Share(1, 11), *shares[1:3]], 3, 11)
    tampered = [*shares[:3], Share(shares[3].x, (shares[3].y + 1) % 11), shares[4]]
    with pytest.raises(ShamirError, match=r"shares \[4\] are inconsistent"):
        reconstruct(tampered, 3, 11)


# -- integer (Shoup) sharing ---------------------------------------------------------------


def test_delta_is_m_factorial() -> None:
    assert [delta_of(m) for m in range(1, 6)] == [1, 2, 6, 24, 120]
    with pytest.raises(ShamirError):
        delta_of(0)


@pytest.mark.parametrize("m", [1, 2, 3, 5, 7])
def test_scaled_lagrange_is_integral_for_every_subset(m: int) -> None:
    delta = math.factorial(m)
    for t in range(1, m + 1):
        for xs in itertools.combinations(range(1, m + 1), t):
            mus = scaled_lagrange_at_zero(list(xs), delta)
            assert all(isinstance(mu, int) for mu in mus)
            assert sum(mus) == delta  # the constant polynomial 1


def test_scaled_lagrange_refuses_a_delta_that_is_too_small() -> None:
    with pytest.raises(ShamirError, match=r"not an integer"):
        scaled_lagrange_at_zero([1, 3], 1)


@pytest.mark.parametrize(("t", "m"), [(1, 3), (2, 3), (3, 5), (4, 5)])
def test_integer_sharing_every_subset_gives_delta_times_secret(t: int, m: int) -> None:
    modulus = 13 * 17 * 19 * 23  # composite, every factor > m
    delta = delta_of(m)
    rng = random.Random(7 * t + m)
    for secret in (0, 1, 2, modulus // 3, modulus - 1):
        shares = split_mod(secret, t, m, modulus, rng.randrange)
        for subset in itertools.combinations(shares, t):
            assert reconstruct_scaled(subset, t, modulus, delta) == delta * secret % modulus


def test_integer_sharing_hides_the_secret_exhaustively() -> None:
    modulus, t, m = 7 * 11, 3, 4
    polys = list(itertools.product(range(modulus), repeat=t - 1))
    dists = []
    for secret in (0, 1, 40):
        counts: Counter[tuple[int, int]] = Counter()
        for coeffs in polys:
            shares = split_mod(secret, t, m, modulus, _fixed(coeffs))
            counts[(shares[1].y, shares[3].y)] += 1
        dists.append(counts)
    assert dists[0] == dists[1] == dists[2]
    assert set(dists[0].values()) == {1}


def test_integer_sharing_errors() -> None:
    with pytest.raises(ShamirError, match=r"modulus 3 with m=3"):
        split_mod(1, 2, 3, 3)
    with pytest.raises(ShamirError, match=r"t=4 with m=3"):
        split_mod(1, 4, 3, 1001)
    shares = split_mod(5, 3, 4, 1001)
    with pytest.raises(ShamirError, match=r"2 shares given"):
        reconstruct_scaled(shares[:2], 3, 1001, 24)
    with pytest.raises(ShamirError, match=r"duplicate"):
        reconstruct_scaled([shares[0], shares[0], shares[1]], 3, 1001, 24)
