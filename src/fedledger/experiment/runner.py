"""Runs one experiment in the simulator and writes its run directory.

config -> data and partitions -> protocol nodes -> simulator -> metrics, summary, plots.
The runner prints nothing; the CLI shows progress through the ``on_row`` callback.
"""

from __future__ import annotations

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
from fedledger.runtime.sim import ComputeModel, LinkSpec, NetworkModel, Simulator
from fedledger.runtime.sim.network import Partition
from fedledger.runtime.sim.simulator import SimObserver


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    summary: RunSummary
    rows: tuple[ModelRow, ...]


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
) -> RunResult:
    """Build the experiment, simulate it, and write its run directory."""
    started = time.perf_counter()
    run_dir = RunDir(out or default_run_dir(config))
    run_dir.write_config(config)

    exp = build_experiment(config, run_dir.path)
    recorder = recorder_for(exp, on_row=on_row)
    sim = simulator_for(exp, recorder)
    try:
        stats = sim.run()
    finally:
        exp.close()
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
    return RunResult(run_dir.path, summary, tuple(recorder.rows))


def simulator_for(
    exp: Experiment, observer: SimObserver, max_time: float | None = None
) -> Simulator:
    """The simulator of a built experiment: its nodes, links, compute model, stores,
    meters, declared effects and (when the protocol declares a contract) its chain;
    ``max_time`` overrides the config's."""
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
    )


def simulated_chain(exp: Experiment) -> Any:
    """One simulated chain for the contract the protocol's nodes declare, or None."""
    spec, subscribers = declared_contract(exp.protocol, exp.plans)
    if spec is None:
        return None
    from fedledger.runtime.sim.chainhost import ChainHost  # titanoboa: only when declared

    return ChainHost(spec, subscribers)
