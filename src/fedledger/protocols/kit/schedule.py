"""A round schedule: phases on a grid of network time.

Round ``j`` (1-based) starts at ``(j - 1) * round_length``; each phase is a deadline
``at`` seconds after the round starts. Because the grid is network time, a node that
starts late or restarts knows where the others are from the time alone: :meth:`join`
says whether to halt, wait for the next round, or begin the current one; :meth:`timers`
gives the phase timers of a round begun ``late`` seconds after its start (phases whose
deadline has passed are skipped unless marked ``always``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from fedledger.protocols.base import SetTimer


@dataclass(frozen=True)
class Phase:
    """A deadline ``at`` seconds into a round; ``always``: its timer is set (at once)
    even for a round begun after the deadline."""

    name: str
    at: float
    always: bool = False


class JoinAction(StrEnum):
    HALT = "halt"  # the network's last round is over
    WAIT = "wait"  # this round is done here: begin the next one at its start
    BEGIN = "begin"  # begin round ``Join.round`` now (possibly late)


@dataclass(frozen=True)
class Join:
    action: JoinAction
    round: int = 0
    delay: float = 0.0  # WAIT: seconds until the next round starts


@dataclass(frozen=True)
class RoundSchedule:
    round_length: float
    phases: tuple[Phase, ...]

    def __post_init__(self) -> None:
        if self.round_length <= 0:
            raise ValueError(f"round_length must be > 0, got {self.round_length}")
        ats = [p.at for p in self.phases]
        if any(a < 0 for a in ats) or ats != sorted(ats) or len(set(ats)) != len(ats):
            raise ValueError(f"phase deadlines must increase from >= 0, got {ats}")
        if ats and ats[-1] > self.round_length:
            raise ValueError(f"phase at {ats[-1]} lies past round_length {self.round_length}")
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names):
            raise ValueError(f"phase names must be distinct, got {names}")

    def at(self, name: str) -> float:
        for phase in self.phases:
            if phase.name == name:
                return phase.at
        raise KeyError(f"no phase {name!r}; phases: {[p.name for p in self.phases]}")

    def start_of(self, rnd: int) -> float:
        """When round ``rnd`` starts in network time."""
        return (rnd - 1) * self.round_length

    def current(self, now: float) -> int:
        """The network's round at ``now``."""
        return int(now // self.round_length) + 1

    def late(self, rnd: int, now: float) -> float:
        """How far into round ``rnd`` ``now`` is (0 when it has not started)."""
        return max(0.0, now - self.start_of(rnd))

    def open(self, name: str, late: float) -> bool:
        """Whether phase ``name``'s deadline is still ahead ``late`` seconds in."""
        return late < self.at(name)

    def timers(self, late: float) -> list[SetTimer]:
        """The phase timers of a round begun ``late`` seconds after its start."""
        return [
            SetTimer(p.name, max(0.0, p.at - late))
            for p in self.phases
            if p.at > late or p.always
        ]

    def join(self, done: int, now: float, rounds: int) -> Join:
        """How a node whose last finished round is ``done`` joins the network at ``now``
        in a run of ``rounds`` rounds."""
        current = self.current(now)
        if current > rounds:
            return Join(JoinAction.HALT)
        if done >= current:
            # the round is on the ledger already (or the clock is behind it)
            return Join(JoinAction.WAIT, done + 1, done * self.round_length - now)
        return Join(JoinAction.BEGIN, current)
