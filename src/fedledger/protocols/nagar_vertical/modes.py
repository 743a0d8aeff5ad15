"""``nagar-vertical``'s transfer and sharing modes: node layout, the dealer, report.

:class:`Modes` is what :class:`~fedledger.protocols.nagar_vertical.NagarVertical`
delegates to when ``mode`` is not ``vertical``: its ``plan``, ``create_node``,
``horizon``, ``report`` and ``headline``. The dealer hands out per seed what the
simulation gives every node (data, keys; the evaluation's ground truth).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fedledger.errors import ConfigError
from fedledger.privacy.he.paillier import generate_keypair
from fedledger.privacy.he.rand import SeededRandom
from fedledger.privacy.he.threshold import deal
from fedledger.protocols.base import Horizon, MetricSpec, NodePlan, NodeSetup, ProtocolNode
from fedledger.protocols.nagar_vertical.committee import holder_ids, holder_index
from fedledger.protocols.nagar_vertical.data import feature_split
from fedledger.protocols.nagar_vertical.ftl_coordinator import FtlCoordinator, TransferHolder
from fedledger.protocols.nagar_vertical.ftl_node import (
    A_ID,
    B_ID,
    C_ID,
    DOMAIN,
    ROLE_FTL_C,
    ROLE_SOURCE,
    ROLE_TARGET,
    FtlShared,
    SourceNode,
    TargetNode,
)
from fedledger.protocols.nagar_vertical.mode_params import node_count
from fedledger.protocols.nagar_vertical.params import NagarVerticalParams
from fedledger.protocols.nagar_vertical.sharing import sensor_streams, trainer_key
from fedledger.protocols.nagar_vertical.sharing_node import (
    ROLE_GATEWAY,
    ROLE_IOT,
    ROLE_TRAINER,
    TRAINER_ID,
    GatewayNode,
    IotNode,
    SharingShared,
    TrainerNode,
    gateway_ids,
    iot_ids,
)
from fedledger.protocols.results import MetricRow
from fedledger.seeding import derive_seed

ROLE_FTL_HOLDER = "ftl_key_holder"
#: Metrics of the transfer and sharing modes (declared beside vertical mode's).
MODE_METRICS = (
    MetricSpec("baseline_accuracy", "transfer: party-only baseline on B's non-overlap samples"),
    MetricSpec("rmse", "sharing: trainer's daily-cycle error against the noise-free cycle"),
    MetricSpec("readings", "sharing: readings the trainer has received (step: hour)"),
    MetricSpec("reward", "sharing: trainer's reward, per_work per reading processed"),
    MetricSpec("refused_budget", "sharing: readings a device withheld (over its budget)"),
    MetricSpec("forwarded", "sharing: shares a gateway forwarded to the trainer"),
)


class Modes:
    """Transfer and sharing mode for one protocol object (the dealer caches per seed)."""

    def __init__(self, params: NagarVerticalParams) -> None:
        self.params = params
        self._ftl: dict[int, FtlShared] = {}
        self._sharing: dict[tuple[int, int], SharingShared] = {}

    def ftl_shared(self, seed: int) -> FtlShared:
        if seed not in self._ftl:
            p = self.params
            split = feature_split(p.overlap, seed, p.features_a, labels_at="a")
            rng = SeededRandom(derive_seed(seed, DOMAIN, p.decryptor), "dealer")
            if p.decryptor == "committee":
                committee = deal(p.key_bits, p.threshold, p.committee, rng)
                self._ftl[seed] = FtlShared(split, committee=committee)
            else:
                _, key = generate_keypair(p.key_bits, rng)
                self._ftl[seed] = FtlShared(split, private_key=key)
        return self._ftl[seed]

    def sharing_shared(self, seed: int, hours: int) -> SharingShared:
        if (seed, hours) not in self._sharing:
            streams, offsets = sensor_streams(self.params.devices, hours, seed)
            self._sharing[(seed, hours)] = SharingShared(streams, offsets, trainer_key(seed))
        return self._sharing[(seed, hours)]

    def plan(self, num_nodes: int) -> list[NodePlan]:
        p = self.params
        need, why = node_count(p)
        if num_nodes != need:
            raise ConfigError("nodes.count", f"{num_nodes}; {why} need {need}")
        if p.mode == "transfer":
            keys = (C_ID,) if p.decryptor == "coordinator" else holder_ids(p.committee)
            role = ROLE_FTL_C if p.decryptor == "coordinator" else ROLE_FTL_HOLDER
            return [
                NodePlan(A_ID, ROLE_SOURCE, False, (B_ID, *keys)),
                NodePlan(B_ID, ROLE_TARGET, False, (A_ID, *keys)),
                *(NodePlan(k, role, False, (A_ID, B_ID)) for k in keys),
            ]
        iot, gateways = iot_ids(p.devices), gateway_ids(p)
        # readings go to the gateways (shamir) or the trainer (sealed); every node is also
        # a peer of the trainer, the sequencer whose plan and round blocks it stores
        return [
            *(NodePlan(d, ROLE_IOT, False, (*gateways, TRAINER_ID)) for d in iot),
            *(NodePlan(g, ROLE_GATEWAY, False, (*iot, TRAINER_ID)) for g in gateways),
            NodePlan(TRAINER_ID, ROLE_TRAINER, False, (*gateways, *iot)),
        ]

    def horizon(self, rounds: int) -> Horizon:
        return Horizon("epochs" if self.params.mode == "transfer" else "rounds", rounds)

    def create_node(
        self, setup: NodeSetup[NagarVerticalParams]
    ) -> ProtocolNode[NagarVerticalParams]:
        role = setup.plan.role
        if self.params.mode == "transfer":
            shared = self.ftl_shared(setup.seed)
            if role == ROLE_FTL_HOLDER:
                assert shared.committee is not None
                public, shares = shared.committee
                index = holder_index(setup.node_id, public.m)
                assert index is not None
                return TransferHolder(setup, public, shares[index - 1])
            kind = {ROLE_SOURCE: SourceNode, ROLE_TARGET: TargetNode, ROLE_FTL_C: FtlCoordinator}
            return kind[role](setup, shared)
        if role == ROLE_GATEWAY:
            return GatewayNode(setup)
        data = self.sharing_shared(setup.seed, setup.horizon.length)
        return IotNode(setup, data) if role == ROLE_IOT else TrainerNode(setup, data)

    def report(self, metrics: Sequence[MetricRow]) -> Mapping[str, Any]:
        def last(name: str, node: str, **tags: str) -> float | None:
            rows = [m for m in metrics if m.name.split(".")[-1] == name and m.node == node
                    and all(dict(m.tags).get(k) == v for k, v in tags.items())]  # fmt: skip
            return rows[-1].value if rows else None

        if self.params.mode == "transfer":
            acc, base = last("accuracy", B_ID), last("baseline_accuracy", B_ID)
            gap = None if acc is None or base is None else acc - base
            decryptions = last("decryptions", C_ID)
            if self.params.decryptor == "committee":  # each holder's partial decryptions
                decryptions = sum(last("decryptions", h) or 0.0 for h in holder_ids(
                    self.params.committee))  # fmt: skip
            return {"mode": "transfer", "accuracy": acc, "baseline_accuracy": base,
                    "gain_over_baseline": gap, "decryptions": decryptions}  # fmt: skip
        spent = [m.value for m in metrics if m.name.split(".")[-1] == "epsilon_spent"]
        return {
            "mode": "sharing",
            "transport": self.params.transport,
            "rmse_temperature": last("rmse", TRAINER_ID, feature="temperature"),
            "rmse_humidity": last("rmse", TRAINER_ID, feature="humidity"),
            "readings": last("readings", TRAINER_ID),
            "reward": last("reward", TRAINER_ID),
            "max_epsilon_spent": float(np.max(spent)) if spent else None,
        }

    def headline(self, section: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
        if section.get("mode") == "transfer":
            acc, base = section.get("accuracy"), section.get("baseline_accuracy")
            if acc is None:
                return (("accuracy", "none (the run did not finish)"),)
            return (("accuracy", f"{acc:.4f} (party-only baseline {base:.4f})"),)
        temp, hum = section.get("rmse_temperature"), section.get("rmse_humidity")
        if temp is None:
            return (("cycle error", "none (no reading reached the trainer)"),)
        return (("cycle error", f"{temp:.3f} C, {hum:.3f} % RH "
                 f"({section.get('readings'):.0f} readings)"),)  # fmt: skip
