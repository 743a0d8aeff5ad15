"""Fixed-point encoding of float vectors and packing of many coordinates per plaintext.

Encoding: a coordinate ``x`` is clamped to ``[-clamp, clamp]`` (post-processing, so it
keeps any DP guarantee) and becomes ``q = round(x * 2**frac_bits)``, an integer with
``|q| <= V = round(clamp * 2**frac_bits)``. Offset encoding stores ``q + V`` in
``[0, 2V]``, so every slot holds a non-negative integer and additions never borrow.

Packing: ``slots`` consecutive coordinates share one plaintext, coordinate ``j`` in bits
``[j*b, (j+1)*b)`` (``b = slot_bits``, any width in 1..64, slot 0 least significant).
A homomorphic sum of addends with non-negative integer weights ``w_k`` (total ``W = sum
w_k``) holds ``sum w_k (q_k + V) <= W * 2V`` per slot; the layout's headroom check
``max_weight * 2V < 2**b`` guarantees no slot ever carries into the next, and ``slots *
b`` bits stay below the Paillier modulus. Decoding subtracts ``W * V`` and divides by
``2**frac_bits``; each addend's rounding error is at most ``2**-(frac_bits+1)``, so the
decoded weighted sum is within ``W * 2**-(frac_bits+1)`` of ``sum w_k clamp(x_k)``.

``slots = 1`` is "packing off": one coordinate per ciphertext, same arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedledger.privacy.he.errors import HeadroomError, HeError

MAX_SLOT_BITS = 64  # slot values are read back as uint64
MAX_QUANT_BITS = 62  # |q| <= V < 2**62 keeps int64 arithmetic exact


@dataclass(frozen=True)
class Layout:
    """How a vector is encoded and packed; validated on construction.

    ``max_weight`` is the largest total weight a sum may reach: ``N`` for a plain sum of
    ``N`` clients, ``sum n_k`` for a sum weighted by sample counts.
    """

    frac_bits: int
    clamp: float
    slot_bits: int
    slots: int
    max_weight: int

    def __post_init__(self) -> None:
        if not 0 <= self.frac_bits <= 60:
            raise HeError(f"frac_bits={self.frac_bits}; allowed: 0..60")
        if not (math.isfinite(self.clamp) and self.clamp > 0):
            raise HeError(f"clamp={self.clamp}; allowed: a finite number > 0")
        if not 1 <= self.slot_bits <= MAX_SLOT_BITS:
            raise HeError(f"slot_bits={self.slot_bits}; allowed: 1..{MAX_SLOT_BITS}")
        if self.slots < 1:
            raise HeError(f"slots={self.slots}; allowed: >= 1")
        if self.max_weight < 1:
            raise HeError(f"max_weight={self.max_weight}; allowed: >= 1")
        bound = self.value_bound
        if bound.bit_length() > MAX_QUANT_BITS:
            raise HeError(
                f"clamp={self.clamp} at frac_bits={self.frac_bits} gives |q| up to {bound} "
                f"({bound.bit_length()} bits); allowed: at most {MAX_QUANT_BITS} bits"
            )
        peak = self.max_weight * 2 * bound
        if peak >= 1 << self.slot_bits:
            need = peak.bit_length()
            fix = f"raise slot_bits to {need} or lower" if need <= MAX_SLOT_BITS else "lower"
            raise HeadroomError(
                f"a sum of total weight max_weight={self.max_weight} of values up to "
                f"clamp={self.clamp} at frac_bits={self.frac_bits} reaches {peak} per slot "
                f"({need} bits) but slot_bits={self.slot_bits} holds values below "
                f"2**{self.slot_bits}; {fix} max_weight, clamp or frac_bits"
            )

    @property
    def value_bound(self) -> int:
        """``V``: the largest ``|q|`` after clamping, and the offset added to each slot."""
        return round(self.clamp * (1 << self.frac_bits))

    @property
    def plaintext_bytes(self) -> int:
        return (self.plaintext_bits + 7) // 8

    @property
    def plaintext_bits(self) -> int:
        """Bits a packed plaintext can use: ``slots * slot_bits``."""
        return self.slots * self.slot_bits

    def count(self, length: int) -> int:
        """Number of plaintexts (ciphertexts) for a vector of ``length`` coordinates."""
        return -(-length // self.slots)

    def error_bound(self, weight: int) -> float:
        """Largest decoding error of a sum of total weight ``weight`` (per coordinate)."""
        return weight * 2.0 ** -(self.frac_bits + 1)

    def check_weight(self, weight: int) -> None:
        """Refuse a total weight that could overflow a slot."""
        if weight < 0:
            raise HeError(f"weight={weight}; allowed: a non-negative integer")
        if weight > self.max_weight:
            raise HeadroomError(
                f"total weight {weight} exceeds max_weight={self.max_weight} of this layout "
                f"(slot_bits={self.slot_bits}, clamp={self.clamp}, frac_bits={self.frac_bits}); "
                f"a sum this large could carry between slots"
            )


def layout_for(
    modulus_bits: int,
    *,
    frac_bits: int,
    clamp: float,
    max_weight: int,
    slot_bits: int | None = None,
    packing: bool = True,
) -> Layout:
    """The layout with as many slots as fit below a modulus of ``modulus_bits`` bits.

    A plaintext must stay below ``n >= 2**(modulus_bits - 1)``, so ``slots * slot_bits <=
    modulus_bits - 1``. With ``packing=False`` there is one slot per plaintext.
    ``slot_bits=None`` picks the narrowest allowed width that passes the headroom check.
    """
    if slot_bits is None:
        sane = math.isfinite(clamp) and clamp > 0 and 0 <= frac_bits <= 60
        peak = max_weight * 2 * round(clamp * (1 << frac_bits)) if sane else 0
        slot_bits = max(1, peak.bit_length())  # too wide: Layout names the error
    slots = (modulus_bits - 1) // slot_bits if packing else 1
    if slots < 1:
        raise HeError(
            f"slot_bits={slot_bits} do not fit below a {modulus_bits}-bit modulus; "
            f"allowed: slot_bits <= {modulus_bits - 1}"
        )
    return Layout(frac_bits, clamp, slot_bits, slots, max_weight)


def quantize(x: np.ndarray, layout: Layout) -> np.ndarray:
    """Clamp and round ``x`` to int64 fixed point ``q`` with ``|q| <= V``."""
    arr = np.asarray(x, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise HeError(f"{bad} of {arr.size} coordinates are NaN or infinite; allowed: finite")
    arr = np.clip(arr, -layout.clamp, layout.clamp)
    q = np.rint(arr * float(1 << layout.frac_bits)).astype(np.int64)
    bound = layout.value_bound
    return np.clip(q, -bound, bound)


def pack(x: np.ndarray, layout: Layout) -> list[int]:
    """Encode ``x`` (any float array, flattened) into packed plaintext integers."""
    q = quantize(x, layout)
    count = layout.count(q.size)
    padded = np.zeros(count * layout.slots, dtype="<u8")
    padded[: q.size] = (q + layout.value_bound).astype(np.uint64)  # in [0, 2V]
    bits = np.unpackbits(padded.view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
    # 2V < 2**slot_bits (headroom check), so the dropped high bits are zero
    rows = bits[:, : layout.slot_bits].reshape(count, layout.plaintext_bits)
    packed = np.packbits(rows, axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def unpack(plaintexts: Sequence[int], layout: Layout, length: int) -> np.ndarray:
    """The raw slot values (uint64) of packed plaintexts, first ``length`` of them."""
    if len(plaintexts) != layout.count(length):
        raise HeError(
            f"{len(plaintexts)} plaintexts for {length} coordinates; "
            f"expected {layout.count(length)} at {layout.slots} slots each"
        )
    limit = 1 << layout.plaintext_bits
    for i, p in enumerate(plaintexts):
        if not 0 <= p < limit:
            raise HeadroomError(
                f"plaintext {i} has {int(p).bit_length()} bits, more than the "
                f"{layout.plaintext_bits} bits of {layout.slots} slots: a sum overflowed "
                f"or the value is not a packed vector"
            )
    width = layout.plaintext_bytes
    buf = b"".join(int(p).to_bytes(width, "little") for p in plaintexts)
    raw = np.frombuffer(buf, dtype=np.uint8).reshape(len(plaintexts), width)
    bits = np.unpackbits(raw, axis=1, bitorder="little")[:, : layout.plaintext_bits]
    wide = np.zeros((len(plaintexts) * layout.slots, 64), dtype=np.uint8)
    wide[:, : layout.slot_bits] = bits.reshape(-1, layout.slot_bits)
    values = np.packbits(wide, axis=1, bitorder="little").view("<u8").reshape(-1)
    return values[:length].astype(np.uint64)


def decode_sum(plaintexts: Sequence[int], layout: Layout, length: int, weight: int) -> np.ndarray:
    """The weighted sum ``sum w_k x_k`` (float64) from decrypted packed plaintexts.

    ``weight`` is the total weight ``W = sum w_k`` of the sum; the offsets ``W * V`` are
    removed from every slot.
    """
    layout.check_weight(weight)
    slots = unpack(plaintexts, layout, length)
    offset = np.uint64(weight * layout.value_bound)
    # |sum w_k q_k| <= W*V < 2**63: the wrapped uint64 difference read as int64 is exact
    signed = (slots - offset).view(np.int64)
    return signed.astype(np.float64) / float(1 << layout.frac_bits)


def encode_decode(x: np.ndarray, layout: Layout) -> np.ndarray:
    """What one addend becomes after the round trip (clamped, rounded), as float64."""
    return quantize(x, layout).astype(np.float64) / float(1 << layout.frac_bits)
