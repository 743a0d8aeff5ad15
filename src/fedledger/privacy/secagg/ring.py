"""Fixed-point encoding of sample-weighted float vectors into Z_{2**64}.

A client with ``n`` samples and weights ``x`` contributes the ring vector
``(n * q(x), n)`` where ``q(x) = round(clamp(x) * 2**frac_bits)`` (clamping is
post-processing, so it keeps any DP guarantee). The count is the last coordinate, so it
is masked like the weights and the server learns only the survivors' total ``N``.
Sums wrap modulo 2**64; the decoded sum is exact as long as ``|sum n_k q_k| < 2**63``,
which :meth:`RingCodec.check_total` guarantees when ``N * V < 2**63`` (``V`` the largest
``|q|``). Each addend's rounding error is at most ``2**-(frac_bits+1)`` per coordinate,
so the weighted mean is within ``2**-(frac_bits+1)`` of the mean of the clamped inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedledger.privacy.secagg.errors import SecAggError

RING_BITS = 64


@dataclass(frozen=True)
class RingCodec:
    """How floats become ring elements: ``frac_bits`` fractional bits, ``clamp``."""

    frac_bits: int = 20
    clamp: float = 64.0

    def __post_init__(self) -> None:
        if not 0 <= self.frac_bits <= 52:
            raise SecAggError(f"frac_bits={self.frac_bits}; allowed: 0..52")
        if not (math.isfinite(self.clamp) and self.clamp > 0):
            raise SecAggError(f"clamp={self.clamp}; allowed: a finite number > 0")
        if self.value_bound.bit_length() >= RING_BITS - 2:
            raise SecAggError(
                f"clamp={self.clamp} at frac_bits={self.frac_bits} needs "
                f"{self.value_bound.bit_length()} bits; allowed: fewer than {RING_BITS - 2}"
            )

    @property
    def value_bound(self) -> int:
        """``V``: the largest ``|q|`` after clamping."""
        return round(self.clamp * (1 << self.frac_bits))

    @property
    def max_total(self) -> int:
        """The largest total sample count a sum may reach without wrapping."""
        return ((1 << (RING_BITS - 1)) - 1) // max(1, self.value_bound)

    def check_total(self, total: int) -> None:
        if not 0 <= total <= self.max_total:
            raise SecAggError(
                f"total sample count {total}; allowed: 0..{self.max_total} at "
                f"clamp={self.clamp}, frac_bits={self.frac_bits} (the sum would wrap)"
            )

    def encode(self, x: np.ndarray, num_samples: int) -> np.ndarray:
        """The ring vector ``(n * q(x), n)`` as uint64 (length ``x.size + 1``)."""
        self.check_total(num_samples)
        arr = np.asarray(x, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(arr)):
            raise SecAggError(f"{int(np.count_nonzero(~np.isfinite(arr)))} NaN/inf coordinates")
        arr = np.clip(arr, -self.clamp, self.clamp)
        q = np.rint(arr * float(1 << self.frac_bits)).astype(np.int64) * np.int64(num_samples)
        out = np.empty(arr.size + 1, dtype=np.int64)
        out[:-1] = q
        out[-1] = num_samples
        return out.view(np.uint64)

    def decode_mean(self, total: np.ndarray) -> tuple[np.ndarray, int]:
        """From the ring sum of ``(n_k q_k, n_k)``: the weighted mean (float64) and ``N``."""
        signed = np.asarray(total, dtype=np.uint64).view(np.int64)
        count = int(signed[-1])
        self.check_total(count)
        if count == 0:
            raise SecAggError("the sum holds zero samples; cannot form a weighted mean")
        mean = signed[:-1].astype(np.float64) / float(count) / float(1 << self.frac_bits)
        return mean, count

    def error_bound(self) -> float:
        """Largest error of a decoded weighted mean against the clamped inputs' mean."""
        return 2.0 ** -(self.frac_bits + 1)
