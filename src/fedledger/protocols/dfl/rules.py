"""The built-in update rules.

- ``halffedavg`` (eq. 2): half the node's model, half the mean of the buffer.
- ``reputation-0.05`` (eq. 3-4): weights reputation * accuracy; the creators of the
  least accurate models lose ``penalty`` reputation.
- ``filtered`` (ours): keeps out models that are far from the node's own in scale
  (random or biased models: |w|/|own| outside [1/r, r]), far less accurate than the
  best of the buffer (by more than ``accuracy_margin``), or copies of a model it
  already received from another generator (the fake-contribution attack). It averages
  the rest weighted by reputation (optionally times accuracy, which hurts on non-IID
  data, where an honest neighbour's model may score low on local labels) and mixes in
  ``own_weight`` of the own model (0.1: more consensus than eq. 2's 0.5, which is what
  non-IID nodes need). Reputation is additive: +reward when accepted, -penalty when
  refused, 0 for a copier; it starts at ``initial`` and grows only by contributing
  models that pass the filters.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from fedledger.learning.aggregate.base import AggregationContext, Update
from fedledger.learning.aggregate.basic import ReputationParams, halffedavg, reputation_weighted
from fedledger.protocols.dfl.reputation import (
    UPDATE_RULES,
    ReceivedModel,
    UpdateRule,
    Vector,
    check_rule,
)
from fedledger.registry import NoParams

__all__ = ["UPDATE_RULES", "Filtered", "HalfFedAvg", "Reputation005", "check_rule"]


def _updates(received: Sequence[ReceivedModel]) -> list[Update]:
    return [Update(m.weights, sender=m.generator, accuracy=m.accuracy) for m in received]


class HalfFedAvg(UpdateRule):
    """Eq. 2: (mean of the buffer + own model) / 2; reputation unchanged."""

    def update_model(self, current, own_accuracy, received, reputation):  # type: ignore[no-untyped-def]
        model = halffedavg(_updates(received), AggregationContext(current=current))
        return model, dict(reputation)


class Reputation005(UpdateRule):
    """Eq. 3-4 with the paper's punishment of the least accurate model's creator."""

    def __init__(self, penalty: float = 0.05, initial_reputation: float = 1.0) -> None:
        self.penalty = penalty
        self.initial_reputation = initial_reputation

    def update_model(self, current, own_accuracy, received, reputation):  # type: ignore[no-untyped-def]
        return reputation_weighted(
            _updates(received),
            current,
            reputation,
            penalty=self.penalty,
            initial_reputation=self.initial_reputation,
        )


class FilteredParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_norm_ratio: float = Field(2.0, gt=1.0, description="refuse |w|/|own| outside [1/r, r]")
    accuracy_margin: float = Field(0.8, ge=0.0, le=1.0, description="refuse acc < best - margin")
    duplicate_distance: float = Field(
        1e-3, ge=0.0, description="relative distance under which a model is a copy"
    )
    memory: int = Field(32, ge=0, description="models remembered for the copy check")
    initial: float = Field(0.5, ge=0.0, le=1.0)
    reward: float = Field(0.05, ge=0.0, le=1.0)
    penalty: float = Field(0.1, ge=0.0, le=1.0)
    own_weight: float = Field(0.1, gt=0.0, lt=1.0, description="share of the own model")
    by_accuracy: bool = Field(False, description="weight by reputation * accuracy, not reputation")


class Filtered(UpdateRule):
    """Accuracy-relative and scale filtering, copy detection, reputation-weighted mean."""

    def __init__(self, **values: float | bool | int) -> None:
        self.p = FilteredParams(**values)
        self.seen: deque[tuple[str, Vector, float]] = deque(maxlen=self.p.memory)

    def _copy_of(self, model: ReceivedModel) -> str | None:
        """The generator of an earlier model this one (nearly) equals, if another node
        (a model its own generator sent before is no copy)."""
        found = None
        for generator, weights, norm in self.seen:
            distance = float(np.linalg.norm(model.weights - weights))
            if distance <= self.p.duplicate_distance * max(norm, 1e-12):
                if generator == model.generator:
                    return None
                found = found or generator
        return found

    def update_model(
        self,
        current: Vector,
        own_accuracy: float,
        received: Sequence[ReceivedModel],
        reputation: Mapping[str, float],
    ) -> tuple[Vector, dict[str, float]]:
        p = self.p
        table = dict(reputation)
        own_norm = float(np.linalg.norm(current))
        best = max(m.accuracy for m in received)
        accepted: list[ReceivedModel] = []
        for m in received:
            table.setdefault(m.generator, p.initial)
            norm = float(np.linalg.norm(m.weights))
            copied = self._copy_of(m)
            if p.memory and copied is None:
                self.seen.append((m.generator, m.weights, norm))
            ratio = norm / own_norm if own_norm > 0 else 1.0
            if copied is not None:
                table[m.generator] = 0.0
                continue
            if not (1 / p.max_norm_ratio <= ratio <= p.max_norm_ratio) or not np.isfinite(norm):
                table[m.generator] = max(0.0, table[m.generator] - p.penalty)
                continue
            if m.accuracy < best - p.accuracy_margin:
                table[m.generator] = max(0.0, table[m.generator] - p.penalty)
                continue
            table[m.generator] = min(1.0, table[m.generator] + p.reward)
            accepted.append(m)
        weights = np.array(
            [table[m.generator] * (m.accuracy if p.by_accuracy else 1.0) for m in accepted],
            dtype=np.float64,
        )
        if not accepted or weights.sum() <= 0:
            return np.asarray(current, dtype=np.float32), table
        weights /= weights.sum()
        mixed = np.zeros(current.shape, dtype=np.float64)
        for w, m in zip(weights, accepted, strict=True):
            mixed += w * m.weights
        model = p.own_weight * current.astype(np.float64) + (1 - p.own_weight) * mixed
        return model.astype(np.float32), {k: round(v, 12) for k, v in table.items()}


UPDATE_RULES.add("halffedavg", HalfFedAvg, NoParams, HalfFedAvg.__doc__ or "")
UPDATE_RULES.add("reputation-0.05", Reputation005, ReputationParams, Reputation005.__doc__ or "")
UPDATE_RULES.add("filtered", Filtered, FilteredParams, Filtered.__doc__ or "")
