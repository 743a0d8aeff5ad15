"""``dfl``: DFL (Tian et al.), asynchronous partial consensus with a chain per node.

Each node trains on data that arrives over time, gossips a signed transaction naming its
model, receives receipts (accuracy measured by its neighbours), records its transactions
and receipts in blocks confirmed by the receipt creators, and updates its model from a
buffer of received models with a pluggable reputation rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from fedledger.protocols.base import (
    PROTOCOLS,
    Horizon,
    MetricSpec,
    NodePlan,
    NodeSetup,
    Protocol,
    ProtocolNode,
)
from fedledger.protocols.dfl import rules  # noqa: F401  (registers the update rules)
from fedledger.protocols.dfl.node import DUPLICATE, OBSERVER, DflNode
from fedledger.protocols.dfl.params import DflParams
from fedledger.protocols.dfl.report import dfl_report, difference_metrics
from fedledger.protocols.dfl.reputation import UPDATE_RULES, ReceivedModel, UpdateRule
from fedledger.protocols.dfl.topology import neighbours
from fedledger.protocols.resources import MAIN, BlobSpec, CatchUp, ChainSpec, NodeResources
from fedledger.protocols.results import MetricRow, ModelRow, StepMetrics

__all__ = ["UPDATE_RULES", "Dfl", "DflParams", "ReceivedModel", "UpdateRule"]


def node_ids(count: int) -> list[str]:
    return [f"n{i:03d}" for i in range(count)]


class Dfl(Protocol[DflParams]):
    """DFL: gossip of signed model transactions, receipts, confirmed per-node blocks,
    local reputation and weighted averaging."""

    name = "dfl"
    faults = (DUPLICATE,)
    metrics = (
        MetricSpec("blocks", "blocks on a node's own chain"),
        MetricSpec("block", "a block a node appended to its chain (its height)"),
        MetricSpec("block_failed", "a block a node could not make"),
        MetricSpec("receipts_per_block", "receipts in a node's new block"),
        MetricSpec("confirmations_per_block", "confirmed receipts in a node's new block"),
        MetricSpec("reputation", "a node's reputation of a peer"),
        MetricSpec("updates", "model updates a node made from its buffer"),
        MetricSpec("model_difference", "eq. 5: model difference among nodes, per layer"),
    )

    def plan(self, num_nodes: int, seed: int) -> Sequence[NodePlan]:
        params = self.params
        ids = node_ids(num_nodes)
        links = neighbours(num_nodes, params.topology, params.degree, params.edges, seed)
        return [
            NodePlan(
                ids[i],
                OBSERVER if i < params.observers else "trainer",
                True,
                tuple(ids[j] for j in links[i]),
            )
            for i in range(num_nodes)
        ]

    def resources(self, plan: NodePlan, plans: Sequence[NodePlan]) -> NodeResources:
        """A chain of the node's own blocks (nothing to catch up from peers) and a blob
        store its models are fetched from."""
        own = ChainSpec(catch_up=CatchUp.OWN)
        return NodeResources(chains=MappingProxyType({MAIN: own}), blobs=BlobSpec())

    def horizon(self, rounds: int) -> Horizon:
        """DFL runs for ``ticks`` virtual seconds; the config's rounds do not apply."""
        return Horizon("ticks", self.params.ticks)

    def create_node(self, setup: NodeSetup[DflParams]) -> ProtocolNode[DflParams]:
        return DflNode(setup)

    def step_metrics(self, layout: tuple[tuple[str, tuple[int, ...]], ...]) -> StepMetrics | None:
        return difference_metrics(layout)

    def report(
        self, run_dir: Path, rows: Sequence[ModelRow], metrics: Sequence[MetricRow]
    ) -> Mapping[str, Any]:
        return dfl_report(run_dir, rows, metrics)

    def headline(self, section: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
        rep = section.get("reputation_final") or {}
        caught = ", ".join(f"{k} {v:.2f}" for k, v in sorted(rep.items())) or "no reputation"
        return (
            ("what the ledger caught", f"final reputation: {caught}"),
            ("blocks per node", str(section.get("blocks_per_node", "-"))),
        )


PROTOCOLS.add("dfl", Dfl, DflParams, Dfl.__doc__ or "")
