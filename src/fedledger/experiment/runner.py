"""Runs one experiment in the simulator and writes its run directory.

config -> data and partitions -> protocol nodes -> simulator -> metrics, summary, plots.
The runner prints nothing; the CLI shows progress through the ``on_row`` callback.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from fedledger.assembly.build import NodeRole, build_experiment
from fedledger.assembly.config import ExperimentConfig, to_yaml
from fedledger.assembly.metrics import (
    MetricRow,
    MetricsRecorder,
    ModelRow,
    attack_metrics,
    final_measured,
    final_rows,
    write_metrics,
)
from fedledger.experiment.plots import plot_accuracy
from fedledger.protocols.base import Protocol
from fedledger.runtime.sim import ComputeModel, LinkSpec, NetworkModel, Simulator
from fedledger.runtime.sim.network import Partition


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    summary: dict[str, Any]
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
    run_dir = out or default_run_dir(config)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(to_yaml(config))

    exp = build_experiment(config, run_dir)
    test = exp.data.test
    recorder = MetricsRecorder(
        evaluate=lambda w: exp.learner.evaluate(
            w, test.x, test.y, batch_size=config.eval.batch_size
        ),
        roles={r.plan.node_id: r.plan.role for r in exp.roles},
        honest={r.plan.node_id: r.honest for r in exp.roles},
        every=config.eval.every,
        on_row=on_row,
        model_metrics=attack_metrics(
            {r.plan.node_id: r.attack for r in exp.roles},
            lambda w, x: exp.learner.predict(w, x, batch_size=config.eval.batch_size),
            test.x,
            test.y,
        ),
        step_metrics=exp.protocol.step_metrics(exp.learner.layout.entries),
    )
    sim = Simulator(
        exp.nodes,
        {p.node_id: p.peers for p in exp.plans},
        exp.jobs,
        network_model(config),
        ComputeModel(**config.compute.model_dump()),
        recorder,
        seed=config.seed,
        max_time=config.max_time,
        blobs={node_id: svc.blobs for node_id, svc in exp.services.items()},
        meters=exp.meters,
        encode_messages=config.network.encode,
        declared_effects=exp.protocol.effects,
    )
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
    counters = {
        "virtual_seconds": round(stats.virtual_time, 6),
        "events": stats.events,
        "messages": stats.messages_sent,
        "messages_lost": stats.messages_lost,
        "bytes_sent": int(sum(stats.bytes_sent.values())),
        "jobs": stats.jobs,
        "nodes_halted": stats.halted,
        "cpu_seconds": {a: round(v, 4) for a, v in sorted(cpu_total.items())},
    }
    summary = finish_run(
        config, exp.protocol, run_dir, exp.roles, recorder.rows, recorder.metrics, counters,
        started,
    )
    return RunResult(run_dir, summary, tuple(recorder.rows))


def finish_run(
    config: ExperimentConfig,
    protocol: Protocol,
    run_dir: Path,
    roles: Sequence[NodeRole],
    rows: Sequence[ModelRow],
    metrics: Sequence[MetricRow],
    counters: dict[str, Any],
    started: float,
) -> dict[str, Any]:
    """Write metrics, summary.json and plots of a finished run; return the summary.

    Shared by the simulator and the real-network ``localnet`` (which gathers the rows
    from its node processes)."""
    write_metrics(run_dir, rows, metrics)
    final = final_rows(rows)
    honest_final = [r for r in final if r.honest]
    summary: dict[str, Any] = {
        "name": config.name,
        "protocol": config.protocol.name,
        "seed": config.seed,
        "rounds": config.rounds,
        "nodes": len(roles),
        "malicious": sorted(r.plan.node_id for r in roles if not r.honest),
        "final_accuracy": (
            float(np.mean([r.accuracy for r in honest_final])) if honest_final else None
        ),
        "honest_accuracies": [round(r.accuracy, 6) for r in honest_final],
        "last_step": max((r.step for r in final), default=0),
        **{  # attacks' own metrics (backdoor_asr) on the honest final models
            name: round(value, 6) if np.isfinite(value) else None
            for name, value in final_measured(rows, metrics).items()
        },
        "wall_seconds": round(time.perf_counter() - started, 3),
        **counters,
    }
    summary.update(protocol.report(run_dir, rows, metrics))
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if config.output.plots:
        title = f"{config.name} ({config.protocol.name}, seed {config.seed})"
        plot_accuracy(list(rows), run_dir / "plots" / "accuracy.png", title, "round / step")
    return summary
