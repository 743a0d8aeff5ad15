"""Privacy accountants: noisy steps in, (epsilon, delta) out.

Every accountant records the same thing, a :class:`NoisyStep`: which mechanism
(``"gaussian"`` or ``"laplace"``), its noise multiplier (noise scale over sensitivity:
std / L2 bound for the Gaussian, Laplace scale / L1 bound for the Laplace mechanism),
the Poisson sampling rate of the records it saw, and how many times it ran. Neighbouring
datasets differ by adding or removing one record (the sensitivity is the bound on one
record's contribution; a caller that protects replace-one neighbours passes the doubled
bound, as :class:`~fedledger.privacy.dp.mechanisms.LaplaceMechanism` does by default).

Accountants (registered in :data:`ACCOUNTANTS`, so a config can name one):

* ``rdp``: Renyi DP of the Poisson-subsampled Gaussian (Mironov et al.) and of the
  Laplace mechanism, through Google's ``dp-accounting``; the conversion to
  (epsilon, delta) is the one Opacus uses too (Balle et al. 2020).
* ``pld``: privacy loss distributions through ``dp-accounting``; tight for the Laplace
  mechanism (also subsampled) and the Gaussian.
* ``basic``: basic composition, the sum of the per-step epsilons (Nagar's "sum of the
  losses"); pure epsilon-DP steps only (Laplace), with amplification by sampling
  log(1 + q (e^eps - 1)) where a step saw a Poisson sample.

:func:`noise_multiplier_for` searches the smallest noise multiplier that keeps a planned
run within a target epsilon under a chosen accountant.
"""

from __future__ import annotations

import logging
import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import dp_accounting
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant
from pydantic import BaseModel, ConfigDict, Field

from fedledger.privacy.dp.errors import PrivacyError
from fedledger.registry import NoParams, Registry

MechanismName = Literal["gaussian", "laplace"]
MECHANISMS: tuple[str, ...] = ("gaussian", "laplace")


@dataclass(frozen=True)
class NoisyStep:
    """``steps`` runs of one noisy mechanism on a Poisson sample of rate ``sample_rate``."""

    mechanism: MechanismName
    noise_multiplier: float
    sample_rate: float
    steps: int


@dataclass(frozen=True)
class PrivacySpent:
    """An (epsilon, delta)-DP guarantee; epsilon is inf when a step added no noise."""

    epsilon: float
    delta: float


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_step(mechanism: str, noise_multiplier: float, sample_rate: float, steps: int) -> None:
    if mechanism not in MECHANISMS:
        raise PrivacyError(f"mechanism must be one of {', '.join(MECHANISMS)}, got {mechanism!r}")
    if not (
        _is_real(noise_multiplier)
        and math.isfinite(noise_multiplier)
        and noise_multiplier >= 0
    ):
        raise PrivacyError(
            f"noise_multiplier must be a finite number >= 0, got {noise_multiplier!r}"
        )
    if not (_is_real(sample_rate) and 0 < sample_rate <= 1):
        raise PrivacyError(f"sample_rate must satisfy 0 < sample_rate <= 1, got {sample_rate!r}")
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise PrivacyError(f"steps must be an integer >= 0, got {steps!r}")


def _check_delta(delta: float) -> None:
    if not (_is_real(delta) and 0 <= delta < 1):
        raise PrivacyError(f"delta must satisfy 0 <= delta < 1, got {delta!r}")


class Accountant(ABC):
    """Records noisy steps and answers what they cost in (epsilon, delta)."""

    name: ClassVar[str]
    mechanisms: ClassVar[tuple[str, ...]] = MECHANISMS
    pure: ClassVar[bool] = False  # pure epsilon-DP: the guarantee holds with delta 0

    def __init__(self) -> None:
        self._history: list[NoisyStep] = []

    @property
    def history(self) -> tuple[NoisyStep, ...]:
        return tuple(self._history)

    def step(
        self,
        noise_multiplier: float,
        sample_rate: float = 1.0,
        steps: int = 1,
        mechanism: MechanismName = "gaussian",
    ) -> None:
        """Record ``steps`` runs of ``mechanism`` (consecutive equal records are merged)."""
        _check_step(mechanism, noise_multiplier, sample_rate, steps)
        if mechanism not in self.mechanisms:
            raise PrivacyError(
                f"the {self.name} accountant handles {', '.join(self.mechanisms)} steps, "
                f"got {mechanism!r}"
            )
        self._check_supported(mechanism, float(sample_rate))
        if steps == 0:
            return
        record = NoisyStep(mechanism, float(noise_multiplier), float(sample_rate), int(steps))
        last = self._history[-1] if self._history else None
        if last is not None and (last.mechanism, last.noise_multiplier, last.sample_rate) == (
            record.mechanism,
            record.noise_multiplier,
            record.sample_rate,
        ):
            self._history[-1] = NoisyStep(
                last.mechanism, last.noise_multiplier, last.sample_rate, last.steps + int(steps)
            )
        else:
            self._history.append(record)

    def _check_supported(self, mechanism: str, sample_rate: float) -> None:
        """Refuse a step this accountant cannot account for (override where needed)."""
        return None

    def spent(self, delta: float) -> PrivacySpent:
        """The (epsilon, delta) guarantee of every step recorded so far, at ``delta``."""
        _check_delta(delta)
        if not self._history:
            return PrivacySpent(0.0, 0.0)
        if any(s.noise_multiplier == 0 for s in self._history):
            return PrivacySpent(math.inf, float(delta))
        return PrivacySpent(max(0.0, float(self._epsilon(float(delta)))), self._delta(delta))

    def _delta(self, delta: float) -> float:
        return float(delta)

    @abstractmethod
    def _epsilon(self, delta: float) -> float:
        """Epsilon at ``delta`` for a non-empty history of noisy steps."""


def _dp_event(step: NoisyStep) -> dp_accounting.DpEvent:
    if step.mechanism == "gaussian":
        inner: dp_accounting.DpEvent = dp_accounting.GaussianDpEvent(step.noise_multiplier)
    else:
        inner = dp_accounting.LaplaceDpEvent(step.noise_multiplier)
    if step.sample_rate < 1:
        inner = dp_accounting.PoissonSampledDpEvent(step.sample_rate, inner)
    return dp_accounting.SelfComposedDpEvent(inner, step.steps)


@contextmanager
def _quiet_absl() -> Iterator[None]:
    """dp-accounting logs (through absl) each RDP order it drops for not converging; the
    order is left out of the minimum, so the figure stays valid: keep those lines quiet."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


class RdpAccountant(Accountant):
    """Renyi DP (dp-accounting): subsampled Gaussian; Laplace without sampling."""

    name = "rdp"

    def __init__(self, orders: Sequence[float] | None = None) -> None:
        super().__init__()
        if orders is not None and (not orders or min(orders) <= 1):
            raise PrivacyError(f"RDP orders must be a non-empty list of values > 1, got {orders}")
        self.orders = (
            tuple(float(o) for o in orders)
            if orders is not None
            else tuple(rdp_privacy_accountant.DEFAULT_RDP_ORDERS)
        )

    def _check_supported(self, mechanism: str, sample_rate: float) -> None:
        if mechanism == "laplace" and sample_rate < 1:
            raise PrivacyError(
                f"the rdp accountant has no bound for the subsampled Laplace mechanism "
                f"(sample_rate {sample_rate}); use the pld or basic accountant"
            )

    def _epsilon(self, delta: float) -> float:
        if delta == 0:
            return math.inf
        acc = rdp_privacy_accountant.RdpAccountant(list(self.orders))
        with _quiet_absl():
            for s in self._history:
                acc.compose(_dp_event(s))
            return float(acc.get_epsilon(delta))


class PldAccountant(Accountant):
    """Privacy loss distributions (dp-accounting): Gaussian and Laplace, both subsampled."""

    name = "pld"

    def __init__(self, value_discretization_interval: float = 1e-4) -> None:
        super().__init__()
        if not (0 < value_discretization_interval < 1):
            raise PrivacyError(
                "value_discretization_interval must satisfy 0 < value < 1, "
                f"got {value_discretization_interval!r}"
            )
        self.value_discretization_interval = float(value_discretization_interval)

    def _epsilon(self, delta: float) -> float:
        acc = pld_privacy_accountant.PLDAccountant(
            value_discretization_interval=self.value_discretization_interval
        )
        for s in self._history:
            acc.compose(_dp_event(s))
        return float(acc.get_epsilon(delta))


def laplace_step_epsilon(noise_multiplier: float, sample_rate: float = 1.0) -> float:
    """Pure epsilon of one Laplace step, 1 / noise_multiplier, amplified by Poisson sampling."""
    _check_step("laplace", noise_multiplier, sample_rate, 1)
    if noise_multiplier == 0:
        return math.inf
    eps = 1.0 / noise_multiplier
    if sample_rate == 1:
        return eps
    return math.log1p(sample_rate * math.expm1(eps))


class BasicAccountant(Accountant):
    """Basic composition: epsilon is the sum of the steps' pure epsilons (delta 0)."""

    name = "basic"
    mechanisms = ("laplace",)
    pure = True

    def spend(self, epsilon: float, steps: int = 1) -> None:
        """Record ``steps`` releases of an epsilon-DP Laplace mechanism (inf: no noise)."""
        if not (_is_real(epsilon) and epsilon > 0 and not math.isnan(epsilon)):
            raise PrivacyError(f"epsilon must be > 0 (inf means no noise), got {epsilon!r}")
        self.step(0.0 if math.isinf(epsilon) else 1.0 / epsilon, 1.0, steps, "laplace")

    def _delta(self, delta: float) -> float:
        return 0.0

    def _epsilon(self, delta: float) -> float:
        return math.fsum(
            s.steps * laplace_step_epsilon(s.noise_multiplier, s.sample_rate)
            for s in self._history
        )


# ---------------------------------------------------------------- registry


class RdpParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    orders: list[float] | None = Field(
        default=None, description="Renyi orders to try (all > 1); dp-accounting's by default"
    )


class PldParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    value_discretization_interval: float = Field(default=1e-4, gt=0, lt=1)


ACCOUNTANTS: Registry[Accountant] = Registry("accountant")
ACCOUNTANTS.add("rdp", RdpAccountant, RdpParams, "Renyi DP of the subsampled Gaussian")
ACCOUNTANTS.add("pld", PldAccountant, PldParams, "privacy loss distributions (Gaussian, Laplace)")
ACCOUNTANTS.add("basic", BasicAccountant, NoParams, "basic composition: sum of pure epsilons")


def make_accountant(name: str, params: Mapping[str, Any] | None = None) -> Accountant:
    """A fresh accountant by registered name, its parameters validated."""
    return ACCOUNTANTS.build(name, params or {}, where="accountant")


# ---------------------------------------------------------------- calibration


def epsilon_for(
    noise_multiplier: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: str = "rdp",
    mechanism: MechanismName = "gaussian",
    params: Mapping[str, Any] | None = None,
) -> float:
    """Epsilon of ``steps`` identical noisy steps under a fresh ``accountant``."""
    acc = make_accountant(accountant, params)
    acc.step(noise_multiplier, sample_rate, steps, mechanism)
    return acc.spent(delta).epsilon


def noise_multiplier_for(
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: str = "rdp",
    mechanism: MechanismName = "gaussian",
    params: Mapping[str, Any] | None = None,
    rtol: float = 1e-3,
) -> float:
    """The smallest noise multiplier (within ``rtol``) whose run stays within ``target_epsilon``.

    Epsilon falls as the noise multiplier grows, so a doubling search brackets the answer
    and a bisection narrows it; the upper end is returned, so the run's epsilon is at most
    the target. An infinite target needs no noise (0.0).
    """
    if not (_is_real(target_epsilon) and target_epsilon > 0):
        raise PrivacyError(f"target_epsilon must be > 0 (inf: no noise), got {target_epsilon!r}")
    _check_delta(delta)
    _check_step(mechanism, 1.0, sample_rate, steps)
    if not 0 < rtol < 1:
        raise PrivacyError(f"rtol must satisfy 0 < rtol < 1, got {rtol!r}")
    if math.isinf(target_epsilon) or steps == 0:
        return 0.0

    def eps(sigma: float) -> float:
        return epsilon_for(sigma, delta, sample_rate, steps, accountant, mechanism, params)

    high = 1.0
    while eps(high) > target_epsilon:
        high *= 2.0
        if high > 2.0**24:
            raise PrivacyError(
                f"no noise multiplier up to 2^24 reaches epsilon {target_epsilon} at delta "
                f"{delta} over {steps} steps with the {accountant} accountant"
            )
    low = high / 2.0
    while eps(low) <= target_epsilon:
        high, low = low, low / 2.0
        if low < 1e-6:
            return high
    while (high - low) > rtol * high:
        mid = math.sqrt(low * high)
        if eps(mid) <= target_epsilon:
            high = mid
        else:
            low = mid
    return high
