"""The ``posbfl`` report: detection, legal miners, forks and stakes of a PoS-BFL run.

Protocol nodes do not know who is malicious (attacks are the host's), so the detection
confusion matrix is computed here, from the per-update outcomes an honest device emitted
(``update_accepted``, tagged with the worker) and the honest/malicious marks of the
measured models: TP a malicious update rejected, FN one accepted, FP an honest update
rejected, TN one accepted. Written per round to ``detection.csv``; stakes per device and
round to ``plots/stakes.png``. Metric names are the run's: the protocol's own namespaced
(``posbfl.legal_block``), the common ones (``rejected``) bare.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from fedledger.ledger.store import ChainStore
from fedledger.protocols.results import MetricRow, ModelRow
from fedledger.storage.layout import RunLayout


def _honesty(rows: Sequence[ModelRow]) -> dict[str, bool]:
    return {r.node: r.honest for r in rows}


def _observer(honest: dict[str, bool], metrics: Sequence[MetricRow]) -> str | None:
    """The first honest device (by id) that recorded legal blocks: whose view we report."""
    nodes = {m.node for m in metrics if m.name in ("posbfl.legal_block", "posbfl.no_block")}
    for node in sorted(nodes):
        if honest.get(node, True):
            return node
    return None


def detection(
    honest: dict[str, bool], metrics: Sequence[MetricRow], observer: str
) -> dict[int, dict[str, int]]:
    """Per round: TP, FP, TN, FN of the legal blocks' outcomes, as ``observer`` saw them."""
    table: dict[int, dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(("TP", "FP", "TN", "FN"), 0)
    )
    for m in metrics:
        if m.node != observer or m.name != "posbfl.update_accepted":
            continue
        malicious = not honest.get(m.tags.get("worker", ""), True)
        accepted = m.value >= 0.5
        key = ("FN" if accepted else "TP") if malicious else ("TN" if accepted else "FP")
        table[m.step][key] += 1
    return dict(sorted(table.items()))


def _chains(run_dir: Path, honest: dict[str, bool]) -> tuple[bool | None, int]:
    """Whether every honest device holds the same head, and how many distinct heads."""
    heads = set()
    for node, ok in sorted(honest.items()):
        path = RunLayout(run_dir).node(node).ledger
        if not ok or not path.is_file():
            continue
        with ChainStore(path) as store:
            heads.add(store.head_hash())
    if not heads:
        return None, 0
    return len(heads) == 1, len(heads)


def plot_stakes(metrics: Sequence[MetricRow], honest: dict[str, bool], path: Path) -> None:
    """Each device's accumulated stake per round (its own ledger's view)."""
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for m in metrics:
        if m.name == "posbfl.stake":
            series[m.tags.get("node", m.node)].append((m.step, m.value))
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    labelled: set[bool] = set()
    for node, points in sorted(series.items()):
        points.sort()
        good = honest.get(node, True)
        label = None if good in labelled else ("honest" if good else "malicious")
        labelled.add(good)
        ax.plot(
            [p[0] for p in points],
            [p[1] for p in points],
            lw=1.0,
            color="tab:blue" if good else "tab:red",
            ls="-" if good else "--",
            alpha=0.7,
            label=label,
        )
    ax.set_xlabel("round")
    ax.set_ylabel("accumulated stake")
    ax.set_title("PoS-BFL stakes")
    ax.grid(alpha=0.3)
    if labelled:
        ax.legend(loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def posbfl_report(
    run_dir: Path, rows: Sequence[ModelRow], metrics: Sequence[MetricRow]
) -> dict[str, Any]:
    honest = _honesty(rows)
    observer = _observer(honest, metrics)
    summary: dict[str, Any] = {"observer": observer}
    if observer is None:
        return summary
    per_round = detection(honest, metrics, observer)
    mine = [m for m in metrics if m.node == observer]
    legal = {m.step: m.tags.get("miner", "?") for m in mine if m.name == "posbfl.legal_block"}
    miners = list(legal.values())
    with RunLayout(run_dir).table("detection.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(("round", "TP", "FP", "TN", "FN", "legal_miner", "miner_malicious"))
        for step in sorted(set(per_round) | set(legal)):
            counts = per_round.get(step, dict.fromkeys(("TP", "FP", "TN", "FN"), 0))
            miner = legal.get(step, "")
            bad = int(bool(miner) and not honest.get(miner, True))
            row = (counts["TP"], counts["FP"], counts["TN"], counts["FN"])
            writer.writerow((step, *row, miner, bad))
    totals = {k: sum(c[k] for c in per_round.values()) for k in ("TP", "FP", "TN", "FN")}
    rejected: dict[str, int] = defaultdict(int)
    for m in metrics:
        if m.name == "rejected" and honest.get(m.node, True):
            rejected[m.tags.get("reason", "?")] += int(m.value)
    identical, heads = _chains(run_dir, honest)
    summary.update(
        {
            "detection": totals,
            "detection_rate": (
                round(totals["TP"] / (totals["TP"] + totals["FN"]), 4)
                if totals["TP"] + totals["FN"]
                else None
            ),
            "false_positive_rate": (
                round(totals["FP"] / (totals["FP"] + totals["TN"]), 4)
                if totals["FP"] + totals["TN"]
                else None
            ),
            "legal_blocks": len(miners),
            "legal_blocks_by_malicious": sum(1 for n in miners if not honest.get(n, True)),
            "rounds_without_block": sum(1 for m in mine if m.name == "posbfl.no_block"),
            "competing_blocks": int(sum(m.value for m in mine if m.name == "posbfl.forks")),
            "honest_chains_identical": identical,
            "honest_heads": heads,
            "blacklisted": sorted(
                {m.tags.get("worker", "?") for m in mine if m.name == "posbfl.blacklist_added"}
            ),
            "rejected": dict(sorted(rejected.items())),
        }
    )
    plot_stakes(metrics, honest, RunLayout(run_dir).plot("stakes.png"))
    return summary
