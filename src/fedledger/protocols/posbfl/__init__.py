"""``posbfl``: PoS-BFL (survey section 5.3): workers, validators and miners with role
rotation, accuracy-drop voting, proof-of-stake block selection and rewards."""

from __future__ import annotations

from collections.abc import Sequence

from fedledger.protocols.base import PROTOCOLS, NodePlan, NodeSetup, Protocol, ProtocolNode
from fedledger.protocols.posbfl.context import FAULTS
from fedledger.protocols.posbfl.device import Device
from fedledger.protocols.posbfl.params import PosBflParams
from fedledger.protocols.posbfl.roles import role_counts


class PosBfl(Protocol):
    """PoS-BFL: every device trains, validates or mines in turn; validators vote on each
    update by its accuracy drop, the highest-stake miner's block is legal."""

    name = "posbfl"
    faults = FAULTS
    uses_ledger = True

    def plan(self, num_nodes: int, seed: int) -> Sequence[NodePlan]:
        params = self.params
        assert isinstance(params, PosBflParams)
        role_counts(params, num_nodes)  # fail early on counts that do not fit
        ids = tuple(f"d{i:03d}" for i in range(num_nodes))
        return [NodePlan(d, "device", True, tuple(p for p in ids if p != d)) for d in ids]

    def create_node(self, setup: NodeSetup) -> ProtocolNode:
        return Device(setup)


PROTOCOLS.add("posbfl", PosBfl, PosBflParams, PosBfl.__doc__ or "")
