"""``fedledger chain verify`` with what the run directory says: the audit's expectations.

The ledger audit (``ledger.audit``) checks what is stored. Only the run knows what should
be stored: its ``config.yaml`` names the protocol and the node count, the protocol
declares per node which chains it keeps and with which catch-up policy
(``Protocol.resources``), and the metrics journal records the heights of the blocks the
nodes appended. This module builds that into :class:`Expectations` (through the
assembly layer, which the ledger layer must not import) and runs the audit with it:

- a node whose protocol declares a chain and whose database is missing is an error;
- a node must hold the models it produced (the members' order in the genesis block is
  node-id order, ``assembly.services.make_genesis``), and one node's directory audited
  alone notes the models only other nodes hold instead of failing on them;
- honest nodes whose main chain is shared (``CatchUp.PEERS``: all nodes keep one chain)
  must agree (each a prefix of the longest; one behind by more than one block is noted);
- a node whose durable head lies below a height its own journal recorded is an error.

A path outside any run directory (no ``config.yaml`` above it) is audited as before,
from the ledgers alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from fedledger.assembly.build import assign_roles, build_protocol
from fedledger.assembly.config import load_config
from fedledger.errors import FedledgerError
from fedledger.experiment.audit_certs import with_certificates
from fedledger.experiment.audit_contract import with_contract
from fedledger.ledger.audit import AuditReport, Problem, audit_path
from fedledger.ledger.audit_expect import Expectations, run_of
from fedledger.protocols.resources import MAIN, CatchUp
from fedledger.storage.layout import RunLayout

#: Per protocol, the metric whose value is the height of a block a node appended to its
#: main chain (the journal's record of what each node durably held).
HEIGHT_METRICS: dict[str, str] = {
    "posbfl": "legal_block",
    "dfl": "block",
    "pbft-ledger": "block",
    "nagar-vertical": "block",
}

#: Blocks a node sharing one chain may trail the longest before the audit notes it: the
#: run may stop while the last round's block is still on its way.
SHARED_TOLERANCE = 1


def expectations(run: RunLayout) -> Expectations:
    """What ``run``'s config and journal say its ledgers must show."""
    config = load_config(run.config)
    protocol = build_protocol(config)
    plans = list(protocol.plan(config.nodes.count, config.seed))
    roles = {r.plan.node_id: r for r in assign_roles(config, plans, protocol)}
    chains: dict[str, tuple[str, ...]] = {}
    shared = set()
    for plan in plans:
        declared = protocol.resources(plan, plans).chains
        chains[plan.node_id] = tuple(sorted(declared))
        main = declared.get(MAIN)
        if main is not None and main.catch_up is CatchUp.PEERS and roles[plan.node_id].honest:
            shared.add(plan.node_id)
    metric = HEIGHT_METRICS.get(protocol.name)
    recorded = _recorded_heights(run, protocol.name, metric) if metric else {}
    return Expectations(
        source=str(run.config),
        chains=chains,
        members=tuple(sorted(chains)),  # make_genesis lists members in node-id order
        shared=frozenset(shared),
        tolerance=SHARED_TOLERANCE,
        recorded=recorded,
        recorded_by=f"the metrics journal ({protocol.name}.{metric})" if metric else "",
    )


def verify(path: Path) -> AuditReport:
    """Audit ``path`` (a run directory, a node directory or a ledger file) with the
    expectations of the run it lies in, if any."""
    path = Path(path)
    run = run_of(path)
    if run is None:
        return audit_path(path)
    try:
        expect = expectations(run)
    except (FedledgerError, ValueError, OSError) as err:
        report = audit_path(path)
        problem = Problem(
            str(run.root), None, "config",
            f"{run.config} cannot be used ({err}); without it the audit cannot tell which "
            "nodes must hold a ledger, which models each must hold, or the heights they "
            "recorded",
        )
        return replace(report, problems=(problem, *report.problems))
    report = with_certificates(audit_path(path, expect=expect), path, run)  # PBFT: 2f+1
    return with_contract(report, run)  # a contract's history: stages and F+1 proofs


def _recorded_heights(run: RunLayout, protocol: str, metric: str) -> dict[str, int]:
    """node -> the highest height ``metric`` recorded for it, from the run's metrics
    journal and each node process's own journal (localnet)."""
    qualified = f"{protocol}.{metric}"
    heights: dict[str, int] = {}

    def note(node: object, value: object) -> None:
        if isinstance(node, str) and isinstance(value, int | float) and math.isfinite(value):
            heights[node] = max(heights.get(node, -1), int(value))

    for item in _lines(run.metrics_jsonl):
        if item.get("name") == qualified:
            note(item.get("node"), item.get("value"))
    for node in run.node_ids():
        for item in _lines(run.node(node).journal):
            if item.get("kind") == "metric" and item.get("name") in (metric, qualified):
                note(node, item.get("value"))
    return heights


def _lines(path: Path) -> Iterator[dict[str, object]]:
    """The JSON objects of a JSON-lines file; a torn or foreign line is skipped."""
    if not path.is_file():
        return
    with path.open() as fh:
        for line in fh:
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(item, dict):
                yield item
