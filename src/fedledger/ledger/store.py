"""The durable chain store: one SQLite database per node.

Durability: write-ahead log, ``synchronous=FULL`` (the log is fsynced at every commit,
so a block reported appended survives a process crash *and* a power cut; NORMAL would
only survive the former), one transaction per appended block or counted vote. A node
that restarts reopens the file and has its head, its forks and its finalized checkpoint.
A store opened with ``durable=False`` uses ``synchronous=NORMAL``: a commit is still
atomic and survives a crash of the process (the simulator's crash and restart tests
stay meaningful), but a power cut may lose the last commits. The simulator may open its
stores so (its runs die with the machine anyway); a real node's store is durable.

What is stored: every block ever appended (forks are kept, never overwritten) as the
canonical codec bytes of the Block, with its hash, parent, height, proposer and
timestamp as columns; an index of transaction ids; the canonical chain (height -> hash,
genesis to head); the live leaves; the head; and, with a finality rule, the rule, the
accepted finality votes, slashing evidence and committed/finalized marks. Blocks are read
from disk on demand; the finality tracker (votes, marks) is kept in memory, and so are the
last BLOCK_CACHE blocks read or appended (decoded, by hash: a block never changes under its
hash, and decoding one of many records costs milliseconds; a rolled-back write empties the
cache).
Blocks are records, immutable by convention: callers must not change what they are given.

Node state (``put_state``/``get_state``): opaque bytes a protocol must not lose on a
crash but keeps off chain (DFL's reputation table), one committed transaction per put.

Head and finality: after every append (and every vote that finalizes a checkpoint) the
fork choice picks the head among the leaves that descend from the last finalized block.
Blocks off the finalized chain are stored but can never become head. A fork choice that
returns a block off the finalized chain (or an unknown one) is an error
(:class:`ForkChoiceError`): the append is rolled back and the head stays where it was.

Blocks are checked for structure only (known parent, height = parent height + 1, one
genesis); signatures, ids and roots are checked where a block enters the node
(``ledger.verify``) and after the fact by ``ledger.audit``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from fedledger.codec import decode_as, encode
from fedledger.ledger import store_sql as sql
from fedledger.ledger.finality import (
    Checkpoint,
    FinalityRule,
    FinalityTracker,
    FinalityVote,
    VoteResult,
)
from fedledger.ledger.forkchoice import ForkChoice, Tip, longest_chain
from fedledger.ledger.records import Block, record_id, short
from fedledger.ledger.store_errors import (
    ChainStoreError,
    ForkChoiceError,
    InvalidBlockError,
    StateKeyError,
    UnknownParentError,
)
from fedledger.ledger.store_queries import ChainQueries

__all__ = [
    "BLOCK_CACHE",
    "MAX_STATE_KEY",
    "ChainStore",
    "ChainStoreError",
    "ForkChoiceError",
    "InvalidBlockError",
    "StateKeyError",
    "UnknownParentError",
]

#: longest node state key, in characters
MAX_STATE_KEY = 200
#: decoded blocks kept in memory per store, most recently read last
BLOCK_CACHE = 64


@dataclass(frozen=True)
class _View:
    """The live tree shown to a fork choice (see ``forkchoice.BlockTreeView``)."""

    store: ChainStore
    root: Tip

    def tips(self) -> Sequence[Tip]:
        return self.store._live_tips(self.root)

    def get(self, block_hash: bytes) -> Block | None:
        return self.store.get(block_hash)


class ChainStore(ChainQueries):
    """One node's ledger in the SQLite file ``path`` (created when missing); its read-only
    queries are ``ChainQueries`` (store_queries.py)."""

    def __init__(
        self,
        path: Path,
        fork_choice: ForkChoice = longest_chain,
        finality: FinalityRule | None = None,
        durable: bool = True,
    ) -> None:
        self.db_path = Path(path)
        self.durable = durable
        self.fork_choice = fork_choice
        self._tracker: FinalityTracker | None = None
        self._blocks: dict[bytes, Block] = {}
        try:
            self._db = sql.connect(self.db_path, synchronous="FULL" if durable else "NORMAL")
        except sqlite3.Error as err:
            raise ChainStoreError(f"cannot open chain store {self.db_path}: {err}") from None
        try:
            with self._tx():
                sql.create_or_check(self._db, self.db_path)
                self.rule = sql.load_or_save_rule(self._db, finality, self.db_path)
            self._load_tracker()
        except sqlite3.DatabaseError as err:
            self._db.close()
            raise ChainStoreError(f"{self.db_path} is not a chain store database: {err}") from None
        except BaseException:
            self._db.close()
            raise

    # ------------------------------------------------------------ lifecycle

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ChainStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _tx(self) -> _Transaction:
        return _Transaction(self._db, self._blocks.clear)

    def _load_tracker(self) -> None:
        self._tracker = None
        if self.rule is None:
            return
        row = self._db.execute("SELECT hash FROM canonical WHERE height = 0").fetchone()
        if row is not None:
            votes, evidence = sql.load_votes(self._db)
            self._tracker = FinalityTracker.restore(
                self.rule, Checkpoint(0, row[0]), votes, evidence
            )

    # ------------------------------------------------------------ appending

    def append(self, block: Block) -> bool:
        """Store ``block`` and re-run fork choice; False if it was already stored.

        Raises UnknownParentError when the parent is not stored, InvalidBlockError when
        the height does not follow the parent's (or a second genesis arrives), and
        ForkChoiceError (nothing stored) when the fork choice picks an illegal head.
        """
        h = block.hash
        header = block.header
        with self._tx():
            if self._db.execute("SELECT 1 FROM blocks WHERE hash = ?", (h,)).fetchone():
                return False
            self._check_place(block, h)
            self._db.execute(
                "INSERT INTO blocks(hash, parent, height, proposer, timestamp, body) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (h, header.parent, header.height, header.proposer, header.timestamp, encode(block)),
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO txs(id, block, idx) VALUES (?, ?, ?)",
                [(record_id(tx), h, i) for i, tx in enumerate(block.transactions)],
            )
            self._db.execute("DELETE FROM tips WHERE hash = ?", (header.parent,))
            self._db.execute("INSERT INTO tips(hash, height) VALUES (?, ?)", (h, header.height))
            if header.height == 0:
                self._db.execute("INSERT INTO canonical(height, hash) VALUES (0, ?)", (h,))
                sql.set_meta(self._db, "head", h)
                if self.rule is not None:
                    sql.save_marks(self._db, [Checkpoint(0, h)], [Checkpoint(0, h)])
            else:
                self._remember(h, block)  # the fork choice reads it: not decoded again
                try:
                    self._choose_head()
                except BaseException:
                    self._blocks.pop(h, None)  # rolled back: not stored
                    raise
        self._remember(h, block)
        if header.height == 0 and self.rule is not None:
            self._tracker = FinalityTracker(self.rule, Checkpoint(0, h))
        return True

    def _check_place(self, block: Block, h: bytes) -> None:
        height, parent = block.header.height, block.header.parent
        genesis = self._db.execute("SELECT hash FROM canonical WHERE height = 0").fetchone()
        if height == 0:
            if genesis is not None:
                raise InvalidBlockError(
                    f"block {short(h)} has height 0 but genesis {short(genesis[0])} is "
                    "already stored; a ledger has one genesis"
                )
            return
        if genesis is None:
            raise InvalidBlockError(
                f"block {short(h)} has height {height} but the store is empty; "
                "the first block must be the genesis (height 0)"
            )
        row = self._db.execute("SELECT height FROM blocks WHERE hash = ?", (parent,)).fetchone()
        if row is None:
            raise UnknownParentError(
                f"block {short(h)} at height {height}: parent {short(parent)} is not stored"
            )
        if height != row[0] + 1:
            raise InvalidBlockError(
                f"block {short(h)} has height {height}; its parent {short(parent)} has "
                f"height {row[0]}, so the allowed height is {row[0] + 1}"
            )

    def _choose_head(self) -> None:
        root = self._root()
        chosen = self.fork_choice(_View(self, root))
        height = self.height_of(chosen)
        if height is None:
            raise ForkChoiceError(f"fork choice returned unknown block {short(chosen)}")
        if not self.is_ancestor(root.hash, chosen):
            raise ForkChoiceError(
                f"fork choice returned block {short(chosen)} at height {height}, which does "
                f"not descend from finalized block {short(root.hash)} at height {root.height}; "
                "the head stays on the finalized chain"
            )
        if chosen != sql.get_meta(self._db, "head"):
            sql.move_canonical(self._db, chosen, height)
            sql.set_meta(self._db, "head", chosen)

    def _root(self) -> Tip:
        if self._tracker is None:
            row = self._db.execute("SELECT hash FROM canonical WHERE height = 0").fetchone()
            return Tip(row[0], 0)
        cp = self._tracker.finalized
        return Tip(cp.hash, cp.height)

    def _live_tips(self, root: Tip) -> list[Tip]:
        live, dead = [], []
        for h, height in self._db.execute("SELECT hash, height FROM tips").fetchall():
            ok = height >= root.height and self.ancestor_at(h, root.height) == root.hash
            (live if ok else dead).append(Tip(h, height))
        # A leaf off the finalized chain stays off it: finality only moves along one chain.
        self._db.executemany("DELETE FROM tips WHERE hash = ?", [(t.hash,) for t in dead])
        return live or [root]

    # ------------------------------------------------------------ finality

    def add_vote(self, vote: FinalityVote) -> VoteResult:
        """Count a (signature-checked) finality vote; persist it, its marks or evidence.

        A vote that finalizes a checkpoint off the current chain moves the head onto it.
        """
        if self.rule is None:
            raise ChainStoreError(f"{self.db_path} has no finality rule; votes cannot be counted")
        if self._tracker is None:
            raise ChainStoreError(
                f"{self.db_path} has no genesis block yet; votes cannot be counted"
            )
        before = self._tracker.finalized
        try:
            with self._tx():
                result = self._tracker.add_vote(vote, self)
                sql.save_vote_result(self._db, vote, result)
                if self._tracker.finalized != before:
                    self._choose_head()
        except BaseException:
            self._load_tracker()
            raise
        return result

    @property
    def finality(self) -> FinalityTracker | None:
        """The finality tracker (committed and finalized checkpoints, evidence), if any."""
        return self._tracker

    def finalized(self) -> Block:
        """The last finalized block (the genesis without a finality rule)."""
        return self._need(self._root().hash)

    # ------------------------------------------------------------ node state

    def put_state(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key`` (replacing any older value), committed and synced
        before it returns. ``key``: a non-empty str of at most MAX_STATE_KEY characters."""
        _check_state_key(key)
        if not isinstance(value, bytes):
            raise StateKeyError(
                f"node state {key!r}: value must be bytes, got {type(value).__name__}"
            )
        with self._tx():
            sql.put_state(self._db, key, value)

    def get_state(self, key: str) -> bytes | None:
        """The value last stored under ``key``, or None if there is none."""
        _check_state_key(key)
        return sql.get_state(self._db, key)

    # ------------------------------------------------------------ queries

    def get(self, block_hash: bytes) -> Block | None:
        block = self._blocks.get(block_hash)
        if block is None:
            row = self._db.execute(
                "SELECT body FROM blocks WHERE hash = ?", (block_hash,)
            ).fetchone()
            if row is None:
                return None
            block = decode_as(row[0], Block, strict=False)
        self._remember(block_hash, block)
        return block

    def _remember(self, block_hash: bytes, block: Block) -> None:
        """Keep ``block`` as the most recently used of the cached blocks."""
        self._blocks.pop(block_hash, None)
        if len(self._blocks) >= BLOCK_CACHE:
            del self._blocks[next(iter(self._blocks))]
        self._blocks[block_hash] = block

    def children(self, block_hash: bytes) -> list[Block]:
        """Stored blocks whose parent is ``block_hash``, by hash."""
        rows = self._db.execute(
            "SELECT body FROM blocks WHERE parent = ? ORDER BY hash", (block_hash,)
        ).fetchall()
        return [decode_as(r[0], Block, strict=False) for r in rows]

    def __repr__(self) -> str:
        return f"ChainStore({str(self.db_path)!r})"


def _check_state_key(key: object) -> None:
    if not isinstance(key, str) or not 0 < len(key) <= MAX_STATE_KEY:
        raise StateKeyError(
            f"node state key {repr(key)[:60]} ({type(key).__name__}) is not allowed: "
            f"keys are non-empty str of at most {MAX_STATE_KEY} characters"
        )


class _Transaction:
    """``with``: BEGIN IMMEDIATE ... COMMIT, or ``on_rollback()`` and ROLLBACK on any
    exception."""

    def __init__(self, db: sqlite3.Connection, on_rollback: Callable[[], None]) -> None:
        self.db = db
        self.on_rollback = on_rollback

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.db.execute("COMMIT")
            return
        self.on_rollback()  # blocks read inside the transaction may not be stored any more
        self.db.execute("ROLLBACK")
