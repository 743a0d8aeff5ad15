"""The contract of every aggregation rule.

An aggregation rule is a pure function from a list of updates (weights plus metadata)
and a context to new weights. Rules with parameters (the robust family's number of
tolerated attackers f, trim fraction beta, ...) are built from the registry with those
parameters and then called like any other rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from fedledger.errors import FedledgerError
from fedledger.registry import Registry

Vector = np.ndarray


@dataclass(frozen=True)
class Update:
    """One model contribution: full weights (not a delta) plus who sent it and why."""

    weights: Vector
    num_samples: int = 1
    sender: str = ""
    accuracy: float | None = None  # as measured by the aggregating node, where known


@dataclass(frozen=True)
class AggregationContext:
    """What the aggregating node knows besides the updates.

    current: the aggregator's current model (the previous global model, or a DFL node's
        own model); rules that work on deltas compute ``update.weights - current``.
    trusted_update: an update computed by the aggregator on trusted data (FLTrust's
        server update), where the rule needs one.
    reputation: sender -> reputation score, for reputation-weighted rules.
    seed: for rules that draw random numbers.
    """

    current: Vector | None = None
    trusted_update: Vector | None = None
    reputation: dict[str, float] = field(default_factory=dict)
    seed: int = 0


class Aggregator(Protocol):
    def __call__(self, updates: Sequence[Update], context: AggregationContext) -> Vector: ...


class AggregationError(FedledgerError, ValueError):
    """A rule cannot aggregate these inputs (too few updates, shapes differ, ...)."""


def stack(updates: Sequence[Update]) -> np.ndarray:
    """Updates' weights as an (n, d) float32 matrix; checks they are non-empty and alike."""
    if not updates:
        raise AggregationError("no updates to aggregate")
    shapes = {u.weights.shape for u in updates}
    if len(shapes) != 1:
        raise AggregationError(f"updates have different shapes: {sorted(shapes)}")
    return np.stack([np.asarray(u.weights, dtype=np.float32) for u in updates])


AGGREGATORS: Registry[Aggregator] = Registry("aggregator")
