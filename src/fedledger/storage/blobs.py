"""A content-addressed blob store: one directory, one file per blob, named by its CID.

Writes are atomic (temporary file in the same directory, fsync, rename, fsync of the
directory), so a crash leaves either the whole blob or nothing under its name. A store
opened with ``durable=False`` (the simulator's choice: its runs do not survive a power
cut anyway) skips the fsyncs; writes stay atomic (temporary file, rename), so a crashed
*process* still leaves the whole blob or nothing, but a power cut may lose the last
writes. A real node's store is durable (the default). Reads
check the bytes against their id. With a key, blobs are encrypted at rest with AES-GCM:
the file holds ``MAGIC || nonce (12 bytes) || ciphertext+tag``, a fresh random nonce per
write, and the CID as associated data so that a ciphertext cannot be moved to another
name. The CID is always that of the plaintext. Without a key, a file holds the plaintext
bytes themselves, byte for byte the raw block IPFS would store.

Layout: ``root/<shard>/<cid>`` with ``shard`` the two characters before the last of the
CID (the "next-to-last/2" sharding of IPFS's flatfs), so no directory grows too large.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fedledger.errors import FedledgerError
from fedledger.storage.cid import InvalidCidError, cid_of, sha256_of_cid

MAGIC = b"FLBLOB\x01\x00"
NONCE_BYTES = 12
KEY_SIZES = (16, 24, 32)
_TMP_PREFIX = ".tmp-"


class BlobError(FedledgerError):
    """Base class of blob store errors."""


class BlobNotFoundError(BlobError, KeyError):
    """No blob with this id is stored."""

    def __init__(self, cid: str, root: Path) -> None:
        self.cid = cid
        super().__init__(f"blob {cid} not found in {root}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class BlobCorruptError(BlobError):
    """A stored blob does not hash to its id, or cannot be decrypted."""

    def __init__(self, cid: str, path: Path, reason: str) -> None:
        self.cid = cid
        self.path = path
        self.reason = reason
        super().__init__(f"blob {cid} at {path} is corrupt: {reason}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """Blobs under ``root``, optionally AES-GCM encrypted at rest with ``key``."""

    def __init__(self, root: Path, key: bytes | None = None, durable: bool = True) -> None:
        if key is not None and len(key) not in KEY_SIZES:
            raise ValueError(
                f"AES-GCM key has {len(key)} bytes; allowed: {', '.join(map(str, KEY_SIZES))}"
            )
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._aead = AESGCM(key) if key is not None else None
        self.durable = durable

    @property
    def encrypted(self) -> bool:
        return self._aead is not None

    def path(self, cid: str) -> Path:
        """Where the blob named ``cid`` lives (whether or not it is stored)."""
        sha256_of_cid(cid)
        return self.root / cid[-3:-1] / cid

    # ------------------------------------------------------------ writing

    def put(self, data: bytes) -> str:
        """Store ``data``; return its CID. Storing the same bytes again is a no-op."""
        data = bytes(data)
        cid = cid_of(data)
        target = self.path(cid)
        if target.exists() and self.verify(cid):
            return cid
        if not target.parent.is_dir():
            target.parent.mkdir(parents=True, exist_ok=True)
            if self.durable:
                _fsync_dir(self.root)  # the new shard directory's entry is durable too
        body = self._seal(cid, data)
        tmp = target.parent / f"{_TMP_PREFIX}{secrets.token_hex(8)}"
        try:
            with open(tmp, "wb") as fh:
                fh.write(body)
                if self.durable:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if self.durable:
            _fsync_dir(target.parent)
        return cid

    def _seal(self, cid: str, data: bytes) -> bytes:
        if self._aead is None:
            return data
        nonce = secrets.token_bytes(NONCE_BYTES)
        return MAGIC + nonce + self._aead.encrypt(nonce, data, cid.encode())

    # ------------------------------------------------------------ reading

    def get(self, cid: str) -> bytes:
        """The bytes named ``cid``, checked against it.

        Raises BlobNotFoundError when absent, BlobCorruptError when the stored bytes do
        not hash to ``cid`` (or do not decrypt), InvalidCidError for a malformed id.
        """
        digest = sha256_of_cid(cid)
        path = self.path(cid)
        try:
            body = path.read_bytes()
        except FileNotFoundError:
            raise BlobNotFoundError(cid, self.root) from None
        data = self._open(cid, path, body)
        if hashlib.sha256(data).digest() != digest:
            raise BlobCorruptError(
                cid, path, f"content hashes to {cid_of(data)}, not to its id"
            )
        return data

    def _open(self, cid: str, path: Path, body: bytes) -> bytes:
        if self._aead is None:
            if body.startswith(MAGIC) and cid_of(body) != cid:
                raise BlobCorruptError(
                    cid, path, "blob is encrypted at rest; open the BlobStore with its key"
                )
            return body
        if not body.startswith(MAGIC) or len(body) < len(MAGIC) + NONCE_BYTES + 16:
            raise BlobCorruptError(
                cid, path, "not an encrypted blob (missing header); this store has a key"
            )
        nonce = body[len(MAGIC) : len(MAGIC) + NONCE_BYTES]
        try:
            return self._aead.decrypt(nonce, body[len(MAGIC) + NONCE_BYTES :], cid.encode())
        except InvalidTag:
            raise BlobCorruptError(
                cid, path, "AES-GCM authentication failed (tampered bytes or wrong key)"
            ) from None

    def has(self, cid: str) -> bool:
        """Whether a blob is stored under ``cid`` (its content is not checked)."""
        return self.path(cid).is_file()

    def verify(self, cid: str) -> bool:
        """Whether the blob is stored and its bytes match its id."""
        try:
            self.get(cid)
        except (BlobNotFoundError, BlobCorruptError):
            return False
        return True

    def iter_ids(self) -> Iterator[str]:
        """The ids of stored blobs, shard by shard, each sorted (temporary files skipped)."""
        for shard in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for entry in sorted(shard.iterdir()):
                name = entry.name
                if name.startswith(_TMP_PREFIX) or not entry.is_file():
                    continue
                try:
                    sha256_of_cid(name)
                except InvalidCidError:
                    continue
                if name[-3:-1] == shard.name:
                    yield name

    def __contains__(self, cid: object) -> bool:
        return isinstance(cid, str) and self.has(cid)

    def __repr__(self) -> str:
        return (
            f"BlobStore({str(self.root)!r}, encrypted={self.encrypted}, durable={self.durable})"
        )
