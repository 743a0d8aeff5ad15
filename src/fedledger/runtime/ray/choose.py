"""Choosing a run's job executor by name, and what it reports at the end of a run."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fedledger.errors import ConfigError
from fedledger.learning.executor import ExecutorReport, InlineExecutor, JobExecutor
from fedledger.runtime.ray.options import RayOptions

#: The executors a simulated run can use.
EXECUTOR_NAMES = ("inline", "ray")


def make_executor(name: str, ray: RayOptions | None = None) -> JobExecutor:
    """``inline`` (jobs computed at their completion event, one at a time) or ``ray``
    (jobs submitted when they start and run by Ray workers; ``ray``: its options)."""
    if name == "inline":
        if ray is not None:
            raise ConfigError("executor", "Ray options were given with the inline executor")
        return InlineExecutor()
    if name == "ray":
        from fedledger.runtime.ray.executor import RayExecutor  # imports ray

        return RayExecutor(ray)
    allowed = ", ".join(EXECUTOR_NAMES)
    raise ConfigError("executor", f"unknown executor {name!r}; allowed: {allowed}")


def executor_usage(
    executor: JobExecutor, waited: float, since: ExecutorReport | None = None
) -> dict[str, Any]:
    """The ``executor`` section of a run's summary: the executor, the workers and
    machines that ran jobs, the jobs, their summed wall seconds where they ran, the wall
    seconds the host spent submitting and waiting for them (``waited``, less the
    workers' start-up), and the speedup (the first over the second; about 1 inline).
    ``since``: the executor's report before the run (one executor serving several runs):
    jobs, seconds, retries and start-up are counted from there."""
    report = executor.report()
    if since is not None:
        report = replace(
            report,
            jobs=report.jobs - since.jobs,
            job_seconds=report.job_seconds - since.job_seconds,
            retries=report.retries - since.retries,
            startup_seconds=report.startup_seconds - since.startup_seconds,
        )
    waited = max(0.0, waited - report.startup_seconds)
    return {
        "executor": report.executor,
        "workers": report.workers,
        "machines": report.machines,
        "jobs": report.jobs,
        "job_seconds": round(report.job_seconds, 3),
        "wait_seconds": round(waited, 3),
        "speedup": round(report.job_seconds / waited, 3) if waited > 0 else None,
        "retries": report.retries,
        "startup_seconds": round(report.startup_seconds, 3),
    }
