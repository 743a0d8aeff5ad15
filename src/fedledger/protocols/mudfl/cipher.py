"""Model encryption before the blob store (Section IV-C): AES-256-GCM under a per-round
model key, the key sealed to the aggregator with an X25519 box.

Deterministic under the run's keys (so two seeded runs write identical ledgers): the
model key is derived from the worker's private key and the round, the GCM nonce from the
key (one encryption per key), the box nonce from the round.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from nacl.exceptions import CryptoError as NaclCryptoError
from nacl.public import Box, PrivateKey, PublicKey

from fedledger.errors import FedledgerError

PBKDF2_ITERATIONS = 390_000
NONCE = 12


class ModelCipherError(FedledgerError, ValueError):
    """A ciphertext or sealed key that does not open."""


class ModelCipher:
    """AES-256-GCM with one key; ``stretch``: derive the AES key with PBKDF2 (390k)."""

    def __init__(self, key: bytes, stretch: bool = False) -> None:
        if len(key) != 32:
            raise ValueError(f"a model key is 32 bytes, got {len(key)}")
        if stretch:
            kdf = PBKDF2HMAC(hashes.SHA256(), 32, b"mudfl/model-key", PBKDF2_ITERATIONS)
            key = kdf.derive(key)
        self._aead = AESGCM(key)
        self._nonce = hashlib.sha256(b"mudfl/nonce" + key).digest()[:NONCE]

    def encrypt(self, data: bytes) -> bytes:
        return self._nonce + self._aead.encrypt(self._nonce, data, b"mudfl/model")

    def decrypt(self, data: bytes) -> bytes:
        try:
            return self._aead.decrypt(data[:NONCE], data[NONCE:], b"mudfl/model")
        except Exception as err:  # InvalidTag and short inputs
            raise ModelCipherError(
                f"model ciphertext does not open: {type(err).__name__}"
            ) from None


def box_key(secret: bytes) -> PrivateKey:
    """An X25519 key from 32 secret bytes (e.g. ``KeyPair.derive_secret``)."""
    return PrivateKey(hashlib.sha256(b"mudfl/box" + secret).digest())


def seal_key(model_key: bytes, own: PrivateKey, to: bytes, rnd: int) -> bytes:
    """``own`` public key (32 bytes) || the model key boxed to ``to``."""
    nonce = hashlib.sha256(b"mudfl/seal" + rnd.to_bytes(8, "big")).digest()[:24]
    sealed = Box(own, PublicKey(to)).encrypt(model_key, nonce)
    return bytes(own.public_key) + bytes(sealed)


def open_key(sealed: bytes, own: PrivateKey) -> bytes:
    """The model key in ``sealed`` (see :func:`seal_key`); ModelCipherError if it fails."""
    if len(sealed) < 32 + 24 + 16:
        raise ModelCipherError(f"a sealed key is at least 72 bytes, got {len(sealed)}")
    try:
        key = Box(own, PublicKey(sealed[:32])).decrypt(sealed[32:])
    except (NaclCryptoError, ValueError, TypeError) as err:
        raise ModelCipherError(f"sealed model key does not open: {err}") from None
    if len(key) != 32:
        raise ModelCipherError(f"sealed model key has {len(key)} bytes, not 32")
    return key
