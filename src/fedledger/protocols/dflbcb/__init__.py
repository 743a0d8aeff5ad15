"""DFLBCB (Yang 2022, arXiv 2205.11137): an elected PBFT committee and a Vyper state
contract, stages Elect -> Pledge -> Commit -> Work.

Nodes: ``init`` (the project initiator: deploys and initializes the contract, holds no
data), ``m00..`` (the initial committee, ``protocol.committee`` of them: PBFT replicas,
evaluators, and participants too) and ``p00..`` (participants). One contract on one
chain shared by all (the simulator's chain host). A run lasts ``rounds`` iterations of
the contract (``it``); metrics' step is the iteration.
"""

from __future__ import annotations

from collections.abc import Sequence

from fedledger.contracts.dflbcb import SOURCE
from fedledger.contracts.effects import CHAIN_EFFECTS, ContractSpec
from fedledger.errors import ConfigError
from fedledger.protocols.base import (
    PROTOCOLS,
    MetricSpec,
    NodePlan,
    NodeSetup,
    Protocol,
    ProtocolNode,
)
from fedledger.protocols.dflbcb.node import DflbcbNode
from fedledger.protocols.dflbcb.params import DflbcbParams
from fedledger.protocols.dflbcb.roles import FAULTS, INITIATOR, MEMBER, PARTICIPANT, eth_key
from fedledger.protocols.resources import BlobSpec, NodeResources

__all__ = ["Dflbcb", "DflbcbParams"]

GENESIS_WEI = 1000 * 10**18


class Dflbcb(Protocol[DflbcbParams]):
    """DFLBCB: a PBFT committee orders requests, a state contract takes F+1 proofs."""

    name = "dflbcb"
    effects = CHAIN_EFFECTS
    faults = FAULTS
    metrics = (
        MetricSpec("gas", "gas of a stage call (tags: call = submit_<stage>, ok)"),
        MetricSpec("global_acc_permille", "the global model's accuracy on the shared "
                                          "split, as recorded on chain"),
        MetricSpec("flagged", "sub-models Alg. 6 dropped as low quality (a member's view)"),
    )

    def plan(self, num_nodes: int, seed: int) -> Sequence[NodePlan]:
        c = self.params.committee
        if num_nodes < c + 1:
            raise ConfigError(
                "nodes.count", f"{num_nodes}: dflbcb needs the initiator plus at least "
                f"{c} committee members (protocol.committee), so >= {c + 1}")
        ids = ["init"] + [f"m{i:02d}" for i in range(c)] + \
            [f"p{i:02d}" for i in range(num_nodes - 1 - c)]
        plans = [NodePlan("init", INITIATOR, False, tuple(ids[1:]))]
        for node_id in ids[1:]:
            role = MEMBER if node_id.startswith("m") else PARTICIPANT
            plans.append(NodePlan(node_id, role, True, tuple(x for x in ids if x != node_id)))
        return plans

    def resources(self, plan: NodePlan, plans: Sequence[NodePlan]) -> NodeResources:
        accounts = tuple((eth_key(p.node_id).address, GENESIS_WEI) for p in plans)
        spec = ContractSpec(SOURCE, accounts=accounts, chain_id=self.params.chain_id)
        return NodeResources(blobs=BlobSpec(), contract=spec)

    def shared_split_samples(self) -> int:
        """The pre-agreed test set every committee member scores on (assembly.build)."""
        return self.params.shared_eval

    def create_node(self, setup: NodeSetup[DflbcbParams]) -> ProtocolNode[DflbcbParams]:
        return DflbcbNode(setup)


PROTOCOLS.add("dflbcb", Dflbcb, DflbcbParams, Dflbcb.__doc__ or "")
