"""Signed records: ids, signing, field validation, blocks and the genesis block."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.codec import CodecError, decode, decode_as, encode
from fedledger.crypto import KeyPair
from fedledger.ledger.merkle import merkle_root
from fedledger.ledger.records import (
    SIGNING_CONTEXT,
    ZERO_HASH,
    Block,
    BlockHeader,
    Genesis,
    Member,
    ModelRef,
    RecordError,
    Transaction,
    Vote,
    genesis_block,
    record_id,
    sign,
    signature_ok,
    signer_of,
    signing_message,
)
from fedledger.protocols.dfl.records import Confirmation, Receipt

ALICE = KeyPair.generate("ed25519", b"\x01" * 32)
BOB = KeyPair.generate("ed25519", b"\x02" * 32)
H1 = b"\x11" * 32
H2 = b"\x22" * 32

hashes = st.binary(min_size=32, max_size=32)
times = st.floats(min_value=0, max_value=1e9, allow_nan=False)
small_ints = st.integers(min_value=0, max_value=2**40)
payloads = (
    st.none()
    | st.integers()
    | st.text(max_size=10)
    | st.builds(ModelRef, st.text(min_size=1, max_size=20), hashes, small_ints)
)

model_refs = st.builds(ModelRef, st.text(min_size=1, max_size=30), hashes, small_ints)
transactions = st.builds(
    Transaction, hashes, times, st.text(min_size=1, max_size=8), payloads, small_ints
)
headers = st.builds(BlockHeader, hashes, small_ints, hashes, hashes, times, payloads)
votes = st.builds(Vote, hashes, hashes, st.integers(-5, 5), small_ints, times)
receipts = st.builds(Receipt, hashes, hashes, small_ints, st.floats(0, 1), times)
confirmations = st.builds(
    Confirmation, hashes, hashes, st.lists(hashes, max_size=3).map(tuple), times
)
any_record = st.one_of(model_refs, transactions, headers, votes, receipts, confirmations)


def other_value(value: Any) -> Any:
    """A value of the same type as ``value`` that differs from it."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, bytes):
        return bytes([value[0] ^ 1]) + value[1:] if value else b"\x00"
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 1.0 if value < 1e8 else value / 2
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, tuple):
        return (*value, H1)
    if value is None:
        return 0
    if isinstance(value, ModelRef):
        return dataclasses.replace(value, num_samples=value.num_samples + 1)
    raise AssertionError(f"no other value for {value!r}")


@settings(max_examples=100, deadline=None)
@given(any_record, st.data())
def test_changing_any_field_changes_the_id(rec: Any, data: st.DataObject) -> None:
    names = [f.name for f in dataclasses.fields(rec) if f.name != "signature"]
    name = data.draw(st.sampled_from(names))
    changed = dataclasses.replace(rec, **{name: other_value(getattr(rec, name))})
    assert record_id(changed) != record_id(rec)


@settings(max_examples=100, deadline=None)
@given(any_record)
def test_records_round_trip_and_ids_ignore_signature(rec: Any) -> None:
    assert decode(encode(rec)) == rec
    assert len(record_id(rec)) == 32
    if hasattr(rec, "signature"):
        assert record_id(dataclasses.replace(rec, signature=b"sig")) == record_id(rec)


def test_type_name_separates_ids() -> None:
    vote = Vote(H1, H2, 1, 0, 1.0)
    assert record_id(vote) != record_id(Receipt(H1, H2, 1, 0.0, 1.0))
    assert encode(vote)[:2] == b"\xd8\x1b"


def test_int_and_float_times_give_one_id() -> None:
    assert record_id(Vote(H1, H2, 1, 0, 3)) == record_id(Vote(H1, H2, 1, 0, 3.0))


def test_sign_verify_and_signer() -> None:
    tx = Transaction(ALICE.address, 1.0, "model", ModelRef("bafk", H1, 10))
    assert signer_of(tx) == ALICE.address
    signed = sign(tx, ALICE)
    assert signed.signature and record_id(signed) == record_id(tx)
    assert signature_ok(signed, ALICE.public)
    assert not signature_ok(tx, ALICE.public)  # unsigned
    assert not signature_ok(signed, BOB.public)  # someone else's key
    tampered = dataclasses.replace(signed, nonce=1)
    assert not signature_ok(tampered, ALICE.public)
    assert ALICE.public.verify(signing_message(tx), signed.signature)
    assert signing_message(tx) == SIGNING_CONTEXT + record_id(tx)


def test_sign_with_the_wrong_key_names_both_addresses() -> None:
    tx = Transaction(ALICE.address, 1.0, "model", None)
    with pytest.raises(RecordError) as info:
        sign(tx, BOB)
    msg = str(info.value)
    assert "sender is " + ALICE.address[:4].hex() in msg
    assert "address is " + BOB.address[:4].hex() in msg


def test_signers_per_type() -> None:
    assert signer_of(Vote(H1, H2, 1, 0, 0.0)) == H1
    assert signer_of(Receipt(H2, H1, 3, 0.5, 0.0)) == H2
    assert signer_of(Confirmation(H1, H2, (), 0.0)) == H1
    assert signer_of(Block.create(ZERO_HASH, 1, H2, 0.0)) == H2
    with pytest.raises(RecordError, match="ModelRef is not a signed record type"):
        signer_of(ModelRef("bafk", H1))
    with pytest.raises(RecordError, match="not a signed record type"):
        sign(ModelRef("bafk", H1), ALICE)


def test_rsa_signed_record() -> None:
    kp = KeyPair.generate("rsa")
    vote = sign(Vote(kp.address, H1, 1, 2, 3.0), kp)
    assert signature_ok(vote, kp.public) and not signature_ok(vote, ALICE.public)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda: Transaction(b"\x01" * 31, 0.0, "k", None), "sender must be 32 bytes"),
        (lambda: Transaction("addr", 0.0, "k", None), "got str"),  # type: ignore[arg-type]
        (lambda: Transaction(H1, 0.0, "", None), "kind must be a non-empty str"),
        (lambda: Transaction(H1, 0.0, "k", None, nonce=-1), "nonce must be an int >= 0"),
        (lambda: BlockHeader(H1, -1, H1, H1, 0.0), "height must be an int >= 0"),
        (lambda: BlockHeader(H1, 0, H1, H1, 0.0, signature=None), "signature must be bytes"),
        (lambda: ModelRef("", H1), "cid must be a non-empty"),
        (lambda: Confirmation(H1, H1, (b"x",), 0.0), "receipt_ids[0] must be 32 bytes"),
        (lambda: Member(H1, "dsa", b""), "scheme must be one of ed25519, rsa"),
        (lambda: Block("header", ()), "header must be a BlockHeader"),  # type: ignore[arg-type]
    ],
)
def test_invalid_fields_are_refused(make: Any, needle: str) -> None:
    with pytest.raises(RecordError) as info:
        make()
    assert needle in str(info.value)


def test_decoding_an_invalid_record_is_a_codec_error() -> None:
    data = encode(Vote(H1, H2, 1, 0, 1.0))
    short_voter = data.replace(b"\x58\x20" + H1, b"\x58\x1f" + H1[:31])
    with pytest.raises(CodecError, match="voter must be 32 bytes"):
        decode(short_voter)


# ---------------------------------------------------------------- blocks


def test_block_create_computes_tx_root_and_hash() -> None:
    txs = tuple(sign(Transaction(ALICE.address, float(i), "t", i), ALICE) for i in range(3))
    block = Block.create(H1, 5, BOB.address, 9.0, txs, extra={"credit": 2})
    assert block.header.tx_root == merkle_root([record_id(tx) for tx in txs])
    assert block.hash == record_id(block.header) == record_id(block)
    assert block.height == 5 and block.parent == H1
    signed = sign(block, BOB)
    assert isinstance(signed, Block) and signed.transactions == txs
    assert signed.hash == block.hash and signature_ok(signed, BOB.public)
    assert decode_as(encode(signed), Block) == signed
    assert Block.create(H1, 5, BOB.address, 9.0, ()).header.tx_root == merkle_root([])


def test_tx_signature_does_not_change_block_hash_but_tx_content_does() -> None:
    tx = Transaction(ALICE.address, 1.0, "t", 1)
    a = Block.create(H1, 1, BOB.address, 2.0, (tx,))
    b = Block.create(H1, 1, BOB.address, 2.0, (sign(tx, ALICE),))
    c = Block.create(H1, 1, BOB.address, 2.0, (dataclasses.replace(tx, payload=2),))
    assert a.hash == b.hash != c.hash


def test_genesis_block_and_directory() -> None:
    rsa_kp = KeyPair.generate("rsa")
    genesis = Genesis((Member.of(ALICE), Member.of(rsa_kp.public)), H2, extra={"protocol": "x"})
    block = genesis_block(genesis, timestamp=0.0)
    assert block.header.parent == ZERO_HASH and block.header.proposer == ZERO_HASH
    assert block.height == 0 and block.transactions == () and block.header.extra == genesis
    assert decode_as(encode(block), Block).hash == block.hash
    directory = genesis.directory()
    assert directory[ALICE.address] == ALICE.public and directory[rsa_kp.address] == rsa_kp.public
    assert genesis_block(genesis).hash != genesis_block(Genesis((Member.of(BOB),), H2)).hash


def test_genesis_refuses_bad_members() -> None:
    with pytest.raises(RecordError, match="twice"):
        Genesis((Member.of(ALICE), Member.of(ALICE)), H2)
    forged = Member(BOB.address, "ed25519", ALICE.public.to_bytes())
    with pytest.raises(RecordError, match="address is not SHA-256 of its public key"):
        Genesis((forged,), H2).directory()
    broken = Member(BOB.address, "ed25519", b"\x00" * 5)
    with pytest.raises(RecordError, match="Ed25519 public key is 32 bytes"):
        broken.public()
    with pytest.raises(RecordError, match="needs a Genesis record"):
        genesis_block("genesis")  # type: ignore[arg-type]


def test_record_id_is_cached_per_object_and_not_encoded() -> None:
    vote = Vote(H1, H2, 1, 0, 1.0)
    first = record_id(vote)
    assert record_id(vote) is first
    assert encode(vote) == encode(Vote(H1, H2, 1, 0, 1.0))  # the cache is not a field
    assert decode(encode(vote)) == vote
    signed = sign(dataclasses.replace(vote, voter=ALICE.address), ALICE)
    assert record_id(signed) == record_id(dataclasses.replace(signed, signature=b""))


def _fresh_id(rec: Any) -> bytes:
    """record_id computed from scratch (a copy carries no kept id)."""
    inner = rec.header if isinstance(rec, Block) else rec
    return record_id(dataclasses.replace(inner))


@settings(max_examples=60, deadline=None)
@given(any_record, st.binary(max_size=80))
def test_ids_kept_by_strict_decode_and_sign_equal_fresh_ids(rec: Any, sig: bytes) -> None:
    if "signature" in {f.name for f in dataclasses.fields(rec)}:
        rec = dataclasses.replace(rec, signature=sig)
    block = Block.create(H1, 1, H2, 2.0, (Transaction(H1, 1.0, "k", None, 0, sig),), rec)
    decoded = decode(encode(block))
    for got in (decoded.header, decoded.transactions[0], decoded.header.extra):
        assert record_id(got) == _fresh_id(got)
    signed = sign(Transaction(ALICE.address, 1.0, "k", rec), ALICE)
    assert "_fedledger_record_id" in signed.__dict__
    assert record_id(signed) == _fresh_id(signed)
    assert signature_ok(signed, ALICE.public)
    assert record_id(decode(encode(signed))) == record_id(signed)


def test_ids_and_bytes_are_pinned() -> None:
    """Ids and canonical bytes (SHA-256 of them) of fixed DFL records, as computed by the
    codec before it wrote its own bytes (cbor2 then): the encoder must never change them."""
    import hashlib

    from fedledger.protocols.dfl.messages import BlockBody, ConfirmRequest, Gossip, ModelTx

    key = KeyPair.generate("ed25519", b"\x07" * 32)
    h = bytes(range(32))
    ref = ModelRef("bafkreiexample", h, 64)
    tx = sign(Transaction(key.address, 12.5, "dfl.model", ModelTx(112.5, ref, 2, h), 3), key)
    rc = sign(Receipt(key.address, record_id(tx), 1, 0.8125, 13.0), key)
    conf = sign(Confirmation(key.address, h, (record_id(rc),), 20.25), key)
    body = BlockBody(h, (rc,), (conf,))
    blk = sign(Block.create(h, 4, key.address, 21.0, (tx,), body), key)
    vote = sign(Vote(key.address, h, -1, 7, 1e-7), key)
    pinned = {
        "tx": (tx, "a1a92ade", "3b4ca7d2"),
        "receipt": (rc, "d1603e85", "685b63e2"),
        "confirmation": (conf, "e337e412", "ab4df713"),
        "block": (blk, "f8173ed1", "8790d499"),
        "vote": (vote, "edf9736a", "f0992905"),
    }
    for name, (rec, rid, data) in pinned.items():
        assert record_id(rec).hex()[:8] == rid, name
        assert hashlib.sha256(encode(rec)).hexdigest()[:8] == data, name
        fresh = decode(encode(rec))  # ids from a strict decode's kept bytes
        assert record_id(fresh).hex()[:8] == rid, name
    assert hashlib.sha256(encode(Gossip(tx, (rc,)))).hexdigest()[:8] == "c3ab23f0"
    assert hashlib.sha256(encode(ConfirmRequest(blk))).hexdigest()[:8] == "f934c2fa"
