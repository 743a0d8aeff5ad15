"""The ``dfl`` report: model difference among nodes (eq. 5), reputation, blocks.

Metric names: nodes emit the declared names (``dfl_block``, ...); a run records them
namespaced (``dfl.block``), which is what the report reads.

- step metrics: at each report step, once every node has reported, eq. 5's model
  difference: per layer, the sum of each node's weights ``s_n`` (nodes by id), and
  ``(sum_{n=1}^{N-1} |s_n - s_{n-1}| + |s_0 - s_{N-1}|) / N``; rows
  ``dfl_model_difference`` tagged with the layer, plus the sum over layers
  (``layer: all``).
- summary: blocks and confirmed receipts per block, rejects by reason, the mean
  reputation honest nodes hold of honest and of malicious peers at the end, the final
  model difference.
- plots: ``plots/model_difference.png`` and ``plots/reputation.png`` (honest nodes'
  mean reputation of each peer over ticks, malicious peers dashed red).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from fedledger.protocols.results import MetricRow, ModelRow, StepMetrics, StepRows
from fedledger.storage.layout import RunLayout

Layout = tuple[tuple[str, tuple[int, ...]], ...]


def model_difference(layer_sums: np.ndarray) -> np.ndarray:
    """Eq. 5 over a (nodes, layers) matrix of per-layer weight sums: one value per layer."""
    n = layer_sums.shape[0]
    if n == 0:
        return np.zeros(layer_sums.shape[1])
    ring = np.abs(layer_sums - np.roll(layer_sums, 1, axis=0))  # row 0: |s_0 - s_{N-1}|
    return ring.sum(axis=0) / n


def layer_sums(weights: np.ndarray, layout: Layout) -> np.ndarray:
    sizes = [int(np.prod(shape)) for _, shape in layout]
    if sum(sizes) != weights.size:
        sizes = [weights.size]
    bounds = np.cumsum([0, *sizes])
    w = weights.astype(np.float64)
    return np.array([w[a:b].sum() for a, b in itertools.pairwise(bounds)])


def difference_metrics(layout: Layout) -> StepMetrics:
    """Eq. 5 as a two-part step metric: each node summarizes its model by its per-layer
    sums (:func:`layer_sums`), and the sums of all nodes (by id) give the difference."""
    names = [name for name, _ in layout]

    def summarize(weights: np.ndarray) -> np.ndarray:
        return layer_sums(weights, layout)

    def combine(step: int, sums_by_node: Mapping[str, np.ndarray]) -> StepRows:
        sums = np.array([np.asarray(sums_by_node[n], np.float64) for n in sorted(sums_by_node)])
        diff = model_difference(sums)
        labels = names if len(names) == diff.size else ["all-weights"]
        out: StepRows = [
            ("model_difference", float(v), {"layer": k})
            for k, v in zip(labels, diff, strict=True)
        ]
        out.append(("model_difference", float(diff.sum()), {"layer": "all"}))
        return out

    return StepMetrics(summarize, combine)


def _final_reputation(honest: dict[str, bool], metrics: Sequence[MetricRow]) -> dict[str, float]:
    last: dict[tuple[str, str], tuple[int, float]] = {}
    for m in metrics:
        if m.name == "dfl.reputation" and honest.get(m.node, True):
            key = (m.node, m.tags.get("peer", ""))
            if key not in last or m.step >= last[key][0]:
                last[key] = (m.step, m.value)
    groups: dict[str, list[float]] = {"honest": [], "malicious": []}
    for (_node, peer), (_step, value) in last.items():
        groups["honest" if honest.get(peer, True) else "malicious"].append(value)
    return {k: round(float(np.mean(v)), 4) for k, v in groups.items() if v}


def dfl_report(
    run_dir: Path, rows: Sequence[ModelRow], metrics: Sequence[MetricRow]
) -> dict[str, Any]:
    honest = {r.node: r.honest for r in rows}
    blocks: dict[str, int] = defaultdict(int)
    confirmed, receipts = [], []
    rejects: dict[str, float] = defaultdict(float)
    diff: dict[int, float] = {}
    for m in metrics:
        if m.name == "dfl.block":
            blocks[m.node] += 1
        elif m.name == "dfl.confirmations_per_block":
            confirmed.append(m.value)
        elif m.name == "dfl.receipts_per_block":
            receipts.append(m.value)
        elif m.name == "rejected":
            rejects[m.tags.get("reason", "")] += m.value
        elif m.name == "dfl.model_difference" and m.tags.get("layer") == "all":
            diff[m.step] = m.value
    summary: dict[str, Any] = {
        "blocks_per_node": round(float(np.mean(list(blocks.values()))), 3) if blocks else 0.0,
        "confirmations_per_block": round(float(np.mean(confirmed)), 3) if confirmed else None,
        "receipts_per_block": round(float(np.mean(receipts)), 3) if receipts else None,
        "rejects": {k: int(v) for k, v in sorted(rejects.items())},
        "reputation_final": _final_reputation(honest, metrics),
        "model_difference_final": diff[max(diff)] if diff else None,
    }
    plots = RunLayout(run_dir).plots
    plots.mkdir(parents=True, exist_ok=True)
    if diff:
        fig, ax = plt.subplots(figsize=(7, 3.5), dpi=110)
        steps = sorted(diff)
        ax.plot(steps, [diff[s] for s in steps], color="black")
        ax.set_xlabel("tick")
        ax.set_ylabel("model difference (eq. 5, all layers)")
        fig.tight_layout()
        fig.savefig(RunLayout(run_dir).plot("model_difference.png"))
        plt.close(fig)
    _plot_reputation(honest, metrics, RunLayout(run_dir).plot("reputation.png"))
    return summary


def _plot_reputation(honest: dict[str, bool], metrics: Sequence[MetricRow], path: Path) -> None:
    series: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for m in metrics:
        if m.name == "dfl.reputation" and honest.get(m.node, True):
            series[m.tags.get("peer", "")][m.step].append(m.value)
    if not series:
        return
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=110)
    for peer, by_step in sorted(series.items()):
        steps = sorted(by_step)
        values = [float(np.mean(by_step[s])) for s in steps]
        bad = not honest.get(peer, True)
        ax.plot(
            steps,
            values,
            lw=1.2 if bad else 0.8,
            color="tab:red" if bad else "tab:blue",
            ls="--" if bad else "-",
            alpha=0.9 if bad else 0.5,
        )
    ax.set_xlabel("tick")
    ax.set_ylabel("mean reputation held by honest nodes")
    ax.set_title("reputation of each peer (malicious dashed red)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
