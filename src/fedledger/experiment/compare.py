"""Running several experiments on the same data and showing them side by side.

``fedledger compare A.yaml B.yaml ...`` (and ``make run``) runs each config in the
simulator and prints one table: accuracy of the honest nodes, what each protocol's ledger
caught (its :meth:`~fedledger.protocols.base.Protocol.headline`), and what it cost (the
protocol's and network's CPU time as a share of the training's, traffic, wall time).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedledger.assembly.build import build_protocol
from fedledger.assembly.config import ExperimentConfig


@dataclass(frozen=True)
class Compared:
    """One run of a comparison: its config, run directory and summary.json."""

    config: ExperimentConfig
    run_dir: Path
    summary: dict[str, Any]

    @property
    def section(self) -> dict[str, Any]:
        """The protocol's own part of the summary (empty for protocols without one)."""
        found = self.summary.get(self.config.protocol.name)
        return found if isinstance(found, dict) else {}

    def overhead(self) -> float | None:
        """Protocol + network CPU seconds per ML CPU second (None without ML time)."""
        cpu = self.summary.get("cpu_seconds") or {}
        ml = float(cpu.get("ml", 0.0))
        if ml <= 0:
            return None
        return (float(cpu.get("protocol", 0.0)) + float(cpu.get("network", 0.0))) / ml


def run_all(
    configs: Sequence[ExperimentConfig],
    out: Path,
    run: Callable[[ExperimentConfig, Path], Path],
) -> list[Compared]:
    """Run each config with ``run(config, run_dir) -> run_dir`` under ``out``; names
    must differ so each gets its own directory."""
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise ValueError(f"compared configs need distinct names, got {names}")
    done = []
    for config in configs:
        run_dir = run(config, out / config.name)
        summary = json.loads((run_dir / "summary.json").read_text())
        done.append(Compared(config, run_dir, summary))
    return done


def comparison_rows(runs: Sequence[Compared]) -> list[tuple[str, list[str]]]:
    """The table's rows: a label and one cell per run."""

    def cells(fn: Callable[[Compared], str]) -> list[str]:
        return [fn(r) for r in runs]

    def accuracy(r: Compared) -> str:
        value = r.summary.get("final_accuracy")
        return "-" if value is None else f"{value:.4f}"

    def attackers(r: Compared) -> str:
        bad = r.summary.get("malicious") or []
        return f"{len(bad)} of {r.summary.get('nodes', '?')}"

    def overhead(r: Compared) -> str:
        share = r.overhead()
        return "-" if share is None else f"{100 * share:.1f}% of training"

    rows = [
        ("protocol", cells(lambda r: r.config.protocol.name)),
        ("malicious nodes", cells(attackers)),
        ("final accuracy (honest mean)", cells(accuracy)),
    ]
    headlines = [dict(build_protocol(r.config).headline(r.section)) for r in runs]
    labels: list[str] = []
    for found in headlines:
        labels += [k for k in found if k not in labels]
    for label in labels:
        rows.append((label, [h.get(label, "-") for h in headlines]))
    rows += [
        ("protocol + network CPU", cells(overhead)),
        ("messages / MB sent", cells(_traffic)),
        ("wall time", cells(lambda r: f"{r.summary.get('wall_seconds', 0.0):.1f} s")),
        ("run directory", cells(lambda r: str(r.run_dir))),
    ]
    return rows


def _traffic(r: Compared) -> str:
    messages = r.summary.get("messages", 0)
    return f"{messages} / {r.summary.get('bytes_sent', 0) / 1e6:.2f}"
