"""What every role of a device shares: identity, parameters, stores and the gate."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from fedledger.errors import FedledgerError
from fedledger.learning.weights import Layout, from_safetensors, to_safetensors
from fedledger.ledger.records import ModelRef, sign
from fedledger.ledger.verify import Verifier
from fedledger.protocols.base import NodeSetup
from fedledger.protocols.posbfl.checks import Gate
from fedledger.protocols.posbfl.params import PosBflParams
from fedledger.protocols.resources import NodeServices

R = TypeVar("R")

FAULT_FLIP_VOTES = "flip_votes"
FAULT_FORGE_BLOCK = "forge_block"
FAULT_WITHHOLD_BLOCK = "withhold_block"
FAULTS = (FAULT_FLIP_VOTES, FAULT_FORGE_BLOCK, FAULT_WITHHOLD_BLOCK)


@dataclass(frozen=True)
class DeviceContext:
    setup: NodeSetup
    params: PosBflParams
    services: NodeServices
    gate: Gate
    devices: tuple[str, ...]

    @classmethod
    def of(cls, setup: NodeSetup) -> DeviceContext:
        params = setup.params
        if not isinstance(params, PosBflParams):
            raise TypeError(f"posbfl needs PosBflParams, got {type(params).__name__}")
        svc = setup.services
        if svc is None:
            raise ValueError("posbfl keeps a chain: the host must give every node NodeServices")
        gate = Gate(Verifier(svc.directory), params, svc.node_of, Counter())
        devices = tuple(sorted(p.node_id for p in setup.all_nodes))
        return cls(setup, params, svc, gate, devices)

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

    def store_model(self, weights: np.ndarray, num_samples: int) -> ModelRef:
        """Put a model into this device's blob store; its reference for a transaction."""
        blob = to_safetensors(weights, Layout((("weights", (int(weights.shape[0]),)),)))
        cid = self.services.blobs.put(blob)
        return ModelRef(cid=cid, sha256=hashlib.sha256(blob).digest(), num_samples=num_samples)

    def model_from(self, data: bytes, ref: ModelRef) -> np.ndarray | None:
        """The weights in ``data`` if they match ``ref`` and the model's size, else None."""
        if hashlib.sha256(data).digest() != ref.sha256:
            return None
        try:
            vector, _ = from_safetensors(data)
        except FedledgerError:
            return None
        if vector.shape != self.setup.initial_weights.shape or not np.all(np.isfinite(vector)):
            return None
        return vector

    def own_model(self, ref: ModelRef) -> np.ndarray | None:
        """A model from this device's own blob store, if it holds it."""
        blobs = self.services.blobs
        try:
            if not blobs.has(ref.cid):
                return None
            return self.model_from(blobs.get(ref.cid), ref)
        except (FedledgerError, ValueError):
            return None
