"""Shamir secret sharing: over a prime field, and over Z_M for Shoup-style threshold keys.

Prime field (:func:`split` / :func:`reconstruct`): the dealer draws a random polynomial
``f`` of degree ``t - 1`` over GF(p) with ``f(0) = secret`` and gives party ``x`` the
share ``(x, f(x))``, ``x = 1..m``. Any ``t`` shares give ``f(0)`` by Lagrange
interpolation at 0; any ``t - 1`` are uniformly distributed whatever the secret, so they
reveal nothing about it (tests/test_shamir.py checks both exhaustively on small fields).

Over the integers (:func:`split_mod`, :func:`scaled_lagrange_at_zero`,
:func:`reconstruct_scaled`): for threshold RSA / Paillier (Shoup, EUROCRYPT 2000;
Damgard-Jurik, PKC 2001) the polynomial lives in Z_M with ``M = n * m'`` secret, so the
share holders cannot invert ``x_j - x_i`` modulo M. They use the integer coefficients
``Delta * lambda_i`` with ``Delta = m!`` (every Lagrange denominator divides it), which
give ``Delta * f(0)`` instead of ``f(0)``; the scheme removes the known factor ``Delta``
later (in the exponent, for Paillier).

Randomness comes from a ``randbelow(bound) -> int`` callable: ``secrets.randbelow`` by
default, a seeded generator in the simulator.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from fedledger.errors import FedledgerError

RandBelow = Callable[[int], int]


class ShamirError(FedledgerError, ValueError):
    """Bad sharing parameters or a bad set of shares."""


@dataclass(frozen=True)
class Share:
    """Party ``x``'s share ``y = f(x)`` of a secret."""

    x: int
    y: int


def check_threshold(t: int, m: int) -> None:
    """Refuse thresholds outside ``1 <= t <= m``."""
    if m < 1:
        raise ShamirError(f"number of shares m={m}; allowed: m >= 1")
    if not 1 <= t <= m:
        raise ShamirError(f"threshold t={t} with m={m} shares; allowed: 1 <= t <= m")


def check_xs(xs: Sequence[int], modulus: int | None = None) -> None:
    """Refuse zero, negative or duplicate share indices (and indices >= ``modulus``)."""
    seen: set[int] = set()
    for x in xs:
        if x <= 0 or (modulus is not None and x >= modulus):
            upper = f" and < {modulus}" if modulus is not None else ""
            raise ShamirError(f"share index x={x}; allowed: integers >= 1{upper}")
        if x in seen:
            raise ShamirError(f"duplicate share index x={x}; each index may appear once")
        seen.add(x)


def _eval_poly(coeffs: Sequence[int], x: int, modulus: int) -> int:
    acc = 0
    for c in reversed(coeffs):
        acc = (acc * x + c) % modulus
    return acc


def _random_poly(secret: int, t: int, modulus: int, randbelow: RandBelow) -> list[int]:
    return [secret] + [randbelow(modulus) for _ in range(t - 1)]


def split(
    secret: int, t: int, m: int, prime: int, randbelow: RandBelow = secrets.randbelow
) -> tuple[Share, ...]:
    """Share ``secret`` (in ``[0, prime)``) among parties ``1..m``; any ``t`` reconstruct."""
    check_threshold(t, m)
    if prime < 2:
        raise ShamirError(f"field modulus {prime}; allowed: a prime >= 2")
    if m >= prime:
        raise ShamirError(f"m={m} shares need m < prime, got prime={prime}")
    if not 0 <= secret < prime:
        raise ShamirError(f"secret {secret} outside the field; allowed: 0 <= secret < {prime}")
    coeffs = _random_poly(secret, t, prime, randbelow)
    return tuple(Share(x, _eval_poly(coeffs, x, prime)) for x in range(1, m + 1))


def lagrange_at_zero(xs: Sequence[int], prime: int) -> list[int]:
    """Coefficients ``lambda_i`` mod ``prime`` with ``f(0) = sum lambda_i f(x_i)``."""
    check_xs(xs, prime)
    out = []
    for i, xi in enumerate(xs):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if j != i:
                num = num * xj % prime
                den = den * (xj - xi) % prime
        out.append(num * pow(den, -1, prime) % prime)
    return out


def _interpolate_at(shares: Sequence[Share], x: int, prime: int) -> int:
    acc = 0
    for i, si in enumerate(shares):
        num, den = 1, 1
        for j, sj in enumerate(shares):
            if j != i:
                num = num * (x - sj.x) % prime
                den = den * (si.x - sj.x) % prime
        acc = (acc + si.y * num * pow(den, -1, prime)) % prime
    return acc


def reconstruct(shares: Iterable[Share], t: int, prime: int) -> int:
    """The secret from at least ``t`` shares (Lagrange at 0 over GF(prime)).

    With more than ``t`` shares, the extra ones must lie on the polynomial through the
    first ``t``; a share that does not is an error naming its index.
    """
    shares = list(shares)
    if t < 1:
        raise ShamirError(f"threshold t={t}; allowed: t >= 1")
    check_xs([s.x for s in shares], prime)
    if len(shares) < t:
        raise ShamirError(f"{len(shares)} shares given; threshold t={t} needs at least {t}")
    for s in shares:
        if not 0 <= s.y < prime:
            raise ShamirError(f"share x={s.x} has y={s.y}; allowed: 0 <= y < {prime}")
    base = shares[:t]
    bad = [s.x for s in shares[t:] if _interpolate_at(base, s.x, prime) != s.y]
    if bad:
        raise ShamirError(
            f"shares {bad} are inconsistent with shares {[s.x for s in base]} "
            f"(not on one polynomial of degree < {t})"
        )
    lam = lagrange_at_zero([s.x for s in base], prime)
    return sum(li * s.y for li, s in zip(lam, base, strict=True)) % prime


# -- over the integers (Shoup): shares in Z_M, reconstruction scaled by Delta = m! --------


def delta_of(m: int) -> int:
    """``Delta = m!``, the factor that makes every Lagrange coefficient an integer."""
    if m < 1:
        raise ShamirError(f"number of shares m={m}; allowed: m >= 1")
    return math.factorial(m)


def split_mod(
    secret: int, t: int, m: int, modulus: int, randbelow: RandBelow = secrets.randbelow
) -> tuple[Share, ...]:
    """Share ``secret`` with a random polynomial over Z_modulus (``modulus`` may be composite).

    Reconstruct with :func:`reconstruct_scaled` (no inverses modulo ``modulus`` needed).
    For the shares of ``t - 1`` parties to hide the secret, every prime factor of
    ``modulus`` must exceed ``m`` (true for Paillier's ``n * p'q'``).
    """
    check_threshold(t, m)
    if modulus <= m:
        raise ShamirError(f"modulus {modulus} with m={m} shares; allowed: modulus > m")
    if not 0 <= secret < modulus:
        raise ShamirError(f"secret outside Z_{modulus}; allowed: 0 <= secret < modulus")
    coeffs = _random_poly(secret, t, modulus, randbelow)
    return tuple(Share(x, _eval_poly(coeffs, x, modulus)) for x in range(1, m + 1))


def scaled_lagrange_at_zero(xs: Sequence[int], delta: int) -> list[int]:
    """Integers ``Delta * lambda_i`` with ``Delta f(0) = sum Delta lambda_i f(x_i)``.

    ``delta`` must be a multiple of every denominator (``delta_of(m)`` is, for indices
    in ``1..m``); otherwise the error names the index whose coefficient is not integral.
    """
    check_xs(xs)
    out = []
    for i, xi in enumerate(xs):
        frac = Fraction(delta)
        for j, xj in enumerate(xs):
            if j != i:
                frac *= Fraction(xj, xj - xi)
        if frac.denominator != 1:
            raise ShamirError(
                f"Delta={delta} * lambda for index {xi} over {list(xs)} is {frac}, not an "
                f"integer; use Delta = m! with indices in 1..m"
            )
        out.append(frac.numerator)
    return out


def reconstruct_scaled(shares: Iterable[Share], t: int, modulus: int, delta: int) -> int:
    """``Delta * secret mod modulus`` from at least ``t`` shares of :func:`split_mod`.

    Only the first ``t`` shares are used (the holders of a Shoup key cannot check the
    others without ``modulus``'s factors; the threshold scheme checks them by proofs).
    """
    shares = list(shares)
    check_xs([s.x for s in shares])
    if t < 1:
        raise ShamirError(f"threshold t={t}; allowed: t >= 1")
    if len(shares) < t:
        raise ShamirError(f"{len(shares)} shares given; threshold t={t} needs at least {t}")
    base = shares[:t]
    lam = scaled_lagrange_at_zero([s.x for s in base], delta)
    return sum(li * s.y for li, s in zip(lam, base, strict=True)) % modulus
