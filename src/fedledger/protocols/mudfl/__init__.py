"""``mudfl``: μDFL (Xu and Chen, TNSM 2022), a microchained DFL fabric: Proof-of-Credit
block proposal, voting-based chain finality, VRF committees and FL whose model hashes go
on chain while the encrypted models stay off chain."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from fedledger.protocols.base import (
    PROTOCOLS,
    MetricSpec,
    NodePlan,
    NodeSetup,
    Protocol,
    ProtocolNode,
)
from fedledger.protocols.mudfl.context import ADMIN, AGGREGATOR, CLIENT, FAULTS, SERVER
from fedledger.protocols.mudfl.node import MuDflNode
from fedledger.protocols.mudfl.params import MuDflParams
from fedledger.protocols.mudfl.poc import poc_fork_choice
from fedledger.protocols.mudfl.report import mudfl_report
from fedledger.protocols.resources import MAIN, BlobSpec, ChainSpec, NodeResources
from fedledger.protocols.results import MetricRow, ModelRow


class MuDfl(Protocol[MuDflParams]):
    """μDFL on one microchain: an administrator, an FL server, an aggregator and its
    clients; a committee of K clients proposes by Proof of Credit and finalizes
    checkpoints by > 2K/3 votes."""

    name = "mudfl"
    faults = FAULTS
    metrics = (
        MetricSpec("proposals", "valid blocks a node saw in a slot (b of rules i-iii)"),
        MetricSpec("head_height", "a node's head height at a slot's end"),
        MetricSpec("finalized_height", "a node's highest finalized checkpoint"),
        MetricSpec("committed", "a checkpoint committed (justified) by > 2K/3 votes"),
        MetricSpec("finalized", "a checkpoint finalized"),
        MetricSpec("arbitrated", "a checkpoint committed by the administrator (Rule 3)"),
        MetricSpec("round_models", "models the aggregator averaged in a round"),
        MetricSpec("model_refused", "a worker's model that failed its hash check"),
        MetricSpec("dynasty", "a new dynasty took over (value: its number)"),
        MetricSpec(
            "deposits_slashed",
            "deposits slashed at a dynasty's end (its offences, and late evidence of older ones)",
        ),
        MetricSpec("fee_pool", "fee pool of the dynasty that just ended (shared by members)"),
        MetricSpec("worker_rewards", "gamma_i paid to workers in the dynasty that just ended"),
        MetricSpec("load_sent", "data transactions an emitter sent in a slot (load.py)"),
        MetricSpec("load_committed", "data transactions that joined a validator's chain"),
        MetricSpec("load_latency_sum", "sum of their commit latencies, s"),
        MetricSpec("load_latency_p50", "median commit latency in the slot, s"),
        MetricSpec("load_latency_p95", "95th percentile commit latency in the slot, s"),
        MetricSpec("load_latency_max", "largest commit latency in the slot, s"),
        MetricSpec("block_delay", "slot start to the last PoC block a validator stored, s"),
    )

    def plan(self, num_nodes: int, seed: int) -> Sequence[NodePlan]:
        clients = num_nodes - 3
        if clients < self.params.committee:
            raise ValueError(
                f"mudfl needs an administrator, a server, an aggregator and at least "
                f"committee={self.params.committee} clients: nodes.count >= "
                f"{self.params.committee + 3}, got {num_nodes}"
            )
        ids = ["admin", "server", "agg"] + [f"c{i:03d}" for i in range(clients)]
        roles = [ADMIN, SERVER, AGGREGATOR] + [CLIENT] * clients
        return [
            NodePlan(n, r, r == CLIENT, tuple(p for p in ids if p != n))
            for n, r in zip(ids, roles, strict=True)
        ]

    def resources(self, plan: NodePlan, plans: Sequence[NodePlan]) -> NodeResources:
        # live: a node that falls behind while running catches up (ChainSynced)
        chain = ChainSpec(fork_choice=poc_fork_choice(self.params.xi), live=True)
        # the aggregator's test set, on which it scores the workers' models (Section VII)
        root = self.params.score_samples if plan.role == AGGREGATOR else 0
        # clients draw committees by VRF: their keys are registered in the genesis
        schemes = ("ed25519", "vrf") if plan.role == CLIENT else ("ed25519",)
        return NodeResources(
            chains=MappingProxyType({MAIN: chain}),
            blobs=BlobSpec(),
            key_schemes=schemes,
            root_samples=root,
        )

    def create_node(self, setup: NodeSetup[MuDflParams]) -> ProtocolNode[MuDflParams]:
        return MuDflNode(setup)

    def report(
        self, run_dir: Path, rows: Sequence[ModelRow], metrics: Sequence[MetricRow]
    ) -> Mapping[str, Any]:
        return mudfl_report(run_dir, rows, metrics)

    def headline(self, section: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
        return (
            ("finalized height", str(section.get("finalized_height", 0))),
            ("slots with b=0/1/>1", str(section.get("proposal_counts", {}))),
            ("rejected", str(section.get("rejected", {}))),
        )


PROTOCOLS.add("mudfl", MuDfl, MuDflParams, MuDfl.__doc__ or "")
