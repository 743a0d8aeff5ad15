"""FLTrust (Cao, Fang, Liu and Gong, NDSS 2021): trust bootstrapped from a trusted update.

The aggregator trains its own update on a small clean root dataset and passes it as
``context.trusted_update``. With ``current`` the model all updates started from:

    g_i = w_i - current,  g_0 = trusted_update - current
    trust_i = ReLU(cos(g_i, g_0))
    result = current + sum_i trust_i * (||g_0|| / ||g_i||) g_i / sum_i trust_i

Every delta is rescaled to the length of g_0, so no update can win by being long, and an
update pointing away from g_0 gets no weight. When no update has positive trust (or g_0
is zero) the result is ``current`` unchanged. A zero delta has no direction and gets no
trust. Updates with non-finite weights get no trust either (they are dropped).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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
    as_centre,
    combine_deltas,
)
from fedledger.registry import NoParams


def delta_stats(
    matrix: np.ndarray, current: np.ndarray, reference: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Squared norms of the deltas ``matrix - current`` and their dots with ``reference``."""
    n, dim = matrix.shape
    sq_norms = np.zeros(n)
    dots = np.zeros(n)
    for start in range(0, dim, COLUMN_BLOCK):
        stop = min(start + COLUMN_BLOCK, dim)
        block = matrix[:, start:stop].astype(np.float64)
        block -= current[start:stop]
        sq_norms += np.einsum("ij,ij->i", block, block)
        dots += block @ reference[start:stop]
    return sq_norms, dots


def fltrust_weights(sq_norms: np.ndarray, dots: np.ndarray, ref_norm: float) -> np.ndarray:
    """Coefficient of each delta: trust_i * ||g_0|| / ||g_i|| / sum(trust) (zeros if none)."""
    norms = np.sqrt(sq_norms)
    usable = (norms > 0) & (ref_norm > 0)
    safe = np.where(usable, norms, 1.0)
    trust = np.where(usable, np.maximum(dots / (safe * max(ref_norm, 1e-300)), 0.0), 0.0)
    total = trust.sum()
    if total <= 0:
        return np.zeros_like(trust)
    return trust * (ref_norm / safe) / total


@dataclass(frozen=True)
class FLTrust:
    """FLTrust (Cao et al. 2021): ReLU-cosine trust against a trusted update, norms equalised."""

    def __call__(self, updates: Sequence[Update], context: AggregationContext) -> Vector:
        matrix = stack(updates)
        dim = matrix.shape[1]
        current = as_centre(context.current, dim, "current", "fltrust")
        trusted = as_centre(context.trusted_update, dim, "trusted_update", "fltrust")
        if current is None or trusted is None:
            missing = [
                n for n, v in (("current", current), ("trusted_update", trusted)) if v is None
            ]
            raise AggregationError(
                f"fltrust needs context.current and context.trusted_update (the server's "
                f"update on its root data); missing: {', '.join(missing)}"
            )
        current64 = current.astype(np.float64)
        reference = trusted.astype(np.float64) - current64
        ref_norm = float(np.linalg.norm(reference))
        matrix = matrix[np.isfinite(matrix).all(axis=1)]
        sq_norms, dots = delta_stats(matrix, current64, reference)
        coef = fltrust_weights(sq_norms, dots, ref_norm)
        if not coef.any():
            return current.copy()
        return combine_deltas(coef, matrix, current64)


AGGREGATORS.add("fltrust", FLTrust, NoParams)
