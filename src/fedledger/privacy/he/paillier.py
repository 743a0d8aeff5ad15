"""Vectors of packed Paillier ciphertexts: encrypt, add, scalar-multiply, decrypt, bytes.

Keys are python-paillier's (``phe``) ``PaillierPublicKey`` / ``PaillierPrivateKey``
(``g = n + 1``); decryption uses phe's CRT decryption, and gmpy2 does the arithmetic.

Encryption ``Enc(m) = (1 + m n) * rho mod n**2`` with one of two blinding factors:

- ``"djn"`` (default): ``rho = hs**alpha`` with ``hs = h**n mod n**2`` fixed for the key
  and ``alpha`` a random ``ceil(k/2)``-bit exponent (``k`` = bits of ``n``): the fast
  encryption of Damgard, Jurik and Nielsen (Int. J. Inf. Sec. 2010, s = 1; also used by
  ABY's libdjn and SecretFlow HEU). Its security rests on DCR plus the assumption, stated
  there, that a k/2-bit exponent of ``h`` is as good as a full-length one; use
  ``"standard"`` for the textbook assumption alone. ``h = -x**2 mod n`` with ``x`` derived
  from ``n`` by SHAKE-256 (a public, nothing-up-my-sleeve choice, so the public key stays
  ``n`` alone). ``hs**alpha`` uses a fixed-base table of ``hs**(d * 256**j)`` (8-bit
  windows): ``ceil(k/16)`` multiplications per encryption instead of a full ``k``-bit
  exponentiation. The table costs ``k/16 * 256`` elements of ``2k`` bits (16 MB at
  k = 2048), built once per :class:`Encryptor`.
- ``"standard"``: ``rho = r**n`` with ``r`` uniform in Z_n* (phe's ``raw_encrypt``), the
  textbook scheme; about 10x slower.

Randomness is a :class:`~fedledger.privacy.he.rand.RandomSource`: seeded in the
simulator (reproducible ciphertexts), the OS generator on real nodes.

A :class:`CipherVector` carries its layout, its length and the total weight of the sum
it encrypts, so the headroom check runs on every addition and scalar multiplication and
decryption knows how many offsets to remove. Its bytes are canonical (fixed-width
big-endian fields), so it can be stored as a blob under its content id.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import gmpy2
import numpy as np
from gmpy2 import mpz
from phe import EncryptedNumber, PaillierPrivateKey, PaillierPublicKey

from fedledger.privacy.he.encoding import Layout, decode_sum, pack
from fedledger.privacy.he.errors import HeError
from fedledger.privacy.he.primes import random_prime
from fedledger.privacy.he.rand import OsRandom, RandomSource
from fedledger.storage.cid import cid_of

Mode = Literal["djn", "standard"]
MODES: tuple[Mode, ...] = ("djn", "standard")
MAGIC = b"FLPV\x01"
_HEADER = struct.Struct(">BdHHQQQI")  # frac_bits clamp slot_bits slots max_weight len weight n


def generate_keypair(
    key_bits: int, rng: RandomSource | None = None
) -> tuple[PaillierPublicKey, PaillierPrivateKey]:
    """A Paillier key pair with a ``key_bits``-bit modulus (seeded if ``rng`` is)."""
    if key_bits < 64 or key_bits % 2:
        raise HeError(f"key_bits={key_bits}; allowed: an even number >= 64")
    rng = rng or OsRandom()
    while True:
        p = random_prime(key_bits // 2, rng)
        q = random_prime(key_bits // 2, rng)
        n = p * q
        if p != q and n.bit_length() == key_bits:
            pk = PaillierPublicKey(n)
            return pk, PaillierPrivateKey(pk, p, q)


def djn_base(n: int) -> mpz:
    """``hs = h**n mod n**2``, ``h = -x**2 mod n``, ``x`` derived from ``n`` (public)."""
    nbytes = (n.bit_length() + 7) // 8
    seed = hashlib.shake_256(b"fedledger/paillier-djn-h/" + n.to_bytes(nbytes, "big"))
    x = int.from_bytes(seed.digest(nbytes + 8), "big") % n
    if gmpy2.gcd(x, n) != 1:
        raise HeError("the derived DJN base shares a factor with n: the modulus is broken")
    nn = mpz(n)
    h = (-(mpz(x) * x)) % nn
    return gmpy2.powmod(h, nn, nn * nn)


class Encryptor:
    """Encrypts integers under one public key; holds the DJN fixed-base table."""

    def __init__(self, public_key: PaillierPublicKey, mode: Mode = "djn") -> None:
        if mode not in MODES:
            raise HeError(f"encryption mode {mode!r}; allowed: {', '.join(MODES)}")
        self.public_key = public_key
        self.mode = mode
        self.n = mpz(public_key.n)
        self.n2 = self.n * self.n
        self.alpha_bits = (self.n.bit_length() + 1) // 2
        self.alpha_bytes = (self.alpha_bits + 7) // 8
        self._table: list[list[mpz]] | None = None

    def _djn_table(self) -> list[list[mpz]]:
        if self._table is None:
            n2 = self.n2
            base = djn_base(int(self.n))
            table = []
            for _ in range(self.alpha_bytes):
                row = [mpz(1), base]
                for _ in range(254):
                    row.append(row[-1] * base % n2)
                table.append(row)
                base = row[-1] * base % n2  # base**256
            self._table = table
        return self._table

    def obfuscator(self, rng: RandomSource) -> mpz:
        """A fresh blinding factor ``rho`` (an ``n``-th residue mod ``n**2``)."""
        n2 = self.n2
        if self.mode == "standard":
            r = mpz(rng.randbelow(int(self.n) - 1) + 1)
            return gmpy2.powmod(r, self.n, n2)
        table = self._djn_table()
        alpha = rng.randbits(self.alpha_bits).to_bytes(self.alpha_bytes, "little")
        acc = mpz(1)
        for row, digit in zip(table, alpha, strict=True):
            if digit:
                acc = acc * row[digit] % n2
        return acc

    def encrypt_int(self, m: int, rng: RandomSource) -> mpz:
        """``Enc(m)`` for ``0 <= m < n``."""
        if not 0 <= m < self.n:
            raise HeError(f"plaintext of {int(m).bit_length()} bits; allowed: 0 <= m < n")
        return (1 + mpz(m) * self.n) * self.obfuscator(rng) % self.n2


@dataclass(frozen=True)
class CipherVector:
    """Packed ciphertexts of a vector, or of a weighted sum of vectors of total ``weight``."""

    n: int
    layout: Layout
    length: int
    weight: int
    ciphertexts: tuple[mpz, ...]

    def __post_init__(self) -> None:
        if len(self.ciphertexts) != self.layout.count(self.length):
            raise HeError(
                f"{len(self.ciphertexts)} ciphertexts for {self.length} coordinates; "
                f"expected {self.layout.count(self.length)}"
            )
        if self.layout.plaintext_bits >= int(self.n).bit_length():
            raise HeError(
                f"layout needs {self.layout.plaintext_bits}-bit plaintexts; a "
                f"{int(self.n).bit_length()}-bit modulus allows at most "
                f"{int(self.n).bit_length() - 1}"
            )
        self.layout.check_weight(self.weight)

    def _same(self, other: CipherVector) -> None:
        if self.n != other.n:
            raise HeError("cannot add ciphertexts under different public keys")
        if self.layout != other.layout or self.length != other.length:
            raise HeError(
                f"cannot add vectors of length {self.length} / {other.length} with layouts "
                f"{self.layout} / {other.layout}; both must match"
            )

    def __add__(self, other: CipherVector) -> CipherVector:
        self._same(other)
        weight = self.weight + other.weight
        self.layout.check_weight(weight)
        n2 = mpz(self.n) ** 2
        cts = tuple(a * b % n2 for a, b in zip(self.ciphertexts, other.ciphertexts, strict=True))
        return CipherVector(self.n, self.layout, self.length, weight, cts)

    def scale(self, k: int) -> CipherVector:
        """``k`` times the encrypted vector (``k`` a non-negative integer, e.g. ``n_k``)."""
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
            raise HeError(
                f"scalar {k!r}; allowed: a non-negative integer (packed slots cannot hold "
                f"negative or fractional weights; divide after decryption)"
            )
        k = int(k)
        self.layout.check_weight(self.weight * k)
        n2 = mpz(self.n) ** 2
        cts = tuple(gmpy2.powmod(c, k, n2) for c in self.ciphertexts)
        return CipherVector(self.n, self.layout, self.length, self.weight * k, cts)

    def to_bytes(self) -> bytes:
        """Canonical bytes: magic, key width, n, layout, length, weight, ciphertexts."""
        nbytes = (int(self.n).bit_length() + 7) // 8
        lay = self.layout
        head = _HEADER.pack(
            lay.frac_bits, lay.clamp, lay.slot_bits, lay.slots, lay.max_weight,
            self.length, self.weight, len(self.ciphertexts),
        )  # fmt: skip
        parts = [MAGIC, nbytes.to_bytes(2, "big"), int(self.n).to_bytes(nbytes, "big"), head]
        parts.extend(int(c).to_bytes(2 * nbytes, "big") for c in self.ciphertexts)
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> CipherVector:
        """Parse :meth:`to_bytes` output; anything else is a :class:`HeError`."""
        data = bytes(data)
        if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 2:
            raise HeError(f"not a cipher vector: expected magic {MAGIC!r}")
        pos = len(MAGIC)
        nbytes = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
        n = int.from_bytes(data[pos : pos + nbytes], "big")
        pos += nbytes
        if nbytes == 0 or n.bit_length() <= 8 * (nbytes - 1) or n % 2 == 0:
            raise HeError("cipher vector has a malformed modulus field")
        try:
            fb, clamp, sb, slots, maxw, length, weight, count = _HEADER.unpack_from(data, pos)
        except struct.error as exc:
            raise HeError(f"cipher vector header truncated: {exc}") from exc
        pos += _HEADER.size
        width = 2 * nbytes
        if len(data) != pos + count * width:
            raise HeError(
                f"cipher vector of {len(data)} bytes; header says {count} ciphertexts of "
                f"{width} bytes after {pos} header bytes"
            )
        n2 = n * n
        cts = []
        for i in range(count):
            c = int.from_bytes(data[pos + i * width : pos + (i + 1) * width], "big")
            if not 0 < c < n2:
                raise HeError(f"ciphertext {i} is outside (0, n**2)")
            cts.append(mpz(c))
        vec = cls(n, Layout(fb, clamp, sb, slots, maxw), length, weight, tuple(cts))
        if vec.to_bytes() != data:
            raise HeError("cipher vector bytes are not canonical")
        return vec

    def content_id(self) -> str:
        """The CID of :meth:`to_bytes` (the blob store's id for these bytes)."""
        return cid_of(self.to_bytes())

    def to_phe(self, public_key: PaillierPublicKey) -> list[EncryptedNumber]:
        """The ciphertexts as phe ``EncryptedNumber`` objects (packed plaintext integers)."""
        if public_key.n != self.n:
            raise HeError("public key does not match the vector's modulus")
        return [EncryptedNumber(public_key, int(c), 0) for c in self.ciphertexts]


def encrypt_vector(
    encryptor: Encryptor, x: np.ndarray, layout: Layout, rng: RandomSource | None = None
) -> CipherVector:
    """Clamp, encode, pack and encrypt ``x`` (an addend of weight 1)."""
    rng = rng or OsRandom()
    arr = np.asarray(x).reshape(-1)
    plaintexts = pack(arr, layout)
    if layout.plaintext_bits >= encryptor.n.bit_length():
        raise HeError(
            f"layout needs {layout.plaintext_bits}-bit plaintexts; the "
            f"{encryptor.n.bit_length()}-bit key allows at most {encryptor.n.bit_length() - 1}"
        )
    cts = tuple(encryptor.encrypt_int(m, rng) for m in plaintexts)
    return CipherVector(int(encryptor.n), layout, arr.size, 1, cts)


def decrypt_plaintexts(private_key: PaillierPrivateKey, vec: CipherVector) -> list[int]:
    """The packed plaintext integers (phe's CRT decryption)."""
    if private_key.public_key.n != vec.n:
        raise HeError("private key does not match the vector's modulus")
    return [private_key.raw_decrypt(int(c)) for c in vec.ciphertexts]


def decrypt_vector(private_key: PaillierPrivateKey, vec: CipherVector) -> np.ndarray:
    """The encrypted weighted sum as float64 (within ``layout.error_bound(weight)``)."""
    return decode_sum(decrypt_plaintexts(private_key, vec), vec.layout, vec.length, vec.weight)


def sum_vectors(
    vectors: Sequence[CipherVector], weights: Sequence[int] | None = None
) -> CipherVector:
    """``sum w_k [[x_k]]`` (weights default to 1), with the headroom check."""
    if not vectors:
        raise HeError("cannot sum an empty list of cipher vectors")
    if weights is None:
        terms = list(vectors)
    elif len(weights) != len(vectors):
        raise HeError(f"{len(weights)} weights for {len(vectors)} vectors; need one each")
    else:
        terms = [v.scale(w) for v, w in zip(vectors, weights, strict=True)]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total
