"""What every role of a device shares: identity, parameters, stores, gate and checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from fedledger.ledger.records import sign
from fedledger.ledger.verify import Verifier
from fedledger.protocols.base import NodeSetup
from fedledger.protocols.kit.blobs import ModelBlobs
from fedledger.protocols.kit.gate import Gate
from fedledger.protocols.posbfl.checks import RecordChecks
from fedledger.protocols.posbfl.params import PosBflParams
from fedledger.protocols.resources import NodeServices

R = TypeVar("R")

FAULT_FLIP_VOTES = "flip_votes"
FAULT_FORGE_BLOCK = "forge_block"
FAULT_WITHHOLD_BLOCK = "withhold_block"
FAULTS = (FAULT_FLIP_VOTES, FAULT_FORGE_BLOCK, FAULT_WITHHOLD_BLOCK)


@dataclass(frozen=True)
class DeviceContext:
    setup: NodeSetup[PosBflParams]
    params: PosBflParams
    services: NodeServices
    gate: Gate
    checks: RecordChecks
    blobs: ModelBlobs
    devices: tuple[str, ...]

    @classmethod
    def of(cls, setup: NodeSetup[PosBflParams]) -> DeviceContext:
        params = setup.params
        svc = setup.services
        gate = Gate(Verifier(svc.directory))
        checks = RecordChecks(gate, params, svc.node_of)
        blobs = ModelBlobs(svc.blob_store, tuple(setup.initial_weights.shape))
        devices = tuple(sorted(p.node_id for p in setup.all_nodes))
        return cls(setup, params, svc, gate, checks, blobs, devices)

    @property
    def node_id(self) -> str:
        return self.setup.node_id

    @property
    def address(self) -> bytes:
        return self.services.keys.address

    def has_fault(self, fault: str) -> bool:
        return fault in self.setup.faults

    def sign(self, rec: R) -> R:
        return sign(rec, self.services.keys)
