"""``nagar``: Nagar's privacy-preserving blockchain FL (seed 004): an FL plan on chain,
Federated SVRG (or FedAvg), device-level Laplace DP with a public per-device budget, and
miners that verify submissions and mine blocks by PoW (retargeted) or a stake lottery."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import fedledger.learning.dane  # registers the DANE routine
import fedledger.learning.fsvrg  # noqa: F401  (registers the F-SVRG routines)
from fedledger.errors import ConfigError
from fedledger.protocols.base import (
    PROTOCOLS,
    MetricSpec,
    NodePlan,
    NodeSetup,
    Protocol,
    ProtocolNode,
)
from fedledger.protocols.nagar.decrypt import WRONG_PARTIAL
from fedledger.protocols.nagar.faults import DEVICE_FAULTS, VAULT_SNOOP
from fedledger.protocols.nagar.node import DEVICE, KILLED_MIDWAY, MINER, REQUESTER, NagarNode
from fedledger.protocols.nagar.params import NagarParams
from fedledger.protocols.nagar.report import nagar_report
from fedledger.protocols.nagar.secure import nagar_dealer
from fedledger.protocols.resources import MAIN, BlobSpec, ChainSpec, NodeResources
from fedledger.protocols.results import MetricRow, ModelRow


class Nagar(Protocol[NagarParams]):
    """Nagar: requester's FL plan on chain; selected devices send DP-noised F-SVRG or
    FedAvg vectors to associated miners, who mine blocks (PoW or PoS); every device
    computes the global model from the chain."""

    name = "nagar"
    metrics = (
        MetricSpec("candidate_blocks", "candidate blocks a node saw at selection"),
        MetricSpec("forks", "candidate blocks beyond the first"),
        MetricSpec("no_block", "a step that ended without a block"),
        MetricSpec("block", "height of the chosen block, tagged with its miner"),
        MetricSpec("block_updates", "submissions in the chosen block, by phase"),
        MetricSpec("stake", "a node's rewards so far (PoS stake beyond the initial)"),
        MetricSpec("epsilon_spent", "a device's epsilon spent so far (basic composition)"),
        MetricSpec("hashes", "PoW attempts a miner needed to seal its candidate"),
        MetricSpec("too_few_updates", "an update step with fewer than min_updates devices"),
        MetricSpec("decryption_failed", "a step whose aggregate got too few valid partials"),
    )
    #: a committee member that publishes a forged partial decryption; a node killed
    #: halfway through the run (silent from then on); a device's bad submissions
    faults = (WRONG_PARTIAL, KILLED_MIDWAY, VAULT_SNOOP, *DEVICE_FAULTS)

    def __init__(self, params: NagarParams) -> None:
        super().__init__(params)
        self.dealer = nagar_dealer()  # the committee's threshold Paillier key, dealt once

    def plan(self, num_nodes: int, seed: int) -> Sequence[NodePlan]:
        miners = self.params.miners
        devices = num_nodes - miners - 1
        if devices < 1:
            raise ConfigError(
                "nodes.count",
                f"{num_nodes} nodes leave no device: need 1 requester + {miners} miners + "
                ">= 1 device",
            )
        if self.params.devices_per_round > devices:
            raise ConfigError(
                "protocol.devices_per_round",
                f"{self.params.devices_per_round} > the {devices} devices",
            )
        ids = [
            "r000",
            *(f"m{i:03d}" for i in range(miners)),
            *(f"d{i:03d}" for i in range(devices)),
        ]
        roles = [REQUESTER] + [MINER] * miners + [DEVICE] * devices
        return [
            NodePlan(n, role, role == DEVICE, tuple(p for p in ids if p != n))
            for n, role in zip(ids, roles, strict=True)
        ]

    def resources(self, plan: NodePlan, plans: Sequence[NodePlan]) -> NodeResources:
        # live: a node that falls behind while running catches up (ChainSynced: it replays)
        return NodeResources(
            chains=MappingProxyType({MAIN: ChainSpec(live=True)}), blobs=BlobSpec()
        )

    def create_node(self, setup: NodeSetup[NagarParams]) -> ProtocolNode[NagarParams]:
        return NagarNode(setup, self.dealer)

    def report(
        self, run_dir: Path, rows: Sequence[ModelRow], metrics: Sequence[MetricRow]
    ) -> Mapping[str, Any]:
        return nagar_report(rows, metrics)

    def headline(self, section: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
        return (
            ("blocks (forks)", f"{section.get('blocks', 0)} ({section.get('forks', 0)})"),
            ("max epsilon spent", f"{section.get('epsilon_max', 0.0):g}"),
        )


PROTOCOLS.add("nagar", Nagar, NagarParams, Nagar.__doc__ or "")
