"""DP-SGD as the registered solver ``dp_sgd`` (``train.solver`` in a config).

``train: {solver: {name: dp_sgd, max_grad_norm: 1.0, target_epsilon: 2.0, delta: 1e-5}}``
trains every local job with :func:`~fedledger.privacy.dp.dpsgd.train_dp_sgd` (Poisson
sampling at batch_size / n, per-sample clipping, Gaussian noise) using the train block's
epochs, lr, batch_size, momentum and weight_decay. Give the noise as ``noise_multiplier``
or as ``target_epsilon`` (with ``delta``) over the **whole run**: the node's horizon
(``TrainSettings.horizon``, the protocol's rounds or ticks) times each job's steps
(epochs x round(n / batch_size)) is priced by ``accountant`` and the smallest noise
multiplier that stays within the target is used. Each job's result carries its
:class:`~fedledger.learning.jobs.PrivacyCost`; a node composes them in a
:class:`~fedledger.privacy.dp.ledger.PrivacyLedger` and emits ``epsilon_spent``.
``max_epsilon``: the node's budget; it stops training before a job that would exceed it.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from fedledger.learning.jobs import PrivacyCost, TrainResult, TrainSettings
from fedledger.learning.solvers import SOLVERS, Solver
from fedledger.learning.weights import Vector
from fedledger.privacy.dp.accountants import ACCOUNTANTS, noise_multiplier_for
from fedledger.privacy.dp.dpsgd import DPSGDSettings, dp_sgd_schedule, train_dp_sgd

#: accountants that price the subsampled Gaussian mechanism
GAUSSIAN_ACCOUNTANTS = ("rdp", "pld")


class DPSGDParams(BaseModel):
    """Parameters of the ``dp_sgd`` solver."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_grad_norm: float = Field(1.0, gt=0.0, description="L2 bound C on each sample's gradient")
    noise_multiplier: float | None = Field(
        None, ge=0.0, description="noise std / C per step (0: clipping only, no privacy)"
    )
    target_epsilon: float | None = Field(
        None, gt=0.0, description="epsilon over the whole run; sets the noise multiplier"
    )
    delta: float = Field(1e-5, gt=0.0, lt=1.0)
    accountant: str = Field("rdp", description="rdp or pld")
    max_epsilon: float | None = Field(
        None, gt=0.0, description="budget: the node stops before a job that would exceed it"
    )

    @model_validator(mode="after")
    def _one_noise(self) -> DPSGDParams:
        if (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise ValueError(
                "give exactly one of noise_multiplier (>= 0) or target_epsilon (> 0), got "
                f"noise_multiplier={self.noise_multiplier}, target_epsilon={self.target_epsilon}"
            )
        if self.accountant not in GAUSSIAN_ACCOUNTANTS:
            known = ", ".join(n for n in ACCOUNTANTS.names() if n in GAUSSIAN_ACCOUNTANTS)
            raise ValueError(
                f"accountant {self.accountant!r} cannot price the subsampled Gaussian of "
                f"DP-SGD; allowed: {known}"
            )
        return self


class DPSGDRoutine:
    """The ``dp_sgd`` training routine; remembers the noise it calibrated per plan."""

    def __init__(self, params: DPSGDParams) -> None:
        self.params = params
        self._calibrated: dict[tuple[int, int, int, int], float] = {}

    def noise_multiplier(self, num_samples: int, settings: TrainSettings) -> float:
        """The configured noise multiplier, or the one that keeps ``settings.horizon``
        jobs on ``num_samples`` samples within the target epsilon."""
        p = self.params
        if p.noise_multiplier is not None:
            return p.noise_multiplier
        assert p.target_epsilon is not None
        horizon = max(1, int(settings.horizon))
        key = (num_samples, settings.batch_size, settings.epochs, horizon)
        if key not in self._calibrated:
            plan = dp_sgd_schedule(num_samples, settings.batch_size, settings.epochs)
            self._calibrated[key] = noise_multiplier_for(
                p.target_epsilon, p.delta, plan.sample_rate, plan.steps * horizon, p.accountant
            )
        return self._calibrated[key]

    def cost(self, num_samples: int, settings: TrainSettings) -> PrivacyCost:
        """What one job of ``settings`` on ``num_samples`` samples spends."""
        plan = dp_sgd_schedule(num_samples, settings.batch_size, settings.epochs)
        return PrivacyCost(
            "gaussian",
            self.noise_multiplier(num_samples, settings),
            plan.sample_rate,
            plan.steps,
            self.params.delta,
            self.params.accountant,
            self.params.max_epsilon,
        )

    def __call__(
        self,
        module: nn.Module,
        weights: Vector,
        x: np.ndarray,
        y: np.ndarray,
        settings: TrainSettings,
        seed: int,
    ) -> TrainResult:
        cost = self.cost(len(x), settings)
        dp = DPSGDSettings(
            epochs=settings.epochs,
            lr=settings.lr,
            batch_size=settings.batch_size,
            max_grad_norm=self.params.max_grad_norm,
            noise_multiplier=cost.noise_multiplier,
            momentum=settings.momentum,
            weight_decay=settings.weight_decay,
        )
        out = train_dp_sgd(module, weights, x, y, dp, seed)
        return TrainResult(out.weights, out.num_samples, out.loss, None, privacy=cost)


def dp_sgd_solver(**params: object) -> Solver:
    """DP-SGD (Abadi et al. 2016): Poisson sampling, per-sample clipping, Gaussian noise."""
    return Solver.of_routine(DPSGDRoutine(DPSGDParams.model_validate(params)))


SOLVERS.add(
    "dp_sgd",
    dp_sgd_solver,
    DPSGDParams,
    "DP-SGD: per-sample clipping and Gaussian noise, priced by an accountant",
)
