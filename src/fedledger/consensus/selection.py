"""Block selection, written once for every protocol: proof of stake and proof of work.

Proof of stake:

- :func:`highest_stake`: among candidate blocks, the one whose proposer has the most
  stake; ties go to the smaller SHA-256 of (context, height, proposer), which no
  proposer can grind because it does not depend on the block's content (PoS-BFL).
- :func:`stake_lottery`: the proposer of a height drawn with probability proportional to
  stake, from a seeded hash of (seed, height): u = SHA-256(...) / 2**256 and the member
  whose cumulative stake interval (members sorted) holds u * total. Stakes are read as
  exact fractions (a float stake is its exact binary value), so every node agrees.

Proof of work: a seal is SHA-256(context || base || nonce) with ``base`` the id of the
block with nonce 0; it is valid when, read as an integer, it is below the ``target``
(Bitcoin's rule). ``difficulty`` in leading zero bits d is the target 2**(256 - d).
:func:`find_nonce` searches from nonce 0; :func:`first_sealed` is the block found with
the fewest attempts (all miners start together with equal hash rate), ties to the
smaller block hash.

Retargeting (:class:`Retarget`, as in Bitcoin): every ``window`` blocks the target is
multiplied by observed / expected time of the last window (expected = window *
``interval``), the factor clamped to [1 / ``max_factor``, ``max_factor``], the target to
[1, 2**256]. Exact: the factor is a Fraction of the timestamps' exact values and the
new target is floored to an integer. Bitcoin measures the window from its first to its
last block (window - 1 intervals); here it is the window's blocks and the one before
(window intervals), which removes Bitcoin's off-by-one bias.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TypeVar

from fedledger.errors import FedledgerError

T = TypeVar("T")

HASH_BITS = 256
MAX_TARGET = 1 << HASH_BITS
MAX_NONCE = 1 << 32


class SelectionError(FedledgerError, ValueError):
    """A selection parameter is not usable; says which value and what is allowed."""


# ---------------------------------------------------------------- proof of stake


def tie_break(context: bytes, height: int, proposer: bytes) -> bytes:
    """SHA-256(context || height (8 bytes, big-endian) || proposer)."""
    return hashlib.sha256(context + height.to_bytes(8, "big") + proposer).digest()


def highest_stake(
    candidates: Sequence[T],
    proposer_of: Callable[[T], bytes],
    stakes: Mapping[bytes, float],
    height: int,
    context: bytes,
) -> T | None:
    """The candidate whose proposer has the most stake (absent: 0), ties by
    :func:`tie_break`; None when there is no candidate."""
    if not candidates:
        return None

    def rank(c: T) -> tuple[float, bytes]:
        proposer = proposer_of(c)
        return (-stakes.get(proposer, 0.0), tie_break(context, height, proposer))

    return min(candidates, key=rank)


def _stake(member: str, stake: object) -> Fraction:
    if isinstance(stake, bool) or not isinstance(stake, int | float | Fraction):
        raise SelectionError(f"stake of {member!r} must be a number, got {stake!r}")
    value = Fraction(stake)
    if value < 0:
        raise SelectionError(f"stake of {member!r} must be >= 0, got {stake!r}")
    return value


def lottery_draw(seed: int, height: int, context: bytes = b"fedledger/lottery") -> Fraction:
    """u in [0, 1): SHA-256(context || seed || height) / 2**256."""
    data = context + b"/" + str(seed).encode() + b"/" + str(height).encode()
    return Fraction(int.from_bytes(hashlib.sha256(data).digest(), "big"), MAX_TARGET)


def stake_lottery(
    stakes: Mapping[str, int | float | Fraction],
    seed: int,
    height: int,
    context: bytes = b"fedledger/lottery",
) -> str:
    """The proposer of ``height``: member i with probability stake_i / total (module doc)."""
    members = sorted(stakes)
    values = [_stake(m, stakes[m]) for m in members]
    total = sum(values, Fraction(0))
    if total <= 0:
        raise SelectionError(f"a stake lottery needs a positive total stake, got {total}")
    point = lottery_draw(seed, height, context) * total
    cumulative = Fraction(0)
    for member, value in zip(members, values, strict=True):
        cumulative += value
        if point < cumulative:
            return member
    raise AssertionError("u < 1 always falls in an interval")  # pragma: no cover


# ---------------------------------------------------------------- proof of work


def target_of_bits(difficulty: int) -> int:
    """The target of ``difficulty`` leading zero bits: 2**(256 - difficulty)."""
    if isinstance(difficulty, bool) or not isinstance(difficulty, int):
        raise SelectionError(f"difficulty must be an int, got {difficulty!r}")
    if not 0 <= difficulty <= HASH_BITS:
        raise SelectionError(f"difficulty must be in 0..{HASH_BITS} bits, got {difficulty}")
    return 1 << (HASH_BITS - difficulty)


def seal(context: bytes, base: bytes, nonce: int) -> int:
    """The seal of ``base`` with ``nonce`` as an integer below 2**256."""
    digest = hashlib.sha256(context + base + nonce.to_bytes(8, "big")).digest()
    return int.from_bytes(digest, "big")


def find_nonce(context: bytes, base: bytes, target: int) -> int:
    """The smallest nonce whose seal of ``base`` is below ``target``."""
    for nonce in range(MAX_NONCE):
        if seal(context, base, nonce) < target:
            return nonce
    raise SelectionError(f"no nonce below {MAX_NONCE} meets target {target:#x}")


def seal_ok(context: bytes, base: bytes, nonce: int, target: int) -> bool:
    """Whether ``nonce`` seals ``base`` below ``target``."""
    if isinstance(nonce, bool) or not isinstance(nonce, int) or not 0 <= nonce < MAX_NONCE:
        return False
    return seal(context, base, nonce) < target


def first_sealed(
    candidates: Sequence[T], nonce_of: Callable[[T], int], hash_of: Callable[[T], bytes]
) -> T | None:
    """The candidate sealed with the fewest attempts (smaller hash on ties), or None."""
    if not candidates:
        return None
    return min(candidates, key=lambda c: (nonce_of(c), hash_of(c)))


@dataclass(frozen=True)
class Retarget:
    """Difficulty retargeting toward a block interval (module doc).

    interval: target seconds between blocks.
    window: blocks between retargets (Bitcoin: 2016).
    max_factor: the most one retarget may scale the target by, either way (Bitcoin: 4).
    """

    interval: float
    window: int
    max_factor: int = 4

    def __post_init__(self) -> None:
        if not self.interval > 0:
            raise SelectionError(f"retarget interval must be > 0 seconds, got {self.interval}")
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1:
            raise SelectionError(f"retarget window must be an int >= 1, got {self.window!r}")
        if not isinstance(self.max_factor, int) or self.max_factor < 1:
            raise SelectionError(f"max_factor must be an int >= 1, got {self.max_factor!r}")

    def next_target(self, target: int, observed: float) -> int:
        """The target after a window that took ``observed`` seconds."""
        if not 1 <= target <= MAX_TARGET:
            raise SelectionError(f"target must be in [1, 2**256], got {target}")
        expected = Fraction(self.interval) * self.window
        factor = Fraction(max(observed, 0.0)) / expected
        factor = min(max(factor, Fraction(1, self.max_factor)), Fraction(self.max_factor))
        return min(MAX_TARGET, max(1, int(target * factor)))

    def target_at(self, height: int, initial: int, times: Sequence[float]) -> int:
        """The target of the block at ``height`` (>= 1), given the timestamps of the
        blocks at heights 0..height-1 (``times[0]`` the genesis): retargeted at every
        height h = 1 + m * window, m >= 1, from the window of blocks h - window - 1 ..
        h - 1."""
        if height < 1 or len(times) < height:
            raise SelectionError(
                f"target_at needs height >= 1 and the {height} timestamps before it, "
                f"got height {height} and {len(times)} timestamps"
            )
        target = initial
        for h in range(1 + self.window, height + 1, self.window):
            target = self.next_target(target, times[h - 1] - times[h - 1 - self.window])
        return target
