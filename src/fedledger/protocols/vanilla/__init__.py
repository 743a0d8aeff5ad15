"""``vanilla``: classic server-based FedAvg, the baseline every BFL protocol is compared with."""

from __future__ import annotations

from collections.abc import Sequence

from fedledger.protocols.base import PROTOCOLS, NodePlan, NodeSetup, Protocol, ProtocolNode
from fedledger.protocols.vanilla.nodes import Client, Server
from fedledger.protocols.vanilla.params import VanillaParams

SERVER = "server"


class Vanilla(Protocol):
    """Central FedAvg: one server, N clients, client sampling, synchronous rounds."""

    name = "vanilla"

    def plan(self, num_nodes: int, seed: int) -> Sequence[NodePlan]:
        clients = tuple(f"c{i:03d}" for i in range(num_nodes))
        server = NodePlan(SERVER, "server", holds_data=False, peers=clients)
        return [server, *(NodePlan(c, "client", True, (SERVER,)) for c in clients)]

    def root_data(self) -> dict[str, int]:
        """The server's trusted root set size (``root_samples``), for FLTrust."""
        params = self.params
        assert isinstance(params, VanillaParams)
        return {SERVER: params.root_samples} if params.root_samples else {}

    def create_node(self, setup: NodeSetup) -> ProtocolNode:
        return Server(setup) if setup.plan.role == "server" else Client(setup)


PROTOCOLS.add("vanilla", Vanilla, VanillaParams, Vanilla.__doc__ or "")
