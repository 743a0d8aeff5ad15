"""The ``mudfl`` section of ``summary.json``: finality progress, PoC proposal counts
(b = 0, 1, > 1 per slot), Rule-3 decisions, refused models and rejections by reason,
deposits slashed, fee pools and worker rewards settled, final accuracy of the global
model. Metric rows carry the protocol's prefix (``mudfl.proposals``); both spellings
are read."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fedledger.protocols.results import MetricRow, ModelRow

PREFIX = "mudfl."


def _name(m: MetricRow) -> str:
    return m.name[len(PREFIX) :] if m.name.startswith(PREFIX) else m.name


def mudfl_report(
    run_dir: Path, rows: Sequence[ModelRow], metrics: Sequence[MetricRow]
) -> Mapping[str, Any]:
    server_rows = [r for r in rows if r.node == "server"]
    admin = [(_name(m), m) for m in metrics if m.node == "admin"]
    b: Counter[str] = Counter()
    for name, m in admin:
        if name == "proposals" and m.step > 0:
            b["0" if m.value == 0 else "1" if m.value == 1 else ">1"] += 1
    finalized = max((m.value for n, m in admin if n == "finalized_height"), default=0.0)
    rejected: Counter[str] = Counter()
    for m in metrics:
        if _name(m) == "rejected":
            rejected[m.tags.get("reason", "?")] += int(m.value)

    def total(name: str) -> float:
        return float(sum(m.value for n, m in admin if n == name))

    return {
        "final_accuracy": server_rows[-1].accuracy if server_rows else None,
        "rounds": len(server_rows),
        "finalized_height": int(finalized),
        "proposal_counts": dict(sorted(b.items())),
        "arbitrated": sum(1 for n, _ in admin if n == "arbitrated"),
        "dynasty_changes": sum(1 for n, _ in admin if n == "dynasty"),
        "deposits_slashed": total("deposits_slashed"),
        "fee_pools": total("fee_pool"),
        "worker_rewards": total("worker_rewards"),
        "models_refused": sum(int(m.value) for m in metrics if _name(m) == "model_refused"),
        "rejected": dict(sorted(rejected.items())),
    }
