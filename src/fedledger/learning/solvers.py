"""The solver registry: how a training job updates the weights.

A registered solver is a factory ``(**params) -> Solver`` with a pydantic model of its
parameters (``train.solver`` in a config: a name, or ``{name: ..., <param>: ...}``). A
:class:`Solver` is one of two kinds:

* ``optimizer``: a factory ``(parameters, settings) -> torch optimizer``; the
  :class:`~fedledger.learning.train.Learner` runs its own mini-batch loop around it.
  ``sgd`` is plain mini-batch SGD with the settings' momentum (0 by default);
  ``sgd_momentum`` insists on a momentum in (0, 1) and defaults it to 0.9.
* ``routine``: a whole training routine ``(module, weights, x, y, settings, seed) ->
  TrainResult`` that owns the loop (DP-SGD samples, clips per sample and adds noise,
  which an optimizer step cannot do). The privacy layer registers ``dp_sgd`` this way
  when :mod:`fedledger.privacy` is imported (the learning layer never imports it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from fedledger.errors import ConfigError
from fedledger.learning.jobs import TrainResult, TrainSettings
from fedledger.learning.weights import Vector
from fedledger.registry import Registry

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter], TrainSettings], torch.optim.Optimizer]
#: (module, flat weights, x, y, settings, seed) -> the trained result; the module's
#: state may be overwritten.
TrainRoutine = Callable[
    [nn.Module, Vector, np.ndarray, np.ndarray, TrainSettings, int], TrainResult
]
SolverKind = Literal["optimizer", "routine"]


@dataclass(frozen=True)
class Solver:
    """A built solver: an optimizer factory or a whole training routine (see module doc)."""

    kind: SolverKind
    optimizer: OptimizerFactory | None = None
    routine: TrainRoutine | None = None

    def __post_init__(self) -> None:
        if self.kind == "optimizer" and (self.optimizer is None or self.routine is not None):
            raise ValueError("an optimizer solver needs an optimizer factory and no routine")
        if self.kind == "routine" and (self.routine is None or self.optimizer is not None):
            raise ValueError("a routine solver needs a training routine and no optimizer")
        if self.kind not in ("optimizer", "routine"):
            raise ValueError(f"solver kind must be 'optimizer' or 'routine', got {self.kind!r}")

    @classmethod
    def of_optimizer(cls, factory: OptimizerFactory) -> Solver:
        return cls("optimizer", optimizer=factory)

    @classmethod
    def of_routine(cls, routine: TrainRoutine) -> Solver:
        return cls("routine", routine=routine)


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


SOLVERS.add(
    "sgd",
    lambda: Solver.of_optimizer(_sgd),
    summary="mini-batch SGD with the settings' momentum (0)",
)
SOLVERS.add(
    "sgd_momentum",
    lambda: Solver.of_optimizer(_sgd_momentum),
    summary="SGD with heavy-ball momentum (0.9 default)",
)


def solver(name: str, params: Mapping[str, Any] | None = None) -> Solver:
    """The solver registered as ``name``, built with ``params`` (validated; an error
    names the bad key or lists the known solvers)."""
    return SOLVERS.build(name, params or {}, where="train.solver")


def solver_momentum(settings: TrainSettings) -> float:
    """The momentum the settings' solver trains with."""
    if settings.solver == "sgd_momentum":
        return settings.momentum or 0.9
    return settings.momentum
