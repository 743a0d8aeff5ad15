"""DP-FedAvg for vanilla (``protocol.dp``), as Flower offers it, and per-node privacy ledgers.

Two modes (McMahan et al., ICLR 2018; Flower's ``DifferentialPrivacyServerSideFixedClipping``
and ``LocalDpMod``), both on the client update ``delta_i = w_i - w_global``:

* ``central``: the server clips each sampled client's update to L2 norm ``clip``,
  aggregates the clipped models with the configured rule (fedavg or weighted_fedavg),
  then adds N(0, (noise_multiplier * clip / m)^2) per coordinate, m the number of clients
  sampled in the round (Flower's calibration, exact for the unweighted mean). The
  guarantee is user level (one client's whole data) against anyone who sees the global
  models, not against the server, which sees every update in the clear. Each round is
  one Poisson-subsampled Gaussian step at rate q = m / N, priced over the rounds.
* ``local``: each client clips its own update and adds N(0, (noise_multiplier * clip)^2)
  before sending: the server sees only noised updates. Each participation is one
  Gaussian step (rate 1: the server knows who took part).

The noise is ``noise_multiplier`` or follows from ``target_epsilon`` (with ``delta``)
over the whole run (every round counted: the worst case for a client under sampling).
``max_epsilon`` caps the run: in central mode the server finishes before a round that
would exceed it; in local mode the server samples only clients with budget left (and
finishes when none is left), and a client refuses to train past it. Clients also compose
any DP-SGD solver costs (``train.solver: dp_sgd``) and stop before a job that would take
them over the solver's ``max_epsilon``. Every node that spends privacy emits
``epsilon_spent`` (cumulative) each round.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from fedledger.learning.aggregate import Update
from fedledger.learning.jobs import PrivacyCost, TrainResult
from fedledger.privacy.dp.accountants import epsilon_for, noise_multiplier_for
from fedledger.privacy.dp.ledger import PrivacyLedger
from fedledger.protocols.base import EmitMetric
from fedledger.seeding import derive_seed

#: aggregation rules DP-FedAvg composes with (a robust rule would change the sensitivity)
DP_AGGREGATORS = frozenset({"fedavg", "weighted_fedavg"})
EPSILON_METRIC = "epsilon_spent"


class DPFedAvgParams(BaseModel):
    """``protocol.dp``: DP-FedAvg, central or local (see the module doc)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["central", "local"]
    clip: float = Field(gt=0.0, description="L2 bound on each client update")
    noise_multiplier: float | None = Field(None, ge=0.0, description="noise std / clip")
    target_epsilon: float | None = Field(None, gt=0.0, description="epsilon over the run")
    delta: float = Field(1e-5, gt=0.0, lt=1.0)
    accountant: Literal["rdp", "pld"] = "rdp"
    max_epsilon: float | None = Field(None, gt=0.0, description="stop before exceeding it")

    @model_validator(mode="after")
    def _one_noise(self) -> DPFedAvgParams:
        if (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise ValueError(
                "give exactly one of noise_multiplier (>= 0) or target_epsilon (> 0), got "
                f"noise_multiplier={self.noise_multiplier}, target_epsilon={self.target_epsilon}"
            )
        return self

    def noise_for(self, sample_rate: float, rounds: int) -> float:
        """The noise multiplier: as given, or calibrated to target_epsilon over ``rounds``."""
        if self.noise_multiplier is not None:
            return self.noise_multiplier
        assert self.target_epsilon is not None
        return noise_multiplier_for(
            self.target_epsilon, self.delta, sample_rate, rounds, self.accountant
        )

    def cost(self, noise_multiplier: float, sample_rate: float) -> PrivacyCost:
        return PrivacyCost(
            "gaussian", noise_multiplier, sample_rate, 1, self.delta, self.accountant,
            self.max_epsilon,
        )


def clip_model(current: np.ndarray, weights: np.ndarray, clip: float) -> np.ndarray:
    """``weights`` with its update ``weights - current`` clipped to L2 norm ``clip``.

    Returned as given (the same array) when the update is within the bound, so that
    clipping that does not bite leaves FedAvg bit for bit unchanged."""
    delta = weights.astype(np.float64) - current.astype(np.float64)
    norm = float(np.linalg.norm(delta))
    if norm <= clip:
        return weights
    clipped = current.astype(np.float64) + delta * (clip / norm)
    return clipped.astype(np.float32)


def gaussian(shape: tuple[int, ...], std: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, std, size=shape)


class ServerDP:
    """The server's side of DP-FedAvg: eligibility under the budget, clipping, noise."""

    def __init__(
        self, params: DPFedAvgParams, seed: int, rounds: int, num_clients: int, per_round: int
    ) -> None:
        self.params = params
        self.seed = seed
        self.rate = per_round / num_clients if params.mode == "central" else 1.0
        self.noise_multiplier = params.noise_for(self.rate, rounds)
        self.round_cost = params.cost(self.noise_multiplier, self.rate)
        self.ledger = PrivacyLedger(params.accountant, params.delta, params.max_epsilon)
        self.participations: dict[str, int] = {}
        self.allowance = self._allowance(rounds) if params.mode == "local" else rounds

    def _allowance(self, rounds: int) -> int:
        """How many times a client may take part within max_epsilon (local mode)."""
        budget = self.params.max_epsilon
        if budget is None:
            return rounds
        allowed = 0
        while allowed < rounds and epsilon_for(
            self.noise_multiplier, self.params.delta, 1.0, allowed + 1, self.params.accountant
        ) <= budget:
            allowed += 1
        return allowed

    def eligible(self, clients: Sequence[str]) -> tuple[str, ...]:
        """The clients that may be sampled next round (none: the run is over)."""
        if self.params.mode == "central":
            return () if self.ledger.would_exceed(self.round_cost) else tuple(clients)
        return tuple(c for c in clients if self.participations.get(c, 0) < self.allowance)

    def sampled(self, clients: Sequence[str]) -> None:
        for c in clients:
            self.participations[c] = self.participations.get(c, 0) + 1

    def clip(self, current: np.ndarray, updates: list[Update]) -> list[Update]:
        """Central mode: each update's model with its update clipped; else as given."""
        if self.params.mode != "central":
            return updates
        clip = self.params.clip
        return [replace(u, weights=clip_model(current, u.weights, clip)) for u in updates]

    def noise(self, aggregate: np.ndarray, sampled: int, round_: int) -> np.ndarray:
        """Central mode: the aggregate plus N(0, (z * clip / sampled)^2); else as given."""
        if self.params.mode != "central" or self.noise_multiplier == 0:
            return aggregate
        std = self.noise_multiplier * self.params.clip / max(1, sampled)
        seed = derive_seed(self.seed, "dp-central", round_)
        noised = aggregate.astype(np.float64) + gaussian(aggregate.shape, std, seed)
        return noised.astype(np.float32)

    def metrics(self, round_: int) -> list[EmitMetric]:
        """Central mode: record the round and emit the epsilon spent so far."""
        if self.params.mode != "central":
            return []
        spent = self.ledger.record(self.round_cost)
        return [EmitMetric(EPSILON_METRIC, spent.epsilon, round_)]


class ClientPrivacy:
    """A client's privacy: local DP-FedAvg noise, and the ledger of all it spends.

    ``params`` None: no protocol-level DP; the client still composes DP-SGD costs that
    its training results carry."""

    def __init__(
        self, params: DPFedAvgParams | None, seed: int, node_id: str, rounds: int
    ) -> None:
        self.params = params if params is not None and params.mode == "local" else None
        self.seed = seed
        self.node_id = node_id
        self.ledger: PrivacyLedger | None = None
        self.local_cost: PrivacyCost | None = None
        self.last_train: PrivacyCost | None = None
        if self.params is not None:
            z = self.params.noise_for(1.0, rounds)
            self.local_cost = self.params.cost(z, 1.0)
            self.ledger = PrivacyLedger.for_cost(self.local_cost)

    def exhausted(self) -> bool:
        """Whether the next round's training and release would exceed a budget."""
        if self.ledger is None:
            return False
        upcoming = [c for c in (self.last_train, self.local_cost) if c is not None]
        if self.ledger.would_exceed(*upcoming):
            return True
        budget = self.last_train.budget if self.last_train is not None else None
        return budget is not None and self.ledger.spent_after(*upcoming).epsilon > budget

    def release(
        self, current: np.ndarray, result: TrainResult, round_: int
    ) -> tuple[np.ndarray, list[EmitMetric]]:
        """The weights to send for ``result`` (local mode: clipped and noised update) and
        the ``epsilon_spent`` metric when the client spends privacy."""
        costs: list[PrivacyCost] = []
        weights = result.weights
        if result.privacy is not None:
            self.last_train = result.privacy
            costs.append(result.privacy)
        if self.params is not None and self.local_cost is not None:
            clipped = clip_model(current, weights, self.params.clip)
            std = self.local_cost.noise_multiplier * self.params.clip
            if std > 0:
                seed = derive_seed(self.seed, "dp-local", self.node_id, round_)
                noised = clipped.astype(np.float64) + gaussian(clipped.shape, std, seed)
                clipped = noised.astype(np.float32)
            weights = clipped
            costs.append(self.local_cost)
        if not costs:
            return weights, []
        if self.ledger is None:
            self.ledger = PrivacyLedger.for_cost(costs[0])
        for cost in costs:
            spent = self.ledger.record(cost)
        value = spent.epsilon if not math.isnan(spent.epsilon) else math.inf
        return weights, [EmitMetric(EPSILON_METRIC, value, round_)]
