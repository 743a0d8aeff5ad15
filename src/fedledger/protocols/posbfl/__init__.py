"""``posbfl``: PoS-BFL (survey section 5.3): workers, validators and miners with role
rotation, accuracy-drop voting, proof-of-stake block selection and rewards."""

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
from fedledger.protocols.posbfl.context import FAULTS
from fedledger.protocols.posbfl.device import Device
from fedledger.protocols.posbfl.params import PosBflParams
from fedledger.protocols.posbfl.report import posbfl_report
from fedledger.protocols.posbfl.roles import role_counts
from fedledger.protocols.resources import MAIN, BlobSpec, ChainSpec, NodeResources
from fedledger.protocols.results import MetricRow, ModelRow


class PosBfl(Protocol[PosBflParams]):
    """PoS-BFL: every device trains, validates or mines in turn; validators vote on each
    update by its accuracy drop, the highest-stake miner's block is legal."""

    name = "posbfl"
    faults = FAULTS
    metrics = (
        MetricSpec("candidate_blocks", "candidate blocks a device saw at selection"),
        MetricSpec("forks", "candidate blocks beyond the first"),
        MetricSpec("no_block", "a round that ended without a legal block"),
        MetricSpec("legal_block", "height of the selected block, tagged with its miner"),
        MetricSpec("votes", "positive and negative votes in the legal block"),
        MetricSpec("votes_cast", "a validator's positive and negative votes in a round"),
        MetricSpec("stake", "a device's own stake after the block"),
        MetricSpec("blacklisted", "devices on the blacklist"),
        MetricSpec("blacklist_added", "a worker newly blacklisted"),
        MetricSpec("update_accepted", "whether a worker's update was accepted (0/1)"),
        MetricSpec("missing_updates", "accepted updates whose model could not be fetched"),
        MetricSpec("withheld_blocks", "blocks a withholding miner kept back"),
        MetricSpec("aggregation_failed", "a round the aggregator could not combine the updates"),
    )

    def plan(self, num_nodes: int, seed: int) -> Sequence[NodePlan]:
        role_counts(self.params, num_nodes)  # fail early on counts that do not fit
        ids = tuple(f"d{i:03d}" for i in range(num_nodes))
        return [NodePlan(d, "device", True, tuple(p for p in ids if p != d)) for d in ids]

    def resources(self, plan: NodePlan, plans: Sequence[NodePlan]) -> NodeResources:
        """One chain shared by all devices (caught up from peers at start-up and while
        running: a device rebuilds on ``ChainSynced``) and a blob store."""
        chain = ChainSpec(live=True)
        return NodeResources(chains=MappingProxyType({MAIN: chain}), blobs=BlobSpec())

    def create_node(self, setup: NodeSetup[PosBflParams]) -> ProtocolNode[PosBflParams]:
        return Device(setup)

    def report(
        self, run_dir: Path, rows: Sequence[ModelRow], metrics: Sequence[MetricRow]
    ) -> Mapping[str, Any]:
        return posbfl_report(run_dir, rows, metrics)

    def headline(self, section: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
        det = section.get("detection")
        if not det:
            return (("what the ledger caught", "no detection recorded"),)
        caught = f"{det['TP']} of {det['TP'] + det['FN']} malicious updates rejected"
        wrong = f"{det['FP']} of {det['FP'] + det['TN']} honest updates rejected"
        chains = "identical" if section.get("honest_chains_identical") else "differ"
        blocks = section.get("legal_blocks", 0)
        return (
            ("what the ledger caught", caught),
            ("honest updates refused", wrong),
            ("blocks (honest chains)", f"{blocks} ({chains})"),
        )


PROTOCOLS.add("posbfl", PosBfl, PosBflParams, PosBfl.__doc__ or "")
