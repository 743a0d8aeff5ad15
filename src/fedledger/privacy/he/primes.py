"""Prime and safe-prime search from a random source (seeded in the simulator).

A safe prime ``p = 2p' + 1`` (``p'`` prime) is what threshold Paillier's dealer needs:
the group of squares mod ``n**2`` then has order ``n p' q'`` with no small factors.
Candidates are sieved by small primes (both ``p'`` and ``2p' + 1``) before gmpy2's
Miller-Rabin test, which is what makes a pure-Python search take seconds, not minutes.
"""

from __future__ import annotations

import gmpy2

from fedledger.privacy.he.errors import HeError
from fedledger.privacy.he.rand import RandomSource

MR_ROUNDS = 40


def _small_primes(limit: int) -> list[int]:
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\x00\x00"
    for i in range(2, int(limit**0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytearray(len(sieve[i * i :: i]))
    return [i for i in range(3, limit) if sieve[i]]


SMALL_PRIMES = _small_primes(2000)


def random_prime(bits: int, rng: RandomSource) -> int:
    """A uniform-ish prime of exactly ``bits`` bits (top two bits set)."""
    if bits < 8:
        raise HeError(f"prime size {bits} bits; allowed: >= 8")
    while True:
        cand = rng.randbits(bits) | (3 << (bits - 2)) | 1
        if all(cand % sp for sp in SMALL_PRIMES if sp < cand) and gmpy2.is_prime(
            cand, MR_ROUNDS
        ):
            return cand


def is_safe_prime(p: int) -> bool:
    """Whether ``p`` and ``(p - 1) / 2`` are both (probable) primes."""
    return p > 5 and p % 2 == 1 and bool(gmpy2.is_prime(p, MR_ROUNDS)) and bool(
        gmpy2.is_prime((p - 1) // 2, MR_ROUNDS)
    )


def safe_prime(bits: int, rng: RandomSource) -> int:
    """A safe prime ``p = 2p' + 1`` of exactly ``bits`` bits."""
    if bits < 16:
        raise HeError(f"safe prime size {bits} bits; allowed: >= 16")
    while True:
        # p' of bits-1 bits with its top two bits set, p' = 3 (mod 4) avoids p = 1 (mod 3)
        # trivially; then walk p' += 2 while sieving both p' and 2p'+1
        start = rng.randbits(bits - 1) | (3 << (bits - 3)) | 1
        residues = [start % sp for sp in SMALL_PRIMES]
        for step in range(0, 20000, 2):
            ok = True
            for sp, r in zip(SMALL_PRIMES, residues, strict=True):
                rp = (r + step) % sp
                if rp == 0 or (2 * rp + 1) % sp == 0:
                    ok = False
                    break
            if not ok:
                continue
            q = start + step
            if q.bit_length() != bits - 1:
                break
            if not gmpy2.is_prime(q, 2):
                continue
            p = 2 * q + 1
            if gmpy2.is_prime(p, MR_ROUNDS) and gmpy2.is_prime(q, MR_ROUNDS):
                return p
