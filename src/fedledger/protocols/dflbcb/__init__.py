"""DFLBCB (Yang 2022, arXiv 2205.11137): an elected PBFT committee and a Vyper state
contract, stages Elect -> Pledge -> Commit -> Work.

Nodes: ``init`` (the project initiator: deploys and initializes the contract, holds no
data), ``m00..`` (the initial committee, ``protocol.committee`` of them: PBFT replicas,
evaluators, and participants too) and ``p00..`` (participants). One contract on one
chain shared by all (the simulator's chain host). A run lasts ``rounds`` iterations of
the contract (``it``); metrics' step is the iteration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

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
from fedledger.protocols.dflbcb.report import dflbcb_headline, dflbcb_report
from fedledger.protocols.dflbcb.roles import FAULTS, INITIATOR, MEMBER, PARTICIPANT, eth_key
from fedledger.protocols.resources import MAIN, BlobSpec, CatchUp, ChainSpec, NodeResources
from fedledger.protocols.results import MetricRow, ModelRow

__all__ = ["Dflbcb", "DflbcbParams"]

GENESIS_WEI = 1000 * 10**18
#: each node's secp256k1 key beside its identity: registered in a real network's genesis
#: (``fedledger keygen --config``), derived in the simulator and on a localnet (roles)
KEYS = ("ed25519", "secp256k1")


class Dflbcb(Protocol[DflbcbParams]):
    """DFLBCB: a PBFT committee orders requests, a state contract takes F+1 proofs."""

    name = "dflbcb"
    effects = CHAIN_EFFECTS
    faults = FAULTS
    metrics = (
        MetricSpec("gas", "gas of a stage call (tags: call = submit_<stage>, ok)"),
        MetricSpec("global_acc_permille", "the global model's accuracy on the shared "
                                          "split, as recorded on chain"),
        MetricSpec("local_acc_permille", "a member's own sub-model's accuracy on the "
                                         "shared split, as it scored it in Work (E3)"),
        MetricSpec("flagged", "sub-models Alg. 6 dropped as low quality (a member's view)"),
        MetricSpec("restored_blocks", "mirror blocks a restarted node replayed"),
        MetricSpec("latency", "seconds from a node's request to its F+1 matching replies "
                              "(tags: kind = cand, pledge, sub, alive, end)"),
        MetricSpec("stage_seconds", "seconds a stage lasted, from the log that opened it "
                                    "to the one that closed it (tags: stage)"),
        MetricSpec("accepted", "an accepted stage transition (tags: stage, submitter)"),
        MetricSpec("slashed", "wei a slash took (tags: kind, the Section 5.1 row)"),
        MetricSpec("rewarded", "reward points (of 1e18) credited (tags: kind)"),
        MetricSpec("price", "wei the accuracy-price curve gave the iteration's model"),
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
        p = self.params
        spec = ContractSpec(SOURCE, accounts=accounts, chain_id=p.chain_id,
                            block_time=p.block_time, block_mode=p.block_mode)
        if plan.role == INITIATOR:  # deploys and initializes; keeps nothing to resume
            return NodeResources(blobs=BlobSpec(), contract=spec, key_schemes=KEYS)
        own = MappingProxyType({MAIN: ChainSpec(catch_up=CatchUp.OWN)})  # durable.py
        return NodeResources(chains=own, blobs=BlobSpec(), contract=spec, key_schemes=KEYS)

    def shared_split_samples(self) -> int:
        """The pre-agreed test set every committee member scores on (assembly.build)."""
        return self.params.shared_eval

    def create_node(self, setup: NodeSetup[DflbcbParams]) -> ProtocolNode[DflbcbParams]:
        return DflbcbNode(setup)

    def report(
        self, run_dir: Path, rows: Sequence[ModelRow], metrics: Sequence[MetricRow]
    ) -> Mapping[str, Any]:
        return dflbcb_report(metrics)

    def headline(self, section: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
        return dflbcb_headline(section)


PROTOCOLS.add("dflbcb", Dflbcb, DflbcbParams, Dflbcb.__doc__ or "")
