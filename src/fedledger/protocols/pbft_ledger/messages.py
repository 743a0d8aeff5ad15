"""Envelopes that carry PBFT records between nodes (the records sign themselves)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fedledger.codec import record
from fedledger.consensus.pbft import Reply
from fedledger.ledger.records import Transaction
from fedledger.protocols.base import Message


@record("pbft_ledger.Request")
@dataclass(frozen=True)
class Request(Message):
    """Client -> replica: a signed client request."""

    tx: Transaction


@record("pbft_ledger.Peer")
@dataclass(frozen=True)
class Peer(Message):
    """Replica -> replica: one engine message (a signed record or a checked wrapper)."""

    body: Any


@record("pbft_ledger.Answer")
@dataclass(frozen=True)
class Answer(Message):
    """Replica -> client: a signed reply."""

    reply: Reply
