"""Matrix helpers shared by the Byzantine-robust aggregation rules.

Every rule works on the (n, d) float32 stack of the updates' weights. Pairwise distances
come from a Gram matrix computed in float64 over column blocks, after subtracting a
centre close to the points (the aggregator's current model where known, else the mean),
so that ||x||^2 + ||y||^2 - 2<x, y> does not lose the distances to float32 cancellation
and the float64 copy never holds more than one block.

Updates whose weights are not finite (NaN, inf) cannot be honest; rules drop them first
(:func:`drop_non_finite`) and count them against the number of tolerated attackers f.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from pydantic import BaseModel, ConfigDict

from fedledger.learning.aggregate.base import AggregationError

#: Columns per block when a computation needs a float64 (or int64) copy of the stack.
COLUMN_BLOCK = 32_768


class RuleParams(BaseModel):
    """Base of the robust rules' parameter models: unknown keys are errors, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def drop_non_finite(matrix: np.ndarray, rule: str) -> tuple[np.ndarray, int]:
    """Rows of ``matrix`` that are all finite, and how many rows were dropped."""
    keep = np.isfinite(matrix).all(axis=1)
    dropped = int(matrix.shape[0] - np.count_nonzero(keep))
    if dropped == matrix.shape[0]:
        raise AggregationError(
            f"{rule}: all {dropped} updates contain NaN or infinite weights; "
            "at least one finite update is needed"
        )
    return (matrix if dropped == 0 else matrix[keep]), dropped


def as_centre(vector: np.ndarray | None, dim: int, what: str, rule: str) -> np.ndarray | None:
    """Check an optional context vector (current model, trusted update) against the stack."""
    if vector is None:
        return None
    centre = np.asarray(vector, dtype=np.float32).reshape(-1)
    if centre.shape != (dim,):
        raise AggregationError(
            f"{rule}: context.{what} has shape {np.shape(vector)}, updates have ({dim},)"
        )
    if not np.isfinite(centre).all():
        raise AggregationError(f"{rule}: context.{what} contains NaN or infinite values")
    return centre


def centred_gram(matrix: np.ndarray, centre: np.ndarray | None = None) -> np.ndarray:
    """Gram matrix (float64) of ``matrix - centre``; the centre defaults to the row mean."""
    if centre is None:
        centre = matrix.mean(axis=0, dtype=np.float64)
    n, dim = matrix.shape
    gram = np.zeros((n, n), dtype=np.float64)
    for start in range(0, dim, COLUMN_BLOCK):
        stop = min(start + COLUMN_BLOCK, dim)
        block = matrix[:, start:stop].astype(np.float64)
        block -= centre[start:stop]
        gram += block @ block.T
    return gram


def distances_from_gram(gram: np.ndarray) -> np.ndarray:
    """Pairwise squared distances from a Gram matrix, clamped at 0 with an exact 0 diagonal."""
    diag = np.diag(gram)
    dist = diag[:, None] + diag[None, :] - 2.0 * gram
    np.maximum(dist, 0.0, out=dist)
    np.fill_diagonal(dist, 0.0)
    return dist


def pairwise_sq_distances(matrix: np.ndarray, centre: np.ndarray | None = None) -> np.ndarray:
    """(n, n) float64 squared Euclidean distances between the rows of ``matrix``."""
    return distances_from_gram(centred_gram(matrix, centre))


def combine(coefficients: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``coefficients @ matrix`` as a float32 vector (one matrix-vector product)."""
    return np.asarray(np.asarray(coefficients, dtype=np.float32) @ matrix, dtype=np.float32)


def combine_deltas(coefficients: np.ndarray, matrix: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """``centre + coefficients @ (matrix - centre)`` as float32, the deltas formed in float64.

    Forming the deltas first keeps small steps exact when the weights themselves are large
    (``coefficients @ matrix - sum(coefficients) * centre`` would cancel in float32).
    """
    weights = np.asarray(coefficients, dtype=np.float64)
    dim = matrix.shape[1]
    out = np.empty(dim, dtype=np.float32)
    for start in range(0, dim, COLUMN_BLOCK):
        stop = min(start + COLUMN_BLOCK, dim)
        block = matrix[:, start:stop].astype(np.float64)
        block -= centre[start:stop]
        out[start:stop] = centre[start:stop] + weights @ block
    return out


def sorted_columns(matrix: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(first column, block with each column sorted) for blocks of ``COLUMN_BLOCK`` columns.

    Sorting short columns block by block is faster than a partition over the whole
    (n, d) matrix and keeps the temporary copy to one block.
    """
    for start in range(0, matrix.shape[1], COLUMN_BLOCK):
        yield start, np.sort(matrix[:, start : start + COLUMN_BLOCK], axis=0)


def mean_of_rows(matrix: np.ndarray) -> np.ndarray:
    """Coordinate-wise mean, accumulated in float64, as float32."""
    return matrix.mean(axis=0, dtype=np.float64).astype(np.float32)
