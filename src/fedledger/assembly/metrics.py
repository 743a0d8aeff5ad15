"""Recording what a run measures: model reports evaluated on the global test set, and
the named metrics nodes emit. Written as ``metrics.csv`` and ``metrics.jsonl``."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fedledger.errors import FedledgerError
from fedledger.learning.attacks.base import Attack
from fedledger.learning.jobs import EvalResult
from fedledger.protocols.base import COMMON_METRICS, EmitMetric, NodeId, Protocol
from fedledger.protocols.results import (
    STEP_NODE,
    MetricRow,
    ModelRow,
    StepMetrics,
    final_rows,
)
from fedledger.storage.layout import RunLayout

if TYPE_CHECKING:
    from fedledger.assembly.build import Experiment

CSV_FIELDS = ("node", "role", "honest", "step", "time", "accuracy", "loss")

#: Tag of the metric rows the host measures on a reported model with the global test
#: set besides accuracy and loss (e.g. ``backdoor_asr``); summarised in summary.json.
MEASURED_TAG = ("measured", "test")

#: A reported model's extra test-set metrics: (name, value, tags) triples.
ModelMetrics = Callable[[np.ndarray], list[tuple[str, float, dict[str, str]]]]

MEMO_SIZE = 8  # distinct models whose evaluation is kept for identical reports


class UndeclaredMetricError(FedledgerError, ValueError):
    """A protocol emitted a metric it did not declare in ``Protocol.metrics``."""


class MetricNames:
    """The names a run records its protocol's metrics under: the common ones
    (:data:`COMMON_METRICS`) bare, the ones the protocol declares as
    ``<protocol>.<name>``; any other name is a protocol bug."""

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol.name
        self.common = frozenset(m.name for m in COMMON_METRICS)
        self.declared = frozenset(protocol.metric_names()) - self.common

    def qualify(self, name: str) -> str:
        if name in self.common:
            return name
        if name in self.declared:
            return f"{self.protocol}.{name}"
        raise UndeclaredMetricError(
            f"protocol {self.protocol!r} emitted metric {name!r}, which it does not declare; "
            f"declared: {sorted(self.declared)}, common: {sorted(self.common)} (add a "
            "MetricSpec to its Protocol.metrics)"
        )


@dataclass(frozen=True)
class StepSummary:
    """One node's :class:`StepMetrics` summary of the model it reported at ``step``."""

    node: NodeId
    step: int
    time: float
    summary: np.ndarray


class StepCombiner:
    """Holds the step summaries of ``nodes`` until each of them has summarized a step,
    then combines that step's (a later summary of the same node and step replaces the
    earlier one, as after a restart). The row's time is the last summary's."""

    def __init__(
        self,
        step_metrics: StepMetrics,
        nodes: Iterable[NodeId],
        names: MetricNames | None = None,
    ) -> None:
        self.step_metrics = step_metrics
        self.nodes = frozenset(nodes)
        self.names = names
        self._steps: dict[int, dict[NodeId, StepSummary]] = {}

    def add(self, item: StepSummary) -> list[MetricRow]:
        if item.node not in self.nodes:
            raise ValueError(
                f"step summary from node {item.node!r}: allowed the run's nodes "
                f"{sorted(self.nodes)}"
            )
        held = self._steps.setdefault(item.step, {})
        held[item.node] = item
        if len(held) < len(self.nodes):
            return []
        del self._steps[item.step]
        time = max(s.time for s in held.values())
        found = self.step_metrics.combine(item.step, {n: s.summary for n, s in held.items()})
        qualify = self.names.qualify if self.names is not None else str
        return [MetricRow(STEP_NODE, qualify(name), item.step, time, value, tags)
                for name, value, tags in found]

    def clear(self) -> None:
        """Drop the steps some node never summarized."""
        self._steps.clear()


def combine_steps(
    step_metrics: StepMetrics,
    nodes: Iterable[NodeId],
    summaries: Iterable[StepSummary],
    names: MetricNames | None = None,
) -> list[MetricRow]:
    """The step-metric rows of gathered summaries (a localnet's node journals), in the
    order the steps became complete when the summaries are sorted by time."""
    combiner = StepCombiner(step_metrics, nodes, names)
    out: list[MetricRow] = []
    for item in sorted(summaries, key=lambda s: (s.time, s.node, s.step)):
        out.extend(combiner.add(item))
    return out


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
        on_summary: Callable[[StepSummary], None] | None = None,
        combine: bool = True,
        names: MetricNames | None = None,
    ) -> None:
        """``step_metrics``: summarized on every report; with ``combine`` (one process
        sees every node: the simulator) combined here once all ``roles`` reported a step,
        otherwise only handed to ``on_summary`` (a node process journals them).
        ``names``: emitted and step metrics are recorded under ``names.qualify``."""
        self.evaluate = evaluate
        self.step_metrics = step_metrics
        self.on_summary = on_summary
        self._combiner = (
            StepCombiner(step_metrics, roles, names)
            if step_metrics is not None and combine
            else None
        )
        self.names = names
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
            summary = np.asarray(self.step_metrics.summarize(weights), np.float64)
            item = StepSummary(node_id, step, time, summary)
            if self.on_summary is not None:
                self.on_summary(item)
            if self._combiner is not None:
                self.metrics.extend(self._combiner.add(item))
        if step % self.every == 0:
            self._measure(node_id, time, step, weights)
            self._latest.pop(node_id, None)
        else:
            self._latest[node_id] = (step, time, weights)

    def on_metric(self, node_id: NodeId, time: float, metric: EmitMetric) -> None:
        name = self.names.qualify(metric.name) if self.names is not None else metric.name
        row = MetricRow(node_id, name, metric.step, time, metric.value, dict(metric.tags))
        self.metrics.append(row)

    def finish(self) -> None:
        """Measure each node's last report if it was skipped by ``every``."""
        for node_id, (step, time, weights) in sorted(self._latest.items()):
            self._measure(node_id, time, step, weights)
        self._latest.clear()
        if self._combiner is not None:
            self._combiner.clear()

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


def recorder_for(
    exp: Experiment,
    on_row: Callable[[ModelRow], None] | None = None,
    node: NodeId | None = None,
    on_summary: Callable[[StepSummary], None] | None = None,
) -> MetricsRecorder:
    """The recorder of a built experiment, for both hosts: the simulator's (``node``
    None: every node, step metrics combined in process) and a node process's (``node``:
    only that one; its step summaries go to ``on_summary``, to be combined where the
    journals are gathered). Models are measured on the global test set every
    ``eval.every`` steps, with the test-set metrics the nodes' attacks define."""
    config = exp.config
    test = exp.data.test
    batch = config.eval.batch_size
    roles = [r for r in exp.roles if node is None or r.plan.node_id == node]
    if node is not None and not roles:
        known = [r.plan.node_id for r in exp.roles]
        raise ValueError(f"recorder for node {node!r}: allowed the run's nodes {known}")
    learner = exp.learner
    return MetricsRecorder(
        evaluate=lambda w: learner.evaluate(w, test.x, test.y, batch_size=batch),
        roles={r.plan.node_id: r.plan.role for r in roles},
        honest={r.plan.node_id: r.honest for r in roles},
        every=config.eval.every,
        on_row=on_row,
        model_metrics=attack_metrics(
            {r.plan.node_id: r.attack for r in exp.roles},
            lambda w, x: learner.predict(w, x, batch_size=batch),
            test.x,
            test.y,
        ),
        step_metrics=exp.protocol.step_metrics(learner.layout.entries),
        on_summary=on_summary,
        combine=node is None,
        names=MetricNames(exp.protocol),
    )


def write_metrics(run_dir: Path, rows: Sequence[ModelRow], metrics: Sequence[MetricRow]) -> None:
    """``metrics.csv`` (measured models) and ``metrics.jsonl`` (emitted metrics)."""
    layout = RunLayout(run_dir)
    with layout.metrics_csv.open("w", newline="") as fh:
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
    with layout.metrics_jsonl.open("w") as fh:
        for m in metrics:
            fh.write(json.dumps(asdict(m), sort_keys=True) + "\n")
