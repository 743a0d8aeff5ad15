"""Run-wide signature memo (answers repeated checks, charges each node) and the
verifier's memo of a block's transactions (candidate blocks sharing one pool)."""

from __future__ import annotations

import dataclasses

import pytest

from fedledger.crypto import KeyPair
from fedledger.crypto.keys import KeyDirectory
from fedledger.ledger.records import Block, ModelRef, Transaction, Vote, record_id, sign
from fedledger.ledger.sigmemo import ACTIVITY, MemoDirectory, SignatureMemo
from fedledger.ledger.verify import Rejected, RejectReason, Verifier
from fedledger.protocols.meter import CpuMeter

H1 = b"\x11" * 32
COST = 0.125  # seconds per modelled verification: large, so a charge is unmistakable


def _keys(n: int) -> list[KeyPair]:
    return [KeyPair.generate("ed25519", bytes([i + 1]) * 32) for i in range(n)]


def _vote(kp: KeyPair, value: int = 1) -> Vote:
    return sign(Vote(kp.address, b"\x01" * 32, value, 1, 0.0), kp)


def _node(memo: SignatureMemo, base: KeyDirectory) -> tuple[Verifier, CpuMeter]:
    meter = CpuMeter()
    return Verifier(memo.directory_for(base, meter)), meter


def test_second_node_is_answered_and_charged_the_modelled_cost() -> None:
    keys = _keys(2)
    base = KeyDirectory(k.public for k in keys)
    memo = SignatureMemo({"ed25519": COST})
    (a, meter_a), (b, meter_b) = _node(memo, base), _node(memo, base)
    vote = _vote(keys[0])
    a.check(vote)
    assert (memo.computed, memo.hits) == (1, 0)
    assert meter_a.seconds[ACTIVITY] < COST  # real CPU time of one check
    b.check(vote)
    assert (memo.computed, memo.hits) == (1, 1)
    assert meter_b.seconds[ACTIVITY] == COST
    # each node counts the check as its own; a node's own cache still answers it again
    assert a.signatures_checked == b.signatures_checked == 1
    b.check(vote)
    assert b.signatures_checked == 1 and b.cache_hits == 1
    assert meter_b.seconds[ACTIVITY] == COST


def test_bad_signatures_are_never_remembered() -> None:
    keys = _keys(2)
    base = KeyDirectory(k.public for k in keys)
    memo = SignatureMemo({"ed25519": COST})
    good = _vote(keys[0])
    forged = Vote(good.voter, good.target, good.value, good.epoch, good.timestamp,
                  _vote(keys[1]).signature)
    for _ in range(2):
        verifier, meter = _node(memo, base)
        with pytest.raises(Rejected) as err:
            verifier.check(forged)
        assert err.value.reason is RejectReason.BAD_SIGNATURE
        assert meter.seconds[ACTIVITY] < COST
    assert (memo.computed, memo.hits, len(memo)) == (2, 0, 0)


def test_memo_forgets_oldest_first() -> None:
    keys = _keys(3)
    base = KeyDirectory(k.public for k in keys)
    memo = SignatureMemo({"ed25519": COST}, size=2)
    votes = [_vote(k) for k in keys]
    first, _ = _node(memo, base)
    for vote in votes:
        first.check(vote)
    assert len(memo) == 2
    second, _ = _node(memo, base)
    second.check(votes[0])  # forgotten: computed again
    second.check(votes[2])  # still known
    assert (memo.computed, memo.hits) == (4, 1)


def test_directory_view_shares_keys_until_one_is_added() -> None:
    keys = _keys(3)
    base = KeyDirectory(k.public for k in keys[:2])
    memo = SignatureMemo({"ed25519": COST})
    view = memo.directory_for(base, CpuMeter())
    assert isinstance(view, MemoDirectory)
    assert dict(view) == dict(base)
    view.add(keys[2].public)
    assert keys[2].address in view and keys[2].address not in base
    assert len(base) == 2


def test_costs_must_cover_every_scheme_and_be_non_negative() -> None:
    base = KeyDirectory(k.public for k in _keys(1))
    with pytest.raises(ValueError, match="ed25519"):
        SignatureMemo({"rsa": COST}).directory_for(base, CpuMeter())
    with pytest.raises(ValueError, match=">= 0"):
        SignatureMemo({"ed25519": -1.0})
    with pytest.raises(ValueError, match="memo size"):
        SignatureMemo({"ed25519": COST}, size=0)


def test_calibrated_costs_are_measured() -> None:
    memo = SignatureMemo.calibrated(["ed25519"], seconds=0.01)
    assert 0.0 < memo.costs["ed25519"] < 0.01


# ---------------------------------------------------------------- shared candidate blocks


def _tx(kp: KeyPair, n: int) -> Transaction:
    return sign(Transaction(kp.address, float(n), "model", ModelRef("bafk", H1, n), nonce=n), kp)


def _block(txs: tuple[Transaction, ...], proposer: KeyPair) -> Block:
    return sign(Block.create(H1, 1, proposer.address, 1.0, txs), proposer)


def test_a_block_with_the_same_transaction_objects_is_not_walked_again() -> None:
    alice, bob, carol = _keys(3)
    directory = KeyDirectory(k.public for k in (alice, bob, carol))
    txs = tuple(sorted((_tx(alice, 1), _tx(bob, 2)), key=record_id))
    verifier = Verifier(directory)
    first, second = _block(txs, bob), _block(txs, carol)  # two miners, one pool
    verifier.check_block(first)
    assert (verifier.signatures_checked, verifier.cache_hits) == (3, 0)
    assert verifier.check_block(second) == second.hash
    assert (verifier.signatures_checked, verifier.cache_hits) == (4, 0)  # its header only


def test_an_equal_valued_but_forged_transaction_is_still_checked() -> None:
    """Identity, not equality: a copy of a passed transaction, equal as a value, with
    another signature is walked and refused."""
    alice, bob, carol = _keys(3)
    directory = KeyDirectory(k.public for k in (alice, bob, carol))
    good = _tx(alice, 1)
    verifier = Verifier(directory)
    verifier.check_block(_block((good,), bob))
    forged = dataclasses.replace(good, signature=_tx(bob, 1).signature)
    assert forged != good
    copy = dataclasses.replace(good)  # equal value, another object: walked, passes
    assert copy == good and copy is not good
    verifier.check_block(_block((copy,), carol))
    assert verifier.cache_hits == 1
    with pytest.raises(Rejected) as err:
        verifier.check_block(_block((forged,), carol))
    assert err.value.reason is RejectReason.BAD_SIGNATURE


def test_a_refused_block_is_not_remembered() -> None:
    alice, bob, carol = _keys(3)
    directory = KeyDirectory(k.public for k in (alice, bob))  # carol unknown
    txs = (_tx(carol, 1),)
    verifier = Verifier(directory)
    for _ in range(2):
        with pytest.raises(Rejected) as err:
            verifier.check_block(_block(txs, bob))
        assert err.value.reason is RejectReason.UNKNOWN_SENDER
    assert verifier.counter[RejectReason.UNKNOWN_SENDER] == 2
