"""The run contract: what a finished run writes, the same for every host.

:class:`RunSummary` is the typed ``summary.json``: the fields every run has, the host's
counters (:class:`SimCounters` or :class:`LocalnetCounters`) and the protocol's own
section (``Protocol.report``), written under the protocol's name. :class:`RunDir` writes
a run directory (laid out by :class:`fedledger.storage.layout.RunLayout`): the config,
the metrics, the summary and the plots.

``summary.json`` keeps the common fields and the host's counters at the top level, e.g.::

    {"name": ..., "protocol": "dfl", "seed": 0, "horizon": {"unit": "ticks", "length": 60},
     "nodes": 8, "malicious": [...], "final_accuracy": ..., "honest_accuracies": [...],
     "last_step": 60, "measured": {"backdoor_asr": ...}, "wall_seconds": ...,
     "cpu_seconds": {...}, "host": "simulator", "events": ..., "messages": ..., ...,
     "privacy": null, "dfl": {...the protocol's report...}}

``privacy`` is null unless some node spent differential privacy; then it is
``{"epsilon": e, "delta": d, "accountant": name}``: e is the largest over the honest nodes
of the last ``epsilon_spent`` each emitted (null when a step added no noise, i.e. no
guarantee), d and the accountant those of the config (``protocol.dp`` or the
``dp_sgd`` solver).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from fedledger.assembly.build import NodeRole
from fedledger.assembly.config import ExperimentConfig, to_yaml
from fedledger.assembly.metrics import final_measured, final_rows, write_metrics
from fedledger.experiment.plots import plot_accuracy
from fedledger.privacy.dp.solver import DPSGDParams
from fedledger.protocols.base import Horizon, Protocol
from fedledger.protocols.results import MetricRow, ModelRow
from fedledger.storage.layout import RunLayout


@dataclass(frozen=True)
class SimCounters:
    """What the simulator counted."""

    virtual_seconds: float
    events: int
    messages: int
    messages_lost: int
    bytes_sent: int
    jobs: int
    nodes_halted: int
    work_seconds: float = 0.0  # virtual seconds of protocol-declared work (meter.work)

    host = "simulator"


@dataclass(frozen=True)
class LocalnetCounters:
    """What a localnet's node processes counted (gathered from their journals)."""

    virtual_seconds: float  # on a real network: wall seconds from the epoch to the halt
    messages: int
    messages_lost: int
    bytes_sent: int
    bytes_received: int
    payload_bytes_sent: int
    frames_sent: int
    connections: int
    drops: dict[str, int]
    nodes_halted: int
    start_delay: float
    late_starts: dict[str, float]  # nodes ready only after the epoch, seconds late
    exit_codes: dict[str, int | None]
    interrupted: bool

    host = "localnet"


HostCounters = SimCounters | LocalnetCounters
_HOSTS: dict[str, type[SimCounters] | type[LocalnetCounters]] = {
    SimCounters.host: SimCounters,
    LocalnetCounters.host: LocalnetCounters,
}


@dataclass(frozen=True)
class RunSummary:
    """A finished run, as ``summary.json`` holds it (see the module doc).

    measured: the attacks' test-set metrics (e.g. ``backdoor_asr``) on the honest nodes'
        final models, None where not finite.
    protocol_report: the protocol's section (``Protocol.report``), under its name.
    Indexing (``summary["messages"]``) reads the ``summary.json`` field of that name.
    """

    name: str
    protocol: str
    seed: int
    horizon: Horizon
    nodes: int
    malicious: tuple[str, ...]
    final_accuracy: float | None
    honest_accuracies: tuple[float, ...]
    last_step: int
    measured: dict[str, float | None]
    wall_seconds: float
    cpu_seconds: dict[str, float]
    counters: HostCounters
    protocol_report: dict[str, Any] = field(default_factory=dict)
    privacy: dict[str, Any] | None = None

    @property
    def host(self) -> str:
        return self.counters.host

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in ("counters", "protocol_report"):
                continue
            value = getattr(self, f.name)
            if isinstance(value, Horizon):
                value = {"unit": value.unit, "length": value.length}
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        out["host"] = self.counters.host
        out.update(asdict(self.counters))
        out[self.protocol] = dict(self.protocol_report)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunSummary:
        host = data.get("host")
        kind = _HOSTS.get(str(host))
        if kind is None:
            raise ValueError(f"summary host {host!r}: allowed {sorted(_HOSTS)}")
        # a counter added later (with a default) may be missing from an older summary
        counters = kind(**{f.name: data[f.name] for f in fields(kind) if f.name in data})
        horizon = data["horizon"]
        return cls(
            name=data["name"],
            protocol=data["protocol"],
            seed=int(data["seed"]),
            horizon=Horizon(horizon["unit"], int(horizon["length"])),
            nodes=int(data["nodes"]),
            malicious=tuple(data["malicious"]),
            final_accuracy=data["final_accuracy"],
            honest_accuracies=tuple(data["honest_accuracies"]),
            last_step=int(data["last_step"]),
            measured=dict(data["measured"]),
            wall_seconds=float(data["wall_seconds"]),
            cpu_seconds=dict(data["cpu_seconds"]),
            counters=counters,
            protocol_report=dict(data.get(data["protocol"], {})),
            privacy=dict(data["privacy"]) if data.get("privacy") is not None else None,
        )

    def __getitem__(self, key: str) -> Any:
        data = self.to_json()
        if key not in data:
            raise KeyError(f"summary field {key!r}: allowed {sorted(data)}")
        return data[key]

    def __contains__(self, key: object) -> bool:
        return key in self.to_json()

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_json())

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_json().get(key, default)


def privacy_spent(
    config: ExperimentConfig, roles: Sequence[NodeRole], metrics: Sequence[MetricRow]
) -> dict[str, Any] | None:
    """The run's ``privacy`` section (see the module doc), None if no node spent any."""
    honest = {r.plan.node_id for r in roles if r.honest}
    last: dict[str, MetricRow] = {}
    for row in metrics:
        if row.name != "epsilon_spent" or row.node not in honest:
            continue
        seen = last.get(row.node)
        if seen is None or (row.step, row.time) >= (seen.step, seen.time):
            last[row.node] = row
    if not last:
        return None
    epsilon = max(r.value for r in last.values())
    dp = config.protocol.params.get("dp")
    if isinstance(dp, Mapping):
        source: Mapping[str, Any] = dp
    elif config.train.solver.name == "dp_sgd":
        source = config.train.solver.params
    else:
        source = {}
    return {
        "epsilon": round(epsilon, 6) if math.isfinite(epsilon) else None,
        "delta": float(source.get("delta", DPSGDParams.model_fields["delta"].default)),
        "accountant": str(source.get("accountant", DPSGDParams.model_fields["accountant"].default)),
    }


def summarize(
    config: ExperimentConfig,
    protocol: Protocol,
    roles: Sequence[NodeRole],
    rows: Sequence[ModelRow],
    metrics: Sequence[MetricRow],
    counters: HostCounters,
    cpu_seconds: Mapping[str, float],
    wall_seconds: float,
    protocol_report: Mapping[str, Any],
) -> RunSummary:
    """The summary of a run from what it measured."""
    final = final_rows(list(rows))
    honest_final = [r for r in final if r.honest]
    return RunSummary(
        name=config.name,
        protocol=config.protocol.name,
        seed=config.seed,
        horizon=protocol.horizon(config.rounds),
        nodes=len(roles),
        malicious=tuple(sorted(r.plan.node_id for r in roles if not r.honest)),
        final_accuracy=(
            float(np.mean([r.accuracy for r in honest_final])) if honest_final else None
        ),
        honest_accuracies=tuple(round(r.accuracy, 6) for r in honest_final),
        last_step=max((r.step for r in final), default=0),
        measured={
            name: round(value, 6) if math.isfinite(value) else None
            for name, value in final_measured(rows, metrics).items()
        },
        wall_seconds=round(wall_seconds, 3),
        cpu_seconds={a: round(v, 4) for a, v in sorted(cpu_seconds.items())},
        counters=counters,
        protocol_report=dict(protocol_report),
        privacy=privacy_spent(config, roles, metrics),
    )


class RunDir:
    """Writes one run directory: config first, then metrics, summary and plots."""

    def __init__(self, root: Path) -> None:
        self.layout = RunLayout(root)

    @property
    def path(self) -> Path:
        return self.layout.root

    def write_config(self, config: ExperimentConfig) -> Path:
        self.layout.ensure()
        self.layout.config.write_text(to_yaml(config))
        return self.layout.config

    def write_metrics(self, rows: Sequence[ModelRow], metrics: Sequence[MetricRow]) -> None:
        self.layout.ensure()
        write_metrics(self.layout.root, rows, metrics)

    def write_summary(self, summary: RunSummary) -> Path:
        self.layout.ensure()
        self.layout.summary.write_text(json.dumps(summary.to_json(), indent=2) + "\n")
        return self.layout.summary

    def read_summary(self) -> RunSummary:
        return RunSummary.from_json(json.loads(self.layout.summary.read_text()))

    def plot_accuracy(
        self, config: ExperimentConfig, horizon: Horizon, rows: Sequence[ModelRow]
    ) -> None:
        title = f"{config.name} ({config.protocol.name}, seed {config.seed})"
        step = horizon.unit.removesuffix("s")
        plot_accuracy(list(rows), self.layout.plot("accuracy.png"), title, step)


def finish_run(
    config: ExperimentConfig,
    protocol: Protocol,
    run_dir: Path,
    roles: Sequence[NodeRole],
    rows: Sequence[ModelRow],
    metrics: Sequence[MetricRow],
    counters: HostCounters,
    cpu_seconds: Mapping[str, float],
    wall_seconds: float,
) -> RunSummary:
    """Write metrics, summary.json and plots of a finished run; return the summary.

    Shared by the simulator and the real-network ``localnet`` (which gathers the rows
    from its node processes)."""
    out = RunDir(run_dir)
    out.write_metrics(rows, metrics)
    report = protocol.report(run_dir, rows, metrics)
    summary = summarize(
        config, protocol, roles, rows, metrics, counters, cpu_seconds, wall_seconds, report
    )
    out.write_summary(summary)
    if config.output.plots:
        out.plot_accuracy(config, summary.horizon, rows)
    return summary
