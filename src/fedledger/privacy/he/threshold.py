"""Threshold Paillier: t of m key holders decrypt, with proofs of correct partials.

The scheme is Damgard-Jurik's threshold variant with s = 1 (PKC 2001, section 4; it
follows Shoup's threshold RSA, EUROCRYPT 2000), with a trusted dealer at genesis:

- Keys: safe primes ``p = 2p' + 1``, ``q = 2q' + 1``; ``n = pq``; ``m' = p'q'``. The
  secret exponent ``d`` satisfies ``d = 0 (mod m')`` and ``d = 1 (mod n)``, and is
  Shamir-shared over Z_{n m'} (:func:`fedledger.crypto.shamir.split_mod`): holder ``i``
  gets ``s_i = f(i)``. Public: ``n``, a random square ``v`` mod ``n**2`` and the
  verification keys ``v_i = v**(Delta s_i)``, ``Delta = m!``. Encryption is ordinary
  Paillier with ``g = n + 1`` (any :class:`~fedledger.privacy.he.paillier.Encryptor`).
- Partial decryption by holder ``i``: ``c_i = c**(2 Delta s_i) mod n**2``.
- Combination over any set S of t holders: ``c' = prod c_i**(2 mu_i)`` with the integer
  ``mu_i = Delta * lambda_{0,i}^S``; then ``c' = (1 + n)**(4 Delta**2 M)`` and the
  plaintext is ``M = L(c') * (4 Delta**2)**-1 mod n``. Fewer than t shares of ``d`` are
  uniformly distributed whatever ``d`` is, so t - 1 holders learn nothing.
- Proof of correctness (Chaum-Pedersen equality of discrete logs, Fiat-Shamir with
  SHA-256): ``log_{u}(u_i) = log_v(v_i)`` with ``u = C**4``, ``u_i = C_i**2``, where for a
  vector of ciphertexts ``C = prod c_j**rho_j`` and ``C_i = prod c_{i,j}**rho_j`` with
  128-bit ``rho_j`` hashed from the whole statement (a random linear combination, so one
  proof covers the whole vector; squaring puts every element in the group of squares,
  whose order ``n p' q'`` has no small factor, so a wrong ``c_{i,j}`` survives with
  probability about 2**-128). A holder whose proof fails is named by
  :class:`~fedledger.privacy.he.errors.InvalidPartialError`.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import gmpy2
import numpy as np
from gmpy2 import mpz
from phe import PaillierPublicKey

from fedledger.crypto.shamir import delta_of, scaled_lagrange_at_zero, split_mod
from fedledger.privacy.he.encoding import decode_sum
from fedledger.privacy.he.errors import HeError, InvalidPartialError
from fedledger.privacy.he.paillier import CipherVector
from fedledger.privacy.he.primes import is_safe_prime, safe_prime
from fedledger.privacy.he.rand import OsRandom, RandomSource

HASH_BITS = 256
RHO_BITS = 128
_DOMAIN = b"fedledger/threshold-paillier/v1/"
_PD_MAGIC = b"FLPD\x01"


@dataclass(frozen=True)
class ThresholdPublicKey:
    """Public part of a (t, m) threshold Paillier key."""

    n: int
    t: int
    m: int
    v: int
    verification_keys: tuple[int, ...]  # v_i for holders i = 1..m

    @property
    def delta(self) -> int:
        return delta_of(self.m)

    @property
    def n2(self) -> int:
        return self.n * self.n

    def phe(self) -> PaillierPublicKey:
        """The same key as phe's ordinary Paillier public key (for encryption)."""
        return PaillierPublicKey(self.n)

    def verification_key(self, index: int) -> int:
        if not 1 <= index <= self.m:
            raise HeError(f"key holder index {index}; allowed: 1..{self.m}")
        return self.verification_keys[index - 1]


@dataclass(frozen=True)
class KeyShare:
    """Holder ``index``'s share ``s_i`` of the decryption exponent (secret)."""

    index: int
    secret: int

    def __repr__(self) -> str:  # never print a secret share
        return f"KeyShare(index={self.index}, secret=<hidden>)"


@dataclass(frozen=True)
class DecryptionProof:
    """Fiat-Shamir Chaum-Pedersen proof: challenge ``e`` and response ``z``."""

    e: int
    z: int


@dataclass(frozen=True)
class PartialDecryption:
    """Holder ``index``'s partial decryptions ``c_j**(2 Delta s_i)`` of a ciphertext list."""

    index: int
    values: tuple[mpz, ...]
    proof: DecryptionProof

    def to_bytes(self, n: int) -> bytes:
        """Canonical bytes: magic, index, count, values (fixed width for ``n``), e, z."""
        width = 2 * ((int(n).bit_length() + 7) // 8)
        z = int(self.proof.z)
        zbytes = z.to_bytes((z.bit_length() + 7) // 8, "big")
        parts = [
            _PD_MAGIC,
            struct.pack(">IIH", self.index, len(self.values), width),
            *(int(v).to_bytes(width, "big") for v in self.values),
            int(self.proof.e).to_bytes(HASH_BITS // 8, "big"),
            struct.pack(">I", len(zbytes)),
            zbytes,
        ]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes, n: int) -> PartialDecryption:
        """Parse :meth:`to_bytes` for modulus ``n``; anything else is a :class:`HeError`."""
        data = bytes(data)
        head = len(_PD_MAGIC) + 10
        if not data.startswith(_PD_MAGIC) or len(data) < head:
            raise HeError(f"not a partial decryption: expected magic {_PD_MAGIC!r}")
        index, count, width = struct.unpack_from(">IIH", data, len(_PD_MAGIC))
        if width != 2 * ((int(n).bit_length() + 7) // 8):
            raise HeError(f"partial decryption values of {width} bytes do not fit this key")
        pos = head + count * width
        if len(data) < pos + HASH_BITS // 8 + 4:
            raise HeError("partial decryption truncated")
        values = tuple(
            mpz(int.from_bytes(data[head + i * width : head + (i + 1) * width], "big"))
            for i in range(count)
        )
        e = int.from_bytes(data[pos : pos + HASH_BITS // 8], "big")
        pos += HASH_BITS // 8
        (zlen,) = struct.unpack_from(">I", data, pos)
        z = int.from_bytes(data[pos + 4 : pos + 4 + zlen], "big")
        part = cls(index, values, DecryptionProof(e, z))
        if part.to_bytes(n) != data:
            raise HeError("partial decryption bytes are truncated, padded or not canonical")
        return part


def deal(
    key_bits: int, t: int, m: int, rng: RandomSource | None = None
) -> tuple[ThresholdPublicKey, tuple[KeyShare, ...]]:
    """Trusted dealer: fresh safe primes of ``key_bits / 2`` bits, then :func:`deal_from_primes`."""
    if key_bits < 32 or key_bits % 2:
        raise HeError(f"key_bits={key_bits}; allowed: an even number >= 32")
    rng = rng or OsRandom()
    while True:
        p = safe_prime(key_bits // 2, rng)
        q = safe_prime(key_bits // 2, rng)
        if p != q and (p * q).bit_length() == key_bits:
            return deal_from_primes(p, q, t, m, rng)


def deal_from_primes(
    p: int, q: int, t: int, m: int, rng: RandomSource | None = None
) -> tuple[ThresholdPublicKey, tuple[KeyShare, ...]]:
    """Split the key of safe primes ``p``, ``q`` among holders ``1..m``, threshold ``t``."""
    rng = rng or OsRandom()
    if p == q or not (is_safe_prime(p) and is_safe_prime(q)):
        raise HeError("p and q must be two distinct safe primes (p = 2p' + 1, p' prime)")
    n = p * q
    pp, qq = (p - 1) // 2, (q - 1) // 2
    if m >= min(pp, qq):
        raise HeError(f"m={m} key holders need m < min(p', q') = {min(pp, qq)}")
    if gmpy2.gcd(n, 4 * pp * qq) != 1:
        raise HeError("gcd(n, phi(n)) != 1 for these primes; choose others")
    mm = pp * qq
    d = mm * pow(mm, -1, n)  # d = 0 mod m', d = 1 mod n
    shares = split_mod(d, t, m, n * mm, rng.randbelow)
    n2 = mpz(n) ** 2
    while True:
        x = rng.randbelow(n * n)
        if gmpy2.gcd(x, n) == 1:
            break
    v = gmpy2.powmod(x, 2, n2)
    delta = delta_of(m)
    vks = tuple(int(gmpy2.powmod(v, delta * s.y, n2)) for s in shares)
    public = ThresholdPublicKey(n, t, m, int(v), vks)
    return public, tuple(KeyShare(s.x, s.y) for s in shares)


def _int_bytes(value: int, width: int) -> bytes:
    return int(value).to_bytes(width, "big")


def _batch(
    pub: ThresholdPublicKey, index: int, cts: Sequence[int], vals: Sequence[int]
) -> tuple[mpz, mpz]:
    """``(u, u_i) = (C**4, C_i**2)`` for the hashed random linear combination."""
    width = (pub.n2.bit_length() + 7) // 8
    h = hashlib.sha256(_DOMAIN + b"rho" + _int_bytes(pub.n, width) + index.to_bytes(4, "big"))
    for c in cts:
        h.update(_int_bytes(c, width))
    for c in vals:
        h.update(_int_bytes(c, width))
    stream = hashlib.shake_256(h.digest()).digest(len(cts) * RHO_BITS // 8)
    n2 = mpz(pub.n2)
    big, small = mpz(1), mpz(1)
    step = RHO_BITS // 8
    for j, (c, ci) in enumerate(zip(cts, vals, strict=True)):
        rho = int.from_bytes(stream[j * step : (j + 1) * step], "big") | 1
        big = big * gmpy2.powmod(c, rho, n2) % n2
        small = small * gmpy2.powmod(ci, rho, n2) % n2
    return gmpy2.powmod(big, 4, n2), gmpy2.powmod(small, 2, n2)


def _challenge(pub: ThresholdPublicKey, index: int, *elems: int) -> int:
    width = (pub.n2.bit_length() + 7) // 8
    h = hashlib.sha256(_DOMAIN + b"challenge" + _int_bytes(pub.n, width))
    h.update(index.to_bytes(4, "big"))
    for e in (pub.v, pub.verification_key(index), *elems):
        h.update(_int_bytes(e, width))
    return int.from_bytes(h.digest(), "big")


def _check_ciphertexts(pub: ThresholdPublicKey, cts: Sequence[int]) -> None:
    if not cts:
        raise HeError("no ciphertexts to decrypt")
    n2 = pub.n2
    for j, c in enumerate(cts):
        if not 0 < c < n2 or gmpy2.gcd(c, pub.n) != 1:
            raise HeError(f"ciphertext {j} is not a unit mod n**2")


def partial_decrypt(
    pub: ThresholdPublicKey,
    share: KeyShare,
    ciphertexts: Sequence[int],
    rng: RandomSource | None = None,
) -> PartialDecryption:
    """Holder ``share.index``'s partial decryption of ``ciphertexts``, with its proof."""
    rng = rng or OsRandom()
    pub.verification_key(share.index)  # checks the index
    _check_ciphertexts(pub, ciphertexts)
    n2 = mpz(pub.n2)
    x = pub.delta * share.secret
    exp = 2 * x
    vals = tuple(gmpy2.powmod(c, exp, n2) for c in ciphertexts)
    u, ui = _batch(pub, share.index, ciphertexts, vals)
    r = rng.randbits(n2.bit_length() + pub.delta.bit_length() + 2 * HASH_BITS)
    a = gmpy2.powmod(u, r, n2)
    b = gmpy2.powmod(pub.v, r, n2)
    e = _challenge(pub, share.index, u, ui, a, b)
    return PartialDecryption(share.index, vals, DecryptionProof(e, r + e * x))


def verify_partial(
    pub: ThresholdPublicKey, ciphertexts: Sequence[int], partial: PartialDecryption
) -> bool:
    """Whether ``partial`` is holder ``partial.index``'s correct decryption share."""
    if not 1 <= partial.index <= pub.m or len(partial.values) != len(ciphertexts):
        return False
    n2 = mpz(pub.n2)
    if any(not 0 < c < n2 or gmpy2.gcd(c, pub.n) != 1 for c in partial.values):
        return False
    e, z = partial.proof.e, partial.proof.z
    if not (0 <= e < 1 << HASH_BITS and z >= 0):
        return False
    u, ui = _batch(pub, partial.index, ciphertexts, partial.values)
    vi = mpz(pub.verification_key(partial.index))
    a = gmpy2.powmod(u, z, n2) * gmpy2.powmod(ui, -e, n2) % n2
    b = gmpy2.powmod(pub.v, z, n2) * gmpy2.powmod(vi, -e, n2) % n2
    return _challenge(pub, partial.index, u, ui, a, b) == e


def combine(
    pub: ThresholdPublicKey,
    ciphertexts: Sequence[int],
    partials: Sequence[PartialDecryption],
    verify: bool = True,
) -> list[int]:
    """The plaintexts of ``ciphertexts`` from at least ``t`` partial decryptions.

    Every partial is checked (unless ``verify=False``); any that fails is an
    :class:`InvalidPartialError` naming its holder, so the caller can drop it and retry
    with others. The first ``t`` partials by holder index are combined.
    """
    _check_ciphertexts(pub, ciphertexts)
    indices = [p.index for p in partials]
    if len(set(indices)) != len(indices):
        raise HeError(f"duplicate key holder indices in {sorted(indices)}; one partial each")
    bad = [i for i in indices if not 1 <= i <= pub.m]
    if bad:
        raise InvalidPartialError(bad, f"unknown key holder index; allowed: 1..{pub.m}")
    if len(partials) < pub.t:
        raise HeError(
            f"{len(partials)} partial decryptions from holders {sorted(indices)}; "
            f"threshold t={pub.t} needs at least {pub.t}"
        )
    if verify:
        bad = [p.index for p in partials if not verify_partial(pub, ciphertexts, p)]
        if bad:
            raise InvalidPartialError(sorted(bad), "proof of correct decryption failed")
    chosen = sorted(partials, key=lambda p: p.index)[: pub.t]
    for p in chosen:
        if len(p.values) != len(ciphertexts):
            raise InvalidPartialError(
                [p.index], f"{len(p.values)} values for {len(ciphertexts)} ciphertexts"
            )
    mus = scaled_lagrange_at_zero([p.index for p in chosen], pub.delta)
    n, n2 = mpz(pub.n), mpz(pub.n2)
    inv = pow(4 * pub.delta**2, -1, pub.n)
    out = []
    for j in range(len(ciphertexts)):
        acc = mpz(1)
        for p, mu in zip(chosen, mus, strict=True):
            acc = acc * gmpy2.powmod(p.values[j], 2 * mu, n2) % n2
        out.append(int((acc - 1) // n * inv % n))
    return out


def partial_decrypt_vector(
    pub: ThresholdPublicKey, share: KeyShare, vec: CipherVector, rng: RandomSource | None = None
) -> PartialDecryption:
    """:func:`partial_decrypt` of a cipher vector's ciphertexts."""
    if vec.n != pub.n:
        raise HeError("cipher vector was not encrypted under this threshold key")
    return partial_decrypt(pub, share, vec.ciphertexts, rng)


def combine_vector(
    pub: ThresholdPublicKey, vec: CipherVector, partials: Sequence[PartialDecryption]
) -> np.ndarray:
    """The weighted sum a cipher vector encrypts, from ``t`` verified partials."""
    if vec.n != pub.n:
        raise HeError("cipher vector was not encrypted under this threshold key")
    plaintexts = combine(pub, vec.ciphertexts, partials)
    return decode_sum(plaintexts, vec.layout, vec.length, vec.weight)
