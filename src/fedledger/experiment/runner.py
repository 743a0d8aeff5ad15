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

import numpy as np

from fedledger.errors import ConfigError
from fedledger.experiment.config import ExperimentConfig, to_yaml
from fedledger.experiment.metrics import MetricsRecorder, ModelRow
from fedledger.experiment.plots import plot_accuracy
from fedledger.learning.attacks.base import Attack
from fedledger.learning.data import FederatedData, prepare_federated_data
from fedledger.learning.partition import make_partitioner
from fedledger.learning.train import Learner
from fedledger.plugins import registries
from fedledger.protocols.base import NodePlan, NodeSetup, Protocol, TrainSettings
from fedledger.protocols.services import NodeServices
from fedledger.runtime.jobs import JobRunner, NodeLearning
from fedledger.runtime.services import make_genesis, node_keys, open_node_services
from fedledger.runtime.sim import ComputeModel, LinkSpec, NetworkModel, Simulator
from fedledger.runtime.sim.network import Partition


@dataclass(frozen=True)
class NodeRole:
    """Who a node is in an experiment: its plan, and its misbehaviour if any."""

    plan: NodePlan
    attack: Attack | None = None
    faults: tuple[str, ...] = ()

    @property
    def honest(self) -> bool:
        return self.attack is None and not self.faults


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    summary: dict[str, Any]
    rows: tuple[ModelRow, ...]


def build_protocol(config: ExperimentConfig) -> Protocol:
    comp = registries()["protocol"].get(config.protocol.name, "protocol.name")
    params = registries()["protocol"].params(
        config.protocol.name, config.protocol.params, "protocol"
    )
    return comp.factory(params)


def assign_roles(
    config: ExperimentConfig, plans: list[NodePlan], protocol: Protocol
) -> list[NodeRole]:
    """Attach each malicious group's attack and faults to its nodes."""
    attacks = registries()["attack"]
    by_id = {p.node_id: p for p in plans}
    candidates = [p.node_id for p in plans if p.holds_data]
    rng = np.random.default_rng([config.seed, 11])
    taken: dict[str, tuple[Attack | None, tuple[str, ...]]] = {}
    for i, group in enumerate(config.nodes.malicious):
        where = f"nodes.malicious.{i}"
        unknown = [f for f in group.faults if f not in protocol.faults]
        if unknown:
            allowed = ", ".join(protocol.faults) or "(none)"
            raise ConfigError(
                f"{where}.faults", f"unknown faults {unknown}; {protocol.name} knows: {allowed}"
            )
        if group.ids:
            missing = [n for n in group.ids if n not in by_id]
            if missing:
                raise ConfigError(
                    f"{where}.ids", f"no such nodes {missing}; nodes are {sorted(by_id)}"
                )
            chosen = list(group.ids)
        else:
            free = [n for n in candidates if n not in taken]
            if group.count > len(free):
                raise ConfigError(
                    f"{where}.count", f"{group.count} malicious nodes asked, {len(free)} available"
                )
            chosen = sorted(free[j] for j in rng.choice(len(free), group.count, replace=False))
        for node_id in chosen:
            attack = None
            if group.attack is not None:
                attack = attacks.build(group.attack.name, group.attack.params, f"{where}.attack")
            taken[node_id] = (attack, tuple(group.faults))
    return [NodeRole(p, *taken.get(p.node_id, (None, ()))) for p in plans]


def prepare_data(config: ExperimentConfig, num_holders: int) -> FederatedData:
    reg = registries()
    spec = config.data.dataset
    source = reg["dataset"].build(spec.name, spec.params, "data.dataset")
    part = config.data.partition
    partitioner = make_partitioner(part.name, part.params, where="data.partition")
    return prepare_federated_data(
        source,
        num_holders,
        partitioner,
        test_fraction=config.data.test_fraction,
        val_fraction=config.data.val_fraction,
        seed=config.seed,
    )


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


def open_services(
    protocol: Protocol, plans: list[NodePlan], config: ExperimentConfig, run_dir: Path
) -> dict[str, NodeServices]:
    """Keys, the shared genesis block, and each node's ledger and blob store."""
    keys = node_keys(plans, config.seed)
    genesis = make_genesis(keys, to_yaml(config))
    members = tuple(keys[n].address for n in sorted(keys))
    fork_choice, finality = protocol.ledger_rules(members)
    return {
        p.node_id: open_node_services(
            p.node_id, run_dir / "nodes" / p.node_id, keys, genesis, fork_choice, finality
        )
        for p in plans
    }


def default_run_dir(config: ExperimentConfig) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Path(config.output.dir) / f"{config.name}-{stamp}"


def run_experiment(
    config: ExperimentConfig,
    out: Path | None = None,
    on_row: Callable[[ModelRow], None] | None = None,
) -> RunResult:
    started = time.perf_counter()
    run_dir = out or default_run_dir(config)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(to_yaml(config))

    protocol = build_protocol(config)
    plans = list(protocol.plan(config.nodes.count, config.seed))
    roles = assign_roles(config, plans, protocol)
    holders = [r for r in roles if r.plan.holds_data]
    data = prepare_data(config, len(holders))
    model = config.model
    learner = Learner(model.name, model.params, data.test.x.shape[1:], data.test.num_classes)
    initial = learner.init_weights(config.seed)
    num_attackers = max(1, sum(1 for r in holders if r.attack is not None))
    learning = {
        r.plan.node_id: NodeLearning(node_data, r.attack, num_attackers)
        for r, node_data in zip(holders, data.nodes, strict=True)
    }
    jobs = JobRunner(learner, learning, config.seed)
    settings = TrainSettings(**config.train.model_dump())
    services = open_services(protocol, plans, config, run_dir) if protocol.uses_ledger else {}
    nodes = {}
    for r in roles:
        setup = NodeSetup(
            plan=r.plan,
            all_nodes=tuple(plans),
            seed=config.seed,
            train=settings,
            initial_weights=initial,
            num_train_samples=jobs.num_samples(r.plan.node_id),
            params=protocol.params,
            rounds=config.rounds,
            faults=r.faults,
            services=services.get(r.plan.node_id),
        )
        nodes[r.plan.node_id] = protocol.create_node(setup)

    test = data.test
    recorder = MetricsRecorder(
        evaluate=lambda w: learner.evaluate(w, test.x, test.y, batch_size=config.eval.batch_size),
        roles={r.plan.node_id: r.plan.role for r in roles},
        honest={r.plan.node_id: r.honest for r in roles},
        every=config.eval.every,
        on_row=on_row,
    )
    sim = Simulator(
        nodes,
        {p.node_id: p.peers for p in plans},
        jobs,
        network_model(config),
        ComputeModel(**config.compute.model_dump()),
        recorder,
        seed=config.seed,
        max_time=config.max_time,
        blobs={node_id: svc.blobs for node_id, svc in services.items()},
    )
    try:
        stats = sim.run()
    finally:
        for node_services in services.values():
            node_services.ledger.close()
    recorder.finish()
    recorder.write(run_dir)

    final = recorder.final_rows()
    honest_final = [r for r in final if r.honest]
    summary = {
        "name": config.name,
        "protocol": config.protocol.name,
        "seed": config.seed,
        "rounds": config.rounds,
        "nodes": len(plans),
        "malicious": sorted(r.plan.node_id for r in roles if not r.honest),
        "final_accuracy": (
            float(np.mean([r.accuracy for r in honest_final])) if honest_final else None
        ),
        "honest_accuracies": [round(r.accuracy, 6) for r in honest_final],
        "last_step": max((r.step for r in final), default=0),
        "wall_seconds": round(time.perf_counter() - started, 3),
        "virtual_seconds": round(stats.virtual_time, 6),
        "events": stats.events,
        "messages": stats.messages_sent,
        "messages_lost": stats.messages_lost,
        "bytes_sent": int(sum(stats.bytes_sent.values())),
        "jobs": stats.jobs,
        "nodes_halted": stats.halted,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if config.output.plots:
        title = f"{config.name} ({config.protocol.name}, seed {config.seed})"
        plot_accuracy(recorder.rows, run_dir / "plots" / "accuracy.png", title, "round / step")
    return RunResult(run_dir, summary, tuple(recorder.rows))
