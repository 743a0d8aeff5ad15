"""Consortium storage (Nagar Sec. III-B, "no single entity has access to the entire
encrypted data"): a blob is encrypted with a fresh AES-256-GCM key, the ciphertext is cut
into m chunks and the key is Shamir-shared t of m (:mod:`fedledger.crypto.shamir`) over
the m storage members. Member i stores chunk i and chunk i-1 (each chunk on two members,
so one member can be lost) and key share i only.

With m >= 3 no member holds every chunk, and with t >= 2 no member holds the key (a
single share of a degree t-1 polynomial is uniform whatever the key). Reading a blob
takes every chunk (from either holder) and any t shares.

Pure functions (no IO); randomness comes from a seeded ``random.Random`` so simulator
runs are deterministic; a deployment would pass ``random.SystemRandom()``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fedledger.codec import record
from fedledger.crypto.shamir import ShamirError, Share, reconstruct, split
from fedledger.errors import FedledgerError
from fedledger.storage.cid import cid_of

#: the field of the key shares: the Mersenne prime 2^521 - 1 (> any 256-bit key)
PRIME = 2**521 - 1
SHARE_BYTES = 66  # ceil(521 / 8)
AAD = b"fedledger/nagar/vault"
REPLICAS = 2
#: the largest part a storage member accepts (bytes)
MAX_PART = 64 * 2**20


class VaultError(FedledgerError, ValueError):
    """A sealed blob cannot be made or opened; says which part and what is allowed."""


@record("nagar.Sealed")
@dataclass(frozen=True)
class Sealed:
    """The public manifest of a sealed blob: the chunks' and key shares' content ids,
    the AES-GCM nonce and the threshold."""

    chunks: tuple[str, ...]
    shares: tuple[str, ...]
    nonce: bytes
    threshold: int


def digest(data: bytes) -> str:
    """A part's content id (the blob store's CID, so members store it under that name)."""
    return cid_of(data)


def holders(index: int, m: int) -> tuple[int, ...]:
    """The members (0-based) that store chunk ``index``: ``index`` and ``index + 1``."""
    return tuple((index + r) % m for r in range(min(REPLICAS, m)))


def check_members(t: int, m: int) -> None:
    if m < 3:
        raise VaultError(f"{m} storage members; allowed m >= 3 (no member may hold every chunk)")
    if not 2 <= t <= m:
        raise VaultError(f"threshold t={t} of m={m}; allowed 2 <= t <= m (one share is no key)")


def seal(
    data: bytes, t: int, m: int, rng: random.Random
) -> tuple[Sealed, tuple[bytes, ...], tuple[bytes, ...]]:
    """(manifest, the m ciphertext chunks, the m key shares) of ``data``."""
    check_members(t, m)
    key = rng.randbytes(32)
    nonce = rng.randbytes(12)
    cipher = AESGCM(key).encrypt(nonce, data, AAD)
    size = -(-len(cipher) // m)
    chunks = tuple(cipher[i * size : (i + 1) * size] for i in range(m))
    shares = tuple(
        s.x.to_bytes(2, "big") + s.y.to_bytes(SHARE_BYTES, "big")
        for s in split(int.from_bytes(key, "big"), t, m, PRIME, rng.randrange)
    )
    manifest = Sealed(tuple(digest(c) for c in chunks), tuple(digest(s) for s in shares), nonce, t)
    return manifest, chunks, shares


def member_parts(
    sealed: Sealed, chunks: Sequence[bytes], shares: Sequence[bytes], member: int
) -> tuple[bytes, ...]:
    """What storage member ``member`` (0-based) keeps: its chunks, then its key share."""
    m = len(sealed.chunks)
    own = [chunks[i] for i in range(m) if member in holders(i, m)]
    return (*own, shares[member])


def parts_needed(sealed: Sealed, have: Mapping[str, bytes]) -> bool:
    """Whether ``have`` (content id -> bytes) holds every chunk and t shares."""
    chunks = all(c in have for c in sealed.chunks)
    return chunks and sum(s in have for s in sealed.shares) >= sealed.threshold


def unseal(sealed: Sealed, have: Mapping[str, bytes]) -> bytes:
    """The blob from every chunk and at least t key shares (by content id)."""
    missing = [i for i, c in enumerate(sealed.chunks) if c not in have]
    if missing:
        raise VaultError(f"chunks {missing} missing; allowed: every chunk")
    raw = [have[s] for s in sealed.shares if s in have and digest(have[s]) == s]
    if len(raw) < sealed.threshold:
        raise VaultError(f"{len(raw)} key shares; allowed: at least t={sealed.threshold}")
    shares = [Share(int.from_bytes(r[:2], "big"), int.from_bytes(r[2:], "big")) for r in raw]
    try:
        key = reconstruct(shares[: sealed.threshold], sealed.threshold, PRIME)
        cipher = b"".join(have[c] for c in sealed.chunks)
        return AESGCM(key.to_bytes(32, "big")).decrypt(sealed.nonce, cipher, AAD)
    except (ShamirError, InvalidTag, OverflowError) as err:
        raise VaultError(f"sealed blob does not open: {err or type(err).__name__}") from err


class Reassembly:
    """A reader's sealed blobs in flight: the parts it awaits (part id -> (blob id, chunk
    index or -1 for a key share, holder tried)) and the parts that arrived."""

    def __init__(self) -> None:
        self.pending: dict[str, tuple[str, int, int]] = {}
        self.sealed: dict[str, Sealed] = {}
        self.got: dict[str, dict[str, bytes]] = {}

    def clear(self) -> None:
        self.pending.clear()
        self.sealed.clear()
        self.got.clear()

    def want(self, cid: str, sealed: Sealed) -> None:
        self.sealed[cid] = sealed
        self.got[cid] = {}

    def add(self, cid: str, part: str, data: bytes | None) -> bytes | VaultError | None:
        """Note a part (None: lost); the blob once it opens, an error once it cannot,
        None while parts are still on their way."""
        if data is not None:
            self.got[cid][part] = data
        sealed = self.sealed[cid]
        if parts_needed(sealed, self.got[cid]):
            try:
                return unseal(sealed, self.got[cid])
            except VaultError as err:
                if not self._outstanding(cid):
                    return err
                return None
        if not self._outstanding(cid):
            return VaultError(f"parts of {cid} lost: {len(self.got[cid])} arrived")
        return None

    def _outstanding(self, cid: str) -> bool:
        return any(owner == cid for owner, _, _ in self.pending.values())

    def drop(self, cid: str) -> None:
        self.sealed.pop(cid, None)
        self.got.pop(cid, None)
        for part in [p for p, (owner, _, _) in self.pending.items() if owner == cid]:
            del self.pending[part]
