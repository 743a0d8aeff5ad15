"""Federated SVRG (Konecny et al. 2016, "Federated Optimization"; Nagar's Algorithm 1,
corrected) and the statistics it needs, as training routines of the solver registry.

Corrected Algorithm 1 (K devices, device k holds the samples P_k, n_k = |P_k|, n = sum n_k):

    for s = 0, 1, ...:
        grad = (1/n) sum_i grad f_i(w)                                 (a communication round)
        for k in parallel:
            w_k = w;  h_k = h / n_k;  order = seeded permutation of P_k
            for t = 1..n_k:  w_k -= h_k (S_k [grad f_it(w_k) - grad f_it(w)] + grad)
        w = w + A sum_k (n_k / n) (w_k - w)

Coordinates are the model's flat weights. A coordinate's *feature* is the input column a
first-layer weight multiplies; every other coordinate (biases, deeper layers) counts every
sample. ``feature_counts`` gives per coordinate the number of local samples whose feature is
non-zero (n^j_k), from which :func:`scaling` gives S_k = phi^j / phi^j_k and
:func:`aggregation_scaling` gives A = K / omega^j (edge cases: n^j_k = 0 -> s = 1,
omega^j = 0 -> a = 1). The loss of a sample is cross-entropy + (l2 / 2) ||w||^2.

Three routines are registered in :data:`~fedledger.learning.solvers.SOLVERS`:

* ``feature_counts``: result weights = the count vector n^j_k (no training);
* ``grad_sum``: result weights = sum_i grad f_i(w) over the local samples;
* ``fsvrg``: the local loop above (its ``full_grad`` and ``scaling`` are solver params).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn import functional as F

from fedledger.learning.jobs import TrainResult, TrainSettings
from fedledger.learning.solvers import SOLVERS, Solver
from fedledger.learning.weights import Vector, flatten, load_flat


class FsvrgError(ValueError):
    """A statistic or F-SVRG input is unusable; says which value and what is allowed."""


# ---------------------------------------------------------------- statistics


def coordinate_features(module: nn.Module, num_features: int) -> np.ndarray:
    """Per flat coordinate, the input feature it multiplies (-1: none, counts every sample).

    The first 2-D parameter whose second axis has ``num_features`` entries is taken as the
    first layer (torch's Linear keeps (out, in))."""
    parts: list[np.ndarray] = []
    found = False
    for tensor in module.state_dict().values():
        size = int(tensor.numel())
        if not found and tensor.dim() == 2 and tensor.shape[1] == num_features:
            parts.append(np.tile(np.arange(num_features), int(tensor.shape[0])))
            found = True
        else:
            parts.append(np.full(size, -1, dtype=np.int64))
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def feature_counts(module: nn.Module, x: np.ndarray) -> np.ndarray:
    """n^j_k per flat coordinate: local samples whose coordinate's feature is non-zero."""
    flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    nonzero = (flat != 0).sum(axis=0)
    features = coordinate_features(module, flat.shape[1])
    return np.where(features >= 0, nonzero[np.maximum(features, 0)], len(x)).astype(np.float64)


def scaling(local: np.ndarray, n_k: int, total: np.ndarray, n: int) -> np.ndarray:
    """S_k per coordinate: s = phi^j / phi^j_k = (n^j / n) / (n^j_k / n_k); 1 where n^j_k = 0."""
    if n_k < 1 or n < 1:
        raise FsvrgError(f"scaling needs n_k >= 1 and n >= 1, got n_k={n_k}, n={n}")
    local = np.asarray(local, dtype=np.float64)
    total = np.asarray(total, dtype=np.float64)
    if local.shape != total.shape:
        raise FsvrgError(f"count vectors differ in shape: {local.shape} vs {total.shape}")
    out = np.ones_like(local)
    seen = local > 0
    out[seen] = (total[seen] / n) / (local[seen] / n_k)
    return out


def aggregation_scaling(counts: list[np.ndarray]) -> np.ndarray:
    """A per coordinate: a = K / omega^j, omega^j = devices with n^j_k > 0; 1 where omega = 0."""
    if not counts:
        raise FsvrgError("aggregation_scaling needs the count vectors of at least one device")
    stacked = np.stack([np.asarray(c, dtype=np.float64) for c in counts])
    omega = (stacked > 0).sum(axis=0).astype(np.float64)
    return np.where(omega > 0, len(counts) / np.maximum(omega, 1.0), 1.0)


# ---------------------------------------------------------------- gradients


def _sample_grad(module: nn.Module, xi: torch.Tensor, yi: torch.Tensor, l2: float) -> Vector:
    module.zero_grad(set_to_none=True)
    loss = F.cross_entropy(module(xi), yi)
    if l2 > 0:
        loss = loss + 0.5 * l2 * sum((p * p).sum() for p in module.parameters())
    loss.backward()
    return np.concatenate(
        [
            (p.grad if p.grad is not None else torch.zeros_like(p)).detach().reshape(-1).numpy()
            for p in module.parameters()
        ]
    ).astype(np.float64)


def _check_params_are_state(module: nn.Module) -> None:
    n_params = sum(int(p.numel()) for p in module.parameters())
    n_state = sum(int(t.numel()) for t in module.state_dict().values())
    if n_params != n_state:
        raise FsvrgError(
            f"F-SVRG needs a model whose state is its parameters only (no buffers); "
            f"{n_params} parameters vs {n_state} state entries"
        )


def gradient_sum(
    module: nn.Module, weights: Vector, x: np.ndarray, y: np.ndarray, l2: float
) -> tuple[Vector, float]:
    """(sum_i grad f_i(w), mean loss) over the local samples."""
    _check_params_are_state(module)
    load_flat(module, np.asarray(weights, dtype=np.float32))
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
    yt = torch.as_tensor(np.asarray(y, dtype=np.int64))
    module.zero_grad(set_to_none=True)
    ce = F.cross_entropy(module(xt), yt, reduction="sum")
    ce.backward()
    grad = np.concatenate([p.grad.detach().reshape(-1).numpy() for p in module.parameters()])
    w = np.asarray(weights, dtype=np.float64)
    return grad.astype(np.float64) + len(x) * l2 * w, float(ce.detach()) / len(x)


def fsvrg_pass(
    module: nn.Module,
    w_global: Vector,
    full_grad: Vector,
    s_diag: Vector,
    h: float,
    l2: float,
    x: np.ndarray,
    y: np.ndarray,
    seed: int,
    local_step: bool = True,
) -> Vector:
    """One device's inner loop of Algorithm 1 from ``w_global``; returns w_k (float64).

    local_step: step h / n_k (Konecny's change 1) rather than h."""
    _check_params_are_state(module)
    n_k = len(x)
    w0 = np.asarray(w_global, dtype=np.float64)
    g = np.asarray(full_grad, dtype=np.float64)
    s = np.asarray(s_diag, dtype=np.float64)
    if g.shape != w0.shape or s.shape != w0.shape:
        raise FsvrgError(
            f"full_grad {g.shape} and scaling {s.shape} must match the weights {w0.shape}"
        )
    if n_k < 1:
        raise FsvrgError("F-SVRG needs at least one local sample")
    step = h / n_k if local_step else h
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
    yt = torch.as_tensor(np.asarray(y, dtype=np.int64))
    order = np.random.default_rng(seed).permutation(n_k)
    anchor = copy.deepcopy(module)  # the module at w_global, for grad f_i(w^t)
    load_flat(anchor, w0.astype(np.float32))
    w = w0.copy()
    for i in order:
        load_flat(module, w.astype(np.float32))
        gi = _sample_grad(module, xt[i : i + 1], yt[i : i + 1], l2)
        gi0 = _sample_grad(anchor, xt[i : i + 1], yt[i : i + 1], l2)
        w = w - step * (s * (gi - gi0) + g)
    return w


# ---------------------------------------------------------------- solver routines


class FeatureCountParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GradSumParams(BaseModel):
    """l2: the regularization lambda of f_i."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    l2: float = Field(0.0, ge=0.0)


class FsvrgParams(BaseModel):
    """h: step size; l2: lambda; local_step: h / n_k (else h); full_grad: grad f(w^t);
    scaling: the diagonal of S_k (None: identity)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    h: float = Field(gt=0.0)
    l2: float = Field(0.0, ge=0.0)
    local_step: bool = True
    full_grad: tuple[float, ...]
    scaling: tuple[float, ...] | None = None


def _counts_routine(
    module: nn.Module, weights: Vector, x: np.ndarray, y: np.ndarray, s: TrainSettings, seed: int
) -> TrainResult:
    return TrainResult(feature_counts(module, x).astype(np.float32), len(x), 0.0)


def _grad_routine(l2: float) -> Solver:
    def routine(
        module: nn.Module,
        weights: Vector,
        x: np.ndarray,
        y: np.ndarray,
        _s: TrainSettings,
        seed: int,
    ) -> TrainResult:
        grad, loss = gradient_sum(module, weights, x, y, l2)
        return TrainResult(grad.astype(np.float32), len(x), loss)

    return Solver.of_routine(routine)


def _fsvrg_routine(
    h: float,
    l2: float,
    local_step: bool,
    full_grad: tuple[float, ...],
    scaling: tuple[float, ...] | None,
) -> Solver:
    g = np.asarray(full_grad, dtype=np.float64)
    diag = np.ones_like(g) if scaling is None else np.asarray(scaling, dtype=np.float64)

    def routine(
        module: nn.Module,
        weights: Vector,
        x: np.ndarray,
        y: np.ndarray,
        _s: TrainSettings,
        seed: int,
    ) -> TrainResult:
        w = fsvrg_pass(module, weights, g, diag, h, l2, x, y, seed, local_step)
        _, loss = gradient_sum(module, w, x, y, l2)
        load_flat(module, w.astype(np.float32))
        return TrainResult(flatten(module), len(x), loss)

    return Solver.of_routine(routine)


SOLVERS.add(
    "feature_counts",
    lambda: Solver.of_routine(_counts_routine),
    FeatureCountParams,
    "F-SVRG statistics: per coordinate, local samples with a non-zero feature",
)
SOLVERS.add("grad_sum", _grad_routine, GradSumParams, "sum of per-sample gradients (F-SVRG)")
SOLVERS.add("fsvrg", _fsvrg_routine, FsvrgParams, "Federated SVRG local pass (Algorithm 1)")
