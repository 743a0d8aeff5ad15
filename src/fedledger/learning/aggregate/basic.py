"""The averaging rules: FedAvg, sample-weighted FedAvg, and the DFL paper's two rules.

DFL (Tian et al., "DFL: High-Performance Blockchain-Based Federated Learning") updates a
node's own model ``model_prev`` (``context.current`` here) with the N models of its
buffer:

- HalfFedAvg, eq. 2: ``model_next = (sum_n model_n / N + model_prev) / 2``.
- reputation-0.05, eq. 3-4: ``weight_n = reputation_n * accuracy_n`` and
  ``model_next = (sum_n weight_n / sum_m weight_m * model_n + model_prev) / 2``, where
  accuracy_n is the accuracy the aggregating node measured for model n on its local data
  and reputation_n the aggregating node's reputation (0..1, initially 1) of the model's
  creator. Afterwards the creator of each model with the lowest accuracy in the buffer
  loses 0.05 reputation (not below 0). When every weight is 0 (all reputations 0) the
  rule falls back to HalfFedAvg. As in the authors' reference implementation
  (DFL's reputation_sdk sample ``reputation_005``), the weights use the reputations from
  before this round's punishment, and ties for the lowest accuracy are all punished.

All rules return float32 vectors and never modify their inputs. Sums are accumulated in
float64, one update after another in the given order, with plain element-wise numpy
arithmetic (no BLAS), so the same updates give bit-identical results on any machine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from fedledger.learning.aggregate.base import (
    AGGREGATORS,
    AggregationContext,
    AggregationError,
    Aggregator,
    Update,
    Vector,
    stack,
)
from fedledger.registry import NoParams


def _combine(matrix: np.ndarray, coefficients: np.ndarray) -> Vector:
    """sum_i coefficients[i] * matrix[i], accumulated in float64 in row order, as float32."""
    total = np.zeros(matrix.shape[1], dtype=np.float64)
    for c, row in zip(coefficients, matrix, strict=True):
        total += np.float64(c) * row
    return total.astype(np.float32)


def _mean(matrix: np.ndarray) -> np.ndarray:
    """Row mean accumulated in float64, as float32."""
    return matrix.mean(axis=0, dtype=np.float64).astype(np.float32)


def _current(current: Vector | None, size: int, rule: str) -> np.ndarray:
    """The aggregating node's own model as float32, checked against the updates' size."""
    if current is None:
        raise AggregationError(f"{rule} needs the node's own model in context.current")
    current = np.asarray(current, dtype=np.float32)
    if current.shape != (size,):
        raise AggregationError(
            f"{rule}: context.current has shape {current.shape}, the updates ({size},)"
        )
    return current


# ---------------------------------------------------------------- FedAvg


def fedavg(updates: Sequence[Update], context: AggregationContext) -> Vector:
    """FedAvg with equal weights: the plain mean of the updates' weights."""
    return _mean(stack(updates))


def weighted_fedavg(updates: Sequence[Update], context: AggregationContext) -> Vector:
    """FedAvg (McMahan et al. 2017): the mean weighted by each update's num_samples."""
    matrix = stack(updates)
    counts = np.array([u.num_samples for u in updates], dtype=np.float64)
    if (counts < 0).any():
        bad = [(u.sender, u.num_samples) for u in updates if u.num_samples < 0]
        raise AggregationError(f"num_samples must be >= 0; got (sender, num_samples) {bad}")
    total = counts.sum()
    if total <= 0:
        raise AggregationError(
            f"weighted_fedavg needs a positive total num_samples, got {total:g} "
            f"over {len(updates)} updates"
        )
    return _combine(matrix, counts / total)


# ---------------------------------------------------------------- DFL rules


def halffedavg(updates: Sequence[Update], context: AggregationContext) -> Vector:
    """DFL HalfFedAvg (eq. 2): half the node's own model, half the mean of the received."""
    matrix = stack(updates)
    current = _current(context.current, matrix.shape[1], "halffedavg")
    return (current + _mean(matrix)) * np.float32(0.5)


def reputation_weights(
    updates: Sequence[Update], reputation: Mapping[str, float], initial_reputation: float = 1.0
) -> np.ndarray:
    """Normalised eq. 3 weights ``reputation * accuracy`` (equal weights when all are 0)."""
    accuracy = _accuracies(updates)
    rep = np.array([reputation.get(u.sender, initial_reputation) for u in updates])
    raw = rep * accuracy
    total = raw.sum()
    if total <= 0:
        return np.full(len(updates), 1.0 / len(updates))
    return raw / total


def _accuracies(updates: Sequence[Update]) -> np.ndarray:
    bad = [
        (u.sender, u.accuracy)
        for u in updates
        if u.accuracy is None or not 0.0 <= u.accuracy <= 1.0
    ]
    if bad:
        raise AggregationError(
            "reputation weighting needs each update's measured accuracy in [0, 1]; "
            f"got (sender, accuracy) {bad}"
        )
    return np.array([u.accuracy for u in updates], dtype=np.float64)


def reputation_weighted(
    updates: Sequence[Update],
    current: Vector | None,
    reputation: Mapping[str, float],
    *,
    penalty: float = 0.05,
    initial_reputation: float = 1.0,
) -> tuple[Vector, dict[str, float]]:
    """DFL reputation-0.05 (eq. 3-4) as a pure function: (new model, new reputation table).

    ``reputation`` maps sender to reputation; senders missing from it start at
    ``initial_reputation``. The returned table holds every entry of ``reputation`` plus
    each sender of ``updates``, with the creators of the least accurate models (ties
    included, once per such model) lowered by ``penalty``, not below 0. Values are
    rounded to 12 decimals so that repeated penalties reach 0 exactly.
    """
    matrix = stack(updates)
    own = _current(current, matrix.shape[1], "reputation")
    coefficients = reputation_weights(updates, reputation, initial_reputation)
    model = (own + _combine(matrix, coefficients)) * np.float32(0.5)
    new_reputation = dict(reputation)
    for u in updates:
        new_reputation.setdefault(u.sender, initial_reputation)
    lowest = _accuracies(updates).min()
    for u in updates:
        if u.accuracy == lowest:
            new_reputation[u.sender] = max(0.0, round(new_reputation[u.sender] - penalty, 12))
    return model, new_reputation


# ---------------------------------------------------------------- registry


class ReputationParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    penalty: float = Field(0.05, ge=0, le=1, description="reputation lost by the worst model")
    initial_reputation: float = Field(1.0, ge=0, le=1, description="reputation of a new peer")


def _fedavg() -> Aggregator:
    """FedAvg: plain mean of the updates."""
    return fedavg


def _weighted_fedavg() -> Aggregator:
    """FedAvg weighted by each update's num_samples."""
    return weighted_fedavg


def _halffedavg() -> Aggregator:
    """DFL HalfFedAvg: (mean of received + own model) / 2."""
    return halffedavg


def _reputation(penalty: float = 0.05, initial_reputation: float = 1.0) -> Aggregator:
    """DFL reputation-0.05: (reputation*accuracy-weighted mean + own model) / 2.

    The aggregator form reads ``context.reputation`` and returns only the model; a
    protocol that keeps the table calls :func:`reputation_weighted` to get it updated.
    """

    def aggregate(updates: Sequence[Update], context: AggregationContext) -> Vector:
        model, _ = reputation_weighted(
            updates,
            context.current,
            context.reputation,
            penalty=penalty,
            initial_reputation=initial_reputation,
        )
        return model

    return aggregate


AGGREGATORS.add("fedavg", _fedavg, NoParams)
AGGREGATORS.add("weighted_fedavg", _weighted_fedavg, NoParams)
AGGREGATORS.add("halffedavg", _halffedavg, NoParams)
AGGREGATORS.add("reputation", _reputation, ReputationParams)
