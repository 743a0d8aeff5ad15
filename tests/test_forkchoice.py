"""Fork choice rules, and the store keeping the head on the finalized chain."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import pytest

import chainkit as ck
from fedledger.ledger.finality import Checkpoint, FinalityRule, FinalityVote
from fedledger.ledger.forkchoice import BlockTreeView, Tip, heaviest_chain, longest_chain
from fedledger.ledger.records import Block
from fedledger.ledger.store import ChainStore, ForkChoiceError

KEYS = ck.keys(4)
G = ck.genesis(KEYS)
MAIN = ck.chain(G, KEYS[0], 6)  # heights 1..6, proposer 0
FORK = ck.chain(MAIN[1], KEYS[1], 6, salt=1)  # heights 3..8 from MAIN[1], proposer 1
RULE = FinalityRule(2, Fraction(2, 3), frozenset(k.address for k in KEYS))


@dataclass
class FakeTree:
    root: Tip
    leaves: list[Tip]
    blocks: dict[bytes, Block] = field(default_factory=dict)

    def tips(self) -> Sequence[Tip]:
        return self.leaves

    def get(self, block_hash: bytes) -> Block | None:
        return self.blocks.get(block_hash)


def tree_of(*chains: list[Block]) -> FakeTree:
    blocks = {b.hash: b for c in chains for b in [G, *c]}
    leaves = [Tip(c[-1].hash, c[-1].height) for c in chains]
    return FakeTree(Tip(G.hash, 0), leaves, blocks)


def test_longest_chain_picks_highest_then_smaller_hash() -> None:
    assert longest_chain(tree_of(MAIN, FORK)) == FORK[-1].hash
    a, b = Tip(b"\x02" * 32, 5), Tip(b"\x01" * 32, 5)
    tree: BlockTreeView = FakeTree(Tip(G.hash, 0), [a, b, Tip(b"\x00" * 32, 4)])
    assert longest_chain(tree) == b.hash
    assert longest_chain(FakeTree(Tip(G.hash, 0), [])) == G.hash


def by_proposer(weights: dict[bytes, float]) -> heaviest_chain:
    return heaviest_chain(lambda blk: weights.get(blk.header.proposer, 0.0))


def test_heaviest_chain_follows_weight_not_length() -> None:
    choose = by_proposer({KEYS[0].address: 3.0, KEYS[1].address: 1.0})
    # MAIN: 6 blocks x 3 = 18; FORK: 2 x 3 + 6 x 1 = 12
    assert choose(tree_of(MAIN, FORK)) == MAIN[-1].hash
    choose = by_proposer({KEYS[0].address: 1.0, KEYS[1].address: 1.0})
    assert choose(tree_of(MAIN, FORK)) == FORK[-1].hash


def test_heaviest_chain_ties_go_higher_then_smaller_hash() -> None:
    choose = heaviest_chain(lambda blk: 0.0)
    assert choose(tree_of(MAIN, FORK)) == FORK[-1].hash  # all weigh 0: the higher tip
    side = ck.chain(MAIN[1], KEYS[2], 4, salt=2)  # also height 6
    assert choose(tree_of(MAIN, side)) == min(MAIN[-1].hash, side[-1].hash)


def test_heaviest_chain_caches_and_checks_weights() -> None:
    calls: list[bytes] = []

    def weight(blk: Block) -> float:
        calls.append(blk.hash)
        return 1.0

    choose = heaviest_chain(weight)
    choose(tree_of(MAIN))
    assert len(calls) == len(MAIN)  # the root's weight is common to all: not counted
    choose(tree_of(MAIN, FORK))
    assert len(calls) == len(MAIN) + len(FORK)  # the shared prefix came from the cache
    negative = heaviest_chain(lambda blk: -1.0)
    with pytest.raises(ValueError, match=r"is -1.0; allowed: a finite number >= 0"):
        negative(tree_of(MAIN))
    with pytest.raises(ValueError, match="cache_size must be >= 1"):
        heaviest_chain(weight, cache_size=0)


def test_store_uses_the_given_fork_choice(tmp_path: Path) -> None:
    choose = by_proposer({KEYS[0].address: 3.0, KEYS[1].address: 1.0})
    with ChainStore(tmp_path / "l.sqlite", fork_choice=choose) as s:
        for b in [G, *MAIN, *FORK]:
            s.append(b)
        assert s.head().hash == MAIN[-1].hash


def cp(b: Block) -> Checkpoint:
    return Checkpoint(b.height, b.hash)


def finalize(s: ChainStore, a: Block, b: Block, c: Block) -> None:
    """Commit a->b and b->c with 3 of 4 votes: b is finalized."""
    for src, dst in [(a, b), (b, c)]:
        for k in KEYS[:3]:
            assert s.add_vote(FinalityVote(k.address, cp(src), cp(dst))).accepted


def test_head_stays_on_the_finalized_chain(tmp_path: Path) -> None:
    """A longer fork that leaves the finalized chain is stored but never becomes head."""
    with ChainStore(tmp_path / "l.sqlite", finality=RULE) as s:
        for b in [G, *MAIN]:
            s.append(b)
        finalize(s, G, MAIN[3], MAIN[5])  # MAIN[3] (height 4) finalized
        assert s.finalized().hash == MAIN[3].hash
        for b in FORK:  # forks at height 2, grows to height 8
            assert s.append(b)
        assert s.head().hash == MAIN[-1].hash
        assert s.get(FORK[-1].hash) == FORK[-1]
        assert s._live_tips(Tip(MAIN[3].hash, 4)) == [Tip(MAIN[-1].hash, 6)]


def test_fork_choice_off_finalized_chain_is_an_error(tmp_path: Path) -> None:
    """The head stays, and the append that asked for it is rolled back."""
    target: list[bytes] = []

    def rogue(tree: BlockTreeView) -> bytes:
        return target[0] if target else longest_chain(tree)

    extra = ck.block(MAIN[-1], KEYS[0])
    with ChainStore(tmp_path / "l.sqlite", fork_choice=rogue, finality=RULE) as s:
        for b in [G, *MAIN, *FORK[:2]]:
            s.append(b)
        finalize(s, G, MAIN[1], MAIN[3])  # MAIN[1] (height 2) finalized; FORK descends
        for k in KEYS[:3]:  # MAIN[3] (height 4) finalized: FORK does not descend from it
            s.add_vote(FinalityVote(k.address, cp(MAIN[3]), cp(MAIN[5])))
        assert s.finalized().hash == MAIN[3].hash
        head = s.head_hash()
        target.append(FORK[1].hash)
        with pytest.raises(ForkChoiceError, match="does not descend from finalized block"):
            s.append(extra)
        assert s.head_hash() == head
        assert s.get(extra.hash) is None  # rolled back
        target[0] = b"\x07" * 32
        with pytest.raises(ForkChoiceError, match="unknown block"):
            s.append(extra)
        target.clear()
        assert s.append(extra) and s.head().hash == extra.hash


def test_finality_on_a_side_branch_moves_the_head(tmp_path: Path) -> None:
    with ChainStore(tmp_path / "l.sqlite", finality=RULE) as s:
        for b in [G, *MAIN, *FORK]:
            s.append(b)
        assert s.head().hash == FORK[-1].hash  # the longer branch
        finalize(s, G, MAIN[3], MAIN[5])  # votes finalize MAIN[3], which FORK lacks
        assert s.head().hash == MAIN[-1].hash
        assert [b.hash for b in s.canonical_chain()] == [G.hash] + [b.hash for b in MAIN]
    with ChainStore(tmp_path / "l.sqlite") as s:
        assert s.head().hash == MAIN[-1].hash
        assert s.finalized().hash == MAIN[3].hash
