"""The SQLite schema and queries behind :class:`~fedledger.ledger.store.ChainStore`.

Also read directly by ``ledger.audit``, which checks the raw rows rather than trusting the
store's own logic. Tables:

- ``meta(key, value)``: schema version, head hash, finality interval and threshold;
- ``blocks(hash, parent, height, proposer, timestamp, body)``: every block ever stored,
  ``body`` = canonical codec bytes of the Block;
- ``txs(id, block, idx)``: transaction id -> (block hash, index), one row per block
  holding it (a transaction may sit in blocks of two forks);
- ``canonical(height, hash)``: the chain from genesis to the head;
- ``tips(hash, height)``: leaves not yet known to be off the finalized chain;
- ``committee(member)``, ``votes``, ``evidence``, ``marks(kind, hash, height)``: the
  finality rule's committee, accepted votes in order, slashing evidence, and the
  committed / finalized checkpoints;
- ``node_state(key, value)``: the node's own durable key/value state (opaque bytes that
  a protocol keeps beside its chain, e.g. DFL's reputation table); not part of the
  ledger, so the audit does not read it. Added after schema version 1 without a version
  bump: ``CREATE TABLE IF NOT EXISTS`` gives older files the table when they are opened.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from fedledger.errors import FedledgerError
from fedledger.ledger.finality import (
    Checkpoint,
    FinalityRule,
    FinalityVote,
    SlashingEvidence,
    VoteResult,
    VoteStatus,
)

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks(
    hash BLOB PRIMARY KEY, parent BLOB NOT NULL, height INTEGER NOT NULL,
    proposer BLOB NOT NULL, timestamp REAL NOT NULL, body BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS blocks_parent ON blocks(parent);
CREATE INDEX IF NOT EXISTS blocks_height ON blocks(height);
CREATE TABLE IF NOT EXISTS txs(
    id BLOB NOT NULL, block BLOB NOT NULL, idx INTEGER NOT NULL,
    PRIMARY KEY(id, block)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS canonical(height INTEGER PRIMARY KEY, hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS tips(hash BLOB PRIMARY KEY, height INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS committee(member BLOB PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS votes(
    seq INTEGER PRIMARY KEY, voter BLOB NOT NULL,
    source_height INTEGER NOT NULL, source BLOB NOT NULL,
    target_height INTEGER NOT NULL, target BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS evidence(
    seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, voter BLOB NOT NULL,
    earlier_source_height INTEGER NOT NULL, earlier_source BLOB NOT NULL,
    earlier_target_height INTEGER NOT NULL, earlier_target BLOB NOT NULL,
    offending_source_height INTEGER NOT NULL, offending_source BLOB NOT NULL,
    offending_target_height INTEGER NOT NULL, offending_target BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS marks(
    kind TEXT NOT NULL CHECK(kind IN ('committed', 'finalized')),
    hash BLOB NOT NULL, height INTEGER NOT NULL, PRIMARY KEY(kind, hash)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS node_state(key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
"""


class SchemaError(FedledgerError):
    """A database is not a chain store this version can read, or its settings differ."""


SYNC_MODES = ("FULL", "NORMAL")


def connect(path: Path, read_only: bool = False, synchronous: str = "FULL") -> sqlite3.Connection:
    """Open the database in autocommit mode (transactions are explicit), WAL, and
    ``synchronous`` FULL (the default: every commit fsynced) or NORMAL (see
    ``ChainStore``'s ``durable``)."""
    if synchronous not in SYNC_MODES:
        raise ValueError(f"synchronous is {synchronous!r}; allowed: {', '.join(SYNC_MODES)}")
    if read_only:
        db = sqlite3.connect(
            f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, isolation_level=None
        )
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("PRAGMA foreign_keys=OFF")
    return db


def create_or_check(db: sqlite3.Connection, path: Path) -> None:
    """Create the tables of a new store, or check an existing store's schema version."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    version = get_meta(db, "schema_version")
    if version is None:
        set_meta(db, "schema_version", SCHEMA_VERSION)
    elif version != SCHEMA_VERSION:
        raise SchemaError(
            f"{path} has chain store schema version {version!r}; this fedledger reads "
            f"version {SCHEMA_VERSION}"
        )


def get_meta(db: sqlite3.Connection, key: str) -> Any:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else row[0]


def set_meta(db: sqlite3.Connection, key: str, value: Any) -> None:
    db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))


def get_state(db: sqlite3.Connection, key: str) -> bytes | None:
    row = db.execute("SELECT value FROM node_state WHERE key = ?", (key,)).fetchone()
    return None if row is None else bytes(row[0])


def put_state(db: sqlite3.Connection, key: str, value: bytes) -> None:
    db.execute("INSERT OR REPLACE INTO node_state(key, value) VALUES (?, ?)", (key, value))


# ---------------------------------------------------------------- finality rule and votes


def load_rule(db: sqlite3.Connection) -> FinalityRule | None:
    interval = get_meta(db, "finality_interval")
    if interval is None:
        return None
    members = frozenset(r[0] for r in db.execute("SELECT member FROM committee"))
    return FinalityRule(interval, Fraction(get_meta(db, "finality_threshold")), members)


def load_or_save_rule(
    db: sqlite3.Connection, rule: FinalityRule | None, path: Path
) -> FinalityRule | None:
    """The store's finality rule: the stored one, or ``rule`` saved on first use."""
    stored = load_rule(db)
    if rule is None or stored == rule:
        return stored
    if stored is not None:
        raise SchemaError(
            f"{path} was created with finality rule interval={stored.interval}, "
            f"threshold={stored.threshold}, {len(stored.committee)} members; it cannot be "
            f"reopened with interval={rule.interval}, threshold={rule.threshold}, "
            f"{len(rule.committee)} members (pass finality=None to use the stored rule)"
        )
    set_meta(db, "finality_interval", rule.interval)
    set_meta(db, "finality_threshold", str(rule.threshold))
    db.executemany("INSERT INTO committee(member) VALUES (?)", [(m,) for m in rule.committee])
    genesis = db.execute("SELECT hash FROM canonical WHERE height = 0").fetchone()
    if genesis is not None:
        save_marks(db, [Checkpoint(0, genesis[0])], [Checkpoint(0, genesis[0])])
    return rule


def save_marks(
    db: sqlite3.Connection, committed: Iterable[Checkpoint], finalized: Iterable[Checkpoint]
) -> None:
    rows = [("committed", c.hash, c.height) for c in committed]
    rows += [("finalized", c.hash, c.height) for c in finalized]
    db.executemany("INSERT OR IGNORE INTO marks(kind, hash, height) VALUES (?, ?, ?)", rows)


def _vote_row(v: FinalityVote) -> tuple[int, bytes, int, bytes]:
    return (v.source.height, v.source.hash, v.target.height, v.target.hash)


def _vote(voter: bytes, sh: int, s: bytes, th: int, t: bytes) -> FinalityVote:
    return FinalityVote(voter, Checkpoint(sh, s), Checkpoint(th, t))


def save_vote_result(db: sqlite3.Connection, vote: FinalityVote, result: VoteResult) -> None:
    if result.accepted:
        db.execute(
            "INSERT INTO votes(voter, source_height, source, target_height, target) "
            "VALUES (?, ?, ?, ?, ?)",
            (vote.voter, *_vote_row(vote)),
        )
        save_marks(db, result.committed, result.finalized)
    if result.evidence is not None:
        ev = result.evidence
        db.execute(
            "INSERT INTO evidence VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (str(ev.kind), ev.voter, *_vote_row(ev.earlier), *_vote_row(ev.offending)),
        )


def load_votes(
    db: sqlite3.Connection,
) -> tuple[list[FinalityVote], list[SlashingEvidence]]:
    """Accepted votes in acceptance order, and recorded slashing evidence."""
    votes = [
        _vote(*row)
        for row in db.execute(
            "SELECT voter, source_height, source, target_height, target FROM votes ORDER BY seq"
        )
    ]
    evidence = [
        SlashingEvidence(VoteStatus(r[0]), r[1], _vote(r[1], *r[2:6]), _vote(r[1], *r[6:10]))
        for r in db.execute(
            "SELECT kind, voter, earlier_source_height, earlier_source, "
            "earlier_target_height, earlier_target, offending_source_height, "
            "offending_source, offending_target_height, offending_target "
            "FROM evidence ORDER BY seq"
        )
    ]
    return votes, evidence


# ---------------------------------------------------------------- tree walks

# Walk parent links down from :start, stopping at a canonical block or at :stop height.
_WALK = """
WITH RECURSIVE walk(hash, parent, height, canon) AS (
    SELECT b.hash, b.parent, b.height,
           EXISTS(SELECT 1 FROM canonical c WHERE c.height = b.height AND c.hash = b.hash)
    FROM blocks b WHERE b.hash = :start
  UNION ALL
    SELECT b.hash, b.parent, b.height,
           EXISTS(SELECT 1 FROM canonical c WHERE c.height = b.height AND c.hash = b.hash)
    FROM blocks b JOIN walk w ON b.hash = w.parent
    WHERE w.height > :stop AND NOT w.canon
)
"""


def ancestor_at(db: sqlite3.Connection, start: bytes, height: int) -> bytes | None:
    """The hash of ``start``'s ancestor (or itself) at ``height``; None if none is stored.

    Walks only the part of the path that is off the canonical chain, then reads the
    canonical index, so the cost is the length of the fork, not of the chain.
    """
    row = db.execute(
        _WALK + "SELECT hash, height, canon FROM walk ORDER BY height LIMIT 1",
        {"start": start, "stop": height},
    ).fetchone()
    if row is None or row[1] < height:
        return None
    low_hash, low_height, canon = row
    if low_height == height:
        return low_hash
    if canon:
        found = db.execute("SELECT hash FROM canonical WHERE height = ?", (height,)).fetchone()
        return None if found is None else found[0]
    return None


def move_canonical(db: sqlite3.Connection, head: bytes, head_height: int) -> None:
    """Make the canonical index the chain ending at ``head`` (a reorg when it forks)."""
    rows = db.execute(
        _WALK + "SELECT hash, height FROM walk WHERE NOT canon", {"start": head, "stop": -1}
    ).fetchall()
    fork_height = min((r[1] for r in rows), default=head_height + 1) - 1
    db.execute("DELETE FROM canonical WHERE height > ?", (fork_height,))
    db.executemany(
        "INSERT INTO canonical(height, hash) VALUES (?, ?)", [(r[1], r[0]) for r in rows]
    )


@dataclass(frozen=True)
class SqlIndex:
    """``finality.BlockIndex`` over a (possibly read-only) chain store connection."""

    db: sqlite3.Connection

    def height_of(self, block_hash: bytes) -> int | None:
        row = self.db.execute("SELECT height FROM blocks WHERE hash = ?", (block_hash,)).fetchone()
        return None if row is None else row[0]

    def is_ancestor(self, ancestor: bytes, descendant: bytes) -> bool:
        height = self.height_of(ancestor)
        return height is not None and ancestor_at(self.db, descendant, height) == ancestor
