"""``dfl``: DFL (Tian et al.), asynchronous partial consensus with a chain per node.

Each node trains on data that arrives over time, gossips a signed transaction naming its
model, receives receipts (accuracy measured by its neighbours), records its transactions
and receipts in blocks confirmed by the receipt creators, and updates its model from a
buffer of received models with a pluggable reputation rule.
"""

from __future__ import annotations

from collections.abc import Sequence

from fedledger.protocols.base import PROTOCOLS, NodePlan, NodeSetup, Protocol, ProtocolNode
from fedledger.protocols.dfl import rules  # noqa: F401  (registers the update rules)
from fedledger.protocols.dfl.node import DUPLICATE, OBSERVER, DflNode
from fedledger.protocols.dfl.params import DflParams
from fedledger.protocols.dfl.reputation import UPDATE_RULES, ReceivedModel, UpdateRule
from fedledger.protocols.dfl.topology import neighbours

__all__ = ["UPDATE_RULES", "Dfl", "DflParams", "ReceivedModel", "UpdateRule"]


def node_ids(count: int) -> list[str]:
    return [f"n{i:03d}" for i in range(count)]


class Dfl(Protocol):
    """DFL: gossip of signed model transactions, receipts, confirmed per-node blocks,
    local reputation and weighted averaging."""

    name = "dfl"
    faults = (DUPLICATE,)
    uses_ledger = True
    shared_chain = False  # a node's chain holds only its own blocks: no catch-up from peers

    def plan(self, num_nodes: int, seed: int) -> Sequence[NodePlan]:
        params = self.params
        assert isinstance(params, DflParams)
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

    def create_node(self, setup: NodeSetup) -> ProtocolNode:
        return DflNode(setup)


PROTOCOLS.add("dfl", Dfl, DflParams, Dfl.__doc__ or "")
