"""Mask expansion: a 32-byte seed to a vector of uniform elements of Z_{2**64}.

ChaCha20 (RFC 8439 block function via ``cryptography``) keyed by the seed with an
all-zero nonce, run over zeros: the keystream read as little-endian uint64. Each seed is
used for one vector only (seeds are fresh per round), so the fixed nonce is safe.
"""

from __future__ import annotations

import hashlib

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from fedledger.privacy.secagg.errors import SecAggError

SEED_BYTES = 32
_NONCE = bytes(16)


def expand(seed: bytes, length: int) -> np.ndarray:
    """``length`` uniform uint64 values from ``seed`` (32 bytes)."""
    if len(seed) != SEED_BYTES:
        raise SecAggError(f"mask seed of {len(seed)} bytes; allowed: {SEED_BYTES}")
    if length < 0:
        raise SecAggError(f"mask length {length}; allowed: >= 0")
    enc = Cipher(algorithms.ChaCha20(seed, _NONCE), mode=None).encryptor()
    stream = enc.update(bytes(8 * length))
    return np.frombuffer(stream, dtype="<u8").astype(np.uint64)


def derive_seed(label: str, *parts: bytes) -> bytes:
    """A 32-byte seed: SHA-256 over a domain label and length-prefixed ``parts``."""
    h = hashlib.sha256(b"fedledger/secagg/" + label.encode())
    for part in parts:
        h.update(len(part).to_bytes(4, "big") + part)
    return h.digest()
