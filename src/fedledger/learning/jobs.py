"""Learning jobs: what a node asks its host to compute on its local data, and the results.

These are the learning layer's own types: protocols ask for them (``RunJob``), hosts run
them through a :class:`~fedledger.learning.executor.JobExecutor`, and the learning core
computes them, without knowing about protocols or hosts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Vector = np.ndarray


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of local training (the experiment's defaults).

    solver: a name in :data:`fedledger.learning.solvers.SOLVERS` (``sgd``,
        ``sgd_momentum``); ``sgd`` uses ``momentum`` as given (0 by default).
    """

    epochs: int = 1
    lr: float = 0.05
    batch_size: int = 32
    momentum: float = 0.0
    weight_decay: float = 0.0
    solver: str = "sgd"


@dataclass(frozen=True)
class TrainJob:
    """Train ``weights`` on the node's local training data.

    samples: (start, stop) slice of the node's training set, for protocols where data
        arrives over time; None means all of it.
    tag: groups the jobs of one round or tick for attacks that look at the honest
        updates of the same round (the simulator can give them those).
    momentum_buffer: the SGD momentum buffer to start from (flat, the weights' shape),
        for protocols whose node keeps one solver across jobs as Caffe does (DFL);
        None starts from zero. Used only when the solver has momentum.
    shared: whether the trained model leaves the node as its update (the default). A
        model attack (noise, sign flip, ...) wraps only shared models; a model the node
        keeps for itself (a PoS-BFL validator's reference model) is trained honestly, as
        a malicious device misbehaves when it is a worker.
    """

    weights: Vector
    settings: TrainSettings
    seed: int
    samples: tuple[int, int] | None = None
    tag: str = ""
    momentum_buffer: Vector | None = None
    shared: bool = True


@dataclass(frozen=True)
class EvalJob:
    """Evaluate ``weights`` on the node's local validation data."""

    weights: Vector
    split: str = "val"  # "val" or "train"


Job = TrainJob | EvalJob


@dataclass(frozen=True)
class TrainResult:
    """A trained model. ``momentum_buffer``: the SGD momentum buffer at the end (flat),
    when the solver has momentum, so a protocol can carry it to its next job."""

    weights: Vector
    num_samples: int
    loss: float
    momentum_buffer: Vector | None = None


@dataclass(frozen=True)
class EvalResult:
    accuracy: float
    loss: float
    num_samples: int


JobResult = TrainResult | EvalResult
