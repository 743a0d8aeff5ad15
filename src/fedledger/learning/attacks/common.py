"""Pieces shared by the attack modules: the parameter base and how updates are read."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict

from fedledger.learning.attacks.base import AttackContext


class AttackParams(BaseModel):
    """Base of every attack's parameter model: unknown keys are errors, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def vector(weights: np.ndarray) -> np.ndarray:
    """A weight vector as flat float32 (no copy when it already is one)."""
    return np.asarray(weights, dtype=np.float32).reshape(-1)


def reference_updates(trained: np.ndarray, context: AttackContext) -> np.ndarray:
    """The (k, d) float32 matrix an omniscient attack estimates honest statistics from.

    The honest models of the round when the host gives them (the simulator trains the
    honest nodes first); otherwise only the attacker's own trained model, so the attack
    still returns a model of the right shape (see each attack for what that gives).
    """
    own = vector(trained)
    if not context.honest:
        return own[None, :]
    matrix = np.stack([vector(w) for w in context.honest])
    if matrix.shape[1:] != own.shape:
        raise ValueError(
            f"honest updates have shape {matrix.shape[1:]}, the trained model {own.shape}"
        )
    return matrix


#: Columns per block when statistics need a float64 copy of the (k, d) honest matrix.
COLUMN_BLOCK = 32_768


def mean_and_std(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinate-wise mean and standard deviation (ddof 0) in float64, block by block."""
    dim = matrix.shape[1]
    mean = np.empty(dim)
    std = np.empty(dim)
    for lo in range(0, dim, COLUMN_BLOCK):
        block = matrix[:, lo : lo + COLUMN_BLOCK].astype(np.float64)
        mean[lo : lo + block.shape[1]] = block.mean(axis=0)
        std[lo : lo + block.shape[1]] = block.std(axis=0)
    return mean, std


def chosen_rows(count: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of round(fraction * count) samples drawn without replacement, sorted."""
    if fraction >= 1.0:
        return np.arange(count)
    take = round(fraction * count)
    return np.sort(rng.choice(count, size=take, replace=False))
