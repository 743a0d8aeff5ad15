"""Signed fixed-point matrices under Paillier, for the vertical and transfer FL exchanges.

Unlike the packed vectors of :mod:`fedledger.privacy.he.paillier` (non-negative weights
only, one slot per coordinate), these need ciphertext-times-plaintext products with
negative plaintexts (feature values), so each coordinate is one ciphertext of
``q mod n`` with ``q = round(x * 2**scale)`` (two's-complement style: decrypted values
above ``n/2`` are negative). Every array carries its ``scale`` (fractional bits): a
product with a plaintext matrix encoded at ``frac_bits`` adds ``frac_bits``; sums need
equal scales. The headroom rule: ``|value| * 2**scale < n/2``, checked at decoding.

Masking (Hardy et al. 2017): a party adds ``Enc(R)`` with ``R`` uniform in ``Z_n`` before
it sends an encrypted gradient to the decryptor; the decryptor sees ``g + R mod n``,
uniform whatever ``g`` is, and only the party can remove ``R``.

:class:`PlainContext` runs the same algebra on floats: it is the arithmetic twin used
to check the encrypted run and for sweeps where encryption costs too much time; a
transcript made with it holds plaintext and is marked ``encrypted=False``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import gmpy2
import numpy as np
from gmpy2 import mpz
from phe import PaillierPrivateKey, PaillierPublicKey

from fedledger.privacy.he.errors import HeError
from fedledger.privacy.he.paillier import Encryptor
from fedledger.privacy.he.rand import RandomSource
from fedledger.privacy.he.threshold import (
    KeyShare,
    ThresholdPublicKey,
    combine,
    partial_decrypt,
)


@dataclass(frozen=True)
class EncArray:
    """A matrix of Paillier ciphertexts of fixed-point values at ``scale`` fractional bits."""

    n: int
    scale: int
    values: np.ndarray  # dtype object: mpz ciphertexts

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)

    def size_bytes(self) -> int:
        return int(self.values.size) * 2 * ((int(self.n).bit_length() + 7) // 8)


@dataclass(frozen=True)
class PlainArray:
    """The plaintext twin of :class:`EncArray` (floats); never crosses a real wire."""

    scale: int
    values: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)

    def size_bytes(self) -> int:
        return int(self.values.size) * 8


Array = EncArray | PlainArray


@dataclass(frozen=True)
class Opened:
    """What a decryptor returns: masked plaintexts (ints mod n, or floats for the twin)."""

    scale: int
    values: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)

    def size_bytes(self) -> int:
        return int(self.values.size) * 8


class Context(Protocol):
    """The operations the parties use; :class:`PaillierContext` or :class:`PlainContext`."""

    frac_bits: int
    encrypted: bool

    def encrypt(self, x: np.ndarray) -> Array: ...
    def add(self, a: Array, b: Array) -> Array: ...
    def add_plain(self, a: Array, x: np.ndarray) -> Array: ...
    def lin(self, p: np.ndarray, a: Array) -> Array: ...
    def lift(self, a: Array, bits: int) -> Array: ...
    def mask(self, a: Array) -> tuple[Array, np.ndarray]: ...
    def unmask(self, opened: Opened, mask: np.ndarray) -> np.ndarray: ...


class Decryptor(Protocol):
    """The key holder(s): coordinator C or a threshold committee."""

    decryptions: int

    def open(self, a: Array) -> Opened: ...


def _fixed(x: np.ndarray, bits: int) -> np.ndarray:
    """round(x * 2**bits) as an object array of Python ints (exact, any size)."""
    arr = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise HeError("cannot encode NaN or infinite values")
    scaled = np.rint(arr * float(2**bits))
    return np.vectorize(int, otypes=[object])(scaled) if arr.size else arr.astype(object)


class PaillierContext:
    """Encrypts under modulus ``n`` with seeded or OS randomness; fixed point at ``frac_bits``."""

    encrypted = True

    def __init__(self, n: int, frac_bits: int, rng: RandomSource) -> None:
        if not 4 <= frac_bits <= 40:
            raise HeError(f"frac_bits={frac_bits}; allowed: 4..40")
        self.n = int(n)
        self.n2 = mpz(self.n) ** 2
        self.frac_bits = frac_bits
        self._rng = rng
        self._enc = Encryptor(PaillierPublicKey(self.n))

    def _encrypt_ints(self, q: np.ndarray, scale: int) -> EncArray:
        flat = [self._enc.encrypt_int(int(v) % self.n, self._rng) for v in q.reshape(-1)]
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return EncArray(self.n, scale, out.reshape(q.shape))

    def encrypt(self, x: np.ndarray) -> EncArray:
        return self._encrypt_ints(_fixed(x, self.frac_bits), self.frac_bits)

    def _check(self, a: Array) -> EncArray:
        if not isinstance(a, EncArray) or a.n != self.n:
            raise HeError("operand is not a cipher array under this context's key")
        return a

    def add(self, a: Array, b: Array) -> EncArray:
        a, b = self._check(a), self._check(b)
        if a.scale != b.scale or a.shape != b.shape:
            raise HeError(f"cannot add scale {a.scale} {a.shape} to scale {b.scale} {b.shape}")
        n2 = self.n2
        vals = np.empty(a.values.size, dtype=object)
        vals[:] = [x * y % n2 for x, y in zip(a.values.flat, b.values.flat, strict=True)]
        return EncArray(self.n, a.scale, vals.reshape(a.shape))

    def add_plain(self, a: Array, x: np.ndarray) -> EncArray:
        """``a + x`` with ``x`` freshly encrypted at ``a``'s scale (so it cannot be stripped)."""
        a = self._check(a)
        return self.add(a, self._encrypt_ints(_fixed(np.reshape(x, a.shape), a.scale), a.scale))

    def lin(self, p: np.ndarray, a: Array) -> EncArray:
        """``p @ a`` for a plaintext matrix ``p`` (k x m) and cipher matrix ``a`` (m x r)."""
        a = self._check(a)
        p = np.atleast_2d(np.asarray(p, dtype=np.float64))
        vals = a.values.reshape(a.shape[0], -1)
        if p.shape[1] != vals.shape[0]:
            raise HeError(f"cannot multiply {p.shape} by cipher matrix {a.shape}")
        pq = _fixed(p, self.frac_bits)
        n2 = self.n2
        inv: dict[tuple[int, int], mpz] = {}
        out = np.empty((p.shape[0], vals.shape[1]), dtype=object)
        for row in range(p.shape[0]):
            for col in range(vals.shape[1]):
                acc = mpz(1)
                for i in range(vals.shape[0]):
                    e = pq[row, i]
                    if e > 0:
                        acc = acc * gmpy2.powmod(vals[i, col], e, n2) % n2
                    elif e < 0:
                        key = (i, col)
                        if key not in inv:
                            inv[key] = gmpy2.invert(vals[i, col], n2)
                        acc = acc * gmpy2.powmod(inv[key], -e, n2) % n2
                out[row, col] = acc
        shape = (p.shape[0], *a.shape[1:])
        return EncArray(self.n, a.scale + self.frac_bits, out.reshape(shape))

    def lift(self, a: Array, bits: int) -> EncArray:
        """The same values at ``bits`` more fractional bits (times ``2**bits``)."""
        a = self._check(a)
        k, n2 = mpz(1) << bits, self.n2
        vals = np.empty(a.values.size, dtype=object)
        vals[:] = [gmpy2.powmod(c, k, n2) for c in a.values.flat]
        return EncArray(self.n, a.scale + bits, vals.reshape(a.shape))

    def mask(self, a: Array) -> tuple[EncArray, np.ndarray]:
        """``a + R`` with ``R`` uniform in ``Z_n`` per coordinate, and ``R``."""
        a = self._check(a)
        r = np.empty(a.values.size, dtype=object)
        r[:] = [self._rng.randbelow(self.n) for _ in range(a.values.size)]
        r = r.reshape(a.shape)
        return self.add(a, self._encrypt_ints(r, a.scale)), r

    def unmask(self, opened: Opened, mask: np.ndarray) -> np.ndarray:
        """The float values ``(opened - R) mod n``, signed, divided by ``2**scale``."""
        half = self.n // 2
        out = []
        for m, r in zip(opened.values.flat, mask.flat, strict=True):
            v = (int(m) - int(r)) % self.n
            if v > half:
                v -= self.n
            out.append(v / (1 << opened.scale))
        if any(abs(v) * (1 << opened.scale) >= half / 2 for v in out):
            raise HeError("a decoded value is near n/2: the fixed-point headroom is exhausted")
        return np.asarray(out, dtype=np.float64).reshape(opened.shape)


class PlainContext:
    """The same operations on floats (no encryption): the arithmetic twin."""

    encrypted = False

    def __init__(self, frac_bits: int, rng: np.random.Generator) -> None:
        self.frac_bits = frac_bits
        self._rng = rng

    def encrypt(self, x: np.ndarray) -> PlainArray:
        return PlainArray(self.frac_bits, np.asarray(x, dtype=np.float64).copy())

    def add(self, a: Array, b: Array) -> PlainArray:
        assert isinstance(a, PlainArray) and isinstance(b, PlainArray)
        if a.scale != b.scale or a.shape != b.shape:
            raise HeError(f"cannot add scale {a.scale} {a.shape} to scale {b.scale} {b.shape}")
        return PlainArray(a.scale, a.values + b.values)

    def add_plain(self, a: Array, x: np.ndarray) -> PlainArray:
        assert isinstance(a, PlainArray)
        return PlainArray(a.scale, a.values + np.reshape(x, a.shape))

    def lin(self, p: np.ndarray, a: Array) -> PlainArray:
        assert isinstance(a, PlainArray)
        p = np.atleast_2d(np.asarray(p, dtype=np.float64))
        vals = a.values.reshape(a.shape[0], -1)
        out = (p @ vals).reshape((p.shape[0], *a.shape[1:]))
        return PlainArray(a.scale + self.frac_bits, out)

    def lift(self, a: Array, bits: int) -> PlainArray:
        assert isinstance(a, PlainArray)
        return PlainArray(a.scale + bits, a.values)

    def mask(self, a: Array) -> tuple[PlainArray, np.ndarray]:
        assert isinstance(a, PlainArray)
        r = self._rng.normal(0.0, 1e3, size=a.shape)
        return PlainArray(a.scale, a.values + r), r

    def unmask(self, opened: Opened, mask: np.ndarray) -> np.ndarray:
        return np.asarray(opened.values, dtype=np.float64) - mask


class PlainOpener:
    """The twin's decryptor: hands the (masked) floats back."""

    def __init__(self) -> None:
        self.decryptions = 0

    def open(self, a: Array) -> Opened:
        assert isinstance(a, PlainArray)
        self.decryptions += 1
        return Opened(a.scale, a.values.copy())


class KeyHolder:
    """Hardy et al.'s coordinator C: one party holding the whole private key."""

    def __init__(self, private_key: PaillierPrivateKey) -> None:
        self._key = private_key
        self.n = int(private_key.public_key.n)
        self.decryptions = 0

    def __repr__(self) -> str:
        return f"KeyHolder(n_bits={self.n.bit_length()})"

    def open(self, a: Array) -> Opened:
        if not isinstance(a, EncArray) or a.n != self.n:
            raise HeError("not a cipher array under the coordinator's key")
        self.decryptions += 1
        vals = np.empty(a.values.size, dtype=object)
        vals[:] = [self._key.raw_decrypt(int(c)) for c in a.values.flat]
        return Opened(a.scale, vals.reshape(a.shape))


class Committee:
    """t of m key holders (threshold Paillier): each open takes t proven partials."""

    def __init__(
        self,
        public: ThresholdPublicKey,
        shares: tuple[KeyShare, ...],
        rng: RandomSource,
        alive: tuple[int, ...] | None = None,
    ) -> None:
        self.public = public
        self.n = public.n
        self._shares = {s.index: s for s in shares}
        self._alive = tuple(sorted(self._shares)) if alive is None else tuple(sorted(alive))
        unknown = [i for i in self._alive if i not in self._shares]
        if unknown:
            raise HeError(f"alive holders {unknown} hold no share; allowed: {sorted(self._shares)}")
        self._rng = rng
        self.decryptions = 0
        self.partials = 0

    def __repr__(self) -> str:
        return f"Committee(t={self.public.t}, m={self.public.m}, alive={self._alive})"

    def open(self, a: Array) -> Opened:
        if not isinstance(a, EncArray) or a.n != self.n:
            raise HeError("not a cipher array under the committee's key")
        if len(self._alive) < self.public.t:
            raise HeError(
                f"{len(self._alive)} live key holders; threshold t={self.public.t} needs more"
            )
        cts = [int(c) for c in a.values.flat]
        parts = [
            partial_decrypt(self.public, self._shares[i], cts, self._rng)
            for i in self._alive[: self.public.t]
        ]
        self.partials += len(parts)
        self.decryptions += 1
        vals = np.empty(len(cts), dtype=object)
        vals[:] = combine(self.public, cts, parts)
        return Opened(a.scale, vals.reshape(a.shape))
