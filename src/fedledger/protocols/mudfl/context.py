"""What every μDFL role shares: identity, parameters, stores, gate, roles, dynasty."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TypeVar

from fedledger.ledger.records import sign
from fedledger.ledger.verify import Verifier
from fedledger.protocols.base import NodeSetup
from fedledger.protocols.kit.gate import Gate
from fedledger.protocols.mudfl.dynasty import Dynasty, d_init, draw
from fedledger.protocols.mudfl.params import MuDflParams
from fedledger.protocols.mudfl.rotation import DynastyState, Rotation
from fedledger.protocols.mudfl.tickets import SortitionKeys
from fedledger.protocols.resources import NodeServices

R = TypeVar("R")

ADMIN = "admin"
SERVER = "server"
AGGREGATOR = "aggregator"
CLIENT = "client"

FAULT_EQUIVOCATE = "equivocate"  # two different blocks in one slot
FAULT_FORGE_CREDIT = "forge_credit"  # claims a credit it does not have
FAULT_WITHHOLD = "withhold_block"  # sends its winning block one slot late
FAULT_DOUBLE_VOTE = "double_vote"  # votes for two checkpoints of one epoch
FAULT_TAMPER_MODEL = "tamper_model"  # its stored model does not match its transaction
FAULT_BAD_PVSS = "bad_pvss"  # deals a RandShare transcript that fails verification
FAULT_GRIND_POC = "grind_poc"  # tries up to grind_tries tx subsets for a winning PoC proof
FAULTS = (
    FAULT_EQUIVOCATE,
    FAULT_FORGE_CREDIT,
    FAULT_WITHHOLD,
    FAULT_DOUBLE_VOTE,
    FAULT_TAMPER_MODEL,
    FAULT_BAD_PVSS,
    FAULT_GRIND_POC,
)

#: What the authenticator binds the global model to (the "training program").
PROGRAM = b"mudfl/training-program/v1"


def authenticator(model_sha256: bytes) -> bytes:
    """H(training program, global model)."""
    return hashlib.sha256(PROGRAM + model_sha256).digest()


@dataclass(frozen=True)
class Context:
    setup: NodeSetup[MuDflParams]
    params: MuDflParams
    services: NodeServices
    gate: Gate
    admin: str
    server: str
    aggregator: str
    clients: tuple[str, ...]
    everyone: tuple[str, ...]
    state: DynastyState  # mutable: the dynasty in charge changes on takeover
    rotation: Rotation
    keys: SortitionKeys  # VRF keys for committee tickets (registered, or seed-derived)

    @classmethod
    def of(cls, setup: NodeSetup[MuDflParams]) -> Context:
        params = setup.params
        svc = setup.services
        roles: dict[str, list[str]] = {}
        for plan in setup.all_nodes:
            roles.setdefault(plan.role, []).append(plan.node_id)
        clients = tuple(sorted(roles.get(CLIENT, [])))
        credits = {c: params.credit_init for c in clients}
        keys = SortitionKeys.of(svc.extra, setup.node_id, clients, setup.seed)
        if keys.derived:  # every node can compute every ticket: dynasty 0 by VRF as well
            dynasty = draw(0, svc.genesis.hash, clients, credits, params.committee, setup.seed)
        else:
            dynasty = d_init(svc.genesis.hash, clients, credits, params.committee)
        everyone = tuple(sorted(p.node_id for p in setup.all_nodes))
        addresses = {n: svc.address_of(n) for n in everyone}
        aggregator = roles[AGGREGATOR][0]
        rotation = Rotation(
            params, svc.ledger, clients, setup.seed, addresses, aggregator, keys.public
        )
        return cls(
            setup,
            params,
            svc,
            Gate(Verifier(svc.directory)),
            roles[ADMIN][0],
            roles[SERVER][0],
            roles[AGGREGATOR][0],
            clients,
            everyone,
            DynastyState(dynasty),
            rotation,
            keys,
        )

    @property
    def dynasty(self) -> Dynasty:
        """The dynasty in charge now."""
        return self.state.current

    @property
    def node_id(self) -> str:
        return self.setup.node_id

    @property
    def address(self) -> bytes:
        return self.services.keys.address

    @property
    def in_committee(self) -> bool:
        return self.node_id in self.dynasty.committee

    def committee_addresses(self) -> tuple[bytes, ...]:
        return tuple(self.services.address_of(n) for n in self.dynasty.committee)

    def has_fault(self, fault: str) -> bool:
        return fault in self.setup.faults

    def sign(self, rec: R) -> R:
        return sign(rec, self.services.keys)
