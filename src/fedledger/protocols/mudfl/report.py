"""The ``mudfl`` section of ``summary.json``: finality progress, PoC proposal counts
(b = 0, 1, > 1 per slot), Rule-3 decisions, refused models and rejections by reason,
final accuracy of the global model."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fedledger.protocols.results import MetricRow, ModelRow


def mudfl_report(
    run_dir: Path, rows: Sequence[ModelRow], metrics: Sequence[MetricRow]
) -> Mapping[str, Any]:
    server_rows = [r for r in rows if r.node == "server"]
    admin = [m for m in metrics if m.node == "admin"]
    b: Counter[str] = Counter()
    for m in admin:
        if m.name == "proposals":
            b["0" if m.value == 0 else "1" if m.value == 1 else ">1"] += 1
    finalized = max((m.value for m in admin if m.name == "finalized_height"), default=0.0)
    rejected: Counter[str] = Counter()
    for m in metrics:
        if m.name == "rejected":
            rejected[m.tags.get("reason", "?")] += int(m.value)
    return {
        "final_accuracy": server_rows[-1].accuracy if server_rows else None,
        "rounds": len(server_rows),
        "finalized_height": int(finalized),
        "proposal_counts": dict(sorted(b.items())),
        "arbitrated": sum(1 for m in admin if m.name == "arbitrated"),
        "models_refused": sum(int(m.value) for m in metrics if m.name == "model_refused"),
        "rejected": dict(sorted(rejected.items())),
    }
