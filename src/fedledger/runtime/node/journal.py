"""What a node process writes in its directory ``DATA_DIR/nodes/<id>/``
(:class:`fedledger.storage.layout.NodeLayout`).

``metrics.jsonl``: one JSON object per line, appended (a restarted node adds to it):
``{"kind": "model", ...ModelRow}`` for each measured model (global test set),
``{"kind": "metric", ...MetricRow}`` for each metric the protocol emitted (its name as
emitted; the run's ``metrics.jsonl`` records it as ``MetricNames.qualify`` does),
``{"kind": "step_summary", "node", "step", "time", "summary"}`` for each reported model's
step-metric summary (``StepMetrics.summarize``; ``localnet`` combines them over nodes),
``{"kind": "start"|"halt"|"stop", "time", "pid", ...}`` for the process's life,
``{"kind": "begin", "time", "late"}`` when the protocol gets ``Start`` (``late``: seconds
after the epoch the node was ready, <= 0 when it was ready in time), and
``{"kind": "transport", ...NetCounters}`` and ``{"kind": "cpu", "time", "seconds"}`` (CPU
seconds by activity, as the simulator's ``cpu_seconds``) when the process ends. Times
are network time:
wall seconds since the network's epoch, which the ``start`` line records (``epoch``,
UNIX seconds; ``epoch_given`` false when the node had no ``--epoch`` and counted from its
own start).

``status.json``: a snapshot rewritten atomically about twice a second (state, last
step and accuracy, connected peers, counters), read by ``localnet``'s progress view.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from fedledger.assembly.metrics import MetricRow, ModelRow, StepSummary
from fedledger.storage.layout import NodeLayout

METRICS_FILE = NodeLayout.JOURNAL_FILE
STATUS_FILE = NodeLayout.STATUS_FILE
LOG_FILE = NodeLayout.LOG_FILE


class Journal:
    """Appends a node's metric lines; safe to call from the loop and the job thread."""

    def __init__(self, node_dir: Path) -> None:
        node_dir.mkdir(parents=True, exist_ok=True)
        layout = NodeLayout(node_dir)
        self.path = layout.journal
        self.status_path = layout.status
        self._lock = threading.Lock()
        self.last_model: ModelRow | None = None

    def write(self, kind: str, fields: dict[str, Any]) -> None:
        line = json.dumps({"kind": kind, **fields}, sort_keys=True) + "\n"
        with self._lock, self.path.open("a") as fh:
            fh.write(line)

    def model(self, row: ModelRow) -> None:
        self.last_model = row
        self.write("model", asdict(row))

    def metric(self, row: MetricRow) -> None:
        self.write("metric", asdict(row))

    def step_summary(self, item: StepSummary) -> None:
        self.write(
            "step_summary",
            {
                "node": item.node,
                "step": item.step,
                "time": item.time,
                "summary": [float(v) for v in item.summary],
            },
        )

    def status(self, fields: dict[str, Any]) -> None:
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(fields, sort_keys=True))
        os.replace(tmp, self.status_path)


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The lines of a metrics file; a torn last line (killed process) is skipped."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(item, dict) and "kind" in item:
            out.append(item)
    return out


def step_summary_of(item: dict[str, Any]) -> StepSummary:
    """A journal's ``step_summary`` line (without its ``kind``) as a record."""
    values = np.asarray(item["summary"], np.float64)
    return StepSummary(str(item["node"]), int(item["step"]), float(item["time"]), values)


def read_status(node_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads(NodeLayout(node_dir).status.read_text())
    except (OSError, json.JSONDecodeError):
        return None
