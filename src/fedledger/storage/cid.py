"""Content ids: CIDv1, raw codec, sha2-256 multihash, base32 text ("bafkrei...").

This is the id the IPFS tools give a raw block of the same bytes (``ipfs block put``,
and ``ipfs add --raw-leaves --cid-version 1`` for a file that fits one block), so a blob
stored here can be checked against, or pinned to, an IPFS node without conversion.
Debian's ``ipfs-cid`` tool (binary ``ipfs_cid``) prints the dag-pb/UnixFS id of a file
instead; tests/test_cid.py checks our CID code against it on that wrapping.

The binary form of every id made here is the same four bytes (version 1, codec 0x55,
hash 0x12, length 32) before the SHA-256 digest, so ids are computed and parsed with
hashlib and base64 directly: these functions sit on every blob read and every model
reference a node checks. tests/test_cid.py cross-checks them against the multiformats
library (ids, accepted texts and rejected ones).
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from fedledger.errors import FedledgerError

RAW_CODEC = 0x55
SHA2_256 = 0x12
CID_ALLOWED = "CIDv1, raw codec (0x55), sha2-256 multihash, base32 lower-case text ('bafkrei...')"

_DIGEST_BYTES = 32
# version 1, raw codec, sha2-256, digest length: each a one-byte varint.
_PREFIX = bytes([0x01, RAW_CODEC, SHA2_256, _DIGEST_BYTES])
_BINARY_BYTES = len(_PREFIX) + _DIGEST_BYTES
# base32 of 36 bytes is 58 characters (no padding) plus the multibase prefix 'b'.
_TEXT_CHARS = 1 + (8 * _BINARY_BYTES + 4) // 5
_PAD = "=" * 6  # 58 % 8 == 2: six '=' complete the last group for base64.b32decode

# Names for the error messages (the multiformats table's names for the same codes).
_CODEC_NAMES = {
    0x51: "cbor",
    0x55: "raw",
    0x70: "dag-pb",
    0x71: "dag-cbor",
    0x72: "libp2p-key",
    0x78: "git-raw",
    0x0129: "dag-json",
    0x0200: "json",
}
_HASH_NAMES = {
    0x00: "identity",
    0x11: "sha1",
    0x12: "sha2-256",
    0x13: "sha2-512",
    0x14: "sha3-512",
    0x15: "sha3-384",
    0x16: "sha3-256",
    0x17: "sha3-224",
    0x1B: "keccak-256",
    0x1E: "blake3",
    0x20: "sha2-384",
    0x1012: "sha2-256-trunc254-padded",
    0xB220: "blake2b-256",
}


class InvalidCidError(FedledgerError, ValueError):
    """A content id text is malformed or is not of the kind this store uses."""

    def __init__(self, text: object, reason: str) -> None:
        self.text = text
        super().__init__(f"invalid content id {text!r}: {reason}; allowed: {CID_ALLOWED}")


def _text_of(binary: bytes) -> str:
    return "b" + base64.b32encode(binary).decode("ascii").rstrip("=").lower()


def cid_of(data: bytes) -> str:
    """The CIDv1 (raw, sha2-256, base32) of ``data``."""
    return _text_of(_PREFIX + hashlib.sha256(data).digest())


def cid_from_sha256(digest: bytes) -> str:
    """The CIDv1 (raw, base32) of bytes whose SHA-256 is ``digest``."""
    if len(digest) != _DIGEST_BYTES:
        raise ValueError(f"a sha2-256 digest has 32 bytes, got {len(digest)}")
    return _text_of(_PREFIX + bytes(digest))


def sha256_of_cid(text: str) -> bytes:
    """Check ``text`` is a CID of the kind :func:`cid_of` makes; return its SHA-256 digest.

    Raises InvalidCidError naming the text and what is allowed.
    """
    if type(text) is str and len(text) == _TEXT_CHARS and text[0] == "b":
        try:
            binary = base64.b32decode(text[1:].upper() + _PAD)
        except binascii.Error:
            binary = b""
        # The round trip rejects upper case and non-zero trailing bits in one comparison.
        if binary[:4] == _PREFIX and _text_of(binary) == text:
            return binary[4:]
    _diagnose(text)
    raise AssertionError(f"content id {text!r} was refused but no reason was found")


def matches(text: str, data: bytes) -> bool:
    """Whether ``data`` is the content that ``text`` names."""
    return hashlib.sha256(data).digest() == sha256_of_cid(text)


# ------------------------------------------------------------ why an id is refused


def _diagnose(text: object) -> None:
    """Raise InvalidCidError saying why ``text`` is not an id of our kind (slow path)."""
    if not isinstance(text, str):
        raise InvalidCidError(text, f"expected str, got {type(text).__name__}")
    if not text.startswith("b"):
        raise InvalidCidError(text, "not base32 text (the multibase prefix must be 'b')")
    if text != text.lower():
        raise InvalidCidError(text, "base32 text must be lower-case")
    binary = _decode_base32(text)
    version, rest = _varint(text, binary, "CID version")
    if version != 1:
        raise InvalidCidError(text, f"CID version {version}")
    codec, rest = _varint(text, rest, "codec")
    hashfun, rest = _varint(text, rest, "multihash code")
    size, digest = _varint(text, rest, "multihash digest length")
    if len(digest) != size:
        raise InvalidCidError(
            text, f"cannot be decoded (multihash says {size} digest bytes, found {len(digest)})"
        )
    if codec != RAW_CODEC:
        name = _CODEC_NAMES.get(codec)
        shown = f"{name!r} (0x{codec:x})" if name is not None else f"0x{codec:x}"
        raise InvalidCidError(text, f"codec {shown}")
    if hashfun != SHA2_256:
        name = _HASH_NAMES.get(hashfun)
        shown = repr(name) if name is not None else f"0x{hashfun:x}"
        raise InvalidCidError(text, f"hash function {shown}")
    if size != _DIGEST_BYTES:
        raise InvalidCidError(text, f"sha2-256 digest of {size} bytes")
    canonical = _text_of(_PREFIX + digest)
    if canonical != text:
        raise InvalidCidError(text, f"not in canonical form {canonical!r}")


def _decode_base32(text: str) -> bytes:
    body = text[1:]
    if "=" in body:
        raise InvalidCidError(text, "cannot be decoded (padding '=' is not used in base32 ids)")
    try:
        binary = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
    except binascii.Error as err:
        raise InvalidCidError(text, f"cannot be decoded (not base32: {err})") from None
    if not binary:
        raise InvalidCidError(text, "cannot be decoded (no bytes after the multibase prefix)")
    if binary[0] == SHA2_256:
        raise InvalidCidError(text, "cannot be decoded (CIDv0 may not be multibase encoded)")
    return binary


def _varint(text: str, data: bytes, what: str) -> tuple[int, bytes]:
    """An unsigned LEB128 varint (minimal, at most 9 bytes) off the front of ``data``."""
    value = 0
    for i, byte in enumerate(data[:9]):
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise InvalidCidError(text, f"cannot be decoded ({what} varint is not minimal)")
            return value, data[i + 1 :]
    raise InvalidCidError(text, f"cannot be decoded ({what} varint is truncated or too long)")

