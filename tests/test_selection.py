"""consensus.selection: highest stake, the stake lottery, proof of work with Bitcoin's
target rule and difficulty retargeting; PoS-BFL's bindings give the same bits as before."""

from __future__ import annotations

import dataclasses
import hashlib
from fractions import Fraction

import numpy as np
import pytest

from fedledger.consensus.selection import (
    MAX_TARGET,
    Retarget,
    SelectionError,
    find_nonce,
    first_sealed,
    highest_stake,
    seal,
    seal_ok,
    stake_lottery,
    target_of_bits,
    tie_break,
)
from fedledger.crypto import KeyPair
from fedledger.ledger.records import ZERO_HASH, Block, record_id
from fedledger.protocols.posbfl import selection as posbfl
from fedledger.protocols.posbfl.messages import RoundRecord

stats = pytest.importorskip("scipy.stats")


# ---------------------------------------------------------------- proof of stake


def test_highest_stake_wins_and_ties_go_to_the_unpredictable_hash():
    props = [bytes([i]) * 20 for i in range(4)]
    stakes = {props[0]: 3.0, props[1]: 7.0, props[2]: 7.0}
    tied = sorted(props[1:3], key=lambda p: tie_break(b"ctx", 9, p))
    assert highest_stake(props, lambda p: p, stakes, 9, b"ctx") == tied[0]
    assert highest_stake(list(reversed(props)), lambda p: p, stakes, 9, b"ctx") == tied[0]
    assert highest_stake([props[3]], lambda p: p, stakes, 9, b"ctx") == props[3]
    assert highest_stake([], lambda p: p, stakes, 9, b"ctx") is None
    # the tie-break depends on the context and height, never on the content
    rounds = {highest_stake(props[1:3], lambda p: p, stakes, h, b"ctx") for h in range(20)}
    assert rounds == set(props[1:3])


def test_stake_lottery_frequencies_follow_stake():
    stakes = {"a": 1.5, "b": 3, "c": Fraction(1, 2), "d": 5.0, "e": 0}
    heights = 4000
    wins = dict.fromkeys(stakes, 0)
    for h in range(heights):
        wins[stake_lottery(stakes, 7, h)] += 1
    assert wins["e"] == 0
    live = ["a", "b", "c", "d"]
    total = sum(float(stakes[m]) for m in live)
    expected = [heights * float(stakes[m]) / total for m in live]
    assert stats.chisquare([wins[m] for m in live], expected).pvalue > 0.01
    # seeded and order-free: every node draws the same proposer
    again = dict(reversed(list(stakes.items())))
    assert [stake_lottery(again, 7, h) for h in range(50)] == [
        stake_lottery(stakes, 7, h) for h in range(50)
    ]
    assert [stake_lottery(stakes, 8, h) for h in range(50)] != [
        stake_lottery(stakes, 7, h) for h in range(50)
    ]


def test_stake_lottery_refuses_bad_stakes():
    with pytest.raises(SelectionError, match="positive total stake"):
        stake_lottery({"a": 0, "b": 0.0}, 0, 1)
    with pytest.raises(SelectionError, match="'a' must be >= 0, got -1"):
        stake_lottery({"a": -1, "b": 2}, 0, 1)
    with pytest.raises(SelectionError, match="'a' must be a number"):
        stake_lottery({"a": "1"}, 0, 1)


# ---------------------------------------------------------------- proof of work


def _leading_zero_bits(digest: bytes) -> int:
    return len(digest) * 8 - int.from_bytes(digest, "big").bit_length()


def test_target_rule_is_the_leading_zero_bits_rule():
    base = hashlib.sha256(b"base").digest()
    for nonce in range(3000):
        digest = hashlib.sha256(b"ctx" + base + nonce.to_bytes(8, "big")).digest()
        assert seal(b"ctx", base, nonce) == int.from_bytes(digest, "big")
        for bits in (0, 1, 4, 8, 11):
            ok = seal_ok(b"ctx", base, nonce, target_of_bits(bits))
            assert ok == (_leading_zero_bits(digest) >= bits)
    nonce = find_nonce(b"ctx", base, target_of_bits(10))
    assert seal_ok(b"ctx", base, nonce, target_of_bits(10))
    assert not any(seal_ok(b"ctx", base, n, target_of_bits(10)) for n in range(nonce))
    assert not seal_ok(b"ctx", base, -1, MAX_TARGET) and not seal_ok(b"ctx", base, True, 1 << 255)
    with pytest.raises(SelectionError, match=r"0\.\.256 bits, got 257"):
        target_of_bits(257)


def _old_find_nonce(header, difficulty):
    """PoS-BFL's sealing as it was before the consensus layer (the oracle)."""
    extra = header.extra
    unsealed = dataclasses.replace(header, extra=dataclasses.replace(extra, nonce=0), signature=b"")
    base = record_id(unsealed)
    for nonce in range(1 << 32):
        digest = hashlib.sha256(b"posbfl/pow" + base + nonce.to_bytes(8, "big")).digest()
        if _leading_zero_bits(digest) >= difficulty:
            return nonce
    raise AssertionError


def test_posbfl_seals_and_picks_as_before():
    key = KeyPair.generate("ed25519", b"\x07" * 32)
    blocks = []
    for t in range(6):
        record = RoundRecord(3, (), (), ())
        block = Block.create(ZERO_HASH, 1, key.address, float(t), (), record)
        nonce = posbfl.find_nonce(block.header, 7)
        assert nonce == _old_find_nonce(block.header, 7)
        sealed = Block.create(
            ZERO_HASH, 1, key.address, float(t), (), dataclasses.replace(record, nonce=nonce)
        )
        assert posbfl.seal_ok(sealed, 7)
        blocks.append(sealed)
    fewest = min(blocks, key=lambda b: (b.header.extra.nonce, b.hash))
    assert posbfl.pick_pow(blocks) is fewest
    assert first_sealed(blocks, lambda b: b.header.extra.nonce, lambda b: b.hash) is fewest
    stakes = {key.address: 1.0}
    old_tie = hashlib.sha256(b"posbfl/tie" + (3).to_bytes(8, "big") + key.address).digest()
    assert posbfl.tie_break(3, key.address) == old_tie
    assert posbfl.pick_pos(blocks, stakes, 3) is blocks[0]  # one proposer: min() keeps first


# ---------------------------------------------------------------- retargeting


def test_retarget_scales_by_observed_over_expected_and_clamps():
    rule = Retarget(interval=10.0, window=4)  # expected window: 40 s
    assert rule.next_target(1000, 60.0) == 1500
    assert rule.next_target(1000, 20.0) == 500
    assert rule.next_target(1000, 1e9) == 4000
    assert rule.next_target(1001, 0.0) == 250  # floor(1001 / 4)
    assert rule.next_target(MAX_TARGET, 80.0) == MAX_TARGET
    assert rule.next_target(1, 1.0) == 1
    times = [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]  # blocks 0..5, 5 s apart: twice too fast
    assert rule.target_at(5, 1000, times) == 500  # retargeted at height 5 from blocks 0..4
    assert rule.target_at(4, 1000, times) == 1000
    with pytest.raises(SelectionError, match="window must be an int >= 1, got 0"):
        Retarget(10.0, 0)
    with pytest.raises(SelectionError, match="interval must be > 0"):
        Retarget(0.0, 3)


def _mine(rule: Retarget, initial: int, blocks: int, rate: float, attempts_of) -> list[float]:
    """Block times of a chain whose target follows ``rule``; a block takes
    attempts / ``rate`` seconds."""
    times = [0.0]
    for height in range(1, blocks + 1):
        target = rule.target_at(height, initial, times)
        times.append(times[-1] + attempts_of(height, target) / rate)
    return times


def _intervals(times: list[float], first: int, last: int) -> float:
    return (times[last] - times[first]) / (last - first)


def test_retargeting_converges_from_too_easy_with_real_hashing():
    rule = Retarget(interval=2.0, window=16)
    rate = 1000.0  # hashes per second: the target interval needs about 2000 attempts

    def attempts(height: int, target: int) -> int:
        base = hashlib.sha256(b"block-%d" % height).digest()
        return find_nonce(b"retarget-test", base, target) + 1

    times = _mine(rule, target_of_bits(4), 192, rate, attempts)  # ~16 attempts: 125x fast
    assert _intervals(times, 0, 16) < 0.1  # the first window is far too fast
    mean = _intervals(times, 128, 192)  # the last four windows
    assert 2.0 / 1.5 < mean < 2.0 * 1.5, mean


def test_retargeting_converges_from_too_hard():
    rule = Retarget(interval=60.0, window=32)
    rate = 10_000.0  # the target interval needs 600,000 attempts
    rng = np.random.default_rng(3)

    def attempts(height: int, target: int) -> int:  # geometric: each attempt wins w.p. p
        return int(rng.geometric(target / MAX_TARGET))

    initial = MAX_TARGET // 60_000_000  # 100x too hard
    times = _mine(rule, initial, 32 * 12, rate, attempts)
    assert _intervals(times, 0, 32) > 60.0 * 50
    mean = _intervals(times, 32 * 8, 32 * 12)
    assert 60.0 / 1.25 < mean < 60.0 * 1.25, mean
