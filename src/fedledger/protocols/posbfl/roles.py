"""Roles per round: a seeded shuffle every device computes identically.

The shuffle is :func:`fedledger.consensus.committee.split_roles`: the devices (in
node-id order) are shuffled with ``derive_seed(seed, "posbfl-roles", round)``; the
first ``workers`` are workers, the next ``validators`` validators, the rest miners, so
roles rotate every round and no device stays a miner. Each worker is associated with one
validator drawn with ``derive_seed(seed, "posbfl-assoc", round, worker)``
(:func:`fedledger.consensus.committee.seeded_choice`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from fedledger.consensus.committee import seeded_choice, split_roles
from fedledger.errors import ConfigError
from fedledger.protocols.posbfl.params import PosBflParams

WORKER = "worker"
VALIDATOR = "validator"
MINER = "miner"


@dataclass(frozen=True)
class RoleCounts:
    workers: int
    validators: int
    miners: int


def role_counts(params: PosBflParams, num_devices: int) -> RoleCounts:
    """The per-round counts: the configured ones, or the fractions when all are zero."""
    counts = (params.workers, params.validators, params.miners)
    if any(counts):
        if sum(counts) != num_devices or min(counts) < 1:
            raise ConfigError(
                "protocol.workers",
                f"workers + validators + miners = {params.workers} + {params.validators} + "
                f"{params.miners} must equal nodes.count = {num_devices}, each at least 1 "
                "(or set all three to 0 to use worker_fraction and validator_fraction)",
            )
        return RoleCounts(*counts)
    workers = max(1, round(params.worker_fraction * num_devices))
    validators = max(1, round(params.validator_fraction * num_devices))
    miners = num_devices - workers - validators
    if miners < 1:
        raise ConfigError(
            "protocol.worker_fraction",
            f"{num_devices} devices leave no miner with worker_fraction "
            f"{params.worker_fraction} and validator_fraction {params.validator_fraction}",
        )
    return RoleCounts(workers, validators, miners)


@dataclass(frozen=True)
class RoundRoles:
    """Who does what in one round."""

    round: int
    workers: tuple[str, ...]
    validators: tuple[str, ...]
    miners: tuple[str, ...]

    @cached_property
    def worker_set(self) -> frozenset[str]:
        """The workers, for membership tests in constant time (every vote asks)."""
        return frozenset(self.workers)

    @cached_property
    def validator_set(self) -> frozenset[str]:
        return frozenset(self.validators)

    @cached_property
    def miner_set(self) -> frozenset[str]:
        return frozenset(self.miners)

    def role_of(self, node_id: str) -> str:
        if node_id in self.worker_set:
            return WORKER
        if node_id in self.validator_set:
            return VALIDATOR
        if node_id in self.miner_set:
            return MINER
        raise KeyError(f"{node_id!r} has no role in round {self.round}")


def assign_roles(devices: tuple[str, ...], counts: RoleCounts, seed: int, rnd: int) -> RoundRoles:
    sizes = (counts.workers, counts.validators, counts.miners)
    workers, validators, miners = split_roles(devices, sizes, seed, "posbfl-roles", rnd)
    return RoundRoles(rnd, workers, validators, miners)


def associated_validator(roles: RoundRoles, worker: str, seed: int) -> str:
    """The validator a worker sends its worker-transaction to in this round."""
    return seeded_choice(roles.validators, seed, "posbfl-assoc", roles.round, worker)
