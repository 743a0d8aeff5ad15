"""Signatures and identities (keys.py); signature speed measurement (bench.py)."""

from fedledger.crypto.bench import verify_rate
from fedledger.crypto.keys import (
    ADDRESS_SIZE,
    SCHEMES,
    CryptoError,
    KeyDirectory,
    KeyFileError,
    KeyPair,
    PublicKey,
    address_of,
    derive_seed,
    load_keypair,
    save_keypair,
)

__all__ = [
    "ADDRESS_SIZE",
    "SCHEMES",
    "CryptoError",
    "KeyDirectory",
    "KeyFileError",
    "KeyPair",
    "PublicKey",
    "address_of",
    "derive_seed",
    "load_keypair",
    "save_keypair",
    "verify_rate",
]
