"""Frames on a TCP stream: a 4-byte big-endian length, then that many bytes of payload.

The decoder is sans-IO (feed bytes, get whole frames), so it is fuzzed directly. A length
above the node's limit is refused before any payload is buffered, so a peer cannot make
a node allocate more than ``max_frame`` bytes per connection. Drops are counted by
reason in :class:`NetCounters` and exposed in the node's metrics.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

PREFIX = 4
DEFAULT_MAX_FRAME = 32 * 1024 * 1024
MAX_PREFIX_VALUE = 2**32 - 1


class DropReason(enum.StrEnum):
    """Why a node dropped bytes, a frame or a connection coming from the network."""

    MALFORMED = "malformed"  # not a decodable envelope / handshake record
    OVERSIZED = "oversized"  # length prefix above the frame limit
    TRUNCATED = "truncated"  # the stream ended inside a frame
    BAD_SIGNATURE = "bad_signature"
    REPLAY = "replay"  # a sequence number or session already seen
    UNKNOWN_KEY = "unknown_key"  # a key that is not a member of the network
    WRONG_NETWORK = "wrong_network"  # another config / genesis digest, or version
    BAD_HANDSHAKE = "bad_handshake"  # handshake out of order or not proving the key
    HANDSHAKE_TIMEOUT = "handshake_timeout"
    UNEXPECTED = "unexpected"  # a valid envelope holding something the node cannot use
    BAD_CONTENT = "bad_content"  # a blob that does not hash to its content id
    BAD_BLOCK = "bad_block"  # a synced block the ledger verifier refused
    QUEUE_FULL = "queue_full"  # outbound queue to a peer overflowed; oldest dropped
    SEND_FAILED = "send_failed"  # the connection broke while a message was being sent
    TOO_MANY_CONNECTIONS = "too_many_connections"  # refused: the node is closing
    # an unauthenticated connection closed to make room for a newer one
    HANDSHAKE_EVICTED = "handshake_evicted"
    # a blob request the protocol does not serve to that peer (ProtocolNode.may_serve)
    REFUSED_BLOB = "refused_blob"


class FrameError(Exception):
    """The stream cannot be framed any further; the connection is to be closed."""

    def __init__(self, reason: DropReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


def check_max_frame(max_frame: int) -> int:
    if not isinstance(max_frame, int) or not 64 <= max_frame <= MAX_PREFIX_VALUE:
        raise ValueError(f"max_frame must be an int in [64, {MAX_PREFIX_VALUE}], got {max_frame!r}")
    return max_frame


def encode_frame(payload: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """The frame of ``payload``; ValueError if it is larger than ``max_frame``."""
    if len(payload) > max_frame:
        raise ValueError(
            f"payload of {len(payload)} bytes exceeds the frame limit of {max_frame} bytes"
        )
    return len(payload).to_bytes(PREFIX, "big") + payload


class FrameDecoder:
    """Splits a byte stream into frames; raises FrameError on an oversized prefix."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = check_max_frame(max_frame)
        self._buf = bytearray()
        self._need: int | None = None

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes from the stream; return every frame they complete, in order."""
        self._buf += data
        frames: list[bytes] = []
        while True:
            if self._need is None:
                if len(self._buf) < PREFIX:
                    return frames
                size = int.from_bytes(self._buf[:PREFIX], "big")
                if size > self.max_frame:
                    raise FrameError(
                        DropReason.OVERSIZED,
                        f"length prefix {size} exceeds the frame limit of {self.max_frame}",
                    )
                del self._buf[:PREFIX]
                self._need = size
            if len(self._buf) < self._need:
                return frames
            frames.append(bytes(self._buf[: self._need]))
            del self._buf[: self._need]
            self._need = None

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame (prefix included) held back."""
        return len(self._buf) + (PREFIX if self._need is not None else 0)

    def eof(self) -> None:
        """The stream ended; FrameError(TRUNCATED) if it ended inside a frame."""
        if self.pending:
            raise FrameError(
                DropReason.TRUNCATED, f"stream ended with {self.pending} bytes of a frame"
            )


@dataclass
class NetCounters:
    """Transport figures of one node process (mutable tallies, owned by the loop)."""

    bytes_sent: int = 0
    bytes_received: int = 0
    frames_sent: int = 0
    frames_received: int = 0
    messages_sent: int = 0  # protocol messages (not handshake, pings, blob or chain traffic)
    messages_received: int = 0
    payload_bytes_sent: int = 0  # canonical bytes of the protocol messages sent
    connections: int = 0  # authenticated connections established
    disconnects: int = 0
    drops: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: DropReason, n: int = 1) -> None:
        self.drops[reason.value] = self.drops.get(reason.value, 0) + n

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: v for k, v in vars(self).items() if k != "drops"}
        out["drops"] = dict(sorted(self.drops.items()))
        out["dropped"] = sum(self.drops.values())
        return out
