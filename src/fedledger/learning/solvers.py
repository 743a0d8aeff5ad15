"""The solver registry: how a training job updates the weights.

A solver is a factory ``(parameters, settings) -> torch optimizer``. ``sgd`` is plain
mini-batch SGD with the settings' momentum (0 by default); ``sgd_momentum`` insists on a
momentum in (0, 1) and defaults it to 0.9. DP-SGD and F-SVRG are added by the privacy
and Nagar work as further entries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from fedledger.errors import ConfigError
from fedledger.learning.jobs import TrainSettings
from fedledger.registry import Registry

Solver = Callable[[Iterable[torch.nn.Parameter], TrainSettings], torch.optim.Optimizer]

SOLVERS: Registry[Solver] = Registry("solver")


def _sgd(params: Iterable[torch.nn.Parameter], settings: TrainSettings) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        params, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay
    )


def _sgd_momentum(
    params: Iterable[torch.nn.Parameter], settings: TrainSettings
) -> torch.optim.Optimizer:
    momentum = settings.momentum or 0.9
    if not 0.0 < momentum < 1.0:
        raise ConfigError("train.momentum", f"sgd_momentum needs 0 < momentum < 1, got {momentum}")
    return torch.optim.SGD(
        params, lr=settings.lr, momentum=momentum, weight_decay=settings.weight_decay
    )


SOLVERS.add("sgd", lambda: _sgd, summary="mini-batch SGD with the settings' momentum (0)")
SOLVERS.add(
    "sgd_momentum", lambda: _sgd_momentum, summary="SGD with heavy-ball momentum (0.9 default)"
)


def solver(name: str) -> Solver:
    """The solver registered as ``name`` (an error lists the known ones)."""
    return SOLVERS.build(name, {}, where="train.solver")


def solver_momentum(settings: TrainSettings) -> float:
    """The momentum the settings' solver trains with."""
    if settings.solver == "sgd_momentum":
        return settings.momentum or 0.9
    return settings.momentum
