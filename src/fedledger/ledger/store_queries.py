"""The chain store's read-only queries: the canonical chain, heights, ancestry, paths and
transactions, on the SQLite tables of ``store_sql``.

``ChainQueries`` is mixed into :class:`~fedledger.ledger.store.ChainStore`, which owns the
connection and the decoded-block cache (``get``) these read through.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from fedledger.ledger import store_sql as sql
from fedledger.ledger.records import Block, Transaction, short
from fedledger.ledger.store_errors import ChainStoreError


class ChainQueries:
    """Reads of one node's ledger (``ChainStore`` sets ``db_path`` and ``_db``)."""

    db_path: Path
    _db: sqlite3.Connection

    if TYPE_CHECKING:

        def get(self, block_hash: bytes) -> Block | None:
            """The stored block with this hash (``ChainStore.get``)."""
            ...

    def _need(self, block_hash: bytes) -> Block:
        block = self.get(block_hash)
        if block is None:
            raise KeyError(f"block {short(block_hash)} is not stored in {self.db_path}")
        return block

    def __contains__(self, block_hash: object) -> bool:
        return self.height_of(block_hash) is not None  # type: ignore[arg-type]

    def height_of(self, block_hash: bytes) -> int | None:
        row = self._db.execute("SELECT height FROM blocks WHERE hash = ?", (block_hash,)).fetchone()
        return None if row is None else row[0]

    def head_hash(self) -> bytes:
        head = sql.get_meta(self._db, "head")
        if head is None:
            raise ChainStoreError(f"{self.db_path} is empty; append the genesis block first")
        return head

    def head(self) -> Block:
        return self._need(self.head_hash())

    def genesis(self) -> Block:
        block = self.at_height(0)
        if block is None:
            raise ChainStoreError(f"{self.db_path} is empty; append the genesis block first")
        return block

    def at_height(self, height: int) -> Block | None:
        """The canonical chain's block at ``height``, or None above the head."""
        row = self._db.execute("SELECT hash FROM canonical WHERE height = ?", (height,)).fetchone()
        return None if row is None else self.get(row[0])

    def canonical_chain(self) -> Iterator[Block]:
        """The canonical chain, genesis to head, read from disk as it is iterated."""
        top = self.height_of(self.head_hash()) if sql.get_meta(self._db, "head") else -1
        for height in range(top + 1):
            block = self.at_height(height)
            if block is not None:
                yield block

    def block_count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM blocks").fetchone()[0]

    def ancestors(self, block_hash: bytes, limit: int) -> list[Block]:
        """Up to ``limit`` ancestors of the block, parent first (the block excluded)."""
        out: list[Block] = []
        block = self._need(block_hash)
        while len(out) < limit and block.height > 0:
            block = self._need(block.parent)
            out.append(block)
        return out

    def ancestor_at(self, block_hash: bytes, height: int) -> bytes | None:
        """The hash of the block's ancestor (or itself) at ``height``; None if unknown."""
        return sql.ancestor_at(self._db, block_hash, height)

    def is_ancestor(self, ancestor: bytes, descendant: bytes) -> bool:
        """Whether ``ancestor`` is ``descendant`` or lies below it on its chain."""
        height = self.height_of(ancestor)
        return height is not None and self.ancestor_at(descendant, height) == ancestor

    def path(self, from_hash: bytes, to_hash: bytes) -> list[Block]:
        """The blocks after ``from_hash`` up to and including ``to_hash``, oldest first.

        ``from_hash`` must be ``to_hash`` (empty path) or one of its ancestors.
        """
        if not self.is_ancestor(from_hash, to_hash):
            raise ValueError(
                f"no path from {short(from_hash)} to {short(to_hash)}: the first must be a "
                "stored ancestor of the second"
            )
        steps = self._need(to_hash).height - self._need(from_hash).height
        if steps == 0:
            return []
        return [*reversed(self.ancestors(to_hash, steps - 1)), self._need(to_hash)]

    def transaction(self, tx_id: bytes) -> tuple[Transaction, bytes] | None:
        """The transaction with id ``tx_id`` and the hash of a block holding it (a block
        on the canonical chain when there is one, else the lowest fork block)."""
        row = self._db.execute(
            "SELECT t.block, t.idx FROM txs t JOIN blocks b ON b.hash = t.block "
            "LEFT JOIN canonical c ON c.height = b.height AND c.hash = b.hash "
            "WHERE t.id = ? ORDER BY c.hash IS NULL, b.height, b.hash LIMIT 1",
            (tx_id,),
        ).fetchone()
        if row is None:
            return None
        return self._need(row[0]).transactions[row[1]], row[0]
