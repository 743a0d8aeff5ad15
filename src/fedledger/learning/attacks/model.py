"""Model poisoning by the attacker alone: it rewrites its own trained model each round.

gaussian_noise: trained + N(0, sigma^2) per weight (PoS-BFL's noise attack uses variance
    1, the default sigma = 1).
random_model: fresh weights drawn N(mean, std^2) with the mean and standard deviation of
    the trained vector (or std = ``scale`` when given): a random model of the same scale.
sign_flip: start - scale * (trained - start), the update reversed (Damaskinos et al.
    2018, Li et al. 2019's sign-flipping attack).
scaling: start + factor * (trained - start), boosting the update so it survives averaging
    (Bhagoji et al. 2019's explicit boosting, Bagdasaryan et al. 2020's model replacement).

All work in float64 and return a float32 vector of the trained model's length; random
draws come from ``context.seed`` alone, so one seed gives one poisoned model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import Field

from fedledger.learning.attacks.base import ATTACKS, Attack, AttackContext, Vector
from fedledger.learning.attacks.common import AttackParams, vector


def delta(trained: Vector, context: AttackContext) -> tuple[np.ndarray, np.ndarray]:
    """(start, trained - start) in float64, checked to be of one length."""
    start = vector(context.start).astype(np.float64)
    own = vector(trained).astype(np.float64)
    if start.shape != own.shape:
        raise ValueError(f"trained model has shape {own.shape}, start model {start.shape}")
    return start, own - start


@dataclass(frozen=True)
class GaussianNoise(Attack):
    """Gaussian noise of standard deviation ``sigma`` added to every weight."""

    sigma: float = 1.0

    def poison_model(self, trained: Vector, context: AttackContext) -> Vector:
        own = vector(trained)
        noise = np.random.default_rng(context.seed).normal(0.0, self.sigma, own.shape)
        return (own + noise).astype(np.float32)


@dataclass(frozen=True)
class RandomModel(Attack):
    """Random weights with the trained model's mean and spread (or std ``scale``)."""

    scale: float | None = None

    def poison_model(self, trained: Vector, context: AttackContext) -> Vector:
        own = vector(trained).astype(np.float64)
        std = float(own.std()) if self.scale is None else self.scale
        rng = np.random.default_rng(context.seed)
        return rng.normal(float(own.mean()), std, own.shape).astype(np.float32)


@dataclass(frozen=True)
class SignFlip(Attack):
    """Sign flipping: start - scale * (trained - start)."""

    scale: float = 1.0

    def poison_model(self, trained: Vector, context: AttackContext) -> Vector:
        start, step = delta(trained, context)
        return (start - self.scale * step).astype(np.float32)


@dataclass(frozen=True)
class Scaling(Attack):
    """Scaling (boosting): start + factor * (trained - start)."""

    factor: float = 10.0

    def poison_model(self, trained: Vector, context: AttackContext) -> Vector:
        start, step = delta(trained, context)
        return (start + self.factor * step).astype(np.float32)


class GaussianNoiseParams(AttackParams):
    sigma: float = Field(1.0, gt=0.0, description="standard deviation of the added noise")


class RandomModelParams(AttackParams):
    scale: float | None = Field(
        None, gt=0.0, description="std of the random weights; default the trained model's"
    )


class SignFlipParams(AttackParams):
    scale: float = Field(1.0, gt=0.0, description="length of the reversed update, in updates")


class ScalingParams(AttackParams):
    factor: float = Field(10.0, gt=0.0, description="boost of the update")


ATTACKS.add("gaussian_noise", GaussianNoise, GaussianNoiseParams)
ATTACKS.add("random_model", RandomModel, RandomModelParams)
ATTACKS.add("sign_flip", SignFlip, SignFlipParams)
ATTACKS.add("scaling", Scaling, ScalingParams)
