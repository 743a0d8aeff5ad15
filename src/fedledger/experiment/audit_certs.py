"""``fedledger chain verify``: the commit certificates of a certified chain (PBFT).

A protocol whose chain is agreed by a committee declares it: ``ChainSpec.certified_by``
names one of its ``Protocol.committees``, which the genesis block records (members'
addresses in replica order, ``ledger.roster``). Every block above genesis on such a chain
must carry a commit certificate for its height and transactions: the primary's signed
pre-prepare and 2f+1 matching commits signed by distinct committee members, f = (n-1)//3
(``consensus.pbft.block.certificate_ok``). The keys come from the genesis block only, so
a certificate signed by keys outside the committee, one with too few commits, or one for
another batch is reported with the block's height.

The ledger audit (``ledger.audit``) checks each block's own signature, links and Merkle
root; this adds what only the committee's signatures prove: that the batch committed.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

from fedledger.assembly.build import build_protocol
from fedledger.assembly.config import load_config
from fedledger.codec import CodecError, decode_as
from fedledger.consensus.pbft.block import certificate_ok
from fedledger.crypto import PublicKey
from fedledger.ledger import store_sql as sql
from fedledger.ledger.audit import AuditReport, find_ledgers
from fedledger.ledger.audit_node import Problem
from fedledger.ledger.records import Block, Genesis
from fedledger.ledger.roster import roster_of
from fedledger.protocols.resources import MAIN
from fedledger.storage.layout import RunLayout


@dataclasses.dataclass
class CertAudit:
    """What the certificate check found over the ledgers it read."""

    problems: list[Problem] = dataclasses.field(default_factory=list)
    checked: int = 0
    committees: set[str] = dataclasses.field(default_factory=set)


def with_certificates(report: AuditReport, path: Path, run: RunLayout) -> AuditReport:
    """``report`` with the commit-certificate findings of the ledgers at ``path`` added
    (nothing changes for a run whose protocol certifies no chain)."""
    config = load_config(run.config)
    protocol = build_protocol(config)
    plans = {p.node_id: p for p in protocol.plan(config.nodes.count, config.seed)}
    found = CertAudit()
    for node_id, db_path in find_ledgers(path):
        plan = plans.get(node_id)
        if plan is None:
            continue  # the ledger audit reports a node the config does not know
        spec = protocol.resources(plan, list(plans.values())).chains.get(MAIN)
        if spec is None or spec.certified_by is None:
            continue
        check_chain(node_id, db_path, spec.certified_by, found)
    if not found.checked and not found.problems:
        return report
    names = ", ".join(repr(n) for n in sorted(found.committees))
    note = (
        f"{found.checked} commit certificate(s) checked against the genesis's {names} "
        "committee (2f+1 member signatures on each block's batch)"
    )
    return dataclasses.replace(
        report,
        problems=(*report.problems, *found.problems),
        notes=(*report.notes, note),
    )


def check_chain(node_id: str, db_path: Path, committee: str, found: CertAudit) -> None:
    """Check every canonical block above genesis of one ledger file."""
    found.committees.add(committee)
    try:
        db = sql.connect(db_path, read_only=True)
    except sqlite3.Error:
        return  # the ledger audit reports a database it cannot open
    try:
        rows = db.execute(
            "SELECT c.height, b.body FROM canonical c JOIN blocks b ON b.hash = c.hash "
            "ORDER BY c.height"
        ).fetchall()
    except sqlite3.DatabaseError:
        return
    finally:
        db.close()
    try:
        blocks = [decode_as(body, Block) for _, body in rows]
    except CodecError:
        return  # undecodable blocks are the ledger audit's finding
    if not blocks or not isinstance(blocks[0].header.extra, Genesis):
        return
    genesis = blocks[0].header.extra
    directory = genesis.directory()
    roster = roster_of(blocks[0])
    order = None if roster is None else roster.committee(committee)
    if order is None:
        found.problems.append(
            Problem(node_id, 0, "genesis", f"the genesis fixes no {committee!r} committee, "
                    "whose commit certificates this chain's blocks must carry")
        )
        return
    if any(a not in directory for a in order):
        found.problems.append(
            Problem(node_id, 0, "genesis", f"the {committee!r} committee names an address "
                    "that is not a founding member")
        )
        return
    members: list[PublicKey] = [directory[a] for a in order]
    clients = {a: directory[a] for a in directory}
    for block in blocks[1:]:
        found.checked += 1
        reason = certificate_ok(block, members, clients)
        if reason is not None:
            found.problems.append(
                Problem(node_id, block.height, "certificate", reason, block.hash)
            )
