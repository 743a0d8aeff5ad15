"""Where engine calls meet the protocol node's gate: the engine's drops by reason are
counted by the node's :class:`~fedledger.protocols.kit.Gate` (metric ``rejected``), and a
hostile value the engine's checks do not foresee is refused as ``malformed``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TypeVar

from fedledger.errors import FedledgerError
from fedledger.protocols.kit import Gate

T = TypeVar("T")

#: What a malformed peer value can make an engine check raise.
HOSTILE = (TypeError, AttributeError, ValueError, KeyError, IndexError, FedledgerError)


class EngineGate:
    """Runs engine calls and forwards the engine's new drops to ``gate``."""

    def __init__(self, gate: Gate, drops: Counter[str]) -> None:
        self.gate = gate
        self.drops = drops
        self._seen: Counter[str] = Counter()

    def call(self, fn: Callable[[], list[T]]) -> list[T]:
        try:
            out = fn()
        except HOSTILE as err:
            self.sync()
            raise self.gate.fail("malformed", f"{type(err).__name__}: {err}") from None
        self.sync()
        return out

    def sync(self) -> None:
        for reason, total in sorted(self.drops.items()):
            for _ in range(total - self._seen[reason]):
                self.gate.fail(reason)
            self._seen[reason] = total
