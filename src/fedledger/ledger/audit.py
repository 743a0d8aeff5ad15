"""After-the-fact audit of stored ledgers (``fedledger chain verify PATH``).

``audit_path`` accepts a node's database file, a node directory (``ledger.sqlite`` and
``blobs/``) or a run directory (``nodes/<node_id>/ledger.sqlite``, ``nodes/<node_id>/
blobs/``). It opens every database read-only and checks the raw rows, not trusting the
store's own logic:

- the SQLite file's integrity and schema version;
- every block: it decodes (strictly canonical), it is stored under its hash, its index
  columns match its header, its parent is stored one height below; then, through
  ``ledger.verify.Verifier`` with the genesis members' keys: the genesis form, the
  proposer's signature, transaction signatures and ids, the Merkle root;
- the transaction index (``txs``) names the right transaction at the right place;
- the canonical chain runs from genesis to the head by parent links;
- finality: recorded votes replayed through the finality rule give exactly the stored
  committed and finalized marks, and every finalized checkpoint lies on the canonical
  chain (finality was never reverted);
- every ``ModelRef`` in a transaction payload on chain: the CID and ``sha256`` agree,
  and the blob exists and hashes correctly in that node's blob store or, failing that,
  in another node's store of the same run (a node may cite a model that a peer stored
  and it never fetched; where it was found is counted);
- every blob in each node's own store hashes to its id, referenced on chain or not;
- across the nodes of a run: one genesis, and no two nodes finalized different blocks at
  one checkpoint height (finality safety across nodes).

Given :class:`~fedledger.ledger.audit_expect.Expectations` (what the run's config and
journal say; built above this layer, by ``experiment.audit_run``), it also checks that
every node that keeps a chain has its database, reads each node's own address from the
genesis so that a model the node produced (a ``ModelRef`` in a transaction it signed)
must be in its own store while a model only another node produced may be held only
there (one node's directory audited alone notes those references instead of failing),
compares the heads of nodes that share one chain, and compares each node's durable head
with the heights its journal recorded. Informational findings are ``notes``, not
problems.

Problems are listed in order (nodes by id, blocks by height); the first one names the
node, height, field and reason. Votes are stored as checked content (voter, source,
target), not as signed messages, so vote signatures are not re-checked here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedledger.ledger.audit_expect import Expectations, missing, recorded_heads, shared_heads
from fedledger.ledger.audit_node import NodeAudit, Problem
from fedledger.ledger.records import short
from fedledger.storage import BlobStore
from fedledger.storage.layout import NodeLayout, RunLayout

LEDGER_FILE = NodeLayout.LEDGER_FILE
BLOBS_DIR = NodeLayout.BLOBS_DIR


@dataclass(frozen=True)
class AuditReport:
    """The outcome of an audit: problems (first bad record first) and what was checked."""

    path: Path
    problems: tuple[Problem, ...]
    nodes: int
    blocks: int
    transactions: int
    model_refs: int
    blobs_elsewhere: int
    finalized_height: dict[str, int]
    notes: tuple[str, ...] = ()
    """Informational findings (references held only by other nodes, a node behind)."""
    head_height: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        counts = (
            f"{self.nodes} node(s), {self.blocks} blocks, {self.transactions} transactions, "
            f"{self.model_refs} model references checked"
        )
        if self.ok:
            return f"{self.path}: {counts}"
        more = f" (and {len(self.problems) - 1} more problems)" if len(self.problems) > 1 else ""
        return f"{self.problems[0]}{more}; {counts}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "ok": self.ok,
            "problems": [
                {**dataclasses.asdict(p), "block": p.block.hex() if p.block else None,
                 "message": str(p)}
                for p in self.problems
            ],
            "nodes": self.nodes,
            "blocks": self.blocks,
            "transactions": self.transactions,
            "model_refs": self.model_refs,
            "blobs_elsewhere": self.blobs_elsewhere,
            "finalized_height": dict(self.finalized_height),
            "head_height": dict(self.head_height),
            "notes": list(self.notes),
        }


def find_ledgers(path: Path) -> list[tuple[str, Path]]:
    """``(node id, database file)`` of every ledger at ``path`` (see the module doc)."""
    path = Path(path)
    if path.is_file():
        node = path.parent.name if path.name == LEDGER_FILE else path.stem
        return [(node, path)]
    if NodeLayout(path).ledger.is_file():
        return [(path.name, NodeLayout(path).ledger)]
    run = RunLayout(path)
    nodes = [run.node(node_id) for node_id in run.node_ids()]
    return [(n.node_id, n.ledger) for n in nodes if n.ledger.is_file()]


def audit_path(
    path: Path, blob_key: bytes | None = None, expect: Expectations | None = None
) -> AuditReport:
    """Audit every ledger at ``path``; ``blob_key`` opens blob stores encrypted at rest;
    ``expect``: what the run says must be there (see the module doc)."""
    path = Path(path)
    ledgers = find_ledgers(path)
    run_dir = _is_run_dir(path)
    scope = [n for n, _ in ledgers]
    if run_dir and expect is not None:
        scope = sorted(set(expect.chains) | set(scope))
    if expect is not None and not ledgers and not run_dir and path.is_dir():
        scope = [path.name]
    absent = missing(expect, RunLayout(_run_root(path, run_dir)), scope) if expect else []
    if not ledgers:
        if expect is not None and not expect.keepers and not absent:
            note = f"{expect.source}: no node of this run keeps a chain; nothing to verify"
            return AuditReport(path, (), 0, 0, 0, 0, 0, {}, (note,))
        what = "does not exist" if not path.exists() else "holds no ledger"
        problem = Problem(
            str(path), None, "path",
            f"{what}; expected a {LEDGER_FILE} file, a node directory holding one, or a "
            f"run directory with nodes/<node_id>/{LEDGER_FILE}",
        )
        return AuditReport(path, tuple(absent) or (problem,), 0, 0, 0, 0, 0, {})
    stores = {node: BlobStore(NodeLayout(db.parent).blobs, blob_key)
              for node, db in ledgers if NodeLayout(db.parent).blobs.is_dir()}
    members = expect.members if expect else ()
    alone = expect is not None and not run_dir and bool(members)
    audits = [NodeAudit(node, db, stores, members, must_find=not alone) for node, db in ledgers]
    for audit in audits:
        audit.run()
    problems = [*absent, *(p for a in audits for p in a.problems), *_across(audits)]
    notes = [
        f"node {a.node}: {a.unheld} model reference(s) name models that other nodes "
        "produced and this node need not keep (held only elsewhere; audit the run "
        "directory to check them)"
        for a in audits if a.unheld
    ]
    if expect is not None:
        forked, behind = shared_heads(audits, expect)
        problems += forked + recorded_heads(audits, expect)
        notes += behind
    return AuditReport(
        path,
        tuple(problems),
        len(audits),
        sum(a.blocks for a in audits),
        sum(a.transactions for a in audits),
        sum(a.model_refs for a in audits),
        sum(a.elsewhere for a in audits),
        {a.node: a.finalized for a in audits},
        tuple(notes),
        {a.node: a.head for a in audits},
    )


def _is_run_dir(path: Path) -> bool:
    """``path`` is a run directory (not a node directory or a ledger file)."""
    return path.is_dir() and not NodeLayout(path).ledger.is_file() and (
        RunLayout(path).nodes.is_dir() or RunLayout(path).config.is_file())


def _run_root(path: Path, run_dir: bool) -> Path:
    if run_dir:
        return path
    node_dir = path.parent if path.is_file() else path
    return node_dir.parent.parent


def _across(audits: list[NodeAudit]) -> tuple[Problem, ...]:
    """Nodes of one run share the genesis and never finalize different checkpoints."""
    problems = []
    first = audits[0]
    for other in audits[1:]:
        pair = f"{first.node}/{other.node}"
        if first.genesis and other.genesis and first.genesis != other.genesis:
            problems.append(Problem(pair, 0, "genesis", f"nodes have different genesis blocks "
                                    f"({short(first.genesis)} and {short(other.genesis)})"))
    for i, a in enumerate(audits):
        for b in audits[i + 1:]:
            for height in sorted(set(a.final_chain) & set(b.final_chain)):
                if a.final_chain[height] != b.final_chain[height]:
                    problems.append(Problem(
                        f"{a.node}/{b.node}", height, "finality",
                        f"the nodes finalized conflicting chains: {short(a.final_chain[height])}"
                        f" and {short(b.final_chain[height])} at this checkpoint height"))
                    break
    return tuple(problems)


__all__ = ["AuditReport", "Expectations", "Problem", "audit_path", "find_ledgers"]
