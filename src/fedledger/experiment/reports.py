"""Protocol-specific reports: extra summary fields and plots, one entry per protocol.

Kept in the experiment layer (protocols do not know about run directories or plots). A
report is a function ``(run_dir, rows, metrics) -> dict`` registered under the
protocol's name; its dict is merged into ``summary.json`` and it may write more plots
under ``run_dir/plots``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fedledger.experiment.metrics import MetricRow, ModelRow
from fedledger.registry import Registry

Report = Callable[[Path, Sequence[ModelRow], Sequence[MetricRow]], dict[str, Any]]

REPORTS: Registry[Report] = Registry("report")
