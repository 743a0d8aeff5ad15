"""The Ray executor's options and errors (no Ray import here)."""

from __future__ import annotations

from dataclasses import dataclass

from fedledger.errors import ConfigError, FedledgerError


class RayUnavailableError(FedledgerError, RuntimeError):
    """Ray is not installed, or the cluster at the given address cannot be reached."""


@dataclass(frozen=True)
class RayOptions:
    """How jobs run on Ray.

    address: a cluster started with ``ray start`` ("auto", "HOST:PORT" or
        "ray://HOST:PORT"); None: use the Ray this process already joined, else start a
        local one for the run and stop it after.
    cpus_per_job: CPUs each worker reserves (one worker runs one job at a time).
    threads_per_job: torch threads in each worker (results are bit-identical to the
        inline executor run with the same number of threads; the CLI's default is 1).
    workers: how many workers to start; None: the cluster's CPUs / ``cpus_per_job``.
    max_in_flight: jobs submitted ahead of their results (bounds memory); None: twice
        the workers.
    max_retries: how often a job is run again after its worker died.
    num_cpus, object_store_memory: for a local Ray only (None: Ray's defaults).
    """

    address: str | None = None
    cpus_per_job: float = 1.0
    threads_per_job: int = 1
    workers: int | None = None
    max_in_flight: int | None = None
    max_retries: int = 2
    num_cpus: int | None = None
    object_store_memory: int | None = None

    def __post_init__(self) -> None:
        if not self.cpus_per_job > 0:
            raise ConfigError("ray.cpus_per_job", f"must be > 0, got {self.cpus_per_job}")
        if self.threads_per_job < 1:
            raise ConfigError("ray.threads_per_job", f"must be >= 1, got {self.threads_per_job}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError("ray.workers", f"must be >= 1 or unset, got {self.workers}")
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise ConfigError(
                "ray.max_in_flight", f"must be >= 1 or unset, got {self.max_in_flight}"
            )
        if self.max_retries < 0:
            raise ConfigError("ray.max_retries", f"must be >= 0, got {self.max_retries}")
