"""DANE (Shamir, Srebro and Zhang 2014, "Communication-Efficient Distributed Optimization
using an Approximate Newton-type Method") as a training routine of the solver registry.

One DANE iteration, K devices, phi_k(w) = (1/n_k) sum_{i in P_k} f_i(w) (f_i: cross-entropy
+ (l2 / 2) ||w||^2), w^t the global model and g = grad phi(w^t) the full gradient (the
sample-weighted mean of the devices' mean gradients, the protocol's grad phase):

    for k in parallel:
        w_k = argmin_w  phi_k(w) - (grad phi_k(w^t) - eta g)^T w + (mu / 2) ||w - w^t||^2
    w^{t+1} = sum_k (n_k / n) w_k

The paper leaves the local solver open; ours is ``iters`` full-batch gradient steps of
size ``h`` from w^t on that subproblem, whose gradient is

    grad phi_k(w) - grad phi_k(w^t) + eta g + mu (w - w^t).

With eta = 1 and mu = 0 on quadratics this is the approximate Newton step of the paper.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from fedledger.learning.fsvrg import FsvrgError, gradient_sum
from fedledger.learning.jobs import TrainResult, TrainSettings
from fedledger.learning.solvers import SOLVERS, Solver
from fedledger.learning.weights import Vector, flatten, load_flat


def dane_local(
    module: nn.Module,
    w_global: Vector,
    full_grad: Vector,
    x: np.ndarray,
    y: np.ndarray,
    *,
    h: float,
    l2: float,
    eta: float,
    mu: float,
    iters: int,
) -> Vector:
    """One device's approximate solution w_k of DANE's local subproblem (float64)."""
    n_k = len(x)
    if n_k < 1:
        raise FsvrgError("DANE needs at least one local sample")
    if iters < 1:
        raise FsvrgError(f"DANE needs iters >= 1 local steps, got {iters}")
    w0 = np.asarray(w_global, dtype=np.float64)
    g = np.asarray(full_grad, dtype=np.float64)
    if g.shape != w0.shape:
        raise FsvrgError(f"full_grad {g.shape} must match the weights {w0.shape}")
    g0 = gradient_sum(module, w0, x, y, l2)[0] / n_k
    shift = eta * g - g0
    w = w0.copy()
    for _ in range(iters):
        gk = gradient_sum(module, w, x, y, l2)[0] / n_k
        w = w - h * (gk + shift + mu * (w - w0))
    return w


class DaneParams(BaseModel):
    """h: local gradient step; l2: lambda; eta, mu: DANE's parameters; iters: local
    gradient steps on the subproblem; full_grad: grad phi(w^t)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    h: float = Field(gt=0.0)
    l2: float = Field(0.0, ge=0.0)
    eta: float = Field(1.0, gt=0.0)
    mu: float = Field(0.0, ge=0.0)
    iters: int = Field(20, ge=1)
    full_grad: tuple[float, ...]


def _dane_routine(
    h: float, l2: float, eta: float, mu: float, iters: int, full_grad: tuple[float, ...]
) -> Solver:
    g = np.asarray(full_grad, dtype=np.float64)

    def routine(
        module: nn.Module,
        weights: Vector,
        x: np.ndarray,
        y: np.ndarray,
        _s: TrainSettings,
        seed: int,
    ) -> TrainResult:
        w = dane_local(module, weights, g, x, y, h=h, l2=l2, eta=eta, mu=mu, iters=iters)
        _, loss = gradient_sum(module, w, x, y, l2)
        load_flat(module, w.astype(np.float32))
        return TrainResult(flatten(module), len(x), loss)

    return Solver.of_routine(routine)


SOLVERS.add("dane", _dane_routine, DaneParams, "DANE local subproblem (Shamir et al. 2014)")
