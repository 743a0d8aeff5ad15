"""The boundary gate: where messages and records enter a node.

Signature-level checks go through the ledger's :class:`~fedledger.ledger.verify.Verifier`
(which counts its own reasons); protocol rules raise :meth:`Gate.fail`, which counts the
reason and returns a :class:`Reject` to raise. Every refusal is counted under one metric
name, ``rejected``, tagged by reason; :meth:`Gate.new_metrics` returns the rejections
since its last call as ``EmitMetric`` effects. Nothing the gate refuses raises past a
:class:`~fedledger.protocols.kit.node.KitNode`: it catches :data:`REFUSED`.
"""

from __future__ import annotations

from collections import Counter

from fedledger.errors import FedledgerError
from fedledger.ledger.verify import Rejected, Verifier
from fedledger.protocols.base import EmitMetric

#: The metric every refusal is counted under (see ``base.COMMON_METRICS``).
REJECTED = "rejected"


class Reject(FedledgerError):
    """A message or record broke a protocol rule; counted under ``reason``."""

    def __init__(self, reason: str, detail: str = "", counted: bool = False) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.counted = counted  # by the gate that made it (Gate.fail)


#: What a check may raise for a refused input: a protocol rule or a failed signature check.
REFUSED = (Rejected, Reject)


class Gate:
    """Counts one node's refusals: its verifier's (signature level) and its own."""

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier
        self.counts: Counter[str] = Counter()
        self._emitted: dict[str, int] = {}

    def fail(self, reason: str, detail: str = "") -> Reject:
        """Count ``reason`` once; the returned :class:`Reject` is for the caller to raise."""
        if not reason:
            raise ValueError("a rejection needs a non-empty reason")
        self.counts[reason] += 1
        return Reject(reason, detail, counted=True)

    def count(self, reject: Reject) -> None:
        """Count a :class:`Reject` made by a check that did not count it (once)."""
        if not reject.counted:
            self.fail(reject.reason, reject.detail)
            reject.counted = True

    def protocol_counts(self) -> dict[str, int]:
        """The protocol-level rejections so far by reason (the verifier's left out)."""
        return {k: v for k, v in self.counts.items() if v}

    def rejections(self) -> dict[str, int]:
        """Every rejection so far by reason, signature and protocol level."""
        out = {k: v for k, v in self.verifier.counter.as_dict().items() if v}
        for reason, n in self.counts.items():
            out[reason] = out.get(reason, 0) + n
        return out

    def new_metrics(self, step: int) -> list[EmitMetric]:
        """``rejected{reason}`` for the rejections since the last call, by reason."""
        effects: list[EmitMetric] = []
        for reason, total in sorted(self.rejections().items()):
            delta = total - self._emitted.get(reason, 0)
            if delta:
                effects.append(EmitMetric(REJECTED, float(delta), step, (("reason", reason),)))
                self._emitted[reason] = total
        return effects
