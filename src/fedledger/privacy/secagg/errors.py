"""Errors of the secure aggregation package."""

from __future__ import annotations

from fedledger.errors import FedledgerError


class SecAggError(FedledgerError, ValueError):
    """A bad parameter, a malformed message or a step taken out of order."""


class DropoutError(SecAggError):
    """Too few clients are left in a phase for the threshold: the round fails cleanly."""

    def __init__(self, phase: str, alive: int, needed: int, total: int) -> None:
        self.phase = phase
        self.alive = alive
        self.needed = needed
        self.total = total
        super().__init__(
            f"secure aggregation: {alive} of {total} clients left at {phase!r} but the "
            f"threshold needs {needed}; {total - alive} dropped, at most {total - needed} may"
        )


class TamperedShareError(SecAggError):
    """A share failed authentication or reconstruction; ``culprits`` names the senders."""

    def __init__(self, culprits: list[str], reason: str) -> None:
        self.culprits = culprits
        super().__init__(f"shares from {culprits} rejected: {reason}")
