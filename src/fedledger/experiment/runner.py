"""Runs one experiment in the simulator and writes its run directory.

config -> data and partitions -> protocol nodes -> simulator -> metrics, summary, plots.
The runner prints nothing; the CLI shows progress through the ``on_row`` callback.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fedledger.assembly.build import Experiment, build_experiment, declared_contract
from fedledger.assembly.config import ExperimentConfig
from fedledger.assembly.metrics import MetricRow, ModelRow, recorder_for
from fedledger.experiment.rundir import RunDir, RunSummary, SimCounters, finish_run
from fedledger.learning.executor import JobExecutor
from fedledger.runtime.ray import RayOptions, executor_usage, make_executor
from fedledger.runtime.sim import ComputeModel, LinkSpec, NetworkModel, Simulator
from fedledger.runtime.sim.network import Partition
from fedledger.runtime.sim.simulator import SimObserver
from fedledger.storage.layout import RunLayout


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    summary: RunSummary
    rows: tuple[ModelRow, ...]
    executor: dict[str, Any] | None = None  # executor_usage: workers, speedup, ...


def network_model(config: ExperimentConfig) -> NetworkModel:
    net = config.network
    default = LinkSpec(net.latency, net.bandwidth, net.loss)
    links = {
        (link.a, link.b): LinkSpec(
            default.latency if link.latency is None else link.latency,
            default.bandwidth if link.bandwidth is None else link.bandwidth,
            default.loss if link.loss is None else link.loss,
        )
        for link in net.links
    }
    partitions = tuple(Partition(p.start, p.end, frozenset(p.group)) for p in net.partitions)
    return NetworkModel(default, links, partitions, seed=config.seed)


def default_run_dir(config: ExperimentConfig) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Path(config.output.dir) / f"{config.name}-{stamp}"


def run_experiment(
    config: ExperimentConfig,
    out: Path | None = None,
    on_row: Callable[[ModelRow], None] | None = None,
    executor: str | JobExecutor = "inline",
    ray: RayOptions | None = None,
) -> RunResult:
    """Build the experiment, simulate it, and write its run directory.

    ``executor``: where the learning jobs run, ``inline`` or ``ray`` (``ray``: its
    options), or an executor the caller made, keeps for several runs and shuts down
    itself; all give the same ledgers, metrics and summary. A run on another executor
    than inline adds an ``executor`` section to summary.json (:func:`executor_usage`)."""
    started = time.perf_counter()
    run_dir = RunDir(out or default_run_dir(config))
    run_dir.write_config(config)

    exp = build_experiment(config, run_dir.path)
    recorder = recorder_for(exp, on_row=on_row)
    try:
        owned = isinstance(executor, str)
        jobs_executor = make_executor(executor, ray) if isinstance(executor, str) else executor
    except BaseException:
        exp.close()
        raise
    done_before = jobs_executor.report()  # a caller's executor may have run other runs
    sim = simulator_for(exp, recorder, executor=jobs_executor)
    try:
        stats = sim.run()
        usage = executor_usage(jobs_executor, sim.job_wait_seconds, since=done_before)
    finally:
        exp.close()
        if owned:
            jobs_executor.shutdown()
    recorder.finish()
    cpu_total: dict[str, float] = {}
    for node_id, activities in stats.cpu.items():
        for activity, seconds in sorted(activities.items()):
            tags = {"activity": activity}
            recorder.metrics.append(
                MetricRow(node_id, "cpu_seconds", 0, stats.virtual_time, seconds, tags)
            )
            cpu_total[activity] = cpu_total.get(activity, 0.0) + seconds
    counters = SimCounters(
        virtual_seconds=round(stats.virtual_time, 6),
        events=stats.events,
        messages=stats.messages_sent,
        messages_lost=stats.messages_lost,
        bytes_sent=int(sum(stats.bytes_sent.values())),
        jobs=stats.jobs,
        nodes_halted=stats.halted,
        work_seconds=round(sum(stats.work_seconds.values()), 6),
    )
    summary = finish_run(
        config,
        exp.protocol,
        run_dir.path,
        exp.roles,
        recorder.rows,
        recorder.metrics,
        counters,
        cpu_total,
        time.perf_counter() - started,
    )
    if jobs_executor.name != "inline":
        summary_file = RunLayout(run_dir.path).summary
        written = json.loads(summary_file.read_text())
        written["executor"] = usage
        summary_file.write_text(json.dumps(written, indent=2) + "\n")
    return RunResult(run_dir.path, summary, tuple(recorder.rows), usage)


def simulator_for(
    exp: Experiment,
    observer: SimObserver,
    max_time: float | None = None,
    executor: JobExecutor | None = None,
) -> Simulator:
    """The simulator of a built experiment: its nodes, links, compute model, stores,
    meters, declared effects and (when the protocol declares a contract) its chain;
    ``max_time`` overrides the config's; ``executor`` runs the jobs (default inline)."""
    config = exp.config
    return Simulator(
        exp.nodes,
        {p.node_id: p.peers for p in exp.plans},
        exp.jobs,
        network_model(config),
        ComputeModel(**config.compute.model_dump()),
        observer,
        seed=config.seed,
        max_time=config.max_time if max_time is None else max_time,
        blobs={node_id: svc.blobs for node_id, svc in exp.services.items()},
        meters=exp.meters,
        encode_messages=config.network.encode,
        declared_effects=exp.protocol.effects,
        chain=simulated_chain(exp),
        executor=executor,
    )


def simulated_chain(exp: Experiment) -> Any:
    """One simulated chain for the contract the protocol's nodes declare, or None."""
    spec, subscribers = declared_contract(exp.protocol, exp.plans)
    if spec is None:
        return None
    from fedledger.runtime.sim.chainhost import ChainHost  # titanoboa: only when declared

    return ChainHost(spec, subscribers, seed=exp.config.seed)
