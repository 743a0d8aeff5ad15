"""DFLBCB's wire messages: PBFT envelopes and the secp256k1 proof shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fedledger.codec import record
from fedledger.consensus.pbft import Reply
from fedledger.ledger.records import Transaction
from fedledger.protocols.base import Message


@record("dflbcb.Request")
@dataclass(frozen=True)
class Request(Message):
    """Client -> committee member: a signed request (candidacy, pledge, submission,
    alive or End)."""

    tx: Transaction


@record("dflbcb.Peer")
@dataclass(frozen=True)
class Peer(Message):
    """Committee member -> committee member: one PBFT engine message."""

    body: Any


@record("dflbcb.Answer")
@dataclass(frozen=True)
class Answer(Message):
    """Committee member -> client: a signed PBFT reply."""

    reply: Reply


@record("dflbcb.Share")
@dataclass(frozen=True)
class Share(Message):
    """Committee member -> the End's sender: its secp256k1 signature over the proof
    digest of (it, stage, result_hash), sent once the End matched its own result."""

    it: int
    stage: int
    result_hash: bytes
    v: int
    r: bytes
    s: bytes
