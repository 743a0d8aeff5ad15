"""What an audit expects of a run beyond the ledgers themselves (``ledger.audit``).

The ledgers alone cannot say that a node's ledger is missing, which models a node was
supposed to store, or that a node's head was rolled back consistently in every table.
The run's config and metrics can: a layer above the ledger (``experiment.audit_run``)
reads them and hands the audit an :class:`Expectations`, in ledger terms only (node ids,
chain names, heights), so this layer stays free of protocol knowledge.

The checks here run after every node's own audit (``audit_node.NodeAudit``):

- every node the run's config says keeps a chain has its database (:func:`missing`);
- nodes that keep one shared chain agree: every compared node's canonical chain is a
  prefix of the longest one, and a node more than ``tolerance`` blocks behind is named
  (a note, not a failure: a node may legitimately lag) (:func:`shared_heads`);
- no node's durable head lies below a block height its own journal recorded it had
  appended (:func:`recorded_heads`): blocks it once held are gone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from fedledger.ledger.audit_node import NodeAudit, Problem
from fedledger.ledger.records import short
from fedledger.storage.layout import MAIN_CHAIN, RunLayout


@dataclass(frozen=True)
class Expectations:
    """What the run's config and journal say the audited ledgers must show.

    source: where this comes from, for messages (e.g. the run's ``config.yaml``);
    chains: node id -> the chains it keeps (names; ``main`` is ``ledger.sqlite``), for
        every node of the run, including those that keep none (an empty tuple);
    members: node ids in the order the genesis block lists the members, so a node's
        own address (which transactions it signed, hence which models it produced and
        must hold) can be read from the genesis; empty: not known;
    shared: nodes whose main chains are one chain shared by all, compared head to head
        (honest nodes only: a faulty one may withhold or fork on purpose);
    tolerance: how many blocks a compared node may be behind the longest before the
        audit notes it;
    recorded: node id -> the highest block height its own journal recorded it appended
        to its main chain; recorded_by: what recorded them (for messages).
    """

    source: str
    chains: Mapping[str, tuple[str, ...]]
    members: tuple[str, ...] = ()
    shared: frozenset[str] = frozenset()
    tolerance: int = 1
    recorded: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    recorded_by: str = ""

    def __post_init__(self) -> None:
        if self.tolerance < 0:
            raise ValueError(f"tolerance must be >= 0 blocks, got {self.tolerance}")
        unknown = sorted(set(self.shared) - set(self.chains))
        if unknown:
            raise ValueError(f"shared names nodes {unknown} that the run does not have")

    @property
    def keepers(self) -> tuple[str, ...]:
        """The nodes that keep at least one chain, sorted."""
        return tuple(sorted(n for n, c in self.chains.items() if c))


def missing(expect: Expectations, run: RunLayout, scope: Iterable[str]) -> list[Problem]:
    """A problem for every chain database that a node in ``scope`` should have and lacks."""
    problems = []
    count = len(expect.chains)
    for node in sorted(scope):
        if node not in expect.chains:
            problems.append(Problem(node, None, "node", f"{expect.source} has no node {node!r}; "
                                    f"its nodes are {_names(sorted(expect.chains))}"))
            continue
        for chain in expect.chains[node]:
            path = run.node(node).chain(chain)
            if not path.is_file():
                which = "ledger" if chain == MAIN_CHAIN else f"chain {chain!r}"
                problems.append(Problem(
                    node, None, "ledger",
                    f"{which} is missing: {path} does not exist, but {expect.source} has "
                    f"{count} nodes and this one keeps a chain"))
    return problems


def shared_heads(
    audits: list[NodeAudit], expect: Expectations
) -> tuple[list[Problem], list[str]]:
    """Problems (a compared node off the longest chain) and notes (a node behind)."""
    compared = [a for a in audits if a.node in expect.shared and a.head >= 0]
    if len(compared) < 2:
        return [], []
    longest = max(compared, key=lambda a: (a.head, -_rank(a.node, compared)))
    problems, notes = [], []
    for audit in compared:
        if audit is longest:
            continue
        theirs = longest.canonical.get(audit.head)
        mine = audit.canonical.get(audit.head, b"")
        if theirs != mine:
            problems.append(Problem(
                audit.node, audit.head, "head",
                f"its canonical chain is not a prefix of node {longest.node}'s (the longest, "
                f"height {longest.head}): its head {short(mine)} where {longest.node} has "
                f"{short(theirs or b'')}; the shared chain forked", mine))
        elif longest.head - audit.head > expect.tolerance:
            notes.append(
                f"node {audit.node} is behind: its head is at height {audit.head}, node "
                f"{longest.node}'s at {longest.head} (more than {expect.tolerance} block(s) "
                "apart on the shared chain)")
    return problems, notes


def recorded_heads(audits: list[NodeAudit], expect: Expectations) -> list[Problem]:
    """A node whose durable head is below a height its own journal recorded."""
    problems = []
    for audit in audits:
        recorded = expect.recorded.get(audit.node)
        if recorded is None or audit.head < 0 or audit.head >= recorded:
            continue
        problems.append(Problem(
            audit.node, audit.head, "head",
            f"durable head is at height {audit.head}, but {expect.recorded_by} recorded this "
            f"node appending a block at height {recorded}: blocks it held are gone (its "
            "chain was rolled back or lost writes)", audit.canonical.get(audit.head)))
    return problems


def _rank(node: str, audits: list[NodeAudit]) -> int:
    return sorted(a.node for a in audits).index(node)


def _names(nodes: list[str], limit: int = 8) -> str:
    shown = ", ".join(nodes[:limit])
    return shown + (f", ... ({len(nodes)} in all)" if len(nodes) > limit else "")


def run_of(path: Path) -> RunLayout | None:
    """The run directory ``path`` lies in (itself, a node directory's or a ledger file's
    run), judged by its config file; None if none is found."""
    path = Path(path)
    for candidate in (path, path.parent.parent, path.parent.parent.parent):
        run = RunLayout(candidate)
        if run.config.is_file() and (candidate == path or run.nodes in path.parents):
            return run
    return None
