"""The checks ``ledger.audit`` runs on one node's ledger database (see that module)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedledger.codec import CodecError, decode_as
from fedledger.crypto import KeyDirectory
from fedledger.ledger import store_sql as sql
from fedledger.ledger.finality import Checkpoint, FinalityConflictError, FinalityTracker
from fedledger.ledger.records import (
    Block,
    BlockHeader,
    Genesis,
    ModelRef,
    RecordError,
    record_id,
    short,
)
from fedledger.ledger.refs import model_refs
from fedledger.ledger.verify import Rejected, RejectReason, Verifier
from fedledger.storage import BlobError, BlobStore, InvalidCidError, sha256_of_cid

MAX_PROBLEMS_PER_NODE = 50

_FIELD = {
    RejectReason.MALFORMED: "body",
    RejectReason.UNKNOWN_SENDER: "proposer",
    RejectReason.WRONG_ID: "hash",
    RejectReason.BAD_SIGNATURE: "signature",
    RejectReason.WRONG_PARENT: "parent",
    RejectReason.WRONG_HEIGHT: "height",
    RejectReason.DUPLICATE_TX: "transactions",
    RejectReason.BAD_MERKLE_ROOT: "tx_root",
    RejectReason.BAD_GENESIS: "genesis",
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong: where (node, height, block, field) and why."""

    node: str
    height: int | None
    field: str
    reason: str
    block: bytes | None = None

    def __str__(self) -> str:
        where = f"node {self.node}"
        if self.height is not None:
            where += f", height {self.height}"
        if self.block is not None:
            where += f" (block {short(self.block)})"
        return f"{where}, {self.field}: {self.reason}"


class _Stop(Exception):
    """Enough problems found in one node."""


@dataclass
class NodeAudit:
    """Audit of one node's database; ``run()`` fills ``problems`` and the counts.

    members: node ids in the genesis's member order (empty: unknown); when this node is
    among them, its address is read from the genesis and every model referenced by a
    transaction it signed must be in its own blob store (it produced that model).
    must_find: a model reference found in none of ``stores`` is a problem; when False
    (one node audited alone, with ``members``), a model this node did not produce and
    does not hold is counted in ``unheld`` instead: only its producer holds it.
    """

    node: str
    db_path: Path
    stores: dict[str, BlobStore]
    members: tuple[str, ...] = ()
    must_find: bool = True
    problems: list[Problem] = field(default_factory=list)
    blocks: int = 0
    transactions: int = 0
    model_refs: int = 0
    elsewhere: int = 0
    unheld: int = 0
    finalized: int = 0
    head: int = -1
    """Height of the top of the canonical chain (-1 until read)."""
    canonical: dict[int, bytes] = field(default_factory=dict)
    address: bytes | None = None
    """This node's own address, from the genesis (None when ``members`` does not say)."""
    names: dict[bytes, str] = field(default_factory=dict)
    """Member address -> node id, from the genesis and ``members``."""
    genesis: bytes = b""
    final_chain: dict[int, bytes] = field(default_factory=dict)
    """Canonical hash at each checkpoint height up to the finalized one (cross-node check)."""
    _checked: set[str] = field(default_factory=set)

    def problem(self, height: int | None, fld: str, reason: str, block: bytes | None = None
                ) -> None:
        self.problems.append(Problem(self.node, height, fld, reason, block))
        if len(self.problems) >= MAX_PROBLEMS_PER_NODE:
            raise _Stop

    def run(self) -> None:
        try:
            db = sql.connect(self.db_path, read_only=True)
        except sqlite3.Error as err:
            self.problem(None, "database", f"cannot open {self.db_path}: {err}")
            return
        try:
            self._run(db)
        except _Stop:
            pass
        except sqlite3.DatabaseError as err:
            self.problem(None, "database", f"{self.db_path} is not a readable chain store: {err}")
        finally:
            db.close()

    def _run(self, db: sqlite3.Connection) -> None:
        result = db.execute("PRAGMA integrity_check").fetchall()
        if result != [("ok",)]:
            self.problem(None, "database", f"SQLite integrity check failed: {result[:3]}")
        version = sql.get_meta(db, "schema_version")
        if version != sql.SCHEMA_VERSION:
            self.problem(None, "database", f"schema version {version!r}, expected "
                                           f"{sql.SCHEMA_VERSION}")
            return
        verifier = self._genesis(db)
        if verifier is None:
            return
        self._blocks(db, verifier)
        self._canonical(db)
        self._finality(db)
        self._own_blobs()

    # ------------------------------------------------------------ blocks

    def _genesis(self, db: sqlite3.Connection) -> Verifier | None:
        row = db.execute(
            "SELECT b.hash, b.body FROM canonical c JOIN blocks b ON b.hash = c.hash "
            "WHERE c.height = 0"
        ).fetchone()
        if row is None:
            self.problem(0, "genesis", "no genesis block on the canonical chain")
            return None
        try:
            genesis = decode_as(row[1], Block).header.extra
            if not isinstance(genesis, Genesis):
                raise RecordError(f"header.extra is {type(genesis).__name__}, not Genesis")
            directory: KeyDirectory = genesis.directory()
        except (CodecError, RecordError) as err:
            self.problem(0, "genesis", f"members cannot be read: {err}", row[0])
            return None
        self.genesis = row[0]
        self._own_address(genesis.members)
        return Verifier(directory)

    def _own_address(self, members: tuple[Any, ...]) -> None:
        if not self.members:
            return
        if len(members) != len(self.members):
            self.problem(0, "genesis", f"lists {len(members)} members, but the run has "
                                       f"{len(self.members)} nodes")
            return
        self.names = {m.address: node for m, node in zip(members, self.members, strict=True)}
        self.address = next((a for a, n in self.names.items() if n == self.node), None)

    def _blocks(self, db: sqlite3.Connection, verifier: Verifier) -> None:
        level: dict[bytes, BlockHeader] = {}
        below: dict[bytes, BlockHeader] = {}
        current = -1
        rows = db.execute(
            "SELECT hash, parent, height, proposer, timestamp, body FROM blocks "
            "ORDER BY height, hash"
        )
        for h, parent, height, proposer, timestamp, body in rows:
            if height != current:
                below, level, current = (level if height == current + 1 else {}), {}, height
            self.blocks += 1
            block = self._block(db, verifier, below, h, (parent, height, proposer, timestamp),
                                body)
            if block is not None:
                level[h] = block.header

    def _block(
        self, db: sqlite3.Connection, verifier: Verifier, below: dict[bytes, BlockHeader],
        h: bytes, columns: tuple[Any, ...], body: bytes,
    ) -> Block | None:
        height = columns[1]
        try:
            block = decode_as(body, Block)
        except CodecError as err:
            self.problem(height, "body", f"stored bytes do not decode to a Block: {err}", h)
            return None
        actual = block.hash
        if actual != h:
            self.problem(height, "hash", f"content hashes to {short(actual)} but is stored "
                                         f"under {short(h)} (block bytes altered)", h)
            return None
        header = block.header
        if height == 0 and h != self.genesis:
            self.problem(0, "genesis", f"a second genesis block is stored beside "
                                       f"{short(self.genesis)}; a ledger has one", h)
            return None
        expect = (header.parent, header.height, header.proposer, header.timestamp)
        for name, got, want in zip(("parent", "height", "proposer", "timestamp"), columns,
                                   expect, strict=True):
            if got != want:
                self.problem(height, f"{name} column", f"index says {got!r:.40}, block says "
                                                       f"{want!r:.40}", h)
                return None
        parent_header = below.get(header.parent) if height > 0 else None
        if height > 0 and parent_header is None:
            self.problem(height, "parent", f"parent {short(header.parent)} is not stored at "
                                           f"height {height - 1} (or is itself bad)", h)
            return None
        try:
            verifier.check_block(block, parent_header, expected_hash=h)
        except Rejected as rej:
            self._rejected(verifier, block, height, h, rej)
            return None
        self._tx_index(db, block, height, h)
        for i, tx in enumerate(block.transactions):
            self.transactions += 1
            for ref in model_refs(tx.payload):
                self._model_ref(ref, height, h, i, tx.sender)
        return block

    def _rejected(
        self, verifier: Verifier, block: Block, height: int, h: bytes, rej: Rejected
    ) -> None:
        if rej.reason is RejectReason.BAD_MERKLE_ROOT:
            for i, tx in enumerate(block.transactions):  # name the altered transaction
                try:
                    verifier.check(tx)
                except Rejected as tx_rej:
                    self.problem(height, f"transactions[{i}]", f"{tx_rej.reason.value}: "
                                 f"{tx_rej.detail} (and the block's tx_root no longer "
                                 "matches: transaction altered)", h)
                    return
        self.problem(height, _FIELD.get(rej.reason, rej.reason.value),
                     f"{rej.reason.value}: {rej.detail}", h)

    def _tx_index(self, db: sqlite3.Connection, block: Block, height: int, h: bytes) -> None:
        stored = dict(db.execute("SELECT idx, id FROM txs WHERE block = ?", (h,)).fetchall())
        expected = {i: record_id(tx) for i, tx in enumerate(block.transactions)}
        for i in sorted(set(stored) | set(expected)):
            if stored.get(i) != expected.get(i):
                got = short(stored[i]) if i in stored else "nothing"
                want = short(expected[i]) if i in expected else "nothing"
                self.problem(height, f"txs index [{i}]", f"index names {got}, block holds "
                                                         f"{want}", h)
                return

    # ------------------------------------------------------------ model blobs

    def _model_ref(self, ref: ModelRef, height: int, h: bytes, i: int, sender: bytes) -> None:
        self.model_refs += 1
        where = f"transactions[{i}].ModelRef"
        try:
            digest = sha256_of_cid(ref.cid)
        except InvalidCidError as err:
            self.problem(height, where, str(err), h)
            return
        if digest != ref.sha256:
            self.problem(height, where, f"sha256 {short(ref.sha256)} is not the digest in CID "
                                        f"{ref.cid} ({short(digest)})", h)
            return
        if ref.cid in self._checked:
            return
        self._checked.add(ref.cid)
        own = self.stores.get(self.node)
        if self.address is not None and sender == self.address and not (own and own.has(ref.cid)):
            where_own = own.root if own else "(no blob store)"
            self.problem(height, where, f"model blob {ref.cid}, which this node produced (it "
                                        f"signed the transaction), is not in its own blob "
                                        f"store {where_own}", h)
            return
        order = ([own] if own else []) + [
            s for n, s in sorted(self.stores.items()) if n != self.node
        ]
        holder = next((s for s in order if s.has(ref.cid)), None)
        if holder is None and not self.must_find:
            self.unheld += 1  # another node produced it; this one need not keep it
            return
        if holder is None:
            searched = ", ".join(str(s.root) for s in order) or "no blob store found"
            producer = self.names.get(sender)
            by = f" (produced by node {producer})" if producer else ""
            self.problem(height, where, f"model blob {ref.cid}{by} not found (searched: "
                                        f"{searched})", h)
            return
        try:
            holder.get(ref.cid)  # checks the bytes against the CID, hence against sha256
        except BlobError as err:
            self.problem(height, where, str(err), h)
            return
        self.elsewhere += int(holder is not own)

    def _own_blobs(self) -> None:
        """Every blob in the node's own store, referenced on chain or not, is intact."""
        own = self.stores.get(self.node)
        if own is None:
            return
        for cid in own.iter_ids():
            if cid in self._checked and own.has(cid):
                continue
            try:
                own.get(cid)
            except BlobError as err:
                self.problem(None, "blob store", str(err))

    # ------------------------------------------------------------ chain and finality

    def _canonical(self, db: sqlite3.Connection) -> None:
        head = sql.get_meta(db, "head")
        prev: bytes | None = None
        top = -1
        for height, h in db.execute("SELECT height, hash FROM canonical ORDER BY height"):
            row = db.execute("SELECT parent FROM blocks WHERE hash = ?", (h,)).fetchone()
            if height != top + 1 or row is None or (height > 0 and row[0] != prev):
                self.problem(height, "canonical", f"block {short(h)} does not extend the "
                                                  "canonical chain below it", h)
                return
            prev, top = h, height
        if head != prev:
            self.problem(top, "head", f"head {short(head or b'')} is not the top of the "
                                      f"canonical chain {short(prev or b'')}", head)

    def _finality(self, db: sqlite3.Connection) -> None:
        rule = sql.load_rule(db)
        marks = {(k, h, ht) for k, h, ht in db.execute("SELECT kind, hash, height FROM marks")}
        canonical = dict(db.execute("SELECT height, hash FROM canonical").fetchall())
        self.canonical = canonical
        self.head = max(canonical, default=-1)
        for kind, h, height in sorted(marks, key=lambda m: m[2]):
            if kind == "finalized" and canonical.get(height) != h:
                self.problem(height, "finality", f"finalized checkpoint {short(h)} is not on "
                                                 "the canonical chain (finality reverted)", h)
        if rule is None:
            return
        tracker = FinalityTracker(rule, Checkpoint(0, canonical.get(0, b"")))
        index = sql.SqlIndex(db)
        votes, _evidence = sql.load_votes(db)
        for n, vote in enumerate(votes, start=1):
            try:
                result = tracker.add_vote(vote, index)
            except FinalityConflictError as err:
                self.problem(vote.target.height, "finality vote", f"stored vote {n}: {err}",
                             vote.target.hash)
                return
            if not result.accepted:
                self.problem(vote.target.height, "finality vote", f"stored vote {n} is not "
                             f"valid: {result.status.value}: {result.detail}", vote.target.hash)
        derived = {("committed", c.hash, c.height) for c in tracker.committed()}
        derived |= {("finalized", c.hash, c.height) for c in tracker.finalized_checkpoints()}
        for kind, h, height in sorted(marks ^ derived, key=lambda m: m[2]):
            said = "stored but not supported by the votes" if (kind, h, height) in marks else (
                "implied by the votes but not stored")
            self.problem(height, "finality", f"{kind} mark on {short(h)} is {said}", h)
        self.finalized = tracker.finalized.height
        self.final_chain = {
            ht: h for ht, h in canonical.items() if ht <= self.finalized and ht % rule.interval == 0
        }
