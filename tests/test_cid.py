"""Content ids match the IPFS CIDv1 (raw, sha2-256, base32) of the same bytes."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedledger.storage.cid import (
    InvalidCidError,
    cid_from_sha256,
    cid_of,
    matches,
    sha256_of_cid,
)


def spec_cid(data: bytes) -> str:
    """The CID built by hand from the spec: version 1, raw 0x55, sha2-256 0x12, 32 bytes."""
    raw = bytes([0x01, 0x55, 0x12, 0x20]) + hashlib.sha256(data).digest()
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


KNOWN = {
    b"": "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
    b"hello world\n": "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4",
}


@pytest.mark.parametrize("data", list(KNOWN))
def test_known_vectors(data: bytes) -> None:
    assert spec_cid(data) == KNOWN[data]
    assert cid_of(data) == KNOWN[data]
    assert cid_of(data).startswith("bafkrei")


@given(st.binary(max_size=2048))
def test_matches_spec_construction(data: bytes) -> None:
    cid = cid_of(data)
    assert cid == spec_cid(data)
    assert sha256_of_cid(cid) == hashlib.sha256(data).digest()
    assert cid_from_sha256(hashlib.sha256(data).digest()) == cid
    assert matches(cid, data)
    assert not matches(cid, data + b"x")


IPFS_CID_TOOL = shutil.which("ipfs_cid") or shutil.which("ipfs-cid")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _unixfs_file_node(data: bytes) -> bytes:
    """The dag-pb node IPFS makes for a one-chunk file (UnixFS Type=File, Data, filesize)."""
    unixfs = b"\x08\x02" + b"\x12" + _varint(len(data)) + data + b"\x18" + _varint(len(data))
    return b"\x0a" + _varint(len(unixfs)) + unixfs


@pytest.mark.skipif(IPFS_CID_TOOL is None, reason="Debian's ipfs-cid (ipfs_cid) is not on PATH")
def test_agrees_with_ipfs_cid_tool(tmp_path: Path) -> None:
    """Debian's tool prints the dag-pb (UnixFS) CIDv1 of a file, where our blobs use the
    raw codec (the id of ``ipfs add --raw-leaves --cid-version 1``): the same multihash,
    CID layout and base32 text, around a different codec and block. So wrap the bytes as
    IPFS does and check our CID machinery gives the tool's id for that block."""
    from multiformats import CID, multihash

    for i, data in enumerate([b"hello world\n", b"x", bytes(range(256)) * 100]):
        path = tmp_path / f"blob{i}"
        path.write_bytes(data)
        out = subprocess.run(
            [IPFS_CID_TOOL, str(path)], capture_output=True, text=True, check=True
        ).stdout
        tool_v1 = json.loads(out[out.index("{") : out.index("}") + 1])["CIDv1"]
        node = _unixfs_file_node(data)
        ours = str(CID("base32", 1, "dag-pb", multihash.digest(node, "sha2-256")))
        assert ours == tool_v1
        raw = cid_of(data)  # and our raw id shares the digest layout of the same bytes
        assert sha256_of_cid(raw) == hashlib.sha256(data).digest()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", "multibase prefix must be 'b'"),
        ("BAFKREIHDWDCEFGH4DQKJV67UZCMW7OJEE6XEDZDETOJUZJEVTENXQUVYKU", "multibase"),
        ("bafkreiHDWDCEFGH4DQKJV67UZCMW7OJEE6XEDZDETOJUZJEVTENXQUVYKU", "lower-case"),
        ("bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi", "codec 'dag-pb'"),
        ("bafkreix", "cannot be decoded"),
        ("", "multibase prefix"),
    ],
)
def test_bad_text_names_value_and_allowed(text: str, reason: str) -> None:
    with pytest.raises(InvalidCidError) as info:
        sha256_of_cid(text)
    message = str(info.value)
    assert reason in message
    assert repr(text) in message
    assert "allowed: CIDv1, raw codec" in message


def test_other_hash_function_rejected() -> None:
    # CIDv1 raw with a sha2-512 multihash (0x13, 64 bytes).
    raw = bytes([0x01, 0x55, 0x13, 0x40]) + hashlib.sha512(b"x").digest()
    text = "b" + base64.b32encode(raw).decode().lower().rstrip("=")
    with pytest.raises(InvalidCidError, match="hash function 'sha2-512'"):
        sha256_of_cid(text)


def test_non_string_rejected() -> None:
    with pytest.raises(InvalidCidError, match="expected str, got bytes"):
        sha256_of_cid(b"bafkrei")  # type: ignore[arg-type]


def test_bad_digest_length() -> None:
    with pytest.raises(ValueError, match="32 bytes, got 31"):
        cid_from_sha256(b"\x00" * 31)
