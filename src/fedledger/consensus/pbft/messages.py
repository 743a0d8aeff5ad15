"""PBFT messages: canonical records (type names ``pbft.*``) signed with Ed25519.

Client requests are ledger :class:`~fedledger.ledger.records.Transaction` records: the
client is ``sender``, PBFT's request timestamp ``t`` is ``nonce`` (it must grow per
client; a request with a nonce at or below the client's last executed one is not run
again), and the operation is ``kind`` and ``payload``. A batch is a tuple of them and its
digest is their Merkle root (``ledger.records.tx_root``), so a committed batch becomes a
block whose ``tx_root`` is the digest the commit certificate signs.

Signed records name their signer in ``SIGNER`` like every ledger record and are signed
with ``ledger.records.sign``. Two unsigned wrappers travel with signed contents that the
receiver checks: :class:`Proposal` (a pre-prepare and its batch: the digest binds them)
and :class:`CatchUp` (executed batches with their commit certificates).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from fedledger.codec import record
from fedledger.ledger.records import RecordError, Transaction, tx_root

Batch = tuple[Transaction, ...]

NULL_DIGEST = tx_root(())
"""The digest of the empty batch: the null request a new primary puts into gaps."""


def batch_digest(batch: Batch) -> bytes:
    return tx_root(batch)


def _need_seq(rec: object, *names: str) -> None:
    for name in names:
        value = getattr(rec, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise RecordError(f"{type(rec).__name__}.{name} must be an int >= 0, got {value!r}")


def _need_bytes(rec: object, name: str, size: int | None = 32) -> None:
    value = getattr(rec, name)
    if not isinstance(value, bytes) or (size is not None and len(value) != size):
        want = f"{size} bytes" if size else "bytes"
        raise RecordError(f"{type(rec).__name__}.{name} must be {want}, got {value!r:.40}")


@record("pbft.PrePrepare")
@dataclass(frozen=True)
class PrePrepare:
    """The primary of ``view`` assigns ``seq`` to the batch with ``digest``."""

    SIGNER: ClassVar[str] = "primary"

    view: int
    seq: int
    digest: bytes
    timestamp: float
    primary: bytes
    signature: bytes = b""

    def __post_init__(self) -> None:
        _need_seq(self, "view", "seq")
        _need_bytes(self, "digest")
        _need_bytes(self, "primary")
        _need_bytes(self, "signature", None)


@record("pbft.Prepare")
@dataclass(frozen=True)
class Prepare:
    SIGNER: ClassVar[str] = "sender"

    view: int
    seq: int
    digest: bytes
    sender: bytes
    signature: bytes = b""

    def __post_init__(self) -> None:
        _need_seq(self, "view", "seq")
        _need_bytes(self, "digest")
        _need_bytes(self, "sender")
        _need_bytes(self, "signature", None)


@record("pbft.Commit")
@dataclass(frozen=True)
class Commit:
    SIGNER: ClassVar[str] = "sender"

    view: int
    seq: int
    digest: bytes
    sender: bytes
    signature: bytes = b""

    def __post_init__(self) -> None:
        _need_seq(self, "view", "seq")
        _need_bytes(self, "digest")
        _need_bytes(self, "sender")
        _need_bytes(self, "signature", None)


@record("pbft.Checkpoint")
@dataclass(frozen=True)
class Checkpoint:
    """``sender`` executed everything up to ``seq`` and reached ``state``."""

    SIGNER: ClassVar[str] = "sender"

    seq: int
    state: bytes
    sender: bytes
    signature: bytes = b""

    def __post_init__(self) -> None:
        _need_seq(self, "seq")
        _need_bytes(self, "state")
        _need_bytes(self, "sender")
        _need_bytes(self, "signature", None)


@record("pbft.Proposal")
@dataclass(frozen=True)
class Proposal:
    """A pre-prepare with its batch (``batch_digest(batch)`` must be its digest)."""

    preprepare: PrePrepare
    batch: tuple[Transaction, ...]


@record("pbft.PreparedCert")
@dataclass(frozen=True)
class PreparedCert:
    """Proof that a batch prepared: its pre-prepare, 2f matching prepares, the batch."""

    preprepare: PrePrepare
    prepares: tuple[Prepare, ...]
    batch: tuple[Transaction, ...]


@record("pbft.CommitCertificate")
@dataclass(frozen=True)
class CommitCertificate:
    """Proof that a batch committed: its pre-prepare and 2f+1 matching commits."""

    preprepare: PrePrepare
    commits: tuple[Commit, ...]

    @property
    def view(self) -> int:
        return self.preprepare.view

    @property
    def seq(self) -> int:
        return self.preprepare.seq

    @property
    def digest(self) -> bytes:
        return self.preprepare.digest


@record("pbft.ViewChange")
@dataclass(frozen=True)
class ViewChange:
    """``sender`` moves to ``view``: its stable checkpoint (with proof) and what prepared
    above it (the highest-view certificate per sequence number)."""

    SIGNER: ClassVar[str] = "sender"

    view: int
    stable_seq: int
    stable_proof: tuple[Checkpoint, ...]
    prepared: tuple[PreparedCert, ...]
    sender: bytes
    signature: bytes = b""

    def __post_init__(self) -> None:
        _need_seq(self, "view", "stable_seq")
        _need_bytes(self, "sender")
        _need_bytes(self, "signature", None)


@record("pbft.NewView")
@dataclass(frozen=True)
class NewView:
    """The primary of ``view`` starts it from 2f+1 view-changes and the pre-prepares (the
    set O) that every replica recomputes from them."""

    SIGNER: ClassVar[str] = "primary"

    view: int
    view_changes: tuple[ViewChange, ...]
    preprepares: tuple[PrePrepare, ...]
    primary: bytes
    signature: bytes = b""

    def __post_init__(self) -> None:
        _need_seq(self, "view")
        _need_bytes(self, "primary")
        _need_bytes(self, "signature", None)


@record("pbft.Reply")
@dataclass(frozen=True)
class Reply:
    """``sender`` executed ``client``'s request ``nonce`` in ``view`` with ``result``."""

    SIGNER: ClassVar[str] = "sender"

    view: int
    client: bytes
    nonce: int
    result: Any
    sender: bytes
    signature: bytes = b""

    def __post_init__(self) -> None:
        _need_seq(self, "view", "nonce")
        _need_bytes(self, "client")
        _need_bytes(self, "sender")
        _need_bytes(self, "signature", None)


@record("pbft.Status")
@dataclass(frozen=True)
class Status:
    """``sender`` is in ``view`` (``active`` false while changing view) and has executed up
    to ``last_executed``; peers answer with what it misses (catch-up, the new view)."""

    SIGNER: ClassVar[str] = "sender"

    view: int
    active: bool
    last_executed: int
    sender: bytes
    signature: bytes = b""

    def __post_init__(self) -> None:
        _need_seq(self, "view", "last_executed")
        _need_bytes(self, "sender")
        _need_bytes(self, "signature", None)


@record("pbft.Executed")
@dataclass(frozen=True)
class Executed:
    """One executed batch and its commit certificate."""

    certificate: CommitCertificate
    batch: tuple[Transaction, ...]


@record("pbft.CatchUp")
@dataclass(frozen=True)
class CatchUp:
    """Executed batches, in sequence order, for a replica that is behind."""

    entries: tuple[Executed, ...]


SignedMessage = PrePrepare | Prepare | Commit | Checkpoint | ViewChange | NewView | Status
Message = SignedMessage | Proposal | CatchUp | Transaction | Reply
