"""Boundary verification: each rule, counted once, with messages that name the record."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import pytest

from fedledger.codec import encode
from fedledger.crypto import KeyPair
from fedledger.ledger.records import (
    ZERO_HASH,
    Block,
    Genesis,
    Member,
    ModelRef,
    Transaction,
    Vote,
    genesis_block,
    record_id,
    sign,
)
from fedledger.ledger.verify import RejectCounter, Rejected, RejectReason, Verifier
from fedledger.protocols.dfl.records import Receipt

ALICE = KeyPair.generate("ed25519", b"\x01" * 32)
BOB = KeyPair.generate("ed25519", b"\x02" * 32)
MALLORY = KeyPair.generate("ed25519", b"\x03" * 32)  # not a member
H1 = b"\x11" * 32

GENESIS = Genesis((Member.of(ALICE), Member.of(BOB)), b"\x00" * 32)
G_BLOCK = genesis_block(GENESIS)


@pytest.fixture
def verifier() -> Verifier:
    return Verifier(GENESIS.directory(), RejectCounter())


def tx(kp: KeyPair, n: int = 0) -> Transaction:
    return sign(Transaction(kp.address, float(n), "model", ModelRef("bafk", H1, n), nonce=n), kp)


def block1(*txs: Transaction, proposer: KeyPair = BOB) -> Block:
    return sign(Block.create(G_BLOCK.hash, 1, proposer.address, 1.0, txs), proposer)


def rejected(
    verifier: Verifier, reason: RejectReason, fn: Callable[..., object], *args: Any, **kwargs: Any
) -> Rejected:
    """Run ``fn``, expect a rejection for ``reason``, counted exactly once."""
    before = verifier.counter[reason]
    total = verifier.counter.total
    with pytest.raises(Rejected) as info:
        fn(*args, **kwargs)
    assert info.value.reason is reason
    assert verifier.counter[reason] == before + 1 and verifier.counter.total == total + 1
    return info.value


def test_valid_records_pass_and_return_ids(verifier: Verifier) -> None:
    t = tx(ALICE)
    assert verifier.check(t) == record_id(t)
    assert verifier.check(t, expected_id=record_id(t)) == record_id(t)
    vote = sign(Vote(BOB.address, H1, 1, 0, 2.0), BOB)
    assert verifier.check(vote) == record_id(vote)
    assert verifier.counter.total == 0


def test_unknown_sender(verifier: Verifier) -> None:
    err = rejected(verifier, RejectReason.UNKNOWN_SENDER, verifier.check, tx(MALLORY))
    assert MALLORY.address[:4].hex() in str(err) and "Transaction" in str(err)


def test_bad_signature(verifier: Verifier) -> None:
    t = tx(ALICE)
    forged = dataclasses.replace(t, payload=ModelRef("bafk-evil", H1, 1))
    err = rejected(verifier, RejectReason.BAD_SIGNATURE, verifier.check, forged)
    assert f"Transaction {record_id(forged)[:4].hex()}" in str(err)
    unsigned = dataclasses.replace(t, signature=b"")
    rejected(verifier, RejectReason.BAD_SIGNATURE, verifier.check, unsigned)
    # Bob's signature on a record that names Alice as sender
    stolen = dataclasses.replace(t, signature=BOB.sign(b"anything"))
    rejected(verifier, RejectReason.BAD_SIGNATURE, verifier.check, stolen)
    receipt = Receipt(BOB.address, H1, 3, 0.9, 1.0, signature=b"\x00" * 64)
    rejected(verifier, RejectReason.BAD_SIGNATURE, verifier.check, receipt)


def test_wrong_id(verifier: Verifier) -> None:
    t = tx(ALICE)
    err = rejected(verifier, RejectReason.WRONG_ID, verifier.check, t, expected_id=H1)
    assert "announced as 11111111" in str(err)


def test_malformed(verifier: Verifier) -> None:
    rejected(verifier, RejectReason.MALFORMED, verifier.check, ModelRef("bafk", H1))
    rejected(verifier, RejectReason.MALFORMED, verifier.check, block1())
    rejected(verifier, RejectReason.MALFORMED, verifier.check_block, tx(ALICE), None)
    rejected(verifier, RejectReason.MALFORMED, verifier.decode, b"\xff\x00", Transaction)
    err = rejected(verifier, RejectReason.MALFORMED, verifier.decode, encode(1), Transaction)
    assert "expected a Transaction, got int" in str(err)
    t = tx(ALICE)
    assert verifier.decode(encode(t), Transaction) == t


def test_counter_as_dict_lists_every_reason() -> None:
    counter = RejectCounter()
    counter.add(RejectReason.BAD_SIGNATURE)
    counter.add(RejectReason.BAD_SIGNATURE)
    counter.add(RejectReason.WRONG_PARENT)
    as_dict = counter.as_dict()
    assert set(as_dict) == {r.value for r in RejectReason}
    assert as_dict["bad_signature"] == 2 and as_dict["wrong_parent"] == 1
    assert counter.total == 3 and counter["bad_signature"] == 2
    assert "bad_signature" in repr(counter) and "malformed" not in repr(counter)


# ---------------------------------------------------------------- blocks


def test_valid_chain(verifier: Verifier) -> None:
    assert verifier.check_block(G_BLOCK, None) == G_BLOCK.hash
    b1 = block1(tx(ALICE, 1), tx(BOB, 2))
    assert verifier.check_block(b1, G_BLOCK.header) == b1.hash
    assert verifier.check_block(b1, None) == b1.hash  # parent not at hand: link skipped
    assert verifier.check_block(b1, G_BLOCK.header, expected_hash=b1.hash) == b1.hash
    b2 = sign(Block.create(b1.hash, 2, ALICE.address, 2.0), ALICE)
    assert verifier.check_block(b2, b1.header) == b2.hash
    assert verifier.counter.total == 0


def test_wrong_parent_and_height(verifier: Verifier) -> None:
    b1 = block1()
    orphan = sign(Block.create(H1, 2, ALICE.address, 2.0), ALICE)
    rejected(verifier, RejectReason.WRONG_PARENT, verifier.check_block, orphan, b1.header)
    skip = sign(Block.create(b1.hash, 3, ALICE.address, 2.0), ALICE)
    err = rejected(verifier, RejectReason.WRONG_HEIGHT, verifier.check_block, skip, b1.header)
    assert "height 3 on a parent of height 1, expected 2" in str(err)
    assert "Block" in str(err)


def test_bad_merkle_root(verifier: Verifier) -> None:
    b1 = block1(tx(ALICE, 1), tx(BOB, 2))
    swapped = Block(b1.header, tuple(reversed(b1.transactions)))
    rejected(verifier, RejectReason.BAD_MERKLE_ROOT, verifier.check_block, swapped, G_BLOCK.header)
    dropped = Block(b1.header, b1.transactions[:1])
    rejected(verifier, RejectReason.BAD_MERKLE_ROOT, verifier.check_block, dropped, None)


def test_duplicate_transaction(verifier: Verifier) -> None:
    t = tx(ALICE, 1)
    dup = block1(t, tx(BOB, 2), t)
    err = rejected(verifier, RejectReason.DUPLICATE_TX, verifier.check_block, dup, None)
    assert "transaction 2 repeats transaction 0" in str(err)


def test_block_signature_and_proposer(verifier: Verifier) -> None:
    b1 = block1(tx(ALICE, 1))
    forged = Block(dataclasses.replace(b1.header, timestamp=5.0), b1.transactions)
    rejected(verifier, RejectReason.BAD_SIGNATURE, verifier.check_block, forged, G_BLOCK.header)
    by_mallory = block1(proposer=MALLORY)
    rejected(verifier, RejectReason.UNKNOWN_SENDER, verifier.check_block, by_mallory, None)
    err = rejected(
        verifier, RejectReason.WRONG_ID, verifier.check_block, b1, None, expected_hash=H1
    )
    assert "announced as" in str(err)


def test_bad_transaction_rejects_block_once(verifier: Verifier) -> None:
    good = tx(ALICE, 1)
    bad = dataclasses.replace(tx(BOB, 2), nonce=99)  # content changed after signing
    b1 = block1(good, bad)
    err = rejected(verifier, RejectReason.BAD_SIGNATURE, verifier.check_block, b1, None)
    assert "transaction 1 (Transaction" in str(err) and f"Block {b1.hash[:4].hex()}" in str(err)
    outsider = block1(good, tx(MALLORY, 3))
    rejected(verifier, RejectReason.UNKNOWN_SENDER, verifier.check_block, outsider, None)


def test_genesis_rules(verifier: Verifier) -> None:
    bad = Block.create(H1, 0, ZERO_HASH, 0.0, (), GENESIS)
    err = rejected(verifier, RejectReason.BAD_GENESIS, verifier.check_block, bad, None)
    assert "parent is 11111111, not zero" in str(err)
    not_genesis = Block.create(ZERO_HASH, 0, ZERO_HASH, 0.0, (), {"members": ()})
    err = rejected(verifier, RejectReason.BAD_GENESIS, verifier.check_block, not_genesis, None)
    assert "extra is dict, not Genesis" in str(err)
    with_tx = Block.create(ZERO_HASH, 0, ZERO_HASH, 0.0, (tx(ALICE),), GENESIS)
    rejected(verifier, RejectReason.BAD_GENESIS, verifier.check_block, with_tx, None)
    # a height-0 block offered as the child of a parent is a height error
    zero = sign(Block.create(G_BLOCK.hash, 0, ALICE.address, 1.0), ALICE)
    rejected(verifier, RejectReason.WRONG_HEIGHT, verifier.check_block, zero, G_BLOCK.header)


def test_rejections_are_logged(verifier: Verifier, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="fedledger.ledger.verify"), pytest.raises(Rejected):
        verifier.check(tx(MALLORY))
    assert "unknown_sender" in caplog.text and "Transaction" in caplog.text


def test_unencodable_local_block_is_malformed(verifier: Verifier) -> None:
    b1 = block1()
    odd = Block(b1.header, (dataclasses.replace(tx(ALICE), payload={1: "int key"}),))
    err = rejected(verifier, RejectReason.MALFORMED, verifier.check_block, odd, None)
    assert "map keys must be str" in str(err)
