"""How much virtual time a job takes.

``modelled`` (the default) charges time per processed sample, so runs are exactly
reproducible; node speeds can differ by a seeded factor (heterogeneous devices).
``measured`` charges the CPU time the job really took on this machine, scaled; runs are
then only as reproducible as those timings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedledger.protocols.base import EvalJob, Job, NodeId, TrainJob


@dataclass(frozen=True)
class ComputeModel:
    mode: str = "modelled"  # "modelled" or "measured"
    train_seconds_per_sample: float = 2e-4  # per sample and epoch
    eval_seconds_per_sample: float = 2e-5
    measured_scale: float = 1.0
    speed_spread: float = 0.0  # node speed factor drawn from [1 - spread, 1 + spread]

    def __post_init__(self) -> None:
        if self.mode not in ("modelled", "measured"):
            raise ValueError(f"compute mode must be 'modelled' or 'measured', got {self.mode!r}")
        if not 0.0 <= self.speed_spread < 1.0:
            raise ValueError(f"speed_spread must be in [0, 1), got {self.speed_spread}")

    def speeds(self, nodes: list[NodeId], seed: int) -> dict[NodeId, float]:
        rng = np.random.default_rng([seed, 7])
        factors = rng.uniform(1 - self.speed_spread, 1 + self.speed_spread, size=len(nodes))
        return {n: float(f) for n, f in zip(nodes, factors, strict=True)}

    def modelled_seconds(self, job: Job, num_samples: int, eval_samples: int) -> float:
        if isinstance(job, TrainJob):
            if job.samples is not None:
                num_samples = max(0, min(job.samples[1], num_samples) - job.samples[0])
            return self.train_seconds_per_sample * num_samples * job.settings.epochs
        assert isinstance(job, EvalJob)
        return self.eval_seconds_per_sample * eval_samples
