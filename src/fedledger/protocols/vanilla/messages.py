"""Messages of the vanilla FedAvg protocol."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedledger.codec import record
from fedledger.protocols.base import Message


@record("vanilla.GlobalModel")
@dataclass(frozen=True)
class GlobalModel(Message):
    """Server -> sampled client: train on these weights in ``round``."""

    round: int
    weights: np.ndarray


@record("vanilla.ClientUpdate")
@dataclass(frozen=True)
class ClientUpdate(Message):
    """Client -> server: the locally trained weights for ``round``."""

    round: int
    weights: np.ndarray
    num_samples: int
    loss: float


@record("vanilla.Finish")
@dataclass(frozen=True)
class Finish(Message):
    """Server -> clients: the experiment is over."""

    rounds: int
