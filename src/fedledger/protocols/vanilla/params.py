"""Parameters of the vanilla protocol (the ``protocol:`` block of a config)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class VanillaParams(BaseModel):
    """Classic server-based FedAvg (McMahan et al. 2017).

    fraction: share of clients sampled each round (C in the paper), at least min_clients.
    aggregator: an aggregation rule from the registry, with its parameters.
    round_timeout: virtual seconds the server waits for updates before aggregating what
        it has (stragglers and lost messages are then left out of the round).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    fraction: float = Field(1.0, gt=0.0, le=1.0)
    min_clients: int = Field(1, ge=1)
    aggregator: dict[str, Any] = Field(default_factory=lambda: {"name": "weighted_fedavg"})
    round_timeout: float = Field(600.0, gt=0.0)
