"""The actions a replica or client returns; a host carries them out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fedledger.consensus.pbft.messages import Batch, CommitCertificate, Reply


@dataclass(frozen=True)
class SendTo:
    """Send ``msg`` to replica ``replica`` (an index into the membership)."""

    replica: int
    msg: Any


@dataclass(frozen=True)
class BroadcastAll:
    """Send ``msg`` to every other replica."""

    msg: Any


@dataclass(frozen=True)
class SetTimer:
    """Fire ``on_timer(key)`` after ``delay`` seconds, replacing a pending timer ``key``."""

    key: str
    delay: float


@dataclass(frozen=True)
class CancelTimer:
    key: str


@dataclass(frozen=True)
class Execute:
    """Batch ``seq`` committed (in ``view``): emitted once per sequence number, in order.

    ``fresh`` are the batch's requests run now, in batch order: a request whose client
    already had that nonce (or a later one) executed is left out (exactly-once).
    """

    seq: int
    view: int
    batch: Batch
    certificate: CommitCertificate
    fresh: Batch


@dataclass(frozen=True)
class ReplyTo:
    """Send ``reply`` to the client with address ``client``."""

    client: bytes
    reply: Reply


Action = SendTo | BroadcastAll | SetTimer | CancelTimer | Execute | ReplyTo
