"""Messages of ``nagar-vertical``'s transfer and sharing modes (vertical mode's, and the
PSI, masked-cipher and opening messages transfer mode reuses, are in :mod:`.messages`)."""

from __future__ import annotations

from dataclasses import dataclass

from fedledger.codec import record
from fedledger.protocols.base import Message


@record("nagar_vertical.FtlTerms")
@dataclass(frozen=True)
class FtlTerms(Message):
    """Transfer, party -> party at the start of ``step``: A's ``[[T1]]`` (|C| x r) and
    ``[[T2]]`` (r x r), or B's ``[[S1]]`` and ``[[S2]]``, under the coordinator's key."""

    step: int
    first: bytes
    second: bytes


@record("nagar_vertical.FtlCentroid")
@dataclass(frozen=True)
class FtlCentroid(Message):
    """Transfer, A -> B: ``[[w]]`` (r), A's label-weighted centroid after ``step`` steps;
    B scores its non-overlap samples with it (masked, opened by the coordinator)."""

    step: int
    cipher: bytes


@record("nagar_vertical.SealedReading")
@dataclass(frozen=True)
class SealedReadingMsg(Message):
    """Sharing, IoT device -> trainer: one privatised reading in an X25519 sealed box."""

    ciphertext: bytes


@record("nagar_vertical.ReadingShare")
@dataclass(frozen=True)
class ReadingShare(Message):
    """Sharing, IoT device -> gateway ``x``, then gateway -> trainer: the gateway's Shamir
    share (over GF(2**127 - 1)) of each feature of one privatised reading."""

    device: int
    hour: int
    x: int
    ys: tuple[int, ...]
