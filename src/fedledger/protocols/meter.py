"""Attributing a node's CPU time to activities, without breaking the sans-IO rule.

A protocol cannot read a clock, but a host may want to know how much CPU its
blockchain work costs (the DFL paper's Tables IV and VI split a node's CPU time into
blockchain, network and ML). The host therefore hands every node a :class:`Meter`;
protocol code wraps work in ``with meter.section("blockchain"):``. The meter only
observes: the protocol never reads it, so behaviour and determinism are unchanged.

Work that should also cost *virtual* time in the simulator (homomorphic encryption,
which takes seconds per model) is declared with ``meter.work(activity, seconds)``: the
seconds a reference machine would spend on it, from a cost model that is a pure function
of the work (e.g. :mod:`fedledger.privacy.he.cost`). The simulator turns the declared
work of one handler into a delay of that handler's effects (or, in ``measured`` compute
mode, uses the CPU time measured in the activity's sections instead).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager


class Meter:
    """Does nothing: the default for hosts that do not measure."""

    @contextmanager
    def section(self, activity: str) -> Iterator[None]:
        yield

    def work(self, activity: str, seconds: float) -> None:
        """Declare ``seconds`` of modelled work (on the reference machine) under
        ``activity``; hosts that model no time ignore it."""


NULL_METER = Meter()


class CpuMeter(Meter):
    """Adds the process CPU time spent inside each section to that activity.

    Nested sections count only towards the innermost one. ``measured`` is the total
    time spent in any section, so a host can subtract it from a wider measurement.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.modelled: dict[str, float] = defaultdict(float)  # declared by ``work``
        self.modelled_total = 0.0
        self.declarations = 0  # calls of ``work``
        self.worked: set[str] = set()  # activities that declared work
        self.measured = 0.0
        self._stack: list[list[float]] = []  # [start, time of nested sections]

    @contextmanager
    def section(self, activity: str) -> Iterator[None]:
        frame = [time.process_time(), 0.0]
        self._stack.append(frame)
        try:
            yield
        finally:
            self._stack.pop()
            elapsed = time.process_time() - frame[0]
            self.seconds[activity] += elapsed - frame[1]
            if self._stack:
                self._stack[-1][1] += elapsed
            else:
                self.measured += elapsed

    def add(self, activity: str, seconds: float) -> None:
        """Account time measured by the host itself (jobs, message encoding)."""
        self.seconds[activity] += seconds

    def work(self, activity: str, seconds: float) -> None:
        if not seconds >= 0.0:  # also refuses NaN
            raise ValueError(f"modelled work must be >= 0 seconds, got {seconds!r}")
        self.modelled[activity] += seconds
        self.modelled_total += seconds
        self.declarations += 1
        self.worked.add(activity)
