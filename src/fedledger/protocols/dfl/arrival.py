"""Training data that arrives over time: a node receives ``samples_per_interval`` new
samples every interval (drawn from [lo, hi] ticks, seeded per node) and trains on each
full batch, read as a window of its local training set (wrapping to the start)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedledger.seeding import derive_seed


@dataclass
class DataArrival:
    """Per node: when data arrives, how much is held, and which window to train on."""

    seed: int
    node_id: str
    interval: tuple[int, int]
    per_interval: int
    batch_size: int
    num_samples: int
    held: int = 0
    position: int = 0
    arrivals: int = 0

    def next_delay(self) -> float:
        """Ticks until the next arrival (a fresh draw for each arrival)."""
        self.arrivals += 1
        rng = np.random.default_rng(
            derive_seed(self.seed, "dfl-arrival", self.node_id, self.arrivals)
        )
        lo, hi = self.interval
        return float(rng.integers(lo, hi + 1))

    def arrive(self) -> None:
        self.held += self.per_interval

    def take_batch(self) -> tuple[int, int] | None:
        """The (start, stop) window of the next batch, or None while too little is held."""
        if self.held < self.batch_size or self.num_samples <= 0:
            return None
        self.held -= self.batch_size
        size = min(self.batch_size, self.num_samples)
        if self.position + size > self.num_samples:
            self.position = 0
        window = (self.position, self.position + size)
        self.position += size
        return window
