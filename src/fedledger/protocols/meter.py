"""Attributing a node's CPU time to activities, without breaking the sans-IO rule.

A protocol cannot read a clock, but a host may want to know how much CPU its
blockchain work costs (the DFL paper's Tables IV and VI split a node's CPU time into
blockchain, network and ML). The host therefore hands every node a :class:`Meter`;
protocol code wraps work in ``with meter.section("blockchain"):``. The meter only
observes: the protocol never reads it, so behaviour and determinism are unchanged.
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


NULL_METER = Meter()


class CpuMeter(Meter):
    """Adds the process CPU time spent inside each section to that activity.

    Nested sections count only towards the innermost one. ``measured`` is the total
    time spent in any section, so a host can subtract it from a wider measurement.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
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
