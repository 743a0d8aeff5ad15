"""Limits and timings of a node's networking, and peer addresses."""

from __future__ import annotations

from dataclasses import dataclass

from fedledger.runtime.node.framing import DEFAULT_MAX_FRAME, check_max_frame


@dataclass(frozen=True)
class NetSettings:
    """Limits and timings of a node's networking (``fedledger node`` options)."""

    max_frame: int = DEFAULT_MAX_FRAME
    queue_size: int = 256  # messages waiting per peer
    inbox_size: int = 1024  # received messages waiting for the protocol
    handshake_timeout: float = 5.0  # absolute deadline of a whole handshake
    ping_interval: float = 1.0
    idle_timeout: float = 10.0
    backoff_min: float = 0.1
    backoff_max: float = 5.0
    max_handshakes: int = 64  # connections being authenticated at once
    # ... of which from one source address (a full address loses its oldest one)
    max_handshakes_per_address: int = 8
    chunk_size: int = 1024 * 1024  # blob transfer chunk
    request_timeout: float = 10.0  # one blob chunk or block batch
    start_wait: float = 60.0  # seconds to wait for the protocol's peers before Start
    drain_timeout: float = 5.0  # seconds to flush outboxes after Halt
    # live catch-up (``live_sync``): seconds between two looks at a peer's chain heads, and
    # how many blocks behind a peer (at two looks running) a running node syncs
    sync_interval: float = 1.0
    sync_lag: int = 2
    # TLS 1.3 under the handshake (``tls``): on for every node started from a genesis file
    tls: bool = False

    def __post_init__(self) -> None:
        check_max_frame(self.max_frame)
        counts = (
            "queue_size",
            "inbox_size",
            "max_handshakes",
            "max_handshakes_per_address",
            "sync_lag",
        )
        for name in (*counts, "chunk_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"NetSettings.{name} must be >= 1, got {getattr(self, name)}")
        timings = ("handshake_timeout", "ping_interval", "idle_timeout", "request_timeout")
        for name in (*timings, "sync_interval"):
            if not getattr(self, name) > 0:
                raise ValueError(
                    f"NetSettings.{name} must be > 0 seconds, got {getattr(self, name)!r}"
                )
        if self.chunk_size + 1024 > self.max_frame:
            raise ValueError(
                f"chunk_size {self.chunk_size} + 1024 bytes of envelope must fit the frame "
                f"limit {self.max_frame}"
            )


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port); ValueError naming the text otherwise."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"address {text!r} is not HOST:PORT with a port in 0..65535")
    return host.strip("[]"), int(port)
