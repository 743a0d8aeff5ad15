"""Coordinate-wise robust rules: median and trimmed mean (Yin et al. 2018).

Both treat each parameter on its own. The median of an even number of values is the mean
of the two middle ones. The trimmed mean drops, in every coordinate, the k largest and k
smallest values and averages the rest, where k = f when ``f`` is given and
k = floor(beta * n) otherwise (beta defaults to 0.1); it needs n - 2k >= 1.

Both ignore ``num_samples``. Updates with non-finite weights are dropped first; for the
trimmed mean each dropped update lowers k by one (it was one of the outliers to trim).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import Field, model_validator

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
    drop_non_finite,
    mean_of_rows,
    sorted_columns,
)
from fedledger.registry import NoParams


@dataclass(frozen=True)
class Median:
    """Coordinate-wise median (Yin et al. 2018)."""

    def __call__(self, updates: Sequence[Update], context: AggregationContext) -> Vector:
        matrix, _ = drop_non_finite(stack(updates), "median")
        return coordinate_median(matrix)


def coordinate_median(matrix: np.ndarray) -> np.ndarray:
    """Coordinate-wise median (mean of the two middle values for an even count)."""
    n, dim = matrix.shape
    out = np.empty(dim, dtype=np.float32)
    for start, ordered in sorted_columns(matrix):
        low, high = ordered[(n - 1) // 2], ordered[n // 2]
        out[start : start + ordered.shape[1]] = 0.5 * (low.astype(np.float64) + high)
    return out


def trimmed_mean(matrix: np.ndarray, k: int) -> np.ndarray:
    """Coordinate-wise mean after dropping the k largest and k smallest values."""
    n = matrix.shape[0]
    if n - 2 * k < 1:
        raise AggregationError(f"trimmed_mean: trimming k={k} per side leaves none of n={n}")
    if k == 0:
        return mean_of_rows(matrix)
    out = np.empty(matrix.shape[1], dtype=np.float32)
    for start, ordered in sorted_columns(matrix):
        out[start : start + ordered.shape[1]] = ordered[k : n - k].mean(axis=0, dtype=np.float64)
    return out


@dataclass(frozen=True)
class TrimmedMean:
    """Coordinate-wise trimmed mean: k = f, or floor(beta * n), values cut from each side."""

    beta: float | None = None
    f: int | None = None

    def trim_count(self, n: int) -> int:
        if self.f is not None:
            return self.f
        return math.floor((0.1 if self.beta is None else self.beta) * n)

    def __call__(self, updates: Sequence[Update], context: AggregationContext) -> Vector:
        matrix = stack(updates)
        n = matrix.shape[0]
        k = self.trim_count(n)
        if n - 2 * k < 1:
            what = f"f={self.f}" if self.f is not None else f"beta={self.beta} (k={k})"
            raise AggregationError(
                f"trimmed_mean needs n >= 2k + 1 updates to trim k per side; got n={n}, "
                f"{what} (needs n >= {2 * k + 1})"
            )
        matrix, dropped = drop_non_finite(matrix, "trimmed_mean")
        return trimmed_mean(matrix, max(k - dropped, 0))


class TrimmedMeanParams(RuleParams):
    beta: float | None = Field(
        None, ge=0.0, lt=0.5, description="fraction trimmed from each side; default 0.1"
    )
    f: int | None = Field(None, ge=0, description="count trimmed from each side (instead of beta)")

    @model_validator(mode="after")
    def _one_of(self) -> TrimmedMeanParams:
        if self.beta is not None and self.f is not None:
            raise ValueError(
                f"give either beta (a fraction) or f (a count) per side, not both "
                f"(got beta={self.beta}, f={self.f})"
            )
        return self


AGGREGATORS.add("median", Median, NoParams)
AGGREGATORS.add("trimmed_mean", TrimmedMean, TrimmedMeanParams)
