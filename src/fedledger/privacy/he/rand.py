"""Randomness for encryption and key dealing: seeded (simulator) or the OS generator.

The seeded source is SHAKE-256 in counter mode over a 32-byte key derived from the seed,
so a run is reproducible across processes and platforms. It is for simulations only:
whoever knows the seed knows every encryption's randomness.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Protocol


class RandomSource(Protocol):
    """What the HE code needs from a random generator."""

    def randbits(self, k: int) -> int:
        """A uniform integer in ``[0, 2**k)``."""
        ...

    def randbelow(self, bound: int) -> int:
        """A (statistically) uniform integer in ``[0, bound)``."""
        ...


class OsRandom:
    """The operating system's CSPRNG (``secrets``): use on real nodes."""

    def randbits(self, k: int) -> int:
        return secrets.randbits(k) if k > 0 else 0

    def randbelow(self, bound: int) -> int:
        return secrets.randbelow(bound)


class SeededRandom:
    """Deterministic SHAKE-256 stream from a seed (int, str or bytes): simulator only."""

    def __init__(self, seed: int | str | bytes, label: str = "") -> None:
        if isinstance(seed, int):
            seed = str(seed)
        if isinstance(seed, str):
            seed = seed.encode()
        self._key = hashlib.sha256(b"fedledger/he-drbg/" + label.encode() + b"/" + seed).digest()
        self._counter = 0

    def _bytes(self, n: int) -> bytes:
        block = hashlib.shake_256(self._key + self._counter.to_bytes(8, "big")).digest(n)
        self._counter += 1
        return block

    def randbits(self, k: int) -> int:
        if k <= 0:
            return 0
        value = int.from_bytes(self._bytes((k + 7) // 8), "big")
        return value >> ((k + 7) // 8 * 8 - k)

    def randbelow(self, bound: int) -> int:
        if bound < 1:
            raise ValueError(f"randbelow bound {bound}; allowed: >= 1")
        # 64 extra bits: the bias of the reduction is below 2**-64
        return self.randbits(bound.bit_length() + 64) % bound
