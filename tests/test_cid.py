"""Content ids match the IPFS CIDv1 (raw, sha2-256, base32) of the same bytes.

The module computes and parses ids with hashlib and base64; the multiformats library is
the reference it is cross-checked against here (same ids, same texts accepted, same
digests, and the same reasons for refusing where multiformats names one).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.storage import cid as cid_module
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


@settings(deadline=None)  # no timing: the machine may be loaded
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


def test_bad_digest_length_in_text_is_invalid_cid() -> None:
    # A sha2-256 multihash claiming 33 digest bytes (multiformats itself raises its own
    # MultihashValueError on this one; the store must raise InvalidCidError).
    text = _b32(bytes([0x01, 0x55, 0x12, 0x21]) + b"\x00" * 33)
    with pytest.raises(InvalidCidError, match="sha2-256 digest of 33 bytes"):
        sha256_of_cid(text)


def _b32(binary: bytes) -> str:
    return "b" + base64.b32encode(binary).decode().lower().rstrip("=")


@pytest.mark.parametrize(
    ("binary", "reason"),
    [
        (bytes([0x02, 0x55, 0x12, 0x20]) + b"\x00" * 32, "CID version 2"),
        (bytes([0x01, 0xB4, 0x24, 0x12, 0x20]) + b"\x00" * 32, "codec 0x1234"),
        (bytes([0x01, 0x55, 0x99, 0x01, 0x20]) + b"\x00" * 32, "hash function 0x99"),
        (bytes([0x01, 0x55, 0x12, 0x20]) + b"\x00" * 31, "multihash says 32 digest bytes"),
        (bytes([0x01, 0x55, 0x12, 0x20]) + b"\x00" * 33, "multihash says 32 digest bytes"),
        (bytes([0x01, 0x55, 0x12]), "digest length varint is truncated"),
        (bytes([0x81, 0x00, 0x55, 0x12, 0x20]) + b"\x00" * 32, "varint is not minimal"),
        (bytes([0x12, 0x20]) + b"\x00" * 32, "CIDv0 may not be multibase encoded"),
    ],
)
def test_structural_errors_name_the_field(binary: bytes, reason: str) -> None:
    text = _b32(binary)
    with pytest.raises(InvalidCidError, match=reason) as info:
        sha256_of_cid(text)
    assert repr(text) in str(info.value)


def test_non_canonical_and_padded_text_rejected() -> None:
    good = cid_of(b"abc")
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    # 36 bytes fill 58 base32 characters with 2 bits to spare: set one of those bits.
    flipped = good[:-1] + alphabet[alphabet.index(good[-1]) ^ 1]
    with pytest.raises(InvalidCidError, match="not in canonical form"):
        sha256_of_cid(flipped)
    with pytest.raises(InvalidCidError, match="cannot be decoded"):
        sha256_of_cid(good + "======")
    with pytest.raises(InvalidCidError, match="cannot be decoded"):
        sha256_of_cid(good[:-1] + "1")  # '1' is not in the base32 alphabet


# ------------------------------------------------------- cross-check with multiformats

def reference_sha256_of_cid(text: str) -> bytes | None:
    """The digest multiformats finds in an id of our kind, or None if it is not one."""
    multiformats = pytest.importorskip("multiformats")
    if not text.startswith("b") or text != text.lower():
        return None
    try:
        cid = multiformats.CID.decode(text)
        digest = bytes(cid.raw_digest)
    except Exception:  # multiformats raises several unrelated error types
        return None
    ok = (
        cid.version == 1
        and cid.codec.code == 0x55
        and cid.hashfun.code == 0x12
        and len(digest) == 32
        and str(cid) == text
    )
    return digest if ok else None


@settings(deadline=None)  # no timing: the machine may be loaded
@given(st.binary(max_size=512))
def test_ids_match_multiformats(data: bytes) -> None:
    multiformats = pytest.importorskip("multiformats")
    digest = multiformats.multihash.digest(data, "sha2-256")
    expected = str(multiformats.CID("base32", 1, "raw", digest))
    assert cid_of(data) == expected
    assert cid_from_sha256(hashlib.sha256(data).digest()) == expected


def _mutated_ids() -> st.SearchStrategy[str]:
    """Valid ids, ids of other kinds, and both with one character changed or cut."""
    varint = st.sampled_from([b"\x00", b"\x01", b"\x02", b"\x12", b"\x55", b"\x70",
                              b"\x20", b"\x21", b"\x80\x01", b"\xb4\x24", b"\xff"])
    built = st.builds(
        lambda parts, digest: _b32(b"".join(parts) + digest),
        st.lists(varint, min_size=0, max_size=5).map(
            lambda tail: [b"\x01", b"\x55", b"\x12", b"\x20"][: 4 - min(len(tail), 4)] + tail
        ),
        st.binary(min_size=0, max_size=40),
    )
    valid = st.binary(max_size=64).map(cid_of)
    base = st.one_of(valid, built)

    def mutate(text: str, where: int, char: str, cut: bool) -> str:
        i = where % (len(text) + 1)
        return text[:i] if cut else text[:i] + char + text[i + 1 :]

    mutated = st.builds(
        mutate, base, st.integers(0, 80), st.sampled_from("abqz27=1A"), st.booleans()
    )
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    # 36 bytes leave 2 spare bits in the last character: setting them is not canonical.
    spare_bits = st.builds(
        lambda text, bits: text[:-1] + alphabet[alphabet.index(text[-1]) ^ bits],
        valid,
        st.integers(0, 3),
    )
    return st.one_of(valid, built, mutated, spare_bits)


@settings(deadline=None)  # no timing: the machine may be loaded
@given(_mutated_ids())
def test_parsing_agrees_with_multiformats(text: str) -> None:
    expected = reference_sha256_of_cid(text)
    if expected is None:
        with pytest.raises(InvalidCidError):
            sha256_of_cid(text)
    else:
        assert sha256_of_cid(text) == expected


def test_code_names_are_multiformats_names() -> None:
    multiformats = pytest.importorskip("multiformats")
    for code, name in cid_module._CODEC_NAMES.items():
        assert multiformats.multicodec.get(code=code).name == name
    for code, name in cid_module._HASH_NAMES.items():
        assert multiformats.multihash.get(code=code).name == name
