"""``vanilla``: classic server-based FedAvg, the baseline every BFL protocol is compared with."""

from __future__ import annotations

from collections.abc import Sequence

from fedledger.protocols.base import (
    PROTOCOLS,
    MetricSpec,
    NodePlan,
    NodeSetup,
    Protocol,
    ProtocolNode,
)
from fedledger.protocols.resources import NodeResources
from fedledger.protocols.vanilla.encrypted import encrypted_node, vanilla_dealer
from fedledger.protocols.vanilla.nodes import Client, Server
from fedledger.protocols.vanilla.params import VanillaParams
from fedledger.protocols.vanilla.secagg import SecAggVanillaClient, SecAggVanillaServer

SERVER = "server"


class Vanilla(Protocol[VanillaParams]):
    """Central FedAvg: one server, N clients, client sampling, synchronous rounds."""

    name = "vanilla"
    metrics = (
        MetricSpec("participants", "client updates aggregated in a round"),
        MetricSpec("rejected_updates", "client updates of the wrong shape"),
        MetricSpec("root_loss", "the server's training loss on its root set (FLTrust)"),
        MetricSpec("secure_round_failed", "1 if a secure/encrypted round failed, else 0"),
    )
    #: secure variants: a client that drops after sharing keys; a lying key holder
    faults = ("drop_after_keys", "wrong_partial")

    def __init__(self, params: VanillaParams) -> None:
        super().__init__(params)
        self.dealer = vanilla_dealer()  # homomorphic keys, dealt once per protocol object

    def plan(self, num_nodes: int, seed: int) -> Sequence[NodePlan]:
        clients = tuple(f"c{i:03d}" for i in range(num_nodes))
        server = NodePlan(SERVER, "server", holds_data=False, peers=clients)
        return [server, *(NodePlan(c, "client", True, (SERVER,)) for c in clients)]

    def resources(self, plan: NodePlan, plans: Sequence[NodePlan]) -> NodeResources:
        """No chain; the server holds a trusted root set of ``root_samples`` (FLTrust)."""
        if plan.node_id == SERVER:
            return NodeResources(root_samples=self.params.root_samples)
        return NodeResources()

    def create_node(self, setup: NodeSetup[VanillaParams]) -> ProtocolNode[VanillaParams]:
        server = setup.plan.role == "server"
        if self.params.secure_aggregation is not None:
            return SecAggVanillaServer(setup) if server else SecAggVanillaClient(setup)
        if self.params.encryption is not None:
            return encrypted_node(setup, self.dealer)
        return Server(setup) if setup.plan.role == "server" else Client(setup)


PROTOCOLS.add("vanilla", Vanilla, VanillaParams, Vanilla.__doc__ or "")
