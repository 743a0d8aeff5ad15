"""The adaptive stage timer, the paper's Alg. 2 ("State Transition Algorithm").

A hard cap ``mt``; once ``threshold`` (80 %) of the expected requests have arrived, a quiet
timer at the mean arrival time (from the stage start) starts; each new request restarts
it; each time it fires its length halves; the stage ends when it would drop below the
floor (the paper's ``t <= 0``, which halving never reaches) or when ``mt`` passes.
All times are integer milliseconds. The state is a frozen record: each event returns the
next state, and ``deadline`` says when the host should next fire it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from fedledger.errors import ConfigError


@dataclass(frozen=True)
class TimerParams:
    mt_ms: int
    expected: int
    threshold_permille: int = 800
    floor_ms: int = 500

    def __post_init__(self) -> None:
        if self.mt_ms <= 0 or self.expected < 0 or self.floor_ms <= 0:
            raise ConfigError(
                "timer", f"mt_ms={self.mt_ms}, expected={self.expected}, floor_ms="
                f"{self.floor_ms}: mt and floor must be > 0, expected >= 0",
            )
        if not 0 < self.threshold_permille <= 1000:
            raise ConfigError(
                "timer.threshold_permille", f"{self.threshold_permille} not in 1..1000"
            )


@dataclass(frozen=True)
class StageTimer:
    params: TimerParams
    start_ms: int
    arrivals: tuple[int, ...] = ()
    quiet_ms: int = 0          # 0: the quiet timer has not started
    quiet_at: int | None = None
    closed_at: int | None = None

    @property
    def closed(self) -> bool:
        return self.closed_at is not None

    def deadline(self) -> int:
        """When the host must call ``on_time`` next (the hard cap or the quiet timer)."""
        hard = self.start_ms + self.params.mt_ms
        return hard if self.quiet_at is None else min(hard, self.quiet_at)

    def on_request(self, now_ms: int) -> StageTimer:
        if self.closed:
            return self
        arrivals = (*self.arrivals, now_ms - self.start_ms)
        quiet = self.quiet_ms
        reached = len(arrivals) * 1000 >= self.params.threshold_permille * self.params.expected
        if quiet == 0 and reached:
            quiet = max(1, sum(arrivals) // len(arrivals))
        quiet_at = now_ms + quiet if quiet else None
        return replace(self, arrivals=arrivals, quiet_ms=quiet, quiet_at=quiet_at)

    def on_time(self, now_ms: int) -> StageTimer:
        """Call at ``deadline()``; halves the quiet timer or closes the stage."""
        if self.closed:
            return self
        if now_ms >= self.start_ms + self.params.mt_ms:
            return replace(self, quiet_at=None, closed_at=now_ms)
        if self.quiet_at is None or now_ms < self.quiet_at:
            return self
        half = self.quiet_ms // 2
        if half < self.params.floor_ms:
            return replace(self, quiet_at=None, closed_at=now_ms)
        return replace(self, quiet_ms=half, quiet_at=now_ms + half)
