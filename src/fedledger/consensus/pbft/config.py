"""PBFT parameters, the fault bound and the per-replica Byzantine switches."""

from __future__ import annotations

from dataclasses import dataclass, field

from fedledger.errors import ConfigError


def max_faulty(n: int) -> int:
    """The most Byzantine replicas ``n`` replicas tolerate: the largest f with n >= 3f+1."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError("pbft", f"the number of replicas must be an int >= 1, got {n!r}")
    return (n - 1) // 3


def quorum(n: int) -> int:
    """2f+1: prepared (with the pre-prepare), committed-local, stable checkpoint, new view."""
    return 2 * max_faulty(n) + 1


@dataclass(frozen=True)
class Byzantine:
    """Fault switches for one replica; all off is an honest replica.

    equivocate: as primary, send different batches for one sequence number to different
        replicas (odd and even positions); as backup, prepare and commit the true digest to
        half the replicas and another digest to the others.
    wrong_digest: pre-prepares carry a digest that is not the batch's; prepares and commits
        name a digest that was never proposed; replies carry a bogus result.
    silent: send nothing at all (timers still run, so the replica keeps its own state).
    censor: client addresses whose requests this replica never proposes nor forwards.
    forge: sign every message with a key that is not the replica's.
    """

    equivocate: bool = False
    wrong_digest: bool = False
    silent: bool = False
    censor: frozenset[bytes] = field(default_factory=frozenset)
    forge: bool = False

    @property
    def honest(self) -> bool:
        return not (self.equivocate or self.wrong_digest or self.silent or self.censor
                    or self.forge)

    @classmethod
    def switch(cls, name: str, censor: frozenset[bytes] = frozenset()) -> Byzantine:
        """One named switch on (``none`` for honest): used by configs and tests."""
        if name == "none":
            return cls()
        if name == "censor":
            return cls(censor=frozenset(censor))
        if name not in SWITCHES:
            raise ConfigError(
                "pbft.byzantine", f"unknown switch {name!r}; allowed: none, {', '.join(SWITCHES)}"
            )
        return cls(**{name: True})


SWITCHES = ("equivocate", "wrong_digest", "silent", "censor", "forge")


@dataclass(frozen=True)
class PbftConfig:
    """Parameters shared by every replica of one instance (plus its own fault switches).

    batch_window: seconds the primary waits to fill a batch (0: propose at once).
    max_batch: most requests in one pre-prepare; a full batch is proposed at once.
    checkpoint_interval: k; a checkpoint every k sequence numbers.
    watermark_window: L; sequence numbers in (h, h+L] are accepted (a multiple of k).
    view_timeout: base seconds a backup waits for a pending request before it starts a
        view change; doubled for each consecutive view change without progress.
    resend_interval: seconds between status/retransmission rounds while work is pending.
    catchup_history: executed batches kept (with certificates) to help lagging replicas.
    catchup_chunk: most batches sent in one catch-up answer.
    byzantine: this replica's fault switches.
    """

    batch_window: float = 0.0
    max_batch: int = 64
    checkpoint_interval: int = 16
    watermark_window: int = 64
    view_timeout: float = 1.0
    resend_interval: float = 0.25
    catchup_history: int = 1024
    catchup_chunk: int = 32
    byzantine: Byzantine = field(default_factory=Byzantine)

    def __post_init__(self) -> None:
        for name in ("batch_window", "view_timeout", "resend_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"pbft.{name}", f"must be a number >= 0, got {value!r}")
        for name in ("view_timeout", "resend_interval"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"pbft.{name}", f"must be > 0, got {getattr(self, name)!r}")
        for name in ("max_batch", "checkpoint_interval", "watermark_window",
                     "catchup_history", "catchup_chunk"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"pbft.{name}", f"must be an int >= 1, got {value!r}")
        k, window = self.checkpoint_interval, self.watermark_window
        if window < 2 * k or window % k:
            raise ConfigError(
                "pbft.watermark_window",
                f"must be a multiple of checkpoint_interval ({k}) and at least twice it, "
                f"got {window}",
            )
        if not isinstance(self.byzantine, Byzantine):
            raise ConfigError("pbft.byzantine", f"must be a Byzantine, got {self.byzantine!r}")
