"""The content-addressed blob store: atomic writes, verified reads, encryption at rest."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fedledger.storage import (
    BlobCorruptError,
    BlobNotFoundError,
    BlobStore,
    InvalidCidError,
    cid_of,
)
from fedledger.storage.blobs import MAGIC

KEY = bytes(range(32))


def flip_byte(path: Path, offset: int) -> None:
    body = bytearray(path.read_bytes())
    body[offset] ^= 0x01
    path.write_bytes(bytes(body))


@pytest.fixture(params=[None, KEY], ids=["plain", "aes-gcm"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs", key=request.param)


def test_put_get_roundtrip(store: BlobStore) -> None:
    data = os.urandom(100_000)
    cid = store.put(data)
    assert cid == cid_of(data)
    assert store.has(cid) and cid in store
    assert store.get(cid) == data
    assert store.verify(cid)
    assert list(store.iter_ids()) == [cid]


def test_empty_blob(store: BlobStore) -> None:
    cid = store.put(b"")
    assert store.get(cid) == b""


def test_put_is_idempotent(store: BlobStore) -> None:
    cid = store.put(b"model bytes")
    before = store.path(cid).read_bytes()
    mtime = store.path(cid).stat().st_mtime_ns
    assert store.put(b"model bytes") == cid
    assert store.path(cid).read_bytes() == before
    assert store.path(cid).stat().st_mtime_ns == mtime
    assert list(store.iter_ids()) == [cid]


def test_no_temporary_files_left(store: BlobStore) -> None:
    ids = {store.put(bytes([i]) * (i + 1)) for i in range(20)}
    files = [p for p in store.root.rglob("*") if p.is_file()]
    assert sorted(p.name for p in files) == sorted(ids)
    assert set(store.iter_ids()) == ids


def test_iter_ids_skips_stray_files(store: BlobStore) -> None:
    cid = store.put(b"a")
    shard = store.path(cid).parent
    (shard / ".tmp-deadbeef").write_bytes(b"half written")
    (shard / "notacid").write_bytes(b"x")
    (store.root / "README").write_text("not a blob")
    assert list(store.iter_ids()) == [cid]


def test_missing_blob_names_id(store: BlobStore) -> None:
    cid = cid_of(b"never stored")
    assert not store.has(cid)
    assert not store.verify(cid)
    with pytest.raises(BlobNotFoundError) as info:
        store.get(cid)
    assert cid in str(info.value)
    assert info.value.cid == cid


def test_corrupt_blob_names_id(store: BlobStore) -> None:
    cid = store.put(b"x" * 1000)
    flip_byte(store.path(cid), 500)
    assert store.has(cid)
    assert not store.verify(cid)
    with pytest.raises(BlobCorruptError) as info:
        store.get(cid)
    assert cid in str(info.value)
    assert info.value.cid == cid


def test_put_repairs_corrupt_blob(store: BlobStore) -> None:
    cid = store.put(b"y" * 64)
    flip_byte(store.path(cid), 10 if store.encrypted else 3)
    assert not store.verify(cid)
    store.put(b"y" * 64)
    assert store.get(cid) == b"y" * 64


def test_bad_cid_text(store: BlobStore) -> None:
    for bad in ["not-a-cid", "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"]:
        with pytest.raises(InvalidCidError, match="allowed: CIDv1"):
            store.get(bad)
        with pytest.raises(InvalidCidError):
            store.has(bad)


def test_plain_files_are_the_raw_bytes(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    cid = store.put(b"raw block")
    assert store.path(cid).read_bytes() == b"raw block"
    assert store.path(cid).parent.name == cid[-3:-1]


def test_encrypted_files_hide_plaintext_and_use_fresh_nonces(tmp_path: Path) -> None:
    data = b"secret weights " * 100
    one = BlobStore(tmp_path / "one", key=KEY)
    two = BlobStore(tmp_path / "two", key=KEY)
    cid = one.put(data)
    assert two.put(data) == cid == cid_of(data)
    body_one = one.path(cid).read_bytes()
    body_two = two.path(cid).read_bytes()
    assert body_one.startswith(MAGIC)
    assert b"secret weights" not in body_one
    assert body_one != body_two  # random per-blob nonce
    assert len(body_one) == len(MAGIC) + 12 + len(data) + 16


def test_wrong_key_is_reported(tmp_path: Path) -> None:
    cid = BlobStore(tmp_path, key=KEY).put(b"weights")
    with pytest.raises(BlobCorruptError, match="authentication failed"):
        BlobStore(tmp_path, key=bytes(32)).get(cid)
    with pytest.raises(BlobCorruptError, match="open the BlobStore with its key"):
        BlobStore(tmp_path).get(cid)


def test_plain_blob_read_with_key_is_reported(tmp_path: Path) -> None:
    cid = BlobStore(tmp_path).put(b"weights")
    with pytest.raises(BlobCorruptError, match="not an encrypted blob"):
        BlobStore(tmp_path, key=KEY).get(cid)


def test_ciphertext_cannot_be_moved_to_another_name(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, key=KEY)
    a, b = store.put(b"a"), store.put(b"b")
    store.path(b).write_bytes(store.path(a).read_bytes())
    with pytest.raises(BlobCorruptError, match=b):
        store.get(b)


def test_plaintext_that_looks_encrypted(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    data = MAGIC + b"\x00" * 40
    cid = store.put(data)
    assert store.get(cid) == data


def test_bad_key_length(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="7 bytes; allowed: 16, 24, 32"):
        BlobStore(tmp_path, key=b"1234567")


def test_reopen_sees_blobs(tmp_path: Path) -> None:
    cid = BlobStore(tmp_path, key=KEY).put(b"durable")
    assert BlobStore(tmp_path, key=KEY).get(cid) == b"durable"
