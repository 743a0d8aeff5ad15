"""Plots of a run: accuracy over steps for every measured node."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from fedledger.assembly.metrics import ModelRow


def plot_accuracy(rows: list[ModelRow], path: Path, title: str, step_label: str) -> None:
    """Honest nodes solid, malicious dashed red, the honest mean in black."""
    by_node: dict[str, list[ModelRow]] = defaultdict(list)
    for row in rows:
        by_node[row.node].append(row)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    honest_by_step: dict[int, list[float]] = defaultdict(list)
    for _node, series in sorted(by_node.items()):
        series.sort(key=lambda r: r.step)
        steps = [r.step for r in series]
        accs = [r.accuracy for r in series]
        if series[0].honest:
            for r in series:
                honest_by_step[r.step].append(r.accuracy)
            if len(by_node) > 1:
                ax.plot(steps, accs, lw=0.8, alpha=0.35, color="tab:blue")
        else:
            ax.plot(steps, accs, lw=0.8, alpha=0.6, color="tab:red", ls="--")
    if honest_by_step:
        steps = sorted(honest_by_step)
        mean = [sum(honest_by_step[s]) / len(honest_by_step[s]) for s in steps]
        ax.plot(steps, mean, lw=2.0, color="black", label="honest mean")
        ax.legend(loc="lower right")
    ax.set_xlabel(step_label)
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0.0, 1.0)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
