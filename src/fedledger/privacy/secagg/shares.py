"""Key agreement, encrypted Shamir shares and their robust reconstruction.

- X25519 (PyNaCl's libsodium bindings) for the pairwise mask seeds and for the channel
  keys; a shared secret is hashed with both parties' ids and the round into a seed.
- Shamir over GF(2**521 - 1) (:mod:`fedledger.crypto.shamir`): a 32-byte secret is an
  integer below the field size. Party ``x`` is a client's 1-based position in the
  round's roster.
- A share bundle (sender's shares of its mask key and self-mask seed for one recipient)
  travels through the server inside ``nacl.public.Box`` (X25519 + XSalsa20-Poly1305);
  the plaintext names round, sender and recipient, so a bundle replayed to another
  recipient or round is refused. The nonce is derived from those names: each channel
  key pair is fresh per round and each (sender, recipient) pair is used once.
- Reconstruction checks the result against a public value (the mask key's public key,
  the hash commitment to the self-mask seed); if a share is wrong it searches for a
  subset of ``t`` shares that checks, and names the shares off that polynomial.
"""

from __future__ import annotations

import hashlib
import itertools
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nacl.bindings import crypto_scalarmult, crypto_scalarmult_base
from nacl.exceptions import CryptoError
from nacl.public import Box, PrivateKey, PublicKey

from fedledger.crypto.shamir import ShamirError, Share, reconstruct, split
from fedledger.privacy.he.rand import RandomSource
from fedledger.privacy.secagg.errors import SecAggError, TamperedShareError
from fedledger.privacy.secagg.prg import SEED_BYTES, derive_seed

FIELD = (1 << 521) - 1  # a Mersenne prime
FIELD_BYTES = 66
KEY_BYTES = 32
MAX_SUBSETS = 20_000  # subsets tried when shares disagree
_BUNDLE = struct.Struct(">QHH")  # round, len(sender), len(recipient)


def random_bytes(rng: RandomSource, n: int = KEY_BYTES) -> bytes:
    return rng.randbits(8 * n).to_bytes(n, "big")


def public_key(secret: bytes) -> bytes:
    """The X25519 public key of a 32-byte secret (libsodium clamps it)."""
    if len(secret) != KEY_BYTES:
        raise SecAggError(f"X25519 secret of {len(secret)} bytes; allowed: {KEY_BYTES}")
    return crypto_scalarmult_base(secret)


def agree(secret: bytes, peer_public: bytes, label: bytes) -> bytes:
    """A 32-byte seed from X25519(secret, peer_public), bound to ``label``."""
    if len(peer_public) != KEY_BYTES:
        raise SecAggError(f"X25519 public key of {len(peer_public)} bytes; allowed: 32")
    shared = crypto_scalarmult(secret, peer_public)
    if shared == bytes(KEY_BYTES):
        raise SecAggError("X25519 gave the all-zero secret: a low-order public key")
    return derive_seed("agree", shared, label)


def commit(seed: bytes) -> bytes:
    """Hash commitment to a self-mask seed (32 random bytes: hiding in practice)."""
    return hashlib.sha256(b"fedledger/secagg/commit/" + seed).digest()


def share_secret(secret: bytes, t: int, m: int, rng: RandomSource) -> tuple[Share, ...]:
    """Shamir shares of a 32-byte secret for parties ``1..m``."""
    if len(secret) != SEED_BYTES:
        raise SecAggError(f"secret of {len(secret)} bytes; allowed: {SEED_BYTES}")
    return split(int.from_bytes(secret, "big"), t, m, FIELD, rng.randbelow)


@dataclass(frozen=True)
class Bundle:
    """What ``sender`` gives ``recipient``: its shares of the mask key and the seed."""

    round: int
    sender: str
    recipient: str
    key_share: int
    seed_share: int

    def to_bytes(self) -> bytes:
        s, r = self.sender.encode(), self.recipient.encode()
        return b"".join(
            (
                _BUNDLE.pack(self.round, len(s), len(r)), s, r,
                self.key_share.to_bytes(FIELD_BYTES, "big"),
                self.seed_share.to_bytes(FIELD_BYTES, "big"),
            )
        )  # fmt: skip

    @classmethod
    def from_bytes(cls, data: bytes) -> Bundle:
        if len(data) < _BUNDLE.size:
            raise SecAggError("share bundle truncated")
        rnd, ls, lr = _BUNDLE.unpack_from(data)
        pos = _BUNDLE.size
        if len(data) != pos + ls + lr + 2 * FIELD_BYTES:
            raise SecAggError(f"share bundle of {len(data)} bytes does not match its header")
        sender = data[pos : pos + ls].decode()
        recipient = data[pos + ls : pos + ls + lr].decode()
        pos += ls + lr
        key = int.from_bytes(data[pos : pos + FIELD_BYTES], "big")
        seed = int.from_bytes(data[pos + FIELD_BYTES :], "big")
        return cls(rnd, sender, recipient, key, seed)


def _nonce(round_: int, sender: str, recipient: str) -> bytes:
    label = f"{round_}/{sender}/{recipient}".encode()
    return derive_seed("nonce", label)[: Box.NONCE_SIZE]


def seal(bundle: Bundle, sender_secret: bytes, recipient_public: bytes) -> bytes:
    """Encrypt and authenticate a bundle from its sender to its recipient."""
    box = Box(PrivateKey(sender_secret), PublicKey(recipient_public))
    nonce = _nonce(bundle.round, bundle.sender, bundle.recipient)
    return bytes(box.encrypt(bundle.to_bytes(), nonce).ciphertext)


def open_sealed(
    data: bytes, recipient_secret: bytes, sender_public: bytes, expect: tuple[int, str, str]
) -> Bundle:
    """Decrypt a bundle; refuse a forged, tampered or misaddressed one."""
    round_, sender, recipient = expect
    box = Box(PrivateKey(recipient_secret), PublicKey(sender_public))
    try:
        plain = box.decrypt(bytes(data), _nonce(round_, sender, recipient))
    except CryptoError as exc:
        raise TamperedShareError([sender], "share bundle failed authentication") from exc
    bundle = Bundle.from_bytes(plain)
    if (bundle.round, bundle.sender, bundle.recipient) != expect:
        raise TamperedShareError(
            [sender], f"bundle names {bundle.round, bundle.sender, bundle.recipient}, "
            f"expected {expect}"
        )  # fmt: skip
    return bundle


def robust_reconstruct(
    shares: Sequence[tuple[str, Share]],
    t: int,
    check: Callable[[bytes], bool],
    what: str,
) -> tuple[bytes, list[str]]:
    """The 32-byte secret from ``(holder, share)`` pairs that passes ``check``, and the
    holders whose shares are not on its polynomial. Raises if no ``t`` of them agree."""
    if len(shares) < t:
        raise SecAggError(f"{len(shares)} shares of {what}; threshold needs {t}")
    for n_tried, subset in enumerate(itertools.combinations(shares, t)):
        if n_tried >= MAX_SUBSETS:
            break
        value = reconstruct([s for _, s in subset], t, FIELD)
        if value >= 1 << (8 * SEED_BYTES):
            continue
        secret = value.to_bytes(SEED_BYTES, "big")
        if not check(secret):
            continue
        base = [s for _, s in subset]
        bad = []
        for holder, share in shares:
            try:
                reconstruct([*base, share] if share not in base else base, t, FIELD)
            except ShamirError:
                bad.append(holder)
        return secret, sorted(bad)
    raise TamperedShareError(
        sorted(h for h, _ in shares), f"no {t} of {len(shares)} shares of {what} reconstruct it"
    )
