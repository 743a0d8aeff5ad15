"""One effect table for every host.

A host (the simulator, a real node process) implements a handful of primitives
(:class:`HostOps`: send one message, set and cancel a timer, run a job, fetch a blob,
measure a model, record a metric, halt a node). The table maps each effect type to its
handler; the handlers shared by every host (``Broadcast`` expands to sends, the rest
call the host's primitive) are written here once. A new effect is one entry per host
(:meth:`EffectTable.add`), and an effect a protocol declares (``Protocol.effects``) that
the host cannot execute stops the run before it starts (:meth:`EffectTable.require`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

import numpy as np

from fedledger.errors import FedledgerError
from fedledger.protocols.base import (
    BASE_EFFECTS,
    Broadcast,
    CancelTimer,
    EmitMetric,
    FetchBlob,
    Halt,
    Job,
    Message,
    NodeId,
    ReportModel,
    RunJob,
    Send,
    SetTimer,
)

Handler = Callable[[NodeId, Any], None]


class EffectError(FedledgerError, RuntimeError):
    """A host cannot execute an effect (none registered for its type)."""


class HostOps(Protocol):
    """The primitives a host provides; everything else is derived from them."""

    def peers(self, node_id: NodeId) -> tuple[NodeId, ...]: ...

    def send(self, node_id: NodeId, to: NodeId, message: Message) -> None: ...

    def set_timer(self, node_id: NodeId, key: str, delay: float) -> None: ...

    def cancel_timer(self, node_id: NodeId, key: str) -> None: ...

    def run_job(self, node_id: NodeId, job_id: str, job: Job) -> None: ...

    def fetch_blob(self, node_id: NodeId, cid: str, source: NodeId) -> None: ...

    def report_model(self, node_id: NodeId, step: int, weights: np.ndarray) -> None: ...

    def emit_metric(self, node_id: NodeId, metric: EmitMetric) -> None: ...

    def halt(self, node_id: NodeId, reason: str) -> None: ...


class EffectTable:
    """Effect type -> handler ``(node_id, effect) -> None``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._handlers: dict[type, Handler] = {}

    @classmethod
    def for_host(cls, name: str, host: HostOps) -> EffectTable:
        """The table of the effects every protocol may emit, on ``host``'s primitives."""
        table = cls(name)

        def broadcast(node_id: NodeId, effect: Broadcast) -> None:
            for peer in effect.to or host.peers(node_id):
                host.send(node_id, peer, effect.message)

        table.add(Send, lambda n, e: host.send(n, e.to, e.message))
        table.add(Broadcast, broadcast)
        table.add(SetTimer, lambda n, e: host.set_timer(n, e.key, max(0.0, e.delay)))
        table.add(CancelTimer, lambda n, e: host.cancel_timer(n, e.key))
        table.add(RunJob, lambda n, e: host.run_job(n, e.job_id, e.job))
        table.add(FetchBlob, lambda n, e: host.fetch_blob(n, e.cid, e.source))
        table.add(ReportModel, lambda n, e: host.report_model(n, e.step, e.weights))
        table.add(EmitMetric, lambda n, e: host.emit_metric(n, e))
        table.add(Halt, lambda n, e: host.halt(n, e.reason))
        assert set(BASE_EFFECTS) <= set(table._handlers)
        return table

    def add(self, effect_type: type, handler: Handler) -> None:
        if effect_type in self._handlers:
            raise ValueError(f"{self.name} already handles {effect_type.__name__}")
        self._handlers[effect_type] = handler

    def handles(self, effect_type: type) -> bool:
        return effect_type in self._handlers

    def require(self, effect_types: Iterable[type], who: str) -> None:
        """Fail now, before the run, if any of ``effect_types`` has no handler here."""
        missing = sorted(t.__name__ for t in effect_types if t not in self._handlers)
        if missing:
            known = ", ".join(sorted(t.__name__ for t in self._handlers))
            raise EffectError(
                f"{who} emits {', '.join(missing)}, which the {self.name} cannot execute; "
                f"it handles: {known}"
            )

    def execute(self, node_id: NodeId, effect: object) -> None:
        handler = self._handlers.get(type(effect))
        if handler is None:
            raise EffectError(
                f"node {node_id} returned {type(effect).__name__}, which the {self.name} "
                "does not handle; a protocol declares its extra effects in Protocol.effects"
            )
        handler(node_id, effect)
