"""``nagar-vertical``: Nagar's vertical FL mode (Hardy et al. 2017) as three simulated nodes.

Party A (features), party B (features and labels) and the decryptor: coordinator C (the
whole Paillier key, as in Hardy et al.) or a committee of t-of-m key holders (threshold
Paillier with proofs; each party combines t verified partials itself).
A and B align their ids by Diffie-Hellman PSI (:mod:`fedledger.crypto.psi`), then train a
logistic regression with the Taylor loss over encrypted scores and residuals and masked
gradients that C decrypts (:mod:`.vfl`, :mod:`.node`). Data: scikit-learn's breast_cancer
split by features with ``overlap`` of the samples in common. ``mode: transfer`` runs
federated transfer learning (:mod:`.ftl`, :mod:`.ftl_node`) and ``mode: sharing`` IoT
differential data sharing (:mod:`.sharing`, :mod:`.sharing_node`) as nodes (:mod:`.modes`;
also registered as ``nagar-transfer`` and ``nagar-sharing``). Keys and data come from the
seed (a simulation dealer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from fedledger.errors import ConfigError
from fedledger.privacy.he.paillier import generate_keypair
from fedledger.privacy.he.rand import SeededRandom
from fedledger.privacy.he.threshold import deal
from fedledger.protocols.base import (
    PROTOCOLS,
    Horizon,
    MetricSpec,
    NodePlan,
    NodeSetup,
    Protocol,
    ProtocolNode,
)
from fedledger.protocols.nagar_vertical.committee import (
    ROLE_HOLDER,
    WRONG_PARTIAL,
    KeyHolderNode,
    holder_ids,
    holder_index,
)
from fedledger.protocols.nagar_vertical.coordinator import Coordinator
from fedledger.protocols.nagar_vertical.data import feature_split
from fedledger.protocols.nagar_vertical.ledger import BLOCK_METRIC, PLAN_REFUSED
from fedledger.protocols.nagar_vertical.modes import MODE_METRICS, Modes
from fedledger.protocols.nagar_vertical.node import (
    A_ID,
    B_ID,
    C_ID,
    DOMAIN,
    ROLE_A,
    ROLE_B,
    ROLE_C,
    PartyA,
    PartyB,
    Shared,
)
from fedledger.protocols.nagar_vertical.params import NagarVerticalParams
from fedledger.protocols.nagar_vertical.vfl import VflParams, align, centralized_accuracy
from fedledger.protocols.resources import MAIN, ChainSpec, NodeResources
from fedledger.protocols.results import MetricRow, ModelRow
from fedledger.seeding import derive_seed

__all__ = ["NagarVertical", "NagarVerticalParams"]


class NagarVertical(Protocol[NagarVerticalParams]):
    """Vertical FL: PSI alignment, Taylor-loss LR under Paillier, a decrypting coordinator."""

    name = "nagar-vertical"
    faults = (WRONG_PARTIAL,)  # a committee member answers with a partial of a wrong share
    metrics = (
        MetricSpec("psi_intersection", "ids both parties hold, as each party's PSI found them"),
        MetricSpec("accuracy", "party B's test accuracy of the joint model (step: epochs)"),
        MetricSpec("decryptions", "masked ciphers the coordinator (or a key holder) opened"),
        MetricSpec(BLOCK_METRIC, "height of a block of the run's chain a node stored"),
        MetricSpec(PLAN_REFUSED, "a plan a node refused, tagged with the reason and field"),
        *MODE_METRICS,  # transfer and sharing modes (modes.py)
    )

    def __init__(self, params: NagarVerticalParams) -> None:
        super().__init__(params)
        self._shared: dict[int, Shared] = {}
        self._modes = Modes(params)  # transfer and sharing modes

    def shared(self, seed: int) -> Shared:
        """The seed's data split and coordinator key (dealt once per protocol object)."""
        if seed not in self._shared:
            p = self.params
            split = feature_split(p.overlap, seed, p.features_a)
            rng = SeededRandom(derive_seed(seed, DOMAIN, p.decryptor), "dealer")
            if p.decryptor == "committee":
                committee = deal(p.key_bits, p.threshold, p.committee, rng)
                self._shared[seed] = Shared(split, committee=committee)
            else:
                _, key = generate_keypair(p.key_bits, rng)
                self._shared[seed] = Shared(split, private_key=key)
        return self._shared[seed]

    def plan(self, num_nodes: int, seed: int) -> Sequence[NodePlan]:
        p = self.params
        if p.mode != "vertical":
            return self._modes.plan(num_nodes)
        if p.decryptor == "coordinator":
            if num_nodes != 3:
                raise ConfigError(
                    "nodes.count", f"{num_nodes}; nagar-vertical has exactly 3 nodes (A, B, C)"
                )
            return [
                NodePlan(A_ID, ROLE_A, False, (B_ID, C_ID)),
                NodePlan(B_ID, ROLE_B, False, (A_ID, C_ID)),
                NodePlan(C_ID, ROLE_C, False, (A_ID, B_ID)),
            ]
        if num_nodes != 2 + p.committee:
            raise ConfigError(
                "nodes.count",
                f"{num_nodes}; a committee of {p.committee} needs 2 + {p.committee} nodes",
            )
        holders = holder_ids(p.committee)
        return [
            NodePlan(A_ID, ROLE_A, False, (B_ID, *holders)),
            NodePlan(B_ID, ROLE_B, False, (A_ID, *holders)),
            *(NodePlan(h, ROLE_HOLDER, False, (A_ID, B_ID)) for h in holders),
        ]

    def resources(self, plan: NodePlan, plans: Sequence[NodePlan]) -> NodeResources:
        # every party keeps the run's chain: the plan and each round's results (ledger.py)
        return NodeResources(chains=MappingProxyType({MAIN: ChainSpec()}))

    def horizon(self, rounds: int) -> Horizon:
        if self.params.mode != "vertical":
            return self._modes.horizon(rounds)
        return Horizon("epochs", rounds)

    def create_node(
        self, setup: NodeSetup[NagarVerticalParams]
    ) -> ProtocolNode[NagarVerticalParams]:
        if self.params.mode != "vertical":
            return self._modes.create_node(setup)
        shared = self.shared(setup.seed)
        if setup.plan.role == ROLE_A:
            return PartyA(setup, shared)
        if setup.plan.role == ROLE_B:
            return PartyB(setup, shared)
        if setup.plan.role == ROLE_HOLDER:
            assert shared.committee is not None
            public, shares = shared.committee
            index = holder_index(setup.node_id, public.m)
            assert index is not None
            return KeyHolderNode(setup, public, shares[index - 1], (A_ID, B_ID))
        return Coordinator(setup, shared)

    def report(
        self, run_dir: Path, rows: Sequence[ModelRow], metrics: Sequence[MetricRow]
    ) -> Mapping[str, Any]:
        if self.params.mode != "vertical":
            return self._modes.report(metrics)
        acc = [m.value for m in metrics if m.name.endswith("accuracy") and m.node == B_ID]
        inter = [m.value for m in metrics if m.name.endswith("psi_intersection")]
        out: dict[str, Any] = {"accuracy": acc[-1] if acc else None,
                               "psi_intersection": inter[-1] if inter else None}  # fmt: skip
        seeds = list(self._shared)
        if seeds and acc:
            seed = seeds[-1]
            split = self._shared[seed].split
            al = align(split, VflParams(seed=seed, test_fraction=self.params.test_fraction))
            central = centralized_accuracy(split, al, seed)
            out["centralized_accuracy"] = central
            out["gap"] = central - acc[-1]
        return out

    def headline(self, section: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
        if self.params.mode != "vertical":
            return self._modes.headline(section)
        acc, central = section.get("accuracy"), section.get("centralized_accuracy")
        if acc is None:
            return (("accuracy", "none (the run did not finish)"),)
        line = f"{acc:.4f}" + (f" (centralized sklearn LR {central:.4f})" if central else "")
        return (("accuracy", line),)


PROTOCOLS.add("nagar-vertical", NagarVertical, NagarVerticalParams, NagarVertical.__doc__ or "")


class _ModeAlias(NagarVertical):
    """``nagar-vertical`` under another name that runs one ``mode`` only."""

    mode: str = "vertical"

    def __init__(self, params: NagarVerticalParams) -> None:
        if params.mode != self.mode:
            raise ConfigError(
                "protocol.mode", f"{params.mode!r}; {self.name} runs mode {self.mode!r} only"
            )
        super().__init__(params)


class NagarTransfer(_ModeAlias):
    """Nagar's federated transfer learning (Liu et al. 2020) as nodes: source A (labels),
    target B, coordinator C; ``nagar-vertical`` with ``mode: transfer``."""

    name = "nagar-transfer"
    mode = "transfer"


class NagarSharing(_ModeAlias):
    """Nagar's differential data sharing as nodes: IoT devices share Laplace-noised
    readings, sealed or Shamir-split over gateways, with a trainer that fits the daily
    cycle; ``nagar-vertical`` with ``mode: sharing``."""

    name = "nagar-sharing"
    mode = "sharing"


PROTOCOLS.add("nagar-transfer", NagarTransfer, NagarVerticalParams, NagarTransfer.__doc__ or "")
PROTOCOLS.add("nagar-sharing", NagarSharing, NagarVerticalParams, NagarSharing.__doc__ or "")
