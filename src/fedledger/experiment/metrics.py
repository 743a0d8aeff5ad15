"""Recording what a run measures: model reports evaluated on the global test set, and
the named metrics nodes emit. Written as ``metrics.csv`` and ``metrics.jsonl``."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fedledger.protocols.base import EmitMetric, EvalResult, NodeId

CSV_FIELDS = ("node", "role", "honest", "step", "time", "accuracy", "loss")


@dataclass(frozen=True)
class ModelRow:
    """One node's model at one step, measured on the global held-out test set."""

    node: NodeId
    role: str
    honest: bool
    step: int
    time: float
    accuracy: float
    loss: float


@dataclass(frozen=True)
class MetricRow:
    node: NodeId
    name: str
    step: int
    time: float
    value: float
    tags: dict[str, str]


class MetricsRecorder:
    """Simulator observer: evaluates reported models and collects emitted metrics.

    ``evaluate`` measures weights on the global test set; reports of a step that is not
    a multiple of ``every`` are skipped, except each node's latest one, which is always
    kept so the final accuracy is exact.
    """

    def __init__(
        self,
        evaluate: Callable[[np.ndarray], EvalResult],
        roles: dict[NodeId, str],
        honest: dict[NodeId, bool],
        every: int = 1,
        on_row: Callable[[ModelRow], None] | None = None,
    ) -> None:
        self.evaluate = evaluate
        self.roles = roles
        self.honest = honest
        self.every = every
        self.on_row = on_row
        self.rows: list[ModelRow] = []
        self.metrics: list[MetricRow] = []
        self._latest: dict[NodeId, tuple[int, float, np.ndarray]] = {}

    def on_report(self, node_id: NodeId, time: float, step: int, weights: np.ndarray) -> None:
        if step % self.every == 0:
            self._measure(node_id, time, step, weights)
            self._latest.pop(node_id, None)
        else:
            self._latest[node_id] = (step, time, weights)

    def on_metric(self, node_id: NodeId, time: float, metric: EmitMetric) -> None:
        row = MetricRow(node_id, metric.name, metric.step, time, metric.value, dict(metric.tags))
        self.metrics.append(row)

    def finish(self) -> None:
        """Measure each node's last report if it was skipped by ``every``."""
        for node_id, (step, time, weights) in sorted(self._latest.items()):
            self._measure(node_id, time, step, weights)
        self._latest.clear()

    def _measure(self, node_id: NodeId, time: float, step: int, weights: np.ndarray) -> None:
        result = self.evaluate(weights)
        row = ModelRow(
            node_id,
            self.roles.get(node_id, ""),
            self.honest.get(node_id, True),
            step,
            time,
            result.accuracy,
            result.loss,
        )
        self.rows.append(row)
        if self.on_row is not None:
            self.on_row(row)

    def final_rows(self) -> list[ModelRow]:
        return final_rows(self.rows)


def final_rows(rows: Sequence[ModelRow]) -> list[ModelRow]:
    """Each node's last measured model."""
    last: dict[NodeId, ModelRow] = {}
    for row in rows:
        if row.node not in last or row.step >= last[row.node].step:
            last[row.node] = row
    return [last[n] for n in sorted(last)]


def write_metrics(run_dir: Path, rows: Sequence[ModelRow], metrics: Sequence[MetricRow]) -> None:
    """``metrics.csv`` (measured models) and ``metrics.jsonl`` (emitted metrics)."""
    with (run_dir / "metrics.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_FIELDS)
        for r in rows:
            writer.writerow(
                [
                    r.node,
                    r.role,
                    int(r.honest),
                    r.step,
                    f"{r.time:.6f}",
                    f"{r.accuracy:.6f}",
                    f"{r.loss:.6f}",
                ]
            )
    with (run_dir / "metrics.jsonl").open("w") as fh:
        for m in metrics:
            fh.write(json.dumps(asdict(m), sort_keys=True) + "\n")
