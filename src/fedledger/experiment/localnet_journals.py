"""Reading a localnet's node journals back: what ``Localnet.gather`` writes a run from.

Each node process journals its lines under ``RUN_DIR/nodes/<id>/`` (``runtime.node.journal``):
its start (with the model's layout), begin (how late it started), model and metric rows,
step summaries, CPU seconds, halt and transport counters. A node's times count from the
epoch it knew (a "start" line's, then an "epoch" line's); they are shifted here onto the
network's epoch, ``reference`` (None: the epoch was never written, each node's own clock).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fedledger.assembly.metrics import (
    MEASURED_TAG,
    MetricNames,
    MetricRow,
    ModelRow,
    StepSummary,
)
from fedledger.runtime.node.journal import read_journal, step_summary_of
from fedledger.storage.layout import RunLayout

#: a model's layout as the nodes journal it: (layer name, shape) pairs
Layout = tuple[tuple[str, tuple[int, ...]], ...]


@dataclass(frozen=True)
class NodeJournals:
    """Every node's journal lines of one localnet, combined (times on the network's epoch).

    ``cpu``: seconds by activity, summed over nodes and restarts; ``totals``: the integer
    transport counters summed; ``drops``: dropped frames by reason; ``halted``: halt lines;
    ``end``: the latest halt time; ``late``: seconds each node began after the epoch."""

    rows: list[ModelRow]
    metrics: list[MetricRow]
    summaries: list[StepSummary]
    cpu: dict[str, float]
    layout: Layout | None
    totals: dict[str, int]
    drops: dict[str, int]
    halted: int
    end: float
    late: dict[str, float]


def layout_of(entries: list[list]) -> Layout:
    """The model layout of a "start" line's ``[[name, [dims...]], ...]``."""
    return tuple((str(name), tuple(int(d) for d in shape)) for name, shape in entries)


def read_node_journals(
    layout: RunLayout, ids: Iterable[str], reference: float | None, names: MetricNames
) -> NodeJournals:
    """The journals of nodes ``ids`` under ``layout``, in that order, combined."""
    rows: list[ModelRow] = []
    metrics: list[MetricRow] = []
    summaries: list[StepSummary] = []
    cpu: dict[str, float] = {}
    model_layout: Layout | None = None
    totals: dict[str, int] = {}
    drops: dict[str, int] = {}
    halted = 0
    end = 0.0
    late: dict[str, float] = {}
    for node_id in ids:
        offset = 0.0
        begins = 0
        for item in read_journal(layout.node(node_id).journal):
            kind = item.pop("kind")
            if kind in ("start", "epoch") and reference is not None:
                offset = float(item.get("epoch", reference)) - reference
            if kind == "start":
                if model_layout is None and "layout" in item:
                    model_layout = layout_of(item["layout"])
            elif kind == "begin":
                begins += 1
                if begins == 1 and float(item.get("late", 0.0)) > 0.0:
                    late[node_id] = round(float(item["late"]), 3)
            elif kind == "model":
                item["time"] = round(item["time"] + offset, 6)
                rows.append(ModelRow(**item))
            elif kind == "metric":
                item["time"] = round(item["time"] + offset, 6)
                if not (item.get("tags") or {}).get(MEASURED_TAG[0]):
                    item["name"] = names.qualify(item["name"])  # the node checked it
                metrics.append(MetricRow(**item))
            elif kind == "step_summary":
                item["time"] = round(item["time"] + offset, 6)
                summaries.append(step_summary_of(item))
            elif kind == "cpu":
                # a restarted process counts from zero again: its lines add up
                for activity, seconds in item["seconds"].items():
                    cpu[activity] = cpu.get(activity, 0.0) + float(seconds)
                    tags = {"activity": activity}
                    at = round(float(item["time"]) + offset, 6)
                    metrics.append(MetricRow(node_id, "cpu_seconds", 0, at, float(seconds), tags))
            elif kind == "halt":
                halted += 1
                end = max(end, float(item["time"]) + offset)
            elif kind == "transport":
                for key, value in item.items():
                    if key == "drops":
                        for reason, n in value.items():
                            drops[reason] = drops.get(reason, 0) + int(n)
                    elif isinstance(value, int):
                        totals[key] = totals.get(key, 0) + value
    return NodeJournals(
        rows, metrics, summaries, cpu, model_layout, totals, drops, halted, end, late
    )
