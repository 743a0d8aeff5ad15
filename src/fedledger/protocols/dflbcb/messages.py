"""DFLBCB's wire messages: PBFT envelopes and the secp256k1 proof shares.

Each committee term runs its own PBFT instance, so the envelopes carry the term (the
contract's ``CommitteeElected.term``, 0 for the initial committee): a node drops (and
counts) an envelope of another term, and clients and replicas of the right term resend.
"""

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

    term: int
    tx: Transaction


@record("dflbcb.Peer")
@dataclass(frozen=True)
class Peer(Message):
    """Committee member -> committee member: one PBFT engine message."""

    term: int
    body: Any


@record("dflbcb.Answer")
@dataclass(frozen=True)
class Answer(Message):
    """Committee member -> client: a signed PBFT reply."""

    term: int
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


@record("dflbcb.History")
@dataclass(frozen=True)
class History(Message):
    """Old committee member -> a new member that was not in the old committee, at a
    handover: the accepted Work scores it knows, per iteration, ``((it, ((address,
    permille), ...)), ...)`` sorted; a new member adopts a history F+1 old members sent
    identically (the election's accuracy term needs it)."""

    term: int
    rows: tuple[tuple[int, tuple[tuple[str, int], ...]], ...]
