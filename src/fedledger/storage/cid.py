"""Content ids: CIDv1, raw codec, sha2-256 multihash, base32 text ("bafkrei...").

This is the id the IPFS tools give a raw block of the same bytes (``ipfs block put``,
and ``ipfs add --raw-leaves --cid-version 1`` for a file that fits one block), so a blob
stored here can be checked against, or pinned to, an IPFS node without conversion.
Debian's ``ipfs-cid`` tool (binary ``ipfs_cid``) prints the dag-pb/UnixFS id of a file
instead; tests/test_cid.py checks our CID code against it on that wrapping.
The multiformats library computes and parses the text form.
"""

from __future__ import annotations

import hashlib

from multiformats import CID, multihash

from fedledger.errors import FedledgerError

RAW_CODEC = 0x55
SHA2_256 = 0x12
CID_ALLOWED = "CIDv1, raw codec (0x55), sha2-256 multihash, base32 lower-case text ('bafkrei...')"


class InvalidCidError(FedledgerError, ValueError):
    """A content id text is malformed or is not of the kind this store uses."""

    def __init__(self, text: object, reason: str) -> None:
        self.text = text
        super().__init__(f"invalid content id {text!r}: {reason}; allowed: {CID_ALLOWED}")


def cid_of(data: bytes) -> str:
    """The CIDv1 (raw, sha2-256, base32) of ``data``."""
    return str(CID("base32", 1, "raw", multihash.digest(bytes(data), "sha2-256")))


def cid_from_sha256(digest: bytes) -> str:
    """The CIDv1 (raw, base32) of bytes whose SHA-256 is ``digest``."""
    if len(digest) != 32:
        raise ValueError(f"a sha2-256 digest has 32 bytes, got {len(digest)}")
    return str(CID("base32", 1, "raw", multihash.wrap(bytes(digest), "sha2-256")))


def sha256_of_cid(text: str) -> bytes:
    """Check ``text`` is a CID of the kind :func:`cid_of` makes; return its SHA-256 digest.

    Raises InvalidCidError naming the text and what is allowed.
    """
    if not isinstance(text, str):
        raise InvalidCidError(text, f"expected str, got {type(text).__name__}")
    if not text.startswith("b"):
        raise InvalidCidError(text, "not base32 text (the multibase prefix must be 'b')")
    if text != text.lower():
        raise InvalidCidError(text, "base32 text must be lower-case")
    try:
        cid = CID.decode(text)
    except Exception as err:  # multiformats raises several unrelated error types
        raise InvalidCidError(text, f"cannot be decoded ({err})") from None
    if cid.version != 1:
        raise InvalidCidError(text, f"CID version {cid.version}")
    if cid.codec.code != RAW_CODEC:
        raise InvalidCidError(text, f"codec {cid.codec.name!r} (0x{cid.codec.code:x})")
    if cid.hashfun.code != SHA2_256:
        raise InvalidCidError(text, f"hash function {cid.hashfun.name!r}")
    digest = bytes(cid.raw_digest)
    if len(digest) != 32:
        raise InvalidCidError(text, f"sha2-256 digest of {len(digest)} bytes")
    if str(cid) != text:
        raise InvalidCidError(text, f"not in canonical form {str(cid)!r}")
    return digest


def matches(text: str, data: bytes) -> bool:
    """Whether ``data`` is the content that ``text`` names."""
    return hashlib.sha256(data).digest() == sha256_of_cid(text)
