"""What a run measured, as the records a protocol's report reads: each node's model
measured on the global test set (:class:`ModelRow`) and the named figures its nodes
emitted (:class:`MetricRow`). Hosts produce them (``fedledger.assembly.metrics``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

NodeId = str

#: (name, value, tags) triples: the extra metric rows a step metric produces.
StepRows = list[tuple[str, float, dict[str, str]]]


@dataclass(frozen=True)
class StepMetrics:
    """Metrics over all nodes' reported models of one step (e.g. DFL's model difference
    among nodes, eq. 5), in two parts so that they work where the models never meet:

    ``summarize(weights)``: a small float64 vector computed where the model is reported
    (in the simulator, or in each node process, which journals it);
    ``combine(step, {node: summary})``: the rows, once every node's summary of ``step``
    is known, recorded under node :data:`STEP_NODE`.
    """

    summarize: Callable[[np.ndarray], np.ndarray]
    combine: Callable[[int, Mapping[NodeId, np.ndarray]], StepRows]


STEP_NODE = "*"


@dataclass(frozen=True)
class ModelRow:
    """One node's model at one step, measured on the global held-out test set."""

    node: NodeId
    role: str
    honest: bool
    step: int
    time: float
    accuracy: float
    loss: float


@dataclass(frozen=True)
class MetricRow:
    node: NodeId
    name: str
    step: int
    time: float
    value: float
    tags: dict[str, str]


def final_rows(rows: list[ModelRow] | tuple[ModelRow, ...]) -> list[ModelRow]:
    """Each node's last measured model."""
    last: dict[NodeId, ModelRow] = {}
    for row in rows:
        if row.node not in last or row.step >= last[row.node].step:
            last[row.node] = row
    return [last[n] for n in sorted(last)]
