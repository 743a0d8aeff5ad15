"""Distance-based robust rules: Krum, Multi-Krum (Blanchard et al. 2017) and Bulyan
(El Mhamdi et al. 2018).

Krum scores update i by the sum of squared distances to its n - f - 2 nearest other
updates and returns the update of least score; Multi-Krum averages the m updates of least
score. Both need n >= 2f + 3. Bulyan selects theta = n - 2f updates by Krum applied again
and again to the not yet selected ones, then takes, in each coordinate, the mean of the
beta = theta - 2f selected values closest to their median; it needs n >= 4f + 3.

All three ignore ``num_samples`` (an attacker could claim any number). Updates with
non-finite weights are dropped first and counted against f.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
    COLUMN_BLOCK,
    RuleParams,
    as_centre,
    drop_non_finite,
    mean_of_rows,
    pairwise_sq_distances,
    sorted_columns,
)


def require_updates(rule: str, n: int, f: int, factor: int) -> None:
    """Refuse when there are fewer than ``factor * f + 3`` updates."""
    needed = factor * f + 3
    if n < needed:
        raise AggregationError(
            f"{rule} needs n >= {factor}f + 3 updates to tolerate f attackers; "
            f"got n={n}, f={f} (needs n >= {needed}, or f <= {max((n - 3) // factor, 0)} "
            f"for n={n})"
        )


def krum_scores(dist: np.ndarray, f: int) -> np.ndarray:
    """Krum score of each row: the sum of its n - f - 2 smallest distances to other rows.

    ``dist`` is the (n, n) matrix of squared distances. When n - f - 2 < 1 (only in
    Bulyan's last selections) one neighbour is used.
    """
    n = dist.shape[0]
    if n == 1:
        return np.zeros(1)
    k = max(n - f - 2, 1)
    others = dist + np.diag(np.full(n, np.inf))
    nearest = np.partition(others, k - 1, axis=1)[:, :k]
    return nearest.sum(axis=1)


def _distances(matrix: np.ndarray, context: AggregationContext, rule: str) -> np.ndarray:
    centre = as_centre(context.current, matrix.shape[1], "current", rule)
    return pairwise_sq_distances(matrix, centre)


def _finite_stack(
    updates: Sequence[Update], f: int, factor: int, rule: str
) -> tuple[np.ndarray, int]:
    """Stack, refuse n < factor*f + 3, drop non-finite rows and lower f by their number."""
    matrix = stack(updates)
    require_updates(rule, matrix.shape[0], f, factor)
    matrix, dropped = drop_non_finite(matrix, rule)
    f_left = max(f - dropped, 0)
    if dropped:
        require_updates(
            f"{rule} (after dropping {dropped} non-finite)", len(matrix), f_left, factor
        )
    return matrix, f_left


@dataclass(frozen=True)
class Krum:
    """Krum (Blanchard et al. 2017): the update closest to its n - f - 2 neighbours."""

    f: int = 1

    def __call__(self, updates: Sequence[Update], context: AggregationContext) -> Vector:
        matrix, f = _finite_stack(updates, self.f, 2, "krum")
        scores = krum_scores(_distances(matrix, context, "krum"), f)
        return matrix[int(np.argmin(scores))].copy()


@dataclass(frozen=True)
class MultiKrum:
    """Multi-Krum (Blanchard et al. 2017): mean of the m updates of least Krum score."""

    f: int = 1
    m: int | None = None

    def __call__(self, updates: Sequence[Update], context: AggregationContext) -> Vector:
        matrix, f = _finite_stack(updates, self.f, 2, "multi_krum")
        n = len(matrix)
        m = n - f if self.m is None else self.m
        if m > n:
            raise AggregationError(
                f"multi_krum: m={m} exceeds the number of usable updates n={n}; "
                f"allowed: 1 <= m <= n"
            )
        scores = krum_scores(_distances(matrix, context, "multi_krum"), f)
        chosen = np.argsort(scores, kind="stable")[:m]
        return mean_of_rows(matrix[np.sort(chosen)])


def bulyan_select(dist: np.ndarray, f: int, theta: int) -> np.ndarray:
    """Indices chosen by ``theta`` rounds of Krum, each over the rows not yet chosen."""
    remaining = np.arange(dist.shape[0])
    chosen: list[int] = []
    for _ in range(theta):
        sub = dist[np.ix_(remaining, remaining)]
        best = int(np.argmin(krum_scores(sub, f)))
        chosen.append(int(remaining[best]))
        remaining = np.delete(remaining, best)
    return np.asarray(chosen, dtype=np.int64)


def mean_around_median(matrix: np.ndarray, beta: int) -> np.ndarray:
    """In each coordinate, the mean of the ``beta`` values closest to the median.

    Sorted, the beta values closest to the median are a run of consecutive values: the
    run [j, j + beta) whose farther end is nearest to the median (lowest j on ties). Its
    mean comes from the column's running sums.
    """
    rows, dim = matrix.shape
    if not 1 <= beta <= rows:
        raise AggregationError(f"mean_around_median: beta={beta} must be in [1, {rows}]")
    spare = rows - beta
    out = np.empty(dim, dtype=np.float32)
    sums = np.zeros((rows + 1, min(dim, COLUMN_BLOCK)))
    for lo, ordered in sorted_columns(matrix):
        width = ordered.shape[1]
        median = 0.5 * (ordered[(rows - 1) // 2].astype(np.float64) + ordered[rows // 2])
        reach = np.maximum(median - ordered[: spare + 1], ordered[beta - 1 :] - median)
        first = np.argmin(reach, axis=0)
        np.cumsum(ordered, axis=0, dtype=np.float64, out=sums[1:, :width])
        cols = np.arange(width)
        out[lo : lo + width] = (sums[first + beta, cols] - sums[first, cols]) / beta
    return out


@dataclass(frozen=True)
class Bulyan:
    """Bulyan (El Mhamdi et al. 2018): iterated Krum, then a trimmed mean around the median."""

    f: int = 1

    def __call__(self, updates: Sequence[Update], context: AggregationContext) -> Vector:
        matrix, f = _finite_stack(updates, self.f, 4, "bulyan")
        n = len(matrix)
        theta = n - 2 * f
        beta = theta - 2 * f
        chosen = bulyan_select(_distances(matrix, context, "bulyan"), f, theta)
        return mean_around_median(matrix[np.sort(chosen)], beta)


class KrumParams(RuleParams):
    f: int = Field(1, ge=0, description="number of attackers tolerated; needs n >= 2f + 3")


class MultiKrumParams(RuleParams):
    f: int = Field(1, ge=0, description="number of attackers tolerated; needs n >= 2f + 3")
    m: int | None = Field(
        None, ge=1, description="how many best-scored updates to average; default n - f"
    )


class BulyanParams(RuleParams):
    f: int = Field(1, ge=0, description="number of attackers tolerated; needs n >= 4f + 3")


AGGREGATORS.add("krum", Krum, KrumParams)
AGGREGATORS.add("multi_krum", MultiKrum, MultiKrumParams)
AGGREGATORS.add("bulyan", Bulyan, BulyanParams)
