"""Nagar's section of ``summary.json``: blocks and forks, epsilon per device, rewards,
refusals by reason and the devices' final accuracy."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from fedledger.protocols.results import MetricRow, ModelRow, final_rows


def nagar_report(rows: Sequence[ModelRow], metrics: Sequence[MetricRow]) -> Mapping[str, Any]:
    heights: set[float] = set()
    forks = 0.0
    eps: dict[str, float] = {}
    stake: dict[str, float] = {}
    rejected: dict[str, float] = defaultdict(float)
    hashes = 0.0
    for m in metrics:
        name = m.name.removeprefix("nagar.")
        if name == "block":
            heights.add(m.value)
        elif name == "forks" and m.node.startswith("r"):
            forks += m.value  # counted once, at the requester
        elif name == "epsilon_spent":
            eps[m.node] = max(eps.get(m.node, 0.0), m.value)
        elif name == "stake" and m.node.startswith("r"):
            pass
        elif name == "stake":
            stake[m.node] = m.value
        elif name == "rejected":
            rejected[m.tags.get("reason", "?")] += m.value
        elif name == "hashes":
            hashes += m.value
    final = [r for r in final_rows(list(rows)) if r.role == "device"]
    acc = sum(r.accuracy for r in final) / len(final) if final else 0.0
    return {
        "blocks": len(heights),
        "forks": int(forks),
        "pow_hashes": int(hashes),
        "epsilon_max": max(eps.values(), default=0.0),
        "epsilon_spent": dict(sorted(eps.items())),
        "rewards": dict(sorted(stake.items())),
        "rejected": dict(sorted(rejected.items())),
        "device_accuracy": acc,
    }
