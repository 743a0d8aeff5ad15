"""The ``pbft-ledger`` report: requests committed, commit latency, view changes, drops.

Metric rows are read under their recorded names (``pbft-ledger.<name>``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fedledger.protocols.results import MetricRow

NAME = "pbft-ledger"


def _q(name: str) -> str:
    return f"{NAME}.{name}"


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (numpy's linear rule), None for no values."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else None


def pbft_report(metrics: Sequence[MetricRow]) -> Mapping[str, Any]:
    """The protocol's section of the run summary."""
    latency = [m.value for m in metrics if m.name == _q("commit_latency")]
    queued = [m.value for m in metrics if m.name == _q("queue_delay")]
    accepted_at = [m.time for m in metrics if m.name == _q("commit_latency")]
    heights: dict[str, int] = defaultdict(int)
    views: dict[str, int] = defaultdict(int)
    drops: dict[str, int] = defaultdict(int)
    restored: dict[str, int] = {}
    for m in metrics:
        if m.name == _q("block"):
            heights[m.node] = max(heights[m.node], int(m.value))
        elif m.name == _q("view"):
            views[m.node] = max(views[m.node], int(m.value))
        elif m.name == "rejected":
            drops[m.tags.get("reason", "?")] += int(m.value)
        elif m.name == _q("restored_blocks"):
            restored[m.node] = int(m.value)
    span = (max(accepted_at) - min(accepted_at)) if len(accepted_at) > 1 else 0.0
    p50, p99 = percentile(latency, 50), percentile(latency, 99)
    return {
        "requests_committed": len(latency),
        "commit_latency_p50_s": p50,
        "commit_latency_p99_s": p99,
        "commit_latency_max_s": max(latency) if latency else None,
        "queue_delay_p50_s": percentile(queued, 50),
        "committed_per_second": (len(latency) - 1) / span if span > 0 else None,
        "blocks_per_replica": dict(sorted(heights.items())),
        "view_changes": max(views.values(), default=0),
        "drops_by_reason": dict(sorted(drops.items())),
        "restored_blocks": restored,
    }


def _fmt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def pbft_headline(section: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    drops = section.get("drops_by_reason") or {}
    caught = ", ".join(f"{k} {v}" for k, v in sorted(drops.items())) or "nothing dropped"
    return (
        ("what the ledger caught", f"messages dropped: {caught}"),
        ("requests committed", str(section.get("requests_committed", 0))),
        ("commit latency p50 / p99", f"{_fmt(section.get('commit_latency_p50_s'))} / "
                                     f"{_fmt(section.get('commit_latency_p99_s'))}"),
        ("view changes", str(section.get("view_changes", 0))),
    )
