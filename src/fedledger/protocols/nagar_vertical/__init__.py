"""``nagar-vertical``: Nagar's vertical FL mode (Hardy et al. 2017) as three simulated nodes.

Party A (features), party B (features and labels) and the decryptor: coordinator C (the
whole Paillier key, as in Hardy et al.) or a committee of t-of-m key holders (threshold
Paillier with proofs; each party combines t verified partials itself).
A and B align their ids by Diffie-Hellman PSI (:mod:`fedledger.crypto.psi`), then train a
logistic regression with the Taylor loss over encrypted scores and residuals and masked
gradients that C decrypts (:mod:`.vfl`, :mod:`.node`). Data: scikit-learn's breast_cancer
split by features with ``overlap`` of the samples in common. The library modules beside
it add what has no node yet: federated transfer learning (:mod:`.ftl`) and IoT
differential data sharing (:mod:`.sharing`). Keys and data come from the seed (a simulation dealer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
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
from fedledger.protocols.nagar_vertical.data import feature_split
from fedledger.protocols.nagar_vertical.node import (
    A_ID,
    B_ID,
    C_ID,
    DOMAIN,
    ROLE_A,
    ROLE_B,
    ROLE_C,
    Coordinator,
    PartyA,
    PartyB,
    Shared,
)
from fedledger.protocols.nagar_vertical.params import NagarVerticalParams
from fedledger.protocols.nagar_vertical.vfl import VflParams, align, centralized_accuracy
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
    )

    def __init__(self, params: NagarVerticalParams) -> None:
        super().__init__(params)
        self._shared: dict[int, Shared] = {}

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

    def horizon(self, rounds: int) -> Horizon:
        return Horizon("epochs", rounds)

    def create_node(
        self, setup: NodeSetup[NagarVerticalParams]
    ) -> ProtocolNode[NagarVerticalParams]:
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
        acc, central = section.get("accuracy"), section.get("centralized_accuracy")
        if acc is None:
            return (("accuracy", "none (the run did not finish)"),)
        line = f"{acc:.4f}" + (f" (centralized sklearn LR {central:.4f})" if central else "")
        return (("accuracy", line),)


PROTOCOLS.add("nagar-vertical", NagarVertical, NagarVerticalParams, NagarVertical.__doc__ or "")
