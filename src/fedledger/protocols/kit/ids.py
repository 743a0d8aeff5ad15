"""Typed job ids and timer keys.

Hosts carry job ids and timer keys as strings (``RunJob.job_id``, ``SetTimer.key``); a
node renders them from these small records and parses them back, instead of formatting
and partitioning strings by hand. ``JobId("train", 3)`` renders ``"train:3"``,
``JobId("eval", 2, "ab12")`` renders ``"eval:2:ab12"``; ``TimerKey("vote")`` renders
``"vote"`` and ``TimerKey("retry", 4)`` ``"retry:4"``.
"""

from __future__ import annotations

from dataclasses import dataclass

SEPARATOR = ":"


def _check_name(what: str, name: str) -> None:
    if not isinstance(name, str) or not name or SEPARATOR in name:
        raise ValueError(f"{what} {name!r}: a non-empty string without {SEPARATOR!r}")


@dataclass(frozen=True)
class JobId:
    """A job's id: its kind (``train``, ``eval``, ...), an index (a round, a counter) and
    an optional key (e.g. the hex id of the record the job is about)."""

    kind: str
    index: int
    key: str = ""

    def __post_init__(self) -> None:
        _check_name("job kind", self.kind)
        if not isinstance(self.index, int) or isinstance(self.index, bool) or self.index < 0:
            raise ValueError(f"job index {self.index!r}: an int >= 0")
        if SEPARATOR in self.key:
            raise ValueError(f"job key {self.key!r}: must not contain {SEPARATOR!r}")

    def __str__(self) -> str:
        text = f"{self.kind}{SEPARATOR}{self.index}"
        return f"{text}{SEPARATOR}{self.key}" if self.key else text

    @classmethod
    def parse(cls, text: str) -> JobId | None:
        """The id ``text`` renders, or None for a string no JobId renders."""
        parts = text.split(SEPARATOR, 2) if isinstance(text, str) else []
        if len(parts) < 2 or not parts[1].isdigit() or not parts[1].isascii():
            return None
        key = parts[2] if len(parts) == 3 else ""
        if len(parts) == 3 and not key:
            return None
        try:
            job = cls(parts[0], int(parts[1]), key)
        except ValueError:
            return None
        return job if str(job) == text else None


@dataclass(frozen=True)
class TimerKey:
    """A timer's key: a name and, for timers set once per round or item, an index."""

    name: str
    index: int | None = None

    def __post_init__(self) -> None:
        _check_name("timer name", self.name)
        bad_index = isinstance(self.index, bool) or not isinstance(self.index, int | None)
        if bad_index or (self.index is not None and self.index < 0):
            raise ValueError(f"timer index {self.index!r}: None or an int >= 0")

    def __str__(self) -> str:
        return self.name if self.index is None else f"{self.name}{SEPARATOR}{self.index}"

    @classmethod
    def parse(cls, text: str) -> TimerKey | None:
        """The key ``text`` renders, or None for a string no TimerKey renders."""
        if not isinstance(text, str):
            return None
        name, sep, index = text.partition(SEPARATOR)
        try:
            if not sep:
                key = cls(name)
            elif index.isdigit() and index.isascii():
                key = cls(name, int(index))
            else:
                return None
        except ValueError:
            return None
        return key if str(key) == text else None
