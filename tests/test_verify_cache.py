"""The verifier remembers valid signatures: a record seen again costs no second check."""

from __future__ import annotations

import dataclasses

import pytest

from fedledger.crypto import KeyPair
from fedledger.crypto.keys import KeyDirectory, PublicKey
from fedledger.ledger.records import ModelRef, Transaction, Vote, record_id, sign
from fedledger.ledger.verify import Rejected, RejectReason, Verifier

ALICE = KeyPair.generate("ed25519", b"\x01" * 32)
BOB = KeyPair.generate("ed25519", b"\x02" * 32)
H1 = b"\x11" * 32


class CountingKey:
    """A public key that counts its signature checks."""

    def __init__(self, key: PublicKey) -> None:
        self.key = key
        self.scheme = key.scheme
        self.data = key.data
        self.calls = 0

    def verify(self, msg: bytes, sig: bytes) -> bool:
        self.calls += 1
        return self.key.verify(msg, sig)


class CountingDirectory(KeyDirectory):
    def __init__(self, *pairs: KeyPair) -> None:
        super().__init__(kp.public for kp in pairs)
        self.counting = {kp.address: CountingKey(kp.public) for kp in pairs}

    def get(self, address: bytes, default: object = None) -> object:  # type: ignore[override]
        return self.counting.get(address, default)

    def calls(self) -> int:
        return sum(k.calls for k in self.counting.values())


def tx(kp: KeyPair, n: int = 0) -> Transaction:
    return sign(Transaction(kp.address, float(n), "model", ModelRef("bafk", H1, n), nonce=n), kp)


def test_same_record_is_verified_once() -> None:
    directory = CountingDirectory(ALICE, BOB)
    verifier = Verifier(directory)
    t = tx(ALICE)
    vote = sign(Vote(BOB.address, H1, 1, 0, 2.0), BOB)
    for _ in range(3):
        assert verifier.check(t) == record_id(t)
        assert verifier.check(vote) == record_id(vote)
    assert directory.calls() == 2


def test_forged_signature_rejected_after_the_good_one_is_remembered() -> None:
    directory = CountingDirectory(ALICE, BOB)
    verifier = Verifier(directory)
    t = tx(ALICE)
    verifier.check(t)
    forged = dataclasses.replace(t, signature=bytes(64))
    for _ in range(2):  # a failure is not remembered: checked, and counted, each time
        with pytest.raises(Rejected) as info:
            verifier.check(forged)
        assert info.value.reason is RejectReason.BAD_SIGNATURE
    assert verifier.counter[RejectReason.BAD_SIGNATURE] == 2
    # another signer's valid signature of other bytes does not hit the cache either
    other = dataclasses.replace(t, signature=tx(BOB).signature)
    with pytest.raises(Rejected):
        verifier.check(other)
    assert directory.calls() == 4


def test_cache_is_bounded_oldest_forgotten_first() -> None:
    directory = CountingDirectory(ALICE)
    verifier = Verifier(directory, cache_size=2)
    a, b, c = (tx(ALICE, n) for n in range(3))
    for rec in (a, b, c):
        verifier.check(rec)
    assert directory.calls() == 3
    verifier.check(c)
    verifier.check(b)
    assert directory.calls() == 3  # b and c are remembered
    verifier.check(a)
    assert directory.calls() == 4  # a was forgotten


def test_cache_off_and_bad_size() -> None:
    directory = CountingDirectory(ALICE)
    verifier = Verifier(directory, cache_size=0)
    t = tx(ALICE)
    verifier.check(t)
    verifier.check(t)
    assert directory.calls() == 2
    with pytest.raises(ValueError, match="cache_size is -1"):
        Verifier(directory, cache_size=-1)
