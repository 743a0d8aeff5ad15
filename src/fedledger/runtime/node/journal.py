"""What a node process writes in its directory ``DATA_DIR/nodes/<id>/``.

``metrics.jsonl``: one JSON object per line, appended (a restarted node adds to it):
``{"kind": "model", ...ModelRow}`` for each measured model (global test set),
``{"kind": "metric", ...MetricRow}`` for each metric the protocol emitted,
``{"kind": "start"|"halt"|"stop", "time", "pid", ...}`` for the process's life,
``{"kind": "begin", "time", "late"}`` when the protocol gets ``Start`` (``late``: seconds
after the epoch the node was ready, <= 0 when it was ready in time), and
``{"kind": "transport", ...NetCounters}`` when the process ends. Times are network time:
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

from fedledger.assembly.metrics import MetricRow, ModelRow

METRICS_FILE = "metrics.jsonl"
STATUS_FILE = "status.json"
LOG_FILE = "node.log"


class Journal:
    """Appends a node's metric lines; safe to call from the loop and the job thread."""

    def __init__(self, node_dir: Path) -> None:
        node_dir.mkdir(parents=True, exist_ok=True)
        self.path = node_dir / METRICS_FILE
        self.status_path = node_dir / STATUS_FILE
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


def read_status(node_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((node_dir / STATUS_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
