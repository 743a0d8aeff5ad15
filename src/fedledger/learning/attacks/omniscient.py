"""Omniscient model poisoning: attackers that see the honest models of their round.

The host gives them ``context.honest`` (the simulator trains a round's honest nodes first;
a real deployment would need the honest nodes to leak their models). With k honest
models h_1..h_k, their mean mu and coordinate-wise standard deviation sigma (ddof 0):

alie ("A little is enough", Baruch, Baruch and Goldberg 2019): mu - z * sigma, with
    z = Phi^-1((n - s) / n), s = floor(n/2 + 1) - m, n = k + m, m = num_attackers
    (s is raised to 1 when the attackers are a majority), unless ``z`` is given.
ipm (inner-product manipulation, Xie, Koyejo and Gupta 2020): start - epsilon *
    (mu - start), i.e. -epsilon times the mean honest delta.
min_max, min_sum (Shejwalkar and Houmansadr, NDSS 2021): mu + gamma * p, with p the
    inverse unit vector -(mu - start)/||mu - start||, the inverse standard deviation
    -sigma, or the inverse sign -sign(mu - start) (``perturbation``), and gamma the
    largest value, found by bisection, such that the malicious model's largest distance
    to an honest model is at most the largest distance between two honest models
    (min_max), or its sum of squared distances to the honest models is at most the
    largest such sum of an honest model (min_sum).

Fallback: when ``context.honest`` is empty the attacker uses its own trained model as
the only honest one. Then sigma = 0 and no spread is allowed: alie, min_max and min_sum
return the trained model unchanged and ipm returns start - epsilon * (trained - start).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from fedledger.learning.aggregate.robust_common import distances_from_gram
from fedledger.learning.attacks.base import ATTACKS, Attack, AttackContext, Vector
from fedledger.learning.attacks.common import (
    COLUMN_BLOCK,
    AttackParams,
    mean_and_std,
    reference_updates,
    vector,
)

Perturbation = Literal["unit_vector", "std", "sign"]


def alie_z(n: int, num_attackers: int) -> float:
    """Baruch et al.'s z_max for n workers of which ``num_attackers`` are malicious."""
    s = max(math.floor(n / 2 + 1) - num_attackers, 1)
    return NormalDist().inv_cdf((n - s) / n)


@dataclass(frozen=True)
class ALittleIsEnough(Attack):
    """ "A little is enough" (Baruch et al. 2019): mean - z * std of the honest models."""

    omniscient = True
    z: float | None = None

    def poison_model(self, trained: Vector, context: AttackContext) -> Vector:
        honest = reference_updates(trained, context)
        m = max(context.num_attackers, 1)
        z = alie_z(len(honest) + m, m) if self.z is None else self.z
        mean, std = mean_and_std(honest)
        return (mean - z * std).astype(np.float32)


@dataclass(frozen=True)
class InnerProductManipulation(Attack):
    """Inner-product manipulation (Xie et al. 2020): -epsilon times the mean honest delta."""

    omniscient = True
    epsilon: float = 0.5

    def poison_model(self, trained: Vector, context: AttackContext) -> Vector:
        honest = reference_updates(trained, context)
        start = vector(context.start).astype(np.float64)
        mean = honest.mean(axis=0, dtype=np.float64)
        return (start - self.epsilon * (mean - start)).astype(np.float32)


def perturbation_vector(
    kind: Perturbation, honest: np.ndarray, mean: np.ndarray, start: np.ndarray
) -> np.ndarray:
    """Shejwalkar and Houmansadr's perturbation direction p (float64)."""
    if kind == "std":
        return -mean_and_std(honest)[1]
    step = mean - start
    if kind == "sign":
        return -np.sign(step)
    norm = float(np.linalg.norm(step))
    return -step / norm if norm > 0 else np.zeros_like(step)


def spread_stats(
    honest: np.ndarray, mean: np.ndarray, direction: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Gram matrix of the honest models minus their mean, and their dots with ``direction``."""
    k, dim = honest.shape
    gram = np.zeros((k, k))
    dots = np.zeros(k)
    for lo in range(0, dim, COLUMN_BLOCK):
        hi = min(lo + COLUMN_BLOCK, dim)
        block = honest[:, lo:hi].astype(np.float64) - mean[lo:hi]
        gram += block @ block.T
        dots += block @ direction[lo:hi]
    return gram, dots


def largest_feasible(
    feasible: Callable[[float], bool], gamma_init: float, tol: float, max_iter: int
) -> float:
    """Largest gamma >= 0 with ``feasible(gamma)``, for a feasible set [0, gamma*].

    Bisection as in Shejwalkar and Houmansadr's Algorithm 1, except that the search
    interval doubles past ``gamma_init`` while that is still feasible.
    """
    lo, hi = 0.0, gamma_init
    if feasible(hi):
        for _ in range(max_iter):
            lo, hi = hi, 2.0 * hi
            if not feasible(hi):
                break
        else:
            return lo
    for _ in range(max_iter):
        if hi - lo <= tol:
            break
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if feasible(mid) else (lo, mid)
    return lo


@dataclass(frozen=True)
class DistanceBounded(Attack):
    """Shared by min_max and min_sum: mu + gamma * p within the honest models' spread."""

    omniscient = True
    perturbation: Perturbation = "std"
    gamma_init: float = 10.0
    tol: float = 1e-5
    max_iter: int = 100

    #: "max" (min_max) or "sum" (min_sum): what is bounded by the honest models' own.
    bound_kind: ClassVar[Literal["max", "sum"]] = "max"

    def accept(
        self, sq_dist: Callable[[float], np.ndarray], honest_sq: np.ndarray
    ) -> Callable[[float], bool]:
        """Whether gamma keeps the malicious model within the honest models' spread."""
        if self.bound_kind == "max":
            largest = float(honest_sq.max())
            return lambda gamma: float(sq_dist(gamma).max()) <= largest
        largest_sum = float(honest_sq.sum(axis=1).max())
        return lambda gamma: float(sq_dist(gamma).sum()) <= largest_sum

    def gamma(
        self, trained: Vector, context: AttackContext
    ) -> tuple[float, np.ndarray, np.ndarray]:
        """(gamma, mu, p) for this round."""
        honest = reference_updates(trained, context)
        start = vector(context.start).astype(np.float64)
        mean = honest.mean(axis=0, dtype=np.float64)
        direction = perturbation_vector(self.perturbation, honest, mean, start)
        p_sq = float(direction @ direction)
        if p_sq == 0.0:
            return 0.0, mean, direction
        gram, dots = spread_stats(honest, mean, direction)
        centre_sq = np.diag(gram)

        def sq_dist(gamma: float) -> np.ndarray:
            """Squared distances from mu + gamma * p to each honest model."""
            return centre_sq - 2.0 * gamma * dots + gamma * gamma * p_sq

        feasible = self.accept(sq_dist, distances_from_gram(gram))
        return largest_feasible(feasible, self.gamma_init, self.tol, self.max_iter), mean, direction

    def poison_model(self, trained: Vector, context: AttackContext) -> Vector:
        gamma, mean, direction = self.gamma(trained, context)
        return (mean + gamma * direction).astype(np.float32)


@dataclass(frozen=True)
class MinMax(DistanceBounded):
    """Min-max (Shejwalkar and Houmansadr 2021): max distance to honest <= honest max."""

    bound_kind: ClassVar[Literal["max", "sum"]] = "max"


@dataclass(frozen=True)
class MinSum(DistanceBounded):
    """Min-sum (Shejwalkar and Houmansadr 2021): sum of squared distances <= honest max."""

    bound_kind: ClassVar[Literal["max", "sum"]] = "sum"


class ALIEParams(AttackParams):
    z: float | None = Field(
        None, description="standard deviations to shift by; default Baruch et al.'s z_max"
    )


class IPMParams(AttackParams):
    epsilon: float = Field(0.5, gt=0.0, description="scale of the reversed mean honest delta")


class DistanceBoundedParams(AttackParams):
    perturbation: Perturbation = Field("std", description="unit_vector, std or sign")
    gamma_init: float = Field(10.0, gt=0.0, description="first gamma tried")
    tol: float = Field(1e-5, gt=0.0, description="bisection stops when the interval is shorter")
    max_iter: int = Field(100, ge=1, description="most doublings, and most bisection steps")


ATTACKS.add("alie", ALittleIsEnough, ALIEParams)
ATTACKS.add("ipm", InnerProductManipulation, IPMParams)
ATTACKS.add("min_max", MinMax, DistanceBoundedParams)
ATTACKS.add("min_sum", MinSum, DistanceBoundedParams)
