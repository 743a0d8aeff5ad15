"""The simulated network: per-link latency and bandwidth, shared uplinks, loss.

A message of ``size`` bytes sent at time t from a to b leaves when a's uplink is free
(messages from one node are serialized on its uplink, so a server sending a model to 100
clients pays for 100 copies), takes ``size / bandwidth`` seconds to transmit, and arrives
``latency`` seconds later. With probability ``loss`` it is dropped. Links without an
override use the defaults. Partitions cut given node groups off from each other during
a time window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedledger.protocols.base import NodeId


@dataclass(frozen=True)
class LinkSpec:
    latency: float = 0.01  # seconds
    bandwidth: float = 12.5e6  # bytes per second (100 Mbit/s)
    loss: float = 0.0  # probability a message is dropped

    def __post_init__(self) -> None:
        if self.latency < 0:
            raise ValueError(f"latency must be >= 0 seconds, got {self.latency}")
        if self.bandwidth <= 0:
            raise ValueError(f"bandwidth must be > 0 bytes/s, got {self.bandwidth}")
        if not 0.0 <= self.loss < 1.0:
            raise ValueError(f"loss must be in [0, 1), got {self.loss}")


@dataclass(frozen=True)
class Partition:
    """From ``start`` to ``end`` (virtual seconds) ``group`` cannot talk to the others."""

    start: float
    end: float
    group: frozenset[NodeId]

    def cuts(self, a: NodeId, b: NodeId, time: float) -> bool:
        return self.start <= time < self.end and ((a in self.group) != (b in self.group))


class NetworkModel:
    """Decides when (and whether) a message arrives."""

    def __init__(
        self,
        default: LinkSpec,
        links: dict[tuple[NodeId, NodeId], LinkSpec] | None = None,
        partitions: tuple[Partition, ...] = (),
        seed: int = 0,
    ) -> None:
        self.default = default
        self.links = dict(links or {})
        self.partitions = partitions
        self._rng = np.random.default_rng(seed)
        self._uplink_free: dict[NodeId, float] = {}

    def link(self, a: NodeId, b: NodeId) -> LinkSpec:
        return self.links.get((a, b)) or self.links.get((b, a)) or self.default

    def transmit(self, a: NodeId, b: NodeId, size: int, now: float) -> float | None:
        """Arrival time of a message, or None if it is lost or cut by a partition."""
        spec = self.link(a, b)
        depart = max(now, self._uplink_free.get(a, 0.0))
        done = depart + size / spec.bandwidth
        self._uplink_free[a] = done
        if any(p.cuts(a, b, depart) for p in self.partitions):
            return None
        if spec.loss > 0.0 and self._rng.random() < spec.loss:
            return None
        return done + spec.latency
