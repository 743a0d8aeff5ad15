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
from fedledger.protocols.meter import CpuMeter


@dataclass(frozen=True)
class ComputeModel:
    mode: str = "modelled"  # "modelled" or "measured"
    train_seconds_per_sample: float = 2e-4  # per sample and epoch
    eval_seconds_per_sample: float = 2e-5
    measured_scale: float = 1.0
    speed_spread: float = 0.0  # node speed factor drawn from [1 - spread, 1 + spread]
    work_scale: float = 1.0  # times the protocol-declared work (meter.work); 0 = no delay

    def __post_init__(self) -> None:
        if self.mode not in ("modelled", "measured"):
            raise ValueError(f"compute mode must be 'modelled' or 'measured', got {self.mode!r}")
        if not 0.0 <= self.speed_spread < 1.0:
            raise ValueError(f"speed_spread must be in [0, 1), got {self.speed_spread}")
        if not self.work_scale >= 0.0:
            raise ValueError(f"work_scale must be >= 0, got {self.work_scale}")

    def work_mark(self, meter: CpuMeter) -> tuple[int, float, dict[str, float] | None]:
        """A reading of ``meter`` before a handler, for :meth:`work_delay`."""
        seconds = dict(meter.seconds) if self.mode == "measured" else None
        return meter.declarations, meter.modelled_total, seconds

    def work_delay(
        self, meter: CpuMeter, mark: tuple[int, float, dict[str, float] | None]
    ) -> float:
        """Virtual seconds that the work a handler declared (``meter.work``) takes: the
        declared, modelled seconds; in ``measured`` mode the CPU time measured in the
        sections of the activities that declared work. 0 when it declared none."""
        declarations, declared, seconds = mark
        if meter.declarations == declarations or self.work_scale == 0.0:
            return 0.0
        if seconds is None:
            return (meter.modelled_total - declared) * self.work_scale
        spent = sum(meter.seconds[a] - seconds.get(a, 0.0) for a in meter.worked)
        return max(0.0, spent) * self.measured_scale * self.work_scale

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
