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

Problems are listed in order (nodes by id, blocks by height); the first one names the
node, height, field and reason. Votes are stored as checked content (voter, source,
target), not as signed messages, so vote signatures are not re-checked here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def audit_path(path: Path, blob_key: bytes | None = None) -> AuditReport:
    """Audit every ledger at ``path``; ``blob_key`` opens blob stores encrypted at rest."""
    path = Path(path)
    ledgers = find_ledgers(path)
    if not ledgers:
        what = "does not exist" if not path.exists() else "holds no ledger"
        problem = Problem(
            str(path), None, "path",
            f"{what}; expected a {LEDGER_FILE} file, a node directory holding one, or a "
            f"run directory with nodes/<node_id>/{LEDGER_FILE}",
        )
        return AuditReport(path, (problem,), 0, 0, 0, 0, 0, {})
    stores = {node: BlobStore(NodeLayout(db.parent).blobs, blob_key)
              for node, db in ledgers if NodeLayout(db.parent).blobs.is_dir()}
    audits = [NodeAudit(node, db, stores) for node, db in ledgers]
    for audit in audits:
        audit.run()
    return AuditReport(
        path,
        tuple(p for a in audits for p in a.problems) + _across(audits),
        len(audits),
        sum(a.blocks for a in audits),
        sum(a.transactions for a in audits),
        sum(a.model_refs for a in audits),
        sum(a.elsewhere for a in audits),
        {a.node: a.finalized for a in audits},
    )


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


__all__ = ["AuditReport", "Problem", "audit_path", "find_ledgers"]
