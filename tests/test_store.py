"""The SQLite chain store: appends, forks, queries, persistence, finality marks."""

from __future__ import annotations

import sqlite3
from fractions import Fraction
from pathlib import Path

import pytest

import chainkit as ck
from fedledger.ledger.finality import Checkpoint, FinalityRule, FinalityVote, VoteStatus
from fedledger.ledger.records import Block, record_id, sign
from fedledger.ledger.store import (
    ChainStore,
    ChainStoreError,
    InvalidBlockError,
    UnknownParentError,
)
from fedledger.ledger.store_sql import SchemaError

KEYS = ck.keys(4)
G = ck.genesis(KEYS)
MAIN = ck.chain(G, KEYS[0], 6)  # heights 1..6
FORK = ck.chain(MAIN[1], KEYS[1], 6, salt=1)  # heights 3..8, forks from height 2


@pytest.fixture
def store(tmp_path: Path) -> ChainStore:
    s = ChainStore(tmp_path / "ledger.sqlite")
    s.append(G)
    yield s
    s.close()


def hashes(blocks: list[Block]) -> list[bytes]:
    return [b.hash for b in blocks]


def test_pragmas_durable(store: ChainStore) -> None:
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_genesis_and_duplicates(store: ChainStore) -> None:
    assert store.genesis().hash == G.hash
    assert store.head().hash == G.hash
    assert store.finalized().hash == G.hash
    assert store.append(G) is False
    assert store.append(MAIN[0]) is True
    assert store.append(MAIN[0]) is False
    assert store.block_count() == 2


def test_empty_store_errors(tmp_path: Path) -> None:
    with ChainStore(tmp_path / "x.sqlite") as s:
        with pytest.raises(ChainStoreError, match="is empty; append the genesis block first"):
            s.head()
        with pytest.raises(InvalidBlockError, match="the first block must be the genesis"):
            s.append(MAIN[0])
        assert list(s.canonical_chain()) == []


def test_refuses_bad_placement(store: ChainStore) -> None:
    with pytest.raises(UnknownParentError, match=r"parent \w+ is not stored"):
        store.append(MAIN[3])
    other_genesis = ck.genesis(KEYS[:2])
    with pytest.raises(InvalidBlockError, match="a ledger has one genesis"):
        store.append(other_genesis)
    bad = sign(Block.create(G.hash, 5, KEYS[0].address, 1.0), KEYS[0])
    with pytest.raises(InvalidBlockError, match=r"height 5.*allowed height is 1"):
        store.append(bad)
    assert store.block_count() == 1


def test_queries_on_one_chain(store: ChainStore) -> None:
    for b in MAIN:
        store.append(b)
    assert store.head().hash == MAIN[-1].hash
    assert [b.hash for b in store.canonical_chain()] == [G.hash, *hashes(MAIN)]
    assert store.at_height(3).hash == MAIN[2].hash
    assert store.at_height(7) is None
    assert hashes(store.ancestors(MAIN[4].hash, 2)) == [MAIN[3].hash, MAIN[2].hash]
    assert hashes(store.ancestors(MAIN[1].hash, 10)) == [MAIN[0].hash, G.hash]
    assert hashes(store.children(MAIN[0].hash)) == [MAIN[1].hash]
    assert hashes(store.path(MAIN[0].hash, MAIN[3].hash)) == hashes(MAIN[1:4])
    assert store.path(MAIN[2].hash, MAIN[2].hash) == []
    with pytest.raises(ValueError, match="must be a stored ancestor"):
        store.path(MAIN[3].hash, MAIN[0].hash)
    tx = MAIN[4].transactions[0]
    assert store.transaction(record_id(tx)) == (tx, MAIN[4].hash)
    assert store.transaction(b"\x00" * 32) is None
    assert store.get(b"\x01" * 32) is None
    assert store.get(MAIN[2].hash) == MAIN[2]


def test_forks_are_kept_and_longest_wins(store: ChainStore) -> None:
    for b in MAIN:
        store.append(b)
    for b in FORK[:3]:  # heights 3..5: shorter than MAIN
        store.append(b)
        assert store.head().hash == MAIN[-1].hash
    store.append(FORK[3])  # height 6: a tie, broken by the smaller hash
    assert store.head().hash == min(MAIN[-1].hash, FORK[3].hash)
    for b in FORK[4:]:
        store.append(b)
    assert store.head().hash == FORK[-1].hash
    assert [b.hash for b in store.canonical_chain()] == [G.hash, *hashes(MAIN[:2]), *hashes(FORK)]
    assert all(store.get(b.hash) == b for b in MAIN + FORK)  # forks are not overwritten
    assert sorted(hashes(store.children(MAIN[1].hash))) == sorted([MAIN[2].hash, FORK[0].hash])
    assert store.is_ancestor(MAIN[1].hash, FORK[-1].hash)
    assert not store.is_ancestor(MAIN[3].hash, FORK[-1].hash)
    assert store.ancestor_at(MAIN[-1].hash, 2) == MAIN[1].hash  # off the canonical chain
    assert store.ancestor_at(MAIN[-1].hash, 4) == MAIN[3].hash
    assert store.ancestor_at(MAIN[-1].hash, 9) is None


def test_transaction_prefers_canonical_block(store: ChainStore) -> None:
    shared = ck.tx(KEYS[2], 77)
    a = ck.block(G, KEYS[0], (shared,))
    b = ck.block(G, KEYS[1], (shared,), salt=5)
    store.append(a)
    store.append(b)
    head = store.head().hash
    assert store.transaction(record_id(shared)) == (shared, head)
    loser = b if head == a.hash else a
    store.append(ck.block(loser, KEYS[0]))
    assert store.transaction(record_id(shared)) == (shared, loser.hash)


def test_reopen_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with ChainStore(path) as s:
        for b in [G, *MAIN, *FORK[:2]]:
            s.append(b)
    with ChainStore(path) as s:
        assert s.head().hash == MAIN[-1].hash
        assert s.block_count() == 1 + len(MAIN) + 2
        for b in FORK[2:]:
            s.append(b)
        assert s.head().hash == FORK[-1].hash


def test_schema_version_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ChainStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = 99 WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(SchemaError, match="schema version 99; this fedledger reads version 1"):
        ChainStore(path)


# ---------------------------------------------------------------- finality in the store

RULE = FinalityRule(2, Fraction(2, 3), frozenset(k.address for k in KEYS))


def cp(b: Block) -> Checkpoint:
    return Checkpoint(b.height, b.hash)


def votes(store: ChainStore, s: Block, t: Block, voters: int = 3) -> list:
    return [store.add_vote(FinalityVote(k.address, cp(s), cp(t))) for k in KEYS[:voters]]


def test_votes_finalize_and_survive_restart(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with ChainStore(path, finality=RULE) as s:
        for b in [G, *MAIN]:
            s.append(b)
        assert votes(s, G, MAIN[1])[-1].committed == (cp(MAIN[1]),)
        r = votes(s, MAIN[1], MAIN[3])[-1]
        assert r.finalized == (cp(MAIN[1]),)
        assert s.finalized().hash == MAIN[1].hash
        odd = s.add_vote(FinalityVote(KEYS[0].address, cp(MAIN[1]), cp(FORK[0])))
        assert odd.status is VoteStatus.NOT_CHECKPOINT  # FORK[0] is at height 3
        assert s.add_vote(FinalityVote(KEYS[0].address, cp(MAIN[3]), cp(MAIN[5]))).accepted
    with ChainStore(path) as s:  # the stored rule is used
        assert s.rule == RULE
        assert s.finalized().hash == MAIN[1].hash
        assert s.finality is not None
        assert s.finality.committed() == (cp(G), cp(MAIN[1]), cp(MAIN[3]))
        assert s.finality.votes_for(cp(MAIN[3]), cp(MAIN[5])) == {KEYS[0].address}


def test_evidence_persists(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with ChainStore(path, finality=RULE) as s:
        for b in [G, *MAIN, *FORK]:
            s.append(b)
        assert s.add_vote(FinalityVote(KEYS[3].address, cp(G), cp(MAIN[3]))).accepted
        r = s.add_vote(FinalityVote(KEYS[3].address, cp(G), cp(FORK[1])))
        assert r.status is VoteStatus.DOUBLE_VOTE
    with ChainStore(path, finality=RULE) as s:
        assert s.finality.slashed() == {KEYS[3].address}
        assert s.finality.evidence()[0].offending.target == cp(FORK[1])
        again = s.add_vote(FinalityVote(KEYS[3].address, cp(MAIN[3]), cp(MAIN[5])))
        assert again.status is VoteStatus.SLASHED_VOTER


def test_rule_mismatch_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with ChainStore(path, finality=RULE) as s:
        s.append(G)
    other = FinalityRule(3, Fraction(2, 3), RULE.committee)
    with pytest.raises(SchemaError, match=r"interval=2.*cannot be reopened with interval=3"):
        ChainStore(path, finality=other)


def test_votes_need_a_rule(store: ChainStore) -> None:
    with pytest.raises(ChainStoreError, match="has no finality rule"):
        store.add_vote(FinalityVote(KEYS[0].address, cp(G), cp(MAIN[1])))


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ChainStoreError, match=r"cannot open chain store .*: file is not a"):
        ChainStore(path)
