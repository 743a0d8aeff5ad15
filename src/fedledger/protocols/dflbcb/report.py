"""DFLBCB's run report: what the contract accepted and paid, and how long stages took.

The initiator, which acts on no log after ``initialize``, turns the contract's logs into
metrics (:func:`observe`): each accepted stage transition (``accepted``, tags stage and
submitter), how long each stage lasted (``stage_seconds``), each slash (``slashed``, wei,
tag kind) and reward (``rewarded``, points, tag kind), and each global model's price
(``price``, wei). Members emit the global accuracy and the gas of their stage calls,
every client the latency of its requests. :func:`dflbcb_report` summarizes them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fedledger.contracts.dflbcb import POINT, Kind, Stage
from fedledger.protocols.base import EmitMetric
from fedledger.protocols.results import MetricRow

NAME = "dflbcb"
STAGES = tuple(s.name.lower() for s in Stage)


def observe(log: Any, now: float, opened: float, it: int) -> list[EmitMetric]:
    """The initiator's metrics for one contract log (``opened``: when the current stage
    began, ``it``: the current iteration)."""
    name = log.event
    if name == "StageChanged":
        stage = STAGES[int(log.arg("from_stage"))]
        step = int(log.arg("it"))
        return [EmitMetric("accepted", 1.0, step, (("stage", stage),
                                                   ("submitter", str(log.arg("submitter"))))),
                EmitMetric("stage_seconds", now - opened, step, (("stage", stage),))]
    if name == "Slashed":
        kind = Kind(int(log.arg("kind"))).name.lower()
        return [EmitMetric("slashed", float(log.arg("amount")), it, (("kind", kind),))]
    if name == "Rewarded":
        kind = Kind(int(log.arg("kind"))).name.lower()
        return [EmitMetric("rewarded", int(log.arg("points")) / POINT, it, (("kind", kind),))]
    if name == "GlobalModel":
        return [EmitMetric("price", float(log.arg("price")), int(log.arg("it")))]
    return []


def _q(name: str) -> str:
    return f"{NAME}.{name}"


def _pct(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, np.float64), q)) if values else None


def dflbcb_report(metrics: Sequence[MetricRow]) -> Mapping[str, Any]:
    """The protocol's section of the run summary."""
    stage_time: dict[str, float] = defaultdict(float)
    accepted: dict[str, int] = defaultdict(int)
    gas: dict[str, list[float]] = defaultdict(list)
    reverted = 0
    slashed: dict[str, float] = defaultdict(float)
    rewarded: dict[str, float] = defaultdict(float)
    acc: dict[int, float] = {}
    local: dict[str, dict[int, float]] = defaultdict(dict)
    price: dict[int, float] = {}
    latency: list[float] = []
    by_node: dict[str, int] = defaultdict(int)
    restored: dict[str, int] = {}
    for m in metrics:
        tags = m.tags
        if m.name == _q("stage_seconds"):
            stage_time[tags.get("stage", "?")] += m.value
        elif m.name == _q("accepted"):
            accepted[tags.get("stage", "?")] += 1
        elif m.name == _q("gas"):
            if tags.get("ok") == "True":
                gas[tags.get("call", "?")].append(m.value)
            else:
                reverted += 1
        elif m.name == _q("slashed"):
            slashed[tags.get("kind", "?")] += m.value
        elif m.name == _q("rewarded"):
            rewarded[tags.get("kind", "?")] += m.value
        elif m.name == _q("global_acc_permille"):
            acc[m.step] = m.value
        elif m.name == _q("local_acc_permille"):
            local[m.node][m.step] = m.value
        elif m.name == _q("price"):
            price[m.step] = m.value
        elif m.name == _q("latency"):
            latency.append(m.value)
            by_node[m.node] += 1
        elif m.name == _q("restored_blocks"):
            restored[m.node] = int(m.value)
    total = sum(stage_time.values())
    iterations = accepted.get("work", 0)
    return {
        "iterations": iterations,
        "seconds_per_iteration": total / iterations if iterations else None,
        "stage_share": {s: stage_time[s] / total for s in STAGES if total and s in stage_time},
        "accepted_proofs": dict(sorted(accepted.items())),
        "gas_per_call": {c: {"mean": float(np.mean(v)), "max": max(v), "calls": len(v)}
                         for c, v in sorted(gas.items())},
        "reverted_calls": reverted,
        "slashed_wei": dict(sorted(slashed.items())),
        "rewarded_points": dict(sorted(rewarded.items())),
        "accuracy_permille": dict(sorted(acc.items())),
        "local_accuracy_permille": {n: dict(sorted(v.items())) for n, v in sorted(local.items())},
        "price_wei": dict(sorted(price.items())),
        "request_latency_p50_s": _pct(latency, 50),
        "request_latency_p99_s": _pct(latency, 99),
        "requests": len(latency),
        "requests_by_node": dict(sorted(by_node.items())),
        "latency_within_5s": sum(v <= 5.0 for v in latency) / len(latency) if latency else None,
        "latency_within_15s": sum(v <= 15.0 for v in latency) / len(latency)
        if latency else None,
        "restored_blocks": restored,
    }


def dflbcb_headline(section: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    slashed = section.get("slashed_wei") or {}
    caught = ", ".join(f"{k} {v / 1e18:.4f} ETH" for k, v in sorted(slashed.items()))
    acc = section.get("accuracy_permille") or {}
    last = max(acc) if acc else None
    p50 = section.get("request_latency_p50_s")
    share = section.get("stage_share") or {}
    return (
        ("what the ledger caught", f"slashed: {caught}" if caught else "nothing slashed"),
        ("accepted proofs", ", ".join(f"{k} {v}" for k, v in
                                      (section.get("accepted_proofs") or {}).items()) or "0"),
        ("on-chain accuracy", "-" if last is None else f"{acc[last] / 1000:.3f} (it {last})"),
        ("request latency p50", "-" if p50 is None else f"{p50 * 1000:.0f} ms"),
        ("stage shares", ", ".join(f"{k} {v:.0%}" for k, v in share.items()) or "-"),
    )
