"""DP-SGD (Abadi et al., CCS 2016) on flat weight vectors, with per-sample gradients via torch.func.

Each step draws a **Poisson sample** of the local data (every sample joins independently
with probability q = batch_size / n), computes each sample's gradient
(``vmap(grad(...))`` over ``functional_call``), clips each one to L2 norm
``max_grad_norm``, sums them, adds N(0, (noise_multiplier * max_grad_norm)^2) per
coordinate and divides by the *expected* batch size q * n (so the sensitivity of the
update does not depend on the drawn batch size). An epoch is round(n / batch_size)
steps. That is exactly the Poisson-subsampled Gaussian mechanism the ``rdp`` and ``pld``
accountants price: record a run with :func:`account` (sample_rate q, ``steps``), or turn a
target epsilon into a noise multiplier first with :func:`noise_multiplier_for_run`.

Weights go in and out as flat float32 vectors in the module's state_dict layout
(:mod:`fedledger.learning.weights`), as :class:`fedledger.learning.train.Learner` does, so
a solver can call :func:`train_dp_sgd` with the learner's module. All randomness (the
samples drawn and the noise) comes from one ``torch.Generator`` seeded with ``seed``.

The reported ``loss`` is the mean cross-entropy over the samples drawn in the last
epoch, measured during training: a diagnostic that is not itself privatised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap
from torch.nn import functional as F

from fedledger.learning.weights import Vector, flatten, load_flat
from fedledger.privacy.dp.accountants import Accountant, noise_multiplier_for
from fedledger.privacy.dp.errors import PrivacyError

_CHUNK = 64  # samples per vmap call: bounds the (chunk, num_params) gradient matrix


@dataclass(frozen=True)
class DPSGDSettings:
    """Hyper-parameters of DP-SGD.

    batch_size: the expected (Poisson) batch size; the sampling rate is batch_size / n.
    max_grad_norm: the L2 bound C on each sample's gradient.
    noise_multiplier: noise std over C; 0 trains with clipping only (no privacy).
    """

    epochs: int = 1
    lr: float = 0.05
    batch_size: int = 32
    max_grad_norm: float = 1.0
    noise_multiplier: float = 1.0
    momentum: float = 0.0
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise PrivacyError(f"epochs must be an integer >= 1, got {self.epochs!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or (
            self.batch_size < 1
        ):
            raise PrivacyError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        for name in ("lr", "max_grad_norm"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise PrivacyError(f"{name} must be a finite number > 0, got {value!r}")
        for name in ("noise_multiplier", "momentum", "weight_decay"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise PrivacyError(f"{name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class DPSchedule:
    """How a run samples: Poisson rate ``sample_rate`` for ``steps`` steps in all."""

    sample_rate: float
    steps: int


@dataclass(frozen=True)
class DPSGDResult:
    """A DP-SGD run: trained flat weights, and what an accountant needs to price it."""

    weights: Vector
    num_samples: int
    loss: float
    steps: int
    sample_rate: float
    noise_multiplier: float


def dp_sgd_schedule(num_samples: int, batch_size: int, epochs: int) -> DPSchedule:
    """Sampling rate min(1, batch_size / n) and epochs * max(1, round(n / batch_size)) steps."""
    if num_samples < 1:
        raise PrivacyError(f"DP-SGD needs at least 1 sample, got {num_samples}")
    if batch_size < 1 or epochs < 1:
        raise PrivacyError(f"batch_size and epochs must be >= 1, got {batch_size}, {epochs}")
    rate = min(1.0, batch_size / num_samples)
    per_epoch = max(1, round(num_samples / batch_size))
    return DPSchedule(rate, epochs * per_epoch)


def noise_multiplier_for_run(
    target_epsilon: float,
    delta: float,
    num_samples: int,
    settings: DPSGDSettings,
    rounds: int = 1,
    accountant: str = "rdp",
) -> float:
    """The noise multiplier that keeps ``rounds`` DP-SGD jobs of ``settings`` on
    ``num_samples`` samples within (target_epsilon, delta) in total (inf: 0.0)."""
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise PrivacyError(f"rounds must be an integer >= 1, got {rounds!r}")
    plan = dp_sgd_schedule(num_samples, settings.batch_size, settings.epochs)
    return noise_multiplier_for(
        target_epsilon, delta, plan.sample_rate, plan.steps * rounds, accountant
    )


def account(result: DPSGDResult, accountant: Accountant) -> None:
    """Record one DP-SGD run's steps in ``accountant``."""
    accountant.step(result.noise_multiplier, result.sample_rate, result.steps, "gaussian")


def _named_parameters(module: nn.Module) -> dict[str, torch.Tensor]:
    return dict(module.named_parameters())


def per_sample_gradients(
    module: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(gradients, losses): each sample's cross-entropy gradient as one flat row (in
    ``named_parameters`` order), shape (n, num_params), and its loss, shape (n,)."""
    params = {k: v.detach() for k, v in _named_parameters(module).items()}
    buffers = {k: v.detach() for k, v in module.named_buffers()}

    def loss_one(
        p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor
    ) -> torch.Tensor:
        out = functional_call(module, (p, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(out, yi.unsqueeze(0))

    fn = vmap(grad_and_value(loss_one), in_dims=(None, 0, 0))
    grads, losses = [], []
    for start in range(0, len(x), _CHUNK):
        g, loss = fn(params, x[start : start + _CHUNK], y[start : start + _CHUNK])
        grads.append(torch.cat([t.reshape(t.shape[0], -1) for t in g.values()], dim=1))
        losses.append(loss)
    if not grads:
        size = sum(p.numel() for p in params.values())
        return torch.zeros((0, size)), torch.zeros(0)
    return torch.cat(grads), torch.cat(losses)


def clipped_gradient_sum(
    module: nn.Module, x: torch.Tensor, y: torch.Tensor, max_grad_norm: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of per-sample gradients each clipped to L2 norm <= max_grad_norm, losses)."""
    grads, losses = per_sample_gradients(module, x, y)
    if len(grads) == 0:
        return grads.sum(dim=0), losses
    norms = grads.norm(dim=1)
    factor = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
    return factor @ grads, losses


def _as_tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    if x.ndim < 2 or len(x) == 0:
        raise PrivacyError(f"x must hold at least one sample (N, ...), got shape {x.shape}")
    if y.shape != (x.shape[0],):
        raise PrivacyError(f"y must have shape ({x.shape[0]},), got {tuple(y.shape)}")
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return xt, torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))


def train_dp_sgd(
    module: nn.Module,
    weights: Vector,
    x: np.ndarray,
    y: np.ndarray,
    settings: DPSGDSettings,
    seed: int,
) -> DPSGDResult:
    """DP-SGD from ``weights`` over (x, y); the module's state is overwritten.

    See the module docstring for the sampling, clipping and noise. Returns the trained
    flat weights (state_dict layout), the steps taken and the sampling rate, so the caller
    can price the run with an accountant (:func:`account`).
    """
    xt, yt = _as_tensors(x, y)
    load_flat(module, weights)
    n = len(xt)
    plan = dp_sgd_schedule(n, settings.batch_size, settings.epochs)
    per_epoch = plan.steps // settings.epochs
    params = _named_parameters(module)
    shapes = [(p, p.numel()) for p in params.values()]
    opt = torch.optim.SGD(
        list(params.values()),
        lr=settings.lr,
        momentum=settings.momentum,
        weight_decay=settings.weight_decay,
    )
    generator = torch.Generator().manual_seed(seed)
    std = settings.noise_multiplier * settings.max_grad_norm
    expected_batch = plan.sample_rate * n
    module.train()
    loss_sum, seen = 0.0, 0
    for epoch in range(settings.epochs):
        if epoch == settings.epochs - 1:
            loss_sum, seen = 0.0, 0
        for _ in range(per_epoch):
            chosen = (torch.rand(n, generator=generator) < plan.sample_rate).nonzero().flatten()
            total, losses = clipped_gradient_sum(
                module, xt[chosen], yt[chosen], settings.max_grad_norm
            )
            if std > 0:
                noise = torch.normal(0.0, std, size=total.shape, generator=generator)
                total = total + noise
            update = total / expected_batch
            offset = 0
            for param, size in shapes:
                param.grad = update[offset : offset + size].view_as(param).clone()
                offset += size
            opt.step()
            loss_sum += float(losses.double().sum())
            seen += len(losses)
    for param in params.values():
        param.grad = None
    loss = loss_sum / seen if seen else math.nan
    return DPSGDResult(
        flatten(module), n, loss, plan.steps, plan.sample_rate, settings.noise_multiplier
    )
