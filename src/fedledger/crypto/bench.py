"""Signature verification speed, measured in the calling process.

``verify_rate`` lets a benchmark print its own figures as ratios of this machine's
signature speed (e.g. "blocks verified per second = 0.8 x Ed25519 verify/s"), which
travel between machines better than raw rates.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import nacl.signing
from cryptography.hazmat.primitives.asymmetric import ed25519

from fedledger.crypto.keys import CryptoError, KeyPair

RATE_SCHEMES = ("ed25519", "ed25519-pynacl", "ed25519-cryptography", "rsa")
_MESSAGE = bytes(range(32))  # a record id is 32 bytes: that is what nodes verify


def verify_rate(scheme: str = "ed25519", seconds: float = 1.0) -> float:
    """Signature verifications per second of one 32-byte message, on one core.

    scheme: "ed25519" (through fedledger's ``PublicKey.verify``, PyNaCl underneath),
        "ed25519-pynacl" and "ed25519-cryptography" (the two libraries called directly,
        for comparison), or "rsa" (RSA-2048 PKCS#1 v1.5 SHA-256 through ``PublicKey``).
    seconds: how long to measure (after a short warm-up).
    """
    if scheme not in RATE_SCHEMES:
        raise CryptoError(f"unknown scheme {scheme!r}; allowed: {', '.join(RATE_SCHEMES)}")
    if not seconds > 0:
        raise CryptoError(f"seconds must be > 0, got {seconds!r}")
    return _rate(_verifier(scheme), seconds)


def _verifier(scheme: str) -> Callable[[], object]:
    seed = b"\x07" * 32
    if scheme == "ed25519-cryptography":
        private = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
        public = private.public_key()
        sig = private.sign(_MESSAGE)
        return lambda: public.verify(sig, _MESSAGE)
    if scheme == "ed25519-pynacl":
        signing = nacl.signing.SigningKey(seed)
        verify_key = signing.verify_key
        signed = signing.sign(_MESSAGE).signature
        return lambda: verify_key.verify(_MESSAGE, signed)
    kp = KeyPair.generate("rsa") if scheme == "rsa" else KeyPair.generate("ed25519", seed)
    sig = kp.sign(_MESSAGE)
    pub = kp.public
    if not pub.verify(_MESSAGE, sig):  # pragma: no cover - would be a library fault
        raise CryptoError(f"{scheme}: a fresh signature did not verify")
    return lambda: pub.verify(_MESSAGE, sig)


def _rate(fn: Callable[[], object], seconds: float) -> float:
    for _ in range(50):
        fn()
    batch = 100
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            fn()
        count += batch
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)
