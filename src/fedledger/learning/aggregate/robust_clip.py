"""Rules that pull a point towards the updates with bounded influence each: centred
clipping (Karimireddy, He and Jaggi 2021) and the geometric median (smoothed Weiszfeld,
the RFA rule of Pillutla, Kakade and Harchaoui 2022).

Both iterate on a point v that stays a combination of the centre and the updates, so
every iteration runs on the n coefficients of that combination with the (n, n) Gram
matrix of the updates (computed once, in float64), and the d-dimensional result is formed
once at the end.

Centred clipping starts at v = centre (the aggregator's current model by default) and
repeats ``iterations`` times: v <- v + (1/n) sum_i clip(x_i - v, tau), where clip scales a
vector down to norm tau when it is longer. One iteration around the current model is
plain norm bounding of the deltas.

The geometric median minimises sum_i alpha_i ||v - x_i||. Weiszfeld's iteration, smoothed
by nu, sets v <- sum_i beta_i x_i / sum_i beta_i with beta_i = alpha_i / max(nu,
||v - x_i||), from the (weighted) mean, until the objective improves by less than
``tol`` relative, or ``max_iter`` iterations. alpha_i = 1/n unless ``weighted`` (then
proportional to num_samples, as in RFA; an attacker may inflate its num_samples).

Updates with non-finite weights are dropped first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field

from fedledger.learning.aggregate.base import (
    AGGREGATORS,
    AggregationContext,
    AggregationError,
    Update,
    Vector,
    stack,
)
from fedledger.learning.aggregate.robust_common import (
    RuleParams,
    as_centre,
    centred_gram,
    combine_deltas,
    drop_non_finite,
)
from fedledger.learning.aggregate.robust_coordinate import coordinate_median


def _sq_dist_to_point(gram: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """||y_i - sum_j coef_j y_j||^2 for every row i, from the Gram matrix of the y_i."""
    g_coef = gram @ coef
    dist = np.diag(gram) - 2.0 * g_coef + coef @ g_coef
    return np.maximum(dist, 0.0)


def centred_clip(
    matrix: np.ndarray, centre: np.ndarray, tau: float, iterations: int = 1
) -> np.ndarray:
    """Centred clipping of the rows of ``matrix`` around ``centre`` (float32 result)."""
    if tau <= 0:
        raise AggregationError(f"centred_clip: tau must be > 0, got {tau}")
    n = matrix.shape[0]
    gram = centred_gram(matrix, centre.astype(np.float64))
    coef = np.zeros(n)  # v = centre + coef @ (matrix - centre)
    for _ in range(iterations):
        radius = np.sqrt(_sq_dist_to_point(gram, coef))
        with np.errstate(divide="ignore"):
            scale = np.where(radius > tau, tau / radius, 1.0)
        coef = coef + (scale - coef * scale.sum()) / n
    return combine_deltas(coef, matrix, centre.astype(np.float64))


def geometric_median(
    matrix: np.ndarray,
    alpha: np.ndarray,
    nu: float = 1e-6,
    max_iter: int = 100,
    tol: float = 1e-6,
    centre: np.ndarray | None = None,
) -> np.ndarray:
    """Smoothed Weiszfeld geometric median of the rows of ``matrix`` with weights ``alpha``."""
    alpha = np.asarray(alpha, dtype=np.float64)
    alpha = alpha / alpha.sum()
    mid = matrix.mean(axis=0, dtype=np.float64) if centre is None else centre.astype(np.float64)
    gram = centred_gram(matrix, mid)
    coef = alpha.copy()
    objective = float(alpha @ np.sqrt(_sq_dist_to_point(gram, coef)))
    for _ in range(max_iter):
        dist = np.sqrt(_sq_dist_to_point(gram, coef))
        beta = alpha / np.maximum(dist, nu)
        coef = beta / beta.sum()
        previous, objective = objective, float(alpha @ np.sqrt(_sq_dist_to_point(gram, coef)))
        if abs(previous - objective) <= tol * objective:
            break
    return combine_deltas(coef, matrix, mid)


@dataclass(frozen=True)
class CentredClipping:
    """Centred clipping (Karimireddy et al. 2021) around the current model or the median."""

    tau: float = 1.0
    iterations: int = 1
    centre: Literal["current", "median"] = "current"

    def __call__(self, updates: Sequence[Update], context: AggregationContext) -> Vector:
        matrix, _ = drop_non_finite(stack(updates), "centred_clipping")
        if self.centre == "median":
            centre = coordinate_median(matrix)
        else:
            current = as_centre(context.current, matrix.shape[1], "current", "centred_clipping")
            if current is None:
                raise AggregationError(
                    "centred_clipping: centre='current' needs context.current (the "
                    "aggregator's model), which is missing; give it, or use centre='median'"
                )
            centre = current
        return centred_clip(matrix, centre, self.tau, self.iterations)


@dataclass(frozen=True)
class GeometricMedian:
    """Geometric median by smoothed Weiszfeld iterations (RFA, Pillutla et al. 2022)."""

    nu: float = 1e-6
    max_iter: int = 100
    tol: float = 1e-6
    weighted: bool = False

    def __call__(self, updates: Sequence[Update], context: AggregationContext) -> Vector:
        matrix = stack(updates)
        alpha = np.asarray([u.num_samples if self.weighted else 1 for u in updates], float)
        keep = np.isfinite(matrix).all(axis=1)
        matrix, _ = drop_non_finite(matrix, "geometric_median")
        alpha = alpha[keep]
        if (alpha < 0).any() or alpha.sum() <= 0:
            raise AggregationError(
                f"geometric_median: weighted=True needs num_samples >= 0 with a positive "
                f"sum; got {alpha.tolist()}"
            )
        centre = as_centre(context.current, matrix.shape[1], "current", "geometric_median")
        return geometric_median(matrix, alpha, self.nu, self.max_iter, self.tol, centre)


class CentredClippingParams(RuleParams):
    tau: float = Field(1.0, gt=0, description="clipping radius (L2 norm of a delta)")
    iterations: int = Field(1, ge=1, description="clipping iterations L")
    centre: Literal["current", "median"] = Field(
        "current", description="start point: the aggregator's current model, or the median"
    )


class GeometricMedianParams(RuleParams):
    nu: float = Field(1e-6, gt=0, description="smoothing: distances below nu count as nu")
    max_iter: int = Field(100, ge=1, description="most Weiszfeld iterations")
    tol: float = Field(1e-6, ge=0, description="stop when the objective improves less, relative")
    weighted: bool = Field(False, description="weight updates by num_samples")


AGGREGATORS.add("centred_clipping", CentredClipping, CentredClippingParams)
AGGREGATORS.add("geometric_median", GeometricMedian, GeometricMedianParams)
