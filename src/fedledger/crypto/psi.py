"""Diffie-Hellman private set intersection over the prime-order group of edwards25519.

Two parties A and B hold sets of ids X and Y and secret scalars a and b. With ``H`` a hash
onto the group (:func:`hash_to_group`) and exponentiation commutative (``(H^a)^b =
(H^b)^a``), the protocol is two messages each way (Meadows 1986; Huberman, Franklin and
Hogg 1999; the entity resolution step of Hardy et al. 2017):

1. each party sends its blinded set ``{H(x)^a}``, sorted by encoding (the order carries
   nothing: the values look uniform without the key);
2. each party raises the other's blinded values to its own key and returns them in the
   order received: ``{H(y)^(ba)}`` to B, ``{H(x)^(ab)}`` to A.

A holds the double-blinded values of its own items (by position) and of B's items (it
computed them), so it learns ``X & Y``, and nothing about ``Y - X`` beyond its size: a
non-member's ``H(y)^b`` is a DDH-hiding value without ``b``. B learns the same. Both
then sort the intersection by its double-blinded value, a common order that neither
party chose (the "aligned order" of vertical FL).

Semi-honest security only (as in Hardy et al.): a party that lies about its reply changes
the result, and the set sizes are revealed. ``H`` is the sum of two Elligator 2 maps
(libsodium's ``crypto_core_ed25519_from_uniform``, which clears the cofactor) of the two
halves of a SHA-512 digest, the random-oracle construction of RFC 9380 (section 3), so no
discrete logarithm of ``H(x)`` is known to anyone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from nacl import bindings as _nb

from fedledger.crypto import edpoints
from fedledger.errors import FedledgerError

DOMAIN = b"fedledger/psi/v1"


class PsiError(FedledgerError, ValueError):
    """A malformed PSI message or a bad key."""


def _as_bytes(item: bytes | str) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode()
    raise PsiError(f"PSI item {item!r} of type {type(item).__name__}; allowed: bytes or str")


def hash_to_group(item: bytes | str, domain: bytes = DOMAIN) -> bytes:
    """``H(item)``: a point of the prime-order subgroup whose logarithm nobody knows."""
    data = _as_bytes(item)
    digest = hashlib.sha512(domain + len(data).to_bytes(8, "big") + data).digest()
    p1 = _nb.crypto_core_ed25519_from_uniform(digest[:32])
    p2 = _nb.crypto_core_ed25519_from_uniform(digest[32:])
    return bytes(edpoints.add(p1, p2))


def scalar_from_seed(seed: bytes) -> int:
    """A secret scalar in ``[1, L)`` derived from ``seed`` (64 uniform bits of margin)."""
    wide = int.from_bytes(hashlib.sha512(b"fedledger/psi-key/" + seed).digest(), "little")
    return wide % (edpoints.L - 1) + 1


@dataclass(frozen=True)
class BlindedSet:
    """Message 1: the sender's ids, each raised to its key, sorted by encoding."""

    points: tuple[bytes, ...]


@dataclass(frozen=True)
class Reblinded:
    """Message 2: the receiver's message 1, each point raised to the sender's key, in order."""

    points: tuple[bytes, ...]


@dataclass(frozen=True)
class PsiResult:
    """What one party learns: the intersection (in the common order) and the sizes."""

    intersection: tuple[bytes, ...]
    own_size: int
    other_size: int


def _check_points(points: Sequence[bytes], what: str) -> None:
    seen: set[bytes] = set()
    for i, p in enumerate(points):
        if not isinstance(p, bytes | bytearray) or len(p) != edpoints.POINT_SIZE:
            raise PsiError(f"{what}[{i}] is not a {edpoints.POINT_SIZE}-byte point")
        if bytes(p) == edpoints.IDENTITY or not _nb.crypto_core_ed25519_is_valid_point(bytes(p)):
            raise PsiError(f"{what}[{i}] is not a point of the prime-order subgroup")
        if p in seen:
            raise PsiError(f"{what}[{i}] repeats an earlier point; each id may appear once")
        seen.add(bytes(p))


class PsiParty:
    """One side of the two-message DH-PSI; call :meth:`blinded`, :meth:`reblind`, :meth:`finish`."""

    def __init__(
        self, items: Iterable[bytes | str], secret: int, domain: bytes = DOMAIN
    ) -> None:
        if not 1 <= secret < edpoints.L:
            raise PsiError("PSI secret scalar outside [1, L); derive it with scalar_from_seed")
        raw = [_as_bytes(i) for i in items]
        if len(set(raw)) != len(raw):
            raise PsiError(f"{len(raw) - len(set(raw))} duplicate ids; each id may appear once")
        self._secret = secret
        blinded = {edpoints.mul(secret, hash_to_group(x, domain)): x for x in raw}
        self._order = sorted(blinded)
        self._items = [blinded[p] for p in self._order]
        self._theirs: set[bytes] | None = None
        self._other_size = 0

    def __repr__(self) -> str:  # never print the key or the items
        return f"PsiParty(size={len(self._items)})"

    def blinded(self) -> BlindedSet:
        """Message 1."""
        return BlindedSet(tuple(self._order))

    def reblind(self, theirs: BlindedSet) -> Reblinded:
        """Message 2 for the other party; also remembers their double-blinded values."""
        _check_points(theirs.points, "blinded set")
        out = tuple(edpoints.mul(self._secret, p) for p in theirs.points)
        self._theirs = set(out)
        self._other_size = len(out)
        return Reblinded(out)

    def finish(self, reply: Reblinded) -> PsiResult:
        """The intersection from the other party's message 2 (the reply to our message 1)."""
        if self._theirs is None:
            raise PsiError("finish() before reblind(): answer the other party's set first")
        if len(reply.points) != len(self._order):
            raise PsiError(
                f"reply of {len(reply.points)} points to a set of {len(self._order)}; "
                "one point per sent point, in order"
            )
        _check_points(reply.points, "reply")
        common = sorted(
            (dbl, item)
            for dbl, item in zip(reply.points, self._items, strict=True)
            if dbl in self._theirs
        )
        return PsiResult(tuple(item for _, item in common), len(self._items), self._other_size)


@dataclass(frozen=True)
class PsiTranscript:
    """Every message of one run, in order: (sender, message)."""

    messages: tuple[tuple[str, BlindedSet | Reblinded], ...]


def run_psi(
    items_a: Iterable[bytes | str],
    items_b: Iterable[bytes | str],
    seed: bytes,
) -> tuple[PsiResult, PsiResult, PsiTranscript]:
    """Both parties' results of one run with keys derived from ``seed`` (simulation)."""
    a = PsiParty(items_a, scalar_from_seed(seed + b"/A"))
    b = PsiParty(items_b, scalar_from_seed(seed + b"/B"))
    a1, b1 = a.blinded(), b.blinded()
    a2, b2 = a.reblind(b1), b.reblind(a1)
    transcript = PsiTranscript((("A", a1), ("B", b1), ("A", a2), ("B", b2)))
    return a.finish(b2), b.finish(a2), transcript
