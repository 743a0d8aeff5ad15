"""Node identities: key pairs, public keys, addresses, PEM key files, a key directory.

Schemes:

- ``"ed25519"`` (default). Deterministic from a 32-byte seed, so a simulation that
  derives each node's seed from the experiment seed gets the same addresses, ids and
  signatures on every run. Implemented with PyNaCl (libsodium) because it verifies
  faster than ``cryptography`` (OpenSSL) here. Measured in one process on the dev
  machine (2 shared cores, ``python benchmarks/signatures.py``, 32-byte messages, three
  quiet runs): PyNaCl ~18,600 verifications/s, cryptography ~9,600/s, a 1.9x ratio
  (the issue quotes ~22k vs ~14k on another machine). Key files are still written with
  ``cryptography`` (PKCS#8 PEM), so other tools can read them.
- ``"rsa"``: RSA-2048, e = 65537, signatures PKCS#1 v1.5 with SHA-256 (μDFL's prototype
  uses RSA with the ``cryptography`` library). Verification is cheap with e = 65537
  (~48,000/s on the same machine, 2.5x Ed25519) but signing is slow (~3,700/s) and
  keys and signatures are large (294-byte public key, 256-byte signature). PKCS#1 v1.5
  rather than PSS because its signatures are deterministic: one key and one record give
  one byte string, so ledgers written with the same key files are byte-identical across
  runs, like Ed25519 ones. PKCS#1 v1.5 signature verification has no known practical
  attack when the verifier parses strictly, which OpenSSL does. ``cryptography`` cannot
  generate an RSA key from a seed, so ``KeyPair.generate("rsa", seed=...)`` is an
  error; save the key with ``save_keypair`` and load it to reuse an RSA identity.

Seeds for simulations: ``derive_seed(experiment_seed, node_id)``.

Public key bytes: Ed25519 keys are their 32 raw bytes; RSA keys are DER
SubjectPublicKeyInfo. An address is SHA-256 of the public key bytes (32 bytes), the
same rule for both schemes.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.signing
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedledger.errors import FedledgerError

SCHEMES = ("ed25519", "rsa")
RSA_BITS = 2048
RSA_EXPONENT = 65537
ADDRESS_SIZE = 32


class CryptoError(FedledgerError, ValueError):
    """A key or scheme is not usable: wrong scheme name, bad key bytes, wrong owner."""


class KeyFileError(CryptoError):
    """A key file is missing, unreadable, corrupt, or holds the wrong kind of key."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = str(path)
        super().__init__(f"key file {self.path}: {problem}")


def _check_scheme(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise CryptoError(f"unknown signature scheme {scheme!r}; allowed: {', '.join(SCHEMES)}")


def address_of(public_key_bytes: bytes) -> bytes:
    """The 32-byte address of a public key: SHA-256 of its bytes."""
    return hashlib.sha256(public_key_bytes).digest()


# ---------------------------------------------------------------- public keys


@dataclass(frozen=True, eq=False)
class PublicKey:
    """A verifying key. Build with :meth:`from_bytes` or ``KeyPair.public``."""

    scheme: str
    data: bytes
    _key: Any = field(repr=False, compare=False)

    @classmethod
    def from_bytes(cls, scheme: str, data: bytes) -> PublicKey:
        """Parse public key bytes (raw 32 bytes for Ed25519, DER SPKI for RSA)."""
        _check_scheme(scheme)
        if not isinstance(data, bytes):
            raise CryptoError(f"public key must be bytes, got {type(data).__name__}")
        if scheme == "ed25519":
            if len(data) != 32:
                raise CryptoError(f"an Ed25519 public key is 32 bytes, got {len(data)}")
            try:
                key: Any = nacl.signing.VerifyKey(data)
            except Exception as err:
                raise CryptoError(f"bad Ed25519 public key: {err}") from None
            return cls(scheme, data, key)
        try:
            key = serialization.load_der_public_key(data)
        except Exception:
            raise CryptoError(
                f"bad RSA public key: expected DER SubjectPublicKeyInfo, got {len(data)} bytes "
                "that do not parse"
            ) from None
        if not isinstance(key, rsa.RSAPublicKey) or key.key_size < RSA_BITS:
            raise CryptoError(
                f"expected an RSA public key of at least {RSA_BITS} bits, got "
                f"{type(key).__name__} of {getattr(key, 'key_size', '?')} bits"
            )
        return cls(scheme, data, key)

    def to_bytes(self) -> bytes:
        return self.data

    @property
    def address(self) -> bytes:
        return address_of(self.data)

    def verify(self, msg: bytes, sig: bytes) -> bool:
        """True if ``sig`` is this key's signature of ``msg``; never raises."""
        if not isinstance(sig, bytes) or not isinstance(msg, bytes):
            return False
        if self.scheme == "ed25519":
            if len(sig) != 64:
                return False
            try:
                self._key.verify(msg, sig)
            except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
                return False
            return True
        try:
            self._key.verify(sig, msg, padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError, TypeError):
            return False
        return True

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled as (scheme, bytes), so keys cross process boundaries (Ray, multiprocessing)
        return (PublicKey.from_bytes, (self.scheme, self.data))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PublicKey):
            return NotImplemented
        return self.scheme == other.scheme and self.data == other.data

    def __hash__(self) -> int:
        return hash((self.scheme, self.data))


# ---------------------------------------------------------------- key pairs


@dataclass(frozen=True, eq=False)
class KeyPair:
    """A signing key and its public key. Build with :meth:`generate` or :func:`load_keypair`."""

    scheme: str
    public: PublicKey
    _private: Any = field(repr=False)

    @classmethod
    def generate(cls, scheme: str = "ed25519", seed: bytes | None = None) -> KeyPair:
        """A new key pair; Ed25519 from a 32-byte ``seed`` is deterministic."""
        _check_scheme(scheme)
        if scheme == "ed25519":
            if seed is None:
                seed = os.urandom(32)
            if not isinstance(seed, bytes) or len(seed) != 32:
                got = len(seed) if isinstance(seed, bytes) else type(seed).__name__
                raise CryptoError(f"an Ed25519 seed is 32 bytes, got {got}")
            return cls._from_ed25519_seed(seed)
        if seed is not None:
            raise CryptoError(
                "RSA keys cannot be generated from a seed (the cryptography library draws "
                "primes from the OS random source only); pass seed=None, or save the key "
                "with save_keypair and load it with load_keypair to reuse it"
            )
        private = rsa.generate_private_key(public_exponent=RSA_EXPONENT, key_size=RSA_BITS)
        return cls._from_rsa(private)

    @classmethod
    def _from_ed25519_seed(cls, seed: bytes) -> KeyPair:
        signing = nacl.signing.SigningKey(seed)
        public = PublicKey("ed25519", bytes(signing.verify_key), signing.verify_key)
        return cls("ed25519", public, signing)

    @classmethod
    def _from_rsa(cls, private: rsa.RSAPrivateKey) -> KeyPair:
        pub = private.public_key()
        der = pub.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls("rsa", PublicKey("rsa", der, pub), private)

    @property
    def address(self) -> bytes:
        return self.public.address

    def sign(self, msg: bytes) -> bytes:
        if not isinstance(msg, bytes):
            raise CryptoError(f"can only sign bytes, got {type(msg).__name__}")
        if self.scheme == "ed25519":
            return self._private.sign(msg).signature
        return self._private.sign(msg, padding.PKCS1v15(), hashes.SHA256())

    def __reduce__(self) -> tuple[Any, ...]:
        return (_keypair_from_pem, (self._pem(),))

    def derive_secret(self, label: bytes) -> bytes:
        """A 32-byte secret bound to this private key and ``label`` (e.g. the node's
        blob-encryption key): HKDF-SHA256 over the private key's PKCS#8 encoding."""
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(
            self._pem()
        )

    def _pem(self) -> bytes:
        if self.scheme == "ed25519":
            key: Any = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(self._private))
        else:
            key = self._private
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _keypair_from_pem(data: bytes) -> KeyPair:
    key = serialization.load_pem_private_key(data, password=None)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return KeyPair._from_ed25519_seed(key.private_bytes_raw())
    if isinstance(key, rsa.RSAPrivateKey):
        return KeyPair._from_rsa(key)
    raise CryptoError(f"not an Ed25519 or RSA private key: {type(key).__name__}")


def derive_seed(*parts: int | str | bytes) -> bytes:
    """A 32-byte Ed25519 seed derived from, e.g., ``(experiment_seed, node_id)``.

    SHA-256 over a domain tag and the length-prefixed parts, so ``("ab", "c")`` and
    ``("a", "bc")`` give different seeds. For simulations only: a seed derived from a
    public experiment seed is not a secret.
    """
    h = hashlib.sha256(b"fedledger/seed/v1")
    for part in parts:
        if isinstance(part, bool) or not isinstance(part, int | str | bytes):
            raise CryptoError(f"seed parts are int, str or bytes, got {type(part).__name__}")
        if isinstance(part, int):
            raw, tag = str(part).encode(), b"i"
        elif isinstance(part, str):
            raw, tag = part.encode(), b"s"
        else:
            raw, tag = part, b"b"
        h.update(tag + len(raw).to_bytes(8, "big") + raw)
    return h.digest()


def save_keypair(kp: KeyPair, path: str | os.PathLike[str]) -> None:
    """Write the private key as unencrypted PKCS#8 PEM, mode 0600, atomically."""
    write_private_file(path, kp._pem())


def write_private_file(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` (a private key) to ``path`` atomically and fsynced, mode 0600."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_keypair(path: str | os.PathLike[str], scheme: str | None = None) -> KeyPair:
    """Read a PEM private key written by :func:`save_keypair` (or openssl).

    scheme: if given, the file must hold a key of that scheme.
    """
    if scheme is not None:
        _check_scheme(scheme)
    expected = f"a PKCS#8 PEM {scheme or 'Ed25519 or RSA-2048'} private key"
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise KeyFileError(path, f"cannot read it ({err.strerror}); expected {expected}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise KeyFileError(path, f"it is password-protected; expected {expected}") from None
    except Exception:
        raise KeyFileError(
            path, f"not a readable PEM private key ({len(data)} bytes); expected {expected}"
        ) from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        kp = KeyPair._from_ed25519_seed(key.private_bytes_raw())
    elif isinstance(key, rsa.RSAPrivateKey) and key.key_size >= RSA_BITS:
        kp = KeyPair._from_rsa(key)
    else:
        bits = getattr(key, "key_size", None)
        kind = type(key).__name__.removeprefix("_").removesuffix("PrivateKey")
        kind += f" ({bits} bits)" if bits else ""
        raise KeyFileError(path, f"holds a key of type {kind}; expected {expected}")
    if scheme is not None and kp.scheme != scheme:
        raise KeyFileError(path, f"holds a {kp.scheme} key; expected {expected}")
    return kp


# ---------------------------------------------------------------- directory


class KeyDirectory(Mapping[bytes, PublicKey]):
    """Known identities: address -> public key. Grows only through :meth:`add`."""

    def __init__(self, keys: Iterable[PublicKey] = ()) -> None:
        self._keys: dict[bytes, PublicKey] = {}
        for key in keys:
            self.add(key)

    def add(self, key: PublicKey) -> bytes:
        """Add a public key; return its address. Adding the same key again is a no-op."""
        if not isinstance(key, PublicKey):
            raise CryptoError(f"KeyDirectory holds PublicKey objects, got {type(key).__name__}")
        addr = key.address
        self._keys[addr] = key
        return addr

    def __getitem__(self, address: bytes) -> PublicKey:
        return self._keys[address]

    def view(self) -> KeyDirectory:
        """A directory that shares this one's keys until a key is added to it (then it
        copies them first): one parsed key set for all the nodes a simulator runs, where a
        copy per node costs N squared key objects."""
        return SharedKeyDirectory(self)

    def verify(self, key: PublicKey, msg: bytes, sig: bytes) -> bool:
        """``key.verify(msg, sig)``: how a verifier holding this directory checks a
        signature (the simulator's nodes get a subclass that answers from a run-wide memo
        and charges each node its own checks: ``fedledger.ledger.sigmemo``)."""
        return key.verify(msg, sig)

    def __contains__(self, address: object) -> bool:
        return isinstance(address, bytes) and address in self._keys

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"KeyDirectory({len(self._keys)} keys)"


class SharedKeyDirectory(KeyDirectory):
    """A view of ``base`` (:meth:`KeyDirectory.view`): shares its keys, copies them on
    the first :meth:`add`."""

    def __init__(self, base: KeyDirectory) -> None:
        super().__init__()
        self._keys = base._keys
        self._shared = True

    def add(self, key: PublicKey) -> bytes:
        if self._shared:
            self._keys = dict(self._keys)
            self._shared = False
        return super().add(key)
