"""``pbft-ledger``: a permissioned replicated ledger of signed transactions ordered by PBFT.

n replicas (the committee, ``nodes.count``) run the sans-IO PBFT engine
(``consensus.pbft``); ``protocol.clients`` clients submit signed transactions at
``protocol.rate`` and accept each on f+1 matching replies. Every replica appends each
executed batch as a block carrying its 2f+1 commit certificate to its own main chain;
the batches (and so the blocks' ``tx_root``) agree across honest replicas, the headers
are each replica's own (it signs what it writes). There is no model and no training.

The run's length is ``rounds`` requests per client (``Horizon("rounds", rounds)``: one
round = one request from each client); metrics' step is the request number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from fedledger.errors import ConfigError
from fedledger.protocols.base import (
    PROTOCOLS,
    MetricSpec,
    NodePlan,
    NodeSetup,
    Protocol,
    ProtocolNode,
)
from fedledger.protocols.pbft_ledger.client import ClientNode
from fedledger.protocols.pbft_ledger.params import PbftLedgerParams
from fedledger.protocols.pbft_ledger.replica import CLIENT, FAULTS, REPLICA, ReplicaNode
from fedledger.protocols.pbft_ledger.report import pbft_headline, pbft_report
from fedledger.protocols.resources import MAIN, CatchUp, ChainSpec, NodeResources
from fedledger.protocols.results import MetricRow, ModelRow

__all__ = ["PbftLedger", "PbftLedgerParams", "replica_ids"]


def replica_ids(count: int) -> list[str]:
    return [f"r{i:02d}" for i in range(count)]


def client_ids(count: int) -> list[str]:
    return [f"c{i:02d}" for i in range(count)]


#: the name of the replica committee in the genesis (``Protocol.committees``)
COMMITTEE = "pbft"


class PbftLedger(Protocol[PbftLedgerParams]):
    """A PBFT-replicated ledger of signed transactions: n replicas, clients at a rate."""

    name = "pbft-ledger"
    faults = FAULTS
    metrics = (
        MetricSpec("commit_latency", "seconds from a client sending a request to accepting "
                                     "f+1 matching replies (step: the request number)"),
        MetricSpec("queue_delay", "seconds a due request waited for the previous one"),
        MetricSpec("block", "a replica appended the block at this height (tag: txs)"),
        MetricSpec("executed", "requests a block ran for the first time"),
        MetricSpec("view", "a replica entered this view"),
        MetricSpec("restored_blocks", "blocks a restarted replica resumed from its store"),
    )

    def plan(self, num_nodes: int, seed: int) -> Sequence[NodePlan]:
        if num_nodes < 4:
            raise ConfigError("nodes.count", f"pbft-ledger needs n >= 4 replicas, got {num_nodes}")
        replicas = tuple(replica_ids(num_nodes))
        clients = tuple(client_ids(self.params.clients))
        return [
            *(NodePlan(r, REPLICA, False, tuple(x for x in replicas + clients if x != r))
              for r in replicas),
            *(NodePlan(c, CLIENT, False, replicas) for c in clients),
        ]

    def resources(self, plan: NodePlan, plans: Sequence[NodePlan]) -> NodeResources:
        """A replica keeps one main chain of the batches it executed. Its blocks are
        signed by itself, so the host must not copy a peer's blocks into it
        (``CatchUp.NONE``): a restarted replica resumes from its own store and fetches
        what it missed through the engine's catch-up (certified batches), which it
        writes as its own blocks. A client keeps a chain store too, for its durable
        state only (its last request number), and appends no block."""
        own = ChainSpec(catch_up=CatchUp.NONE, certified_by=COMMITTEE)
        return NodeResources(chains=MappingProxyType({MAIN: own}))

    def committees(self, plans: Sequence[NodePlan]) -> Mapping[str, tuple[str, ...]]:
        """The replicas, in index order (the genesis records them; ``chain verify``
        checks every block's commit certificate against their keys)."""
        return {COMMITTEE: tuple(p.node_id for p in plans if p.role == REPLICA)}

    def create_node(self, setup: NodeSetup[PbftLedgerParams]) -> ProtocolNode[PbftLedgerParams]:
        if setup.plan.role == REPLICA:
            return ReplicaNode(setup)
        return ClientNode(setup)

    def report(
        self, run_dir: Path, rows: Sequence[ModelRow], metrics: Sequence[MetricRow]
    ) -> Mapping[str, Any]:
        return pbft_report(metrics)

    def headline(self, section: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
        return pbft_headline(section)


PROTOCOLS.add("pbft-ledger", PbftLedger, PbftLedgerParams, PbftLedger.__doc__ or "")
