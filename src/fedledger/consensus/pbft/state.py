"""A replica's mutable bookkeeping: one log slot per sequence number of the current view."""

from __future__ import annotations

from dataclasses import dataclass, field

from fedledger.consensus.pbft.messages import Batch, Commit, Prepare, PrePrepare


@dataclass
class Slot:
    """What one replica holds for one sequence number in the current view."""

    preprepare: PrePrepare | None = None
    batch: Batch = ()
    prepares: dict[int, Prepare] = field(default_factory=dict)
    commits: dict[int, Commit] = field(default_factory=dict)
    prepared: bool = False
    committed: bool = False


@dataclass
class Timers:
    """Which of the replica's timers are armed (so each is set once, not on every event)."""

    batch: bool = False
    view: bool = False
    resend: bool = False
    catchup: bool = False
