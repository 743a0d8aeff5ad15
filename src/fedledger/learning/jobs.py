"""Learning jobs: what a node asks its host to compute on its local data, and the results.

These are the learning layer's own types: protocols ask for them (``RunJob``), hosts run
them through a :class:`~fedledger.learning.executor.JobExecutor`, and the learning core
computes them, without knowing about protocols or hosts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Vector = np.ndarray


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of local training (the experiment's defaults).

    solver: a name in :data:`fedledger.learning.solvers.SOLVERS` (``sgd``,
        ``sgd_momentum``, ``dp_sgd`` once :mod:`fedledger.privacy` is imported); ``sgd``
        uses ``momentum`` as given (0 by default).
    solver_params: the solver's own parameters (validated by its registered model).
    horizon: how many training jobs a node runs at most over the experiment (the
        protocol's horizon: rounds or ticks), for solvers that plan over the whole run
        (DP-SGD spreads a target epsilon over ``horizon`` jobs).
    """

    epochs: int = 1
    lr: float = 0.05
    batch_size: int = 32
    momentum: float = 0.0
    weight_decay: float = 0.0
    solver: str = "sgd"
    solver_params: Mapping[str, Any] = field(default_factory=dict, hash=False)
    horizon: int = 1


@dataclass(frozen=True)
class PrivacyCost:
    """What one training job spent in differential privacy: ``steps`` runs of a noisy
    ``mechanism`` ("gaussian" or "laplace") with ``noise_multiplier`` on a Poisson sample
    of rate ``sample_rate``, to be priced by the accountant named ``accountant`` at
    ``delta``. ``budget``: the epsilon the node may spend over the run (None: no cap); a
    node stops before a job that would take it over. The privacy layer composes these
    (:class:`fedledger.privacy.dp.ledger.PrivacyLedger`)."""

    mechanism: str
    noise_multiplier: float
    sample_rate: float
    steps: int
    delta: float
    accountant: str = "rdp"
    budget: float | None = None


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
    """Evaluate ``weights`` on the node's local validation data (``split="val"``), its
    training data (``"train"``) or the experiment's shared split (``"shared"``, for
    protocols that declare one: ``Protocol.shared_split_samples``)."""

    weights: Vector
    split: str = "val"  # "val", "train" or "shared"


Job = TrainJob | EvalJob


@dataclass(frozen=True)
class TrainResult:
    """A trained model. ``momentum_buffer``: the SGD momentum buffer at the end (flat),
    when the solver has momentum, so a protocol can carry it to its next job.
    ``privacy``: what the job spent in differential privacy (a DP solver), else None."""

    weights: Vector
    num_samples: int
    loss: float
    momentum_buffer: Vector | None = None
    privacy: PrivacyCost | None = None


@dataclass(frozen=True)
class EvalResult:
    accuracy: float
    loss: float
    num_samples: int


JobResult = TrainResult | EvalResult
