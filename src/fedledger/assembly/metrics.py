"""Recording what a run measures: model reports evaluated on the global test set, and
the named metrics nodes emit. Written as ``metrics.csv`` and ``metrics.jsonl``."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from fedledger.learning.attacks.base import Attack
from fedledger.learning.jobs import EvalResult
from fedledger.protocols.base import EmitMetric, NodeId
from fedledger.protocols.results import (
    STEP_NODE,
    MetricRow,
    ModelRow,
    StepMetrics,
    final_rows,
)

CSV_FIELDS = ("node", "role", "honest", "step", "time", "accuracy", "loss")

#: Tag of the metric rows the host measures on a reported model with the global test
#: set besides accuracy and loss (e.g. ``backdoor_asr``); summarised in summary.json.
MEASURED_TAG = ("measured", "test")

#: A reported model's extra test-set metrics: (name, value, tags) triples.
ModelMetrics = Callable[[np.ndarray], list[tuple[str, float, dict[str, str]]]]

MEMO_SIZE = 8  # distinct models whose evaluation is kept for identical reports


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
        model_metrics: ModelMetrics | None = None,
        step_metrics: StepMetrics | None = None,
    ) -> None:
        self.evaluate = evaluate
        self.step_metrics = step_metrics  # over every node's model once all reported a step
        self._steps: dict[int, dict[NodeId, np.ndarray]] = {}
        self.model_metrics = model_metrics  # extra test-set metrics of every measured model
        self.roles = roles
        self.honest = honest
        self.every = every
        self.on_row = on_row
        self.rows: list[ModelRow] = []
        self.metrics: list[MetricRow] = []
        self._latest: dict[NodeId, tuple[int, float, np.ndarray]] = {}
        # the last few measured models by content: nodes that hold the same model (every
        # PoS-BFL device after a block) are evaluated once
        self._memo: dict[bytes, tuple[EvalResult, list[tuple[str, float, dict[str, str]]]]] = {}

    def on_report(self, node_id: NodeId, time: float, step: int, weights: np.ndarray) -> None:
        if self.step_metrics is not None:
            self._collect(node_id, time, step, weights)
        if step % self.every == 0:
            self._measure(node_id, time, step, weights)
            self._latest.pop(node_id, None)
        else:
            self._latest[node_id] = (step, time, weights)

    def _collect(self, node_id: NodeId, time: float, step: int, weights: np.ndarray) -> None:
        """Hold a step's models until every node has reported it, then run the step
        metrics over them (a step some node never reports is dropped at finish)."""
        assert self.step_metrics is not None
        models = self._steps.setdefault(step, {})
        models[node_id] = weights
        if len(models) < len(self.roles):
            return
        del self._steps[step]
        for name, value, tags in self.step_metrics(step, models):
            self.metrics.append(MetricRow(STEP_NODE, name, step, time, value, tags))

    def on_metric(self, node_id: NodeId, time: float, metric: EmitMetric) -> None:
        row = MetricRow(node_id, metric.name, metric.step, time, metric.value, dict(metric.tags))
        self.metrics.append(row)

    def finish(self) -> None:
        """Measure each node's last report if it was skipped by ``every``."""
        for node_id, (step, time, weights) in sorted(self._latest.items()):
            self._measure(node_id, time, step, weights)
        self._latest.clear()
        self._steps.clear()

    def _evaluated(
        self, weights: np.ndarray
    ) -> tuple[EvalResult, list[tuple[str, float, dict[str, str]]]]:
        key = hashlib.blake2b(np.ascontiguousarray(weights).tobytes(), digest_size=20).digest()
        found = self._memo.get(key)
        if found is None:
            extra = list(self.model_metrics(weights)) if self.model_metrics is not None else []
            found = (self.evaluate(weights), extra)
            if len(self._memo) >= MEMO_SIZE:
                self._memo.pop(next(iter(self._memo)))
            self._memo[key] = found
        return found

    def _measure(self, node_id: NodeId, time: float, step: int, weights: np.ndarray) -> None:
        result, extra = self._evaluated(weights)
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
        for name, value, tags in extra:
            tags = {**tags, MEASURED_TAG[0]: MEASURED_TAG[1]}
            self.metrics.append(MetricRow(node_id, name, step, time, value, tags))
        if self.on_row is not None:
            self.on_row(row)

    def final_rows(self) -> list[ModelRow]:
        return final_rows(self.rows)


def attack_metrics(
    attacks: Mapping[NodeId, Attack | None],
    predict: Callable[[np.ndarray, np.ndarray], np.ndarray],
    x_test: np.ndarray,
    y_test: np.ndarray,
) -> ModelMetrics | None:
    """The test-set metrics the nodes' attacks define (``Attack.test_metrics``), as a
    :data:`ModelMetrics` for :class:`MetricsRecorder`; None when no attack defines any.

    ``predict(weights, x)`` gives predicted labels. Nodes running equal attacks are
    measured once; each row is tagged with the attack's class and its nodes.
    """
    groups: list[tuple[Attack, list[NodeId]]] = []
    for node_id in sorted(attacks):
        attack = attacks[node_id]
        if attack is None or type(attack).test_metrics is Attack.test_metrics:
            continue
        for known, members in groups:
            if known == attack:
                members.append(node_id)
                break
        else:
            groups.append((attack, [node_id]))
    if not groups:
        return None

    def measure(weights: np.ndarray) -> list[tuple[str, float, dict[str, str]]]:
        out = []
        for attack, members in groups:
            tags = {"attack": type(attack).__name__, "nodes": ",".join(members)}
            found = attack.test_metrics(lambda x: predict(weights, x), x_test, y_test)
            out.extend((name, float(value), tags) for name, value in sorted(found.items()))
        return out

    return measure


def final_measured(rows: Sequence[ModelRow], metrics: Sequence[MetricRow]) -> dict[str, float]:
    """Each :data:`MEASURED_TAG` metric on the honest nodes' final models, averaged over
    those nodes (and over attacks, when several define the same name); NaN values are
    left out of the mean (NaN if nothing else is left)."""
    finals = {(r.node, r.step) for r in final_rows(rows) if r.honest}
    values: dict[str, list[float]] = {}
    for m in metrics:
        if m.tags.get(MEASURED_TAG[0]) == MEASURED_TAG[1] and (m.node, m.step) in finals:
            values.setdefault(m.name, []).append(m.value)
    out = {}
    for name, found in sorted(values.items()):
        finite = [v for v in found if not np.isnan(v)]
        out[name] = float(np.mean(finite)) if finite else float("nan")
    return out


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
