"""Verification of PBFT messages and certificates where they enter a replica.

A :class:`Checker` knows the membership (replica public keys, in index order) and the
clients' keys. Each check returns what it established or raises :class:`Drop` naming a
reason; the replica counts the reason and drops the message (a peer's bad message never
raises out of the engine). A signature is verified once per (record id, signature) pair:
a prepare seen directly and again inside a view-change is checked once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from fedledger.codec import CodecError
from fedledger.consensus.pbft.messages import (
    Batch,
    Checkpoint,
    CommitCertificate,
    PreparedCert,
    ViewChange,
    batch_digest,
)
from fedledger.crypto.keys import PublicKey
from fedledger.ledger.records import (
    SIGNING_CONTEXT,
    RecordError,
    Transaction,
    record_id,
    signer_of,
)

GENESIS_STATE = hashlib.sha256(b"fedledger/pbft/state/v1").digest()
_CACHE_LIMIT = 200_000


def next_state(state: bytes, seq: int, digest: bytes) -> bytes:
    """The state digest after executing batch ``digest`` at ``seq`` (a hash chain)."""
    return hashlib.sha256(state + seq.to_bytes(8, "big") + digest).digest()


class Drop(Exception):
    """A message is refused; ``reason`` is the counter it goes to."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class Checker:
    """Signature and certificate checks for one PBFT instance."""

    def __init__(
        self, members: tuple[PublicKey, ...], clients: Mapping[bytes, PublicKey]
    ) -> None:
        self.members = members
        self.n = len(members)
        self.f = (self.n - 1) // 3
        self.addresses = tuple(key.address for key in members)
        self.index = {addr: i for i, addr in enumerate(self.addresses)}
        self.clients = clients
        self._verified: set[tuple[bytes, bytes]] = set()

    def primary(self, view: int) -> int:
        return view % self.n

    # ------------------------------------------------------------ signatures

    def _valid(self, rec: Any, key: PublicKey) -> bool:
        try:
            rid = record_id(rec)
        except (CodecError, RecordError):
            return False
        sig = rec.signature
        if (rid, sig) in self._verified:
            return True
        if not key.verify(SIGNING_CONTEXT + rid, sig):
            return False
        if len(self._verified) >= _CACHE_LIMIT:
            self._verified.clear()
        self._verified.add((rid, sig))
        return True

    def member(self, rec: Any) -> int:
        """The index of the replica that signed ``rec``; Drop if unknown or forged."""
        try:
            signer = signer_of(rec)
        except RecordError:
            raise Drop("malformed", f"{type(rec).__name__} is not a signed message") from None
        i = self.index.get(signer)
        if i is None:
            raise Drop("unknown_sender", f"signer {signer[:4].hex()} is not a replica")
        if not self._valid(rec, self.members[i]):
            raise Drop("bad_signature", f"{type(rec).__name__} from replica {i}")
        return i

    def request(self, tx: Any) -> bytes:
        """A client request's id; Drop unless it is a Transaction signed by a known client."""
        if not isinstance(tx, Transaction):
            raise Drop("malformed", f"a request is a Transaction, got {type(tx).__name__}")
        key = self.clients.get(tx.sender)
        if key is None:
            raise Drop("unknown_client", f"client {tx.sender[:4].hex()} is not known")
        if not self._valid(tx, key):
            raise Drop("bad_signature", f"request from client {tx.sender[:4].hex()}")
        return record_id(tx)

    def batch(self, batch: Batch, digest: bytes) -> None:
        """A proposed batch: distinct requests, each valid, whose root is ``digest``."""
        if batch_digest(batch) != digest:
            raise Drop("bad_digest", "the digest is not the batch's Merkle root")
        seen: set[bytes] = set()
        for tx in batch:
            try:
                rid = self.request(tx)
            except Drop as err:
                raise Drop("bad_batch", str(err)) from None
            if rid in seen:
                raise Drop("bad_batch", "a request appears twice in one batch")
            seen.add(rid)

    # ------------------------------------------------------------ certificates

    def _quorum_of(self, votes: Iterable[Any], view: int, seq: int, digest: bytes,
                   exclude: int | None) -> int:
        senders: set[int] = set()
        for vote in votes:
            if (vote.view, vote.seq, vote.digest) != (view, seq, digest):
                raise Drop("bad_certificate", f"a vote for ({vote.view}, {vote.seq}) mismatches")
            i = self.member(vote)
            if i == exclude or i in senders:
                raise Drop("bad_certificate", f"replica {i} counted twice or as primary")
            senders.add(i)
        return len(senders)

    def _preprepare(self, pp: Any) -> None:
        if self.member(pp) != self.primary(pp.view):
            raise Drop("bad_certificate", f"pre-prepare for view {pp.view} not by its primary")

    def prepared(self, cert: PreparedCert) -> None:
        """A prepared certificate: primary's pre-prepare, batch, 2f matching prepares."""
        pp = cert.preprepare
        self._preprepare(pp)
        self.batch(cert.batch, pp.digest)
        count = self._quorum_of(cert.prepares, pp.view, pp.seq, pp.digest,
                                exclude=self.primary(pp.view))
        if count < 2 * self.f:
            raise Drop("bad_certificate", f"{count} prepares, need {2 * self.f}")

    def committed(self, cert: CommitCertificate, batch: Batch) -> None:
        """A commit certificate for ``batch``: primary's pre-prepare, 2f+1 matching commits."""
        pp = cert.preprepare
        self._preprepare(pp)
        self.batch(batch, pp.digest)
        count = self._quorum_of(cert.commits, pp.view, pp.seq, pp.digest, exclude=None)
        if count < 2 * self.f + 1:
            raise Drop("bad_certificate", f"{count} commits, need {2 * self.f + 1}")

    def stable(self, seq: int, proof: tuple[Checkpoint, ...]) -> bytes:
        """The state digest that ``proof`` (2f+1 matching checkpoints) shows stable at seq."""
        if seq == 0:
            if proof:
                raise Drop("bad_certificate", "checkpoint proof for sequence 0 must be empty")
            return GENESIS_STATE
        states = {cp.state for cp in proof}
        if len(states) != 1 or any(cp.seq != seq for cp in proof):
            raise Drop("bad_certificate", f"checkpoints in the proof for {seq} disagree")
        senders = {self.member(cp) for cp in proof}
        if len(senders) != len(proof) or len(senders) < 2 * self.f + 1:
            raise Drop("bad_certificate", f"{len(senders)} distinct checkpoints for {seq}")
        return next(iter(states))

    def view_change(self, vc: ViewChange, window: int) -> None:
        """A view-change's proofs: its stable checkpoint and prepared certificates."""
        try:
            self.stable(vc.stable_seq, vc.stable_proof)
            seqs: set[int] = set()
            for cert in vc.prepared:
                pp = cert.preprepare
                if not vc.stable_seq < pp.seq <= vc.stable_seq + window:
                    raise Drop("bad_certificate", f"prepared seq {pp.seq} outside the window")
                if pp.view >= vc.view or pp.seq in seqs:
                    raise Drop("bad_certificate", f"prepared ({pp.view}, {pp.seq}) not allowed")
                seqs.add(pp.seq)
                self.prepared(cert)
        except Drop as err:
            raise Drop("bad_view_change", str(err)) from None
