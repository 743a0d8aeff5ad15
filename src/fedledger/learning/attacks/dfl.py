"""The model attacks of the DFL authors' simulator that the generic library lacks.

uniform_model: the paper's model-poisoning attacker (section V-B): it trains normally
    but sends a random model whose weights are uniform in [low, high) (default
    [0, 0.001), as in the paper).
random_model_by_turn: one good model, then one uniform random model, in turn.
biased_model: the trained weights minus a uniform draw in [0, max_bias) per weight
    (the simulator's "random model biased 0-0.1").

The DFL data attacks map to registered ones: shuffled labels = ``label_flip`` with a
``mapping``; labels shifted by one = ``label_flip`` with mapping [1, 2, ..., 9, 0];
random data = ``random_data``. The duplication attack is the protocol fault
``duplicate`` of ``dfl``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydantic import Field, model_validator

from fedledger.learning.attacks.base import ATTACKS, Attack, AttackContext, Vector
from fedledger.learning.attacks.common import AttackParams, vector


def _uniform(shape: tuple[int, ...], low: float, high: float, seed: int) -> Vector:
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


@dataclass(frozen=True)
class UniformModel(Attack):
    """A uniform random model in [low, high) instead of the trained one."""

    low: float = 0.0
    high: float = 0.001

    def poison_model(self, trained: Vector, context: AttackContext) -> Vector:
        return _uniform(vector(trained).shape, self.low, self.high, context.seed)


@dataclass
class RandomModelByTurn(Attack):
    """Good and uniform random models in turn (the first is good). Keeps a counter, so
    one instance serves one node (the host builds an attack object per node)."""

    low: float = 0.0
    high: float = 0.001
    turns: int = field(default=0, compare=False)

    def poison_model(self, trained: Vector, context: AttackContext) -> Vector:
        self.turns += 1
        if self.turns % 2 == 1:
            return vector(trained)
        return _uniform(vector(trained).shape, self.low, self.high, context.seed)


@dataclass(frozen=True)
class BiasedModel(Attack):
    """Every weight lowered by a uniform draw in [0, max_bias)."""

    max_bias: float = 0.1

    def poison_model(self, trained: Vector, context: AttackContext) -> Vector:
        own = vector(trained)
        return (own - _uniform(own.shape, 0.0, self.max_bias, context.seed)).astype(np.float32)


class UniformParams(AttackParams):
    low: float = Field(0.0, description="lower bound of the random weights")
    high: float = Field(0.001, description="upper bound of the random weights")

    @model_validator(mode="after")
    def _order(self) -> UniformParams:
        if not self.low < self.high:
            raise ValueError(f"need low < high, got low={self.low}, high={self.high}")
        return self


class BiasedParams(AttackParams):
    max_bias: float = Field(0.1, gt=0.0, description="largest amount subtracted per weight")


ATTACKS.add("uniform_model", UniformModel, UniformParams)
ATTACKS.add("random_model_by_turn", RandomModelByTurn, UniformParams)
ATTACKS.add("biased_model", BiasedModel, BiasedParams)
