"""A sans-IO PBFT replica (Castro and Liskov, OSDI 1999).

A :class:`Replica` is fed events as method calls carrying the host's current time:
``on_request`` (a client request), ``on_message`` (a message from replica ``sender``)
and ``on_timer`` (a timer it set fired). Each returns the actions to carry out
(:mod:`.actions`): messages to send, timers to set or cancel, batches to execute (in
sequence order, each once) and replies to clients. It never does IO, reads no clock and
draws no randomness.

Normal case: the primary of view v (replica ``v mod n``) orders requests in batches
(``batch_window``, ``max_batch``) by pre-prepares; a batch is prepared at a replica with
the pre-prepare and 2f matching prepares from distinct backups, committed-local with
2f+1 matching commits, then executed when every lower sequence number has been.
Checkpoints every k sequence numbers become stable with 2f+1 matching signed checkpoint
messages; the low watermark h moves to the stable checkpoint, messages outside (h, h+L]
are dropped and the log at or below h is discarded. View change: see
:mod:`.viewchange` and :class:`~.views.ViewChanges`.

Retransmission and catch-up (the paper leaves them to the transport; here they are part
of the engine so that a lossy or partitioned network heals): while a replica has work
pending it re-sends its own messages for unfinished sequence numbers and a signed
:class:`~.messages.Status` every ``resend_interval``; a peer that has executed more
answers with executed batches and their commit certificates (:class:`~.messages.CatchUp`,
checked like any other message), and a peer in a later view with its new-view message.

Every message from a peer is verified once where it enters (:mod:`.checks`); a message
that fails any check is dropped and counted in ``drops`` under its reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fedledger.consensus.pbft.actions import (
    Action,
    BroadcastAll,
    CancelTimer,
    Execute,
    ReplyTo,
    SendTo,
    SetTimer,
)
from fedledger.consensus.pbft.byzantine import corrupt
from fedledger.consensus.pbft.checks import GENESIS_STATE, Checker, Drop, next_state
from fedledger.consensus.pbft.config import PbftConfig
from fedledger.consensus.pbft.messages import (
    Batch,
    CatchUp,
    Checkpoint,
    Commit,
    CommitCertificate,
    Executed,
    NewView,
    Prepare,
    PreparedCert,
    PrePrepare,
    Proposal,
    Reply,
    Status,
    ViewChange,
    batch_digest,
)
from fedledger.consensus.pbft.recovery import Recovery
from fedledger.consensus.pbft.state import Slot, Timers
from fedledger.consensus.pbft.views import ViewChanges
from fedledger.crypto.keys import KeyPair, PublicKey
from fedledger.errors import ConfigError
from fedledger.ledger.records import Transaction, record_id, sign


def _seq_result(seq: int, request: Transaction) -> Any:
    return seq


class Replica(Recovery, ViewChanges):
    """One PBFT replica; see the module doc.

    index: this replica's position in ``members``.
    members: every replica's public key, in index order (the same order everywhere).
    keypair: this replica's signing key (its address must be ``members[index]``'s).
    clients: the public keys of clients whose requests are accepted, by address.
    result_of: the application's result of a request executed at a sequence number,
        sent in replies (deterministic; default: the sequence number).
    """

    def __init__(
        self,
        index: int,
        members: Sequence[PublicKey],
        keypair: KeyPair,
        clients: Mapping[bytes, PublicKey],
        config: PbftConfig | None = None,
        result_of: Callable[[int, Transaction], Any] | None = None,
    ) -> None:
        members = tuple(members)
        if not 0 <= index < len(members):
            raise ConfigError("pbft.index", f"must be in [0, {len(members)}), got {index!r}")
        if keypair.address != members[index].address:
            raise ConfigError("pbft.keypair", f"is not the key of member {index}")
        self.index = index
        self.keypair = keypair
        self.address = keypair.address
        self.config = config if config is not None else PbftConfig()
        self.check = Checker(members, clients)
        self.n, self.f = self.check.n, self.check.f
        self.result_of = result_of or _seq_result
        self.drops: Counter[str] = Counter()
        self.timers = Timers()
        self._out: list[Action] = []
        # views
        self.view = 0
        self.active = True
        self.consecutive = 0
        self.view_changes: dict[int, dict[int, ViewChange]] = {}
        self.my_view_change: ViewChange | None = None
        self.new_view: NewView | None = None
        # agreement
        self.slots: dict[int, Slot] = {}
        self.prepared_certs: dict[int, PreparedCert] = {}
        self.next_seq = 1
        # execution
        self.committed: dict[int, Executed] = {}
        self.history: dict[int, Executed] = {}
        self.last_executed = 0
        self.state = GENESIS_STATE
        self.last_reply: dict[bytes, Reply] = {}
        self.pending: dict[bytes, Transaction] = {}
        self.inflight: set[bytes] = set()
        # checkpoints
        self.low = 0
        self.stable_state = GENESIS_STATE
        self.stable_proof: tuple[Checkpoint, ...] = ()
        self.checkpoints: dict[int, dict[int, Checkpoint]] = {}
        self.own_checkpoint: Checkpoint | None = None
        self._catchup_peer = 0
        self._window_moved = False

    # ------------------------------------------------------------ inputs

    @property
    def primary(self) -> int:
        return self.view % self.n

    @property
    def is_primary(self) -> bool:
        return self.primary == self.index

    @property
    def high(self) -> int:
        return self.low + self.config.watermark_window

    def on_request(self, time: float, request: Any) -> list[Action]:
        """A request from a client (not forwarded by a replica)."""
        self._out = []
        try:
            self._request(time, request, forwarded=False)
        except Drop as drop:
            self.drops[drop.reason] += 1
        return self._finish(time)

    def on_message(self, time: float, sender: int, msg: Any) -> list[Action]:
        """A message from replica ``sender``."""
        self._out = []
        try:
            if isinstance(sender, bool) or not isinstance(sender, int) or not (
                0 <= sender < self.n and sender != self.index
            ):
                raise Drop("unknown_sender", f"transport sender {sender!r}")
            self._dispatch(time, sender, msg)
        except Drop as drop:
            self.drops[drop.reason] += 1
        return self._finish(time)

    def _dispatch(self, time: float, sender: int, msg: Any) -> None:
        if isinstance(msg, Transaction):
            self._request(time, msg, forwarded=True)
        elif isinstance(msg, Proposal):
            self._on_proposal(time, sender, msg)
        elif isinstance(msg, Prepare):
            self._vote(sender, msg, "prepares")
        elif isinstance(msg, Commit):
            self._vote(sender, msg, "commits")
        elif isinstance(msg, Checkpoint):
            self._on_checkpoint(time, sender, msg)
        elif isinstance(msg, Status):
            self._on_status(time, sender, msg)
        elif isinstance(msg, CatchUp):
            self._on_catchup(time, sender, msg)
        elif isinstance(msg, ViewChange):
            self._on_view_change(time, sender, msg)
        elif isinstance(msg, NewView):
            self._on_new_view(time, sender, msg)
        else:
            raise Drop("malformed", f"unexpected message type {type(msg).__name__}")

    def on_timer(self, time: float, key: str) -> list[Action]:
        self._out = []
        if key == "batch":
            self.timers.batch = False
            self._try_propose(time, force=True)
        elif key == "view":
            self.timers.view = False
            self.start_view_change(time, self.view + 1)
        elif key == "resend":
            self.timers.resend = False
            self._resend()
        elif key == "catchup":
            self.timers.catchup = False
            if self._behind():
                self._ask_catchup(broadcast=False)
        else:
            raise ConfigError("pbft.timer", f"unknown timer key {key!r}; allowed: batch, "
                              "view, resend, catchup")
        return self._finish(time)

    def _finish(self, time: float) -> list[Action]:
        if self._window_moved:
            self._window_moved = False
            self._try_propose(time)
        if self._has_work() and not self.timers.resend:
            self.timers.resend = True
            self._out.append(SetTimer("resend", self.config.resend_interval))
        out, self._out = self._out, []
        return corrupt(out, self)

    # ------------------------------------------------------------ helpers

    def _sign(self, rec: Any) -> Any:
        return sign(rec, self.keypair)

    def _broadcast(self, msg: Any) -> None:
        self._out.append(BroadcastAll(msg))

    def _direct(self, msg: Any, sender: int) -> None:
        """Drop unless ``msg`` is signed by the replica it came from."""
        if self.check.member(msg) != sender:
            raise Drop("wrong_sender", f"{type(msg).__name__} relayed by replica {sender}")

    def _in_window(self, seq: int) -> None:
        if not self.low < seq <= self.high:
            raise Drop("out_of_window", f"seq {seq} not in ({self.low}, {self.high}]")

    def _current_view(self, view: int) -> None:
        if view != self.view or not self.active:
            raise Drop("wrong_view", f"view {view}, replica is in view {self.view}")

    def _timeout(self) -> float:
        return self.config.view_timeout * 2 ** max(0, self.consecutive - 1)

    def _arm_view_timer(self, restart: bool = False) -> None:
        """Backups time a pending request; the timer stops when nothing is pending."""
        waiting = self.active and not self.is_primary and any(
            tx.sender not in self.config.byzantine.censor for tx in self.pending.values()
        )
        if waiting and (restart or not self.timers.view):
            self.timers.view = True
            self._out.append(SetTimer("view", self._timeout()))
        elif not waiting and self.active and self.timers.view:
            self.timers.view = False
            self._out.append(CancelTimer("view"))

    # ------------------------------------------------------------ requests

    def _request(self, time: float, tx: Any, forwarded: bool) -> None:
        rid = self.check.request(tx)
        if tx.sender in self.config.byzantine.censor:
            return
        last = self.last_reply.get(tx.sender)
        if last is not None and tx.nonce <= last.nonce:
            if tx.nonce == last.nonce and not forwarded:
                self._out.append(ReplyTo(tx.sender, last))
                return
            raise Drop("stale_request", f"nonce {tx.nonce} <= executed {last.nonce}")
        if rid in self.pending:
            if forwarded:
                raise Drop("duplicate", "request already pending")
            if self.active and not self.is_primary:
                self._out.append(SendTo(self.primary, tx))
            return
        self.pending[rid] = tx
        if self.active and self.is_primary:
            self._try_propose(time)
        elif self.active and not forwarded:
            self._out.append(SendTo(self.primary, tx))
        self._arm_view_timer()

    def _try_propose(self, time: float, force: bool = False) -> None:
        if not (self.active and self.is_primary):
            return
        censor = self.config.byzantine.censor
        queue = [tx for rid, tx in self.pending.items()
                 if rid not in self.inflight and tx.sender not in censor]
        cfg = self.config
        while queue and self.next_seq <= self.high:
            if len(queue) < cfg.max_batch and not force and cfg.batch_window > 0:
                if not self.timers.batch:
                    self.timers.batch = True
                    self._out.append(SetTimer("batch", cfg.batch_window))
                return
            batch, queue = tuple(queue[: cfg.max_batch]), queue[cfg.max_batch :]
            self._propose(time, batch)

    def _propose(self, time: float, batch: Batch) -> None:
        seq = self.next_seq
        self.next_seq += 1
        pp = self._sign(PrePrepare(self.view, seq, batch_digest(batch), time, self.address))
        self.slots[seq] = Slot(preprepare=pp, batch=batch)
        self.inflight.update(record_id(tx) for tx in batch)
        self._broadcast(Proposal(pp, batch))
        self._advance(seq)

    def _track(self, batch: Batch) -> None:
        """Requests seen in a batch are pending here until executed."""
        for tx in batch:
            last = self.last_reply.get(tx.sender)
            if last is None or tx.nonce > last.nonce:
                rid = record_id(tx)
                self.pending.setdefault(rid, tx)
                self.inflight.add(rid)

    # ------------------------------------------------------------ agreement

    def _on_proposal(self, time: float, sender: int, msg: Proposal) -> None:
        pp = msg.preprepare
        self._direct(pp, sender)
        self._current_view(pp.view)
        if sender != self.primary:
            raise Drop("not_primary", f"pre-prepare from replica {sender}")
        self._in_window(pp.seq)
        slot = self.slots.setdefault(pp.seq, Slot())
        if slot.preprepare is not None:
            same = slot.preprepare.digest == pp.digest
            raise Drop("duplicate" if same else "conflict", f"pre-prepare for seq {pp.seq}")
        self.check.batch(msg.batch, pp.digest)
        slot.preprepare, slot.batch = pp, msg.batch
        self._track(msg.batch)
        self._arm_view_timer()
        self._send_prepare(slot)
        self._advance(pp.seq)

    def _send_prepare(self, slot: Slot) -> None:
        pp = slot.preprepare
        assert pp is not None
        prepare = self._sign(Prepare(pp.view, pp.seq, pp.digest, self.address))
        slot.prepares[self.index] = prepare
        self._broadcast(prepare)

    def _vote(self, sender: int, msg: Prepare | Commit, kind: str) -> None:
        self._direct(msg, sender)
        self._current_view(msg.view)
        self._in_window(msg.seq)
        if kind == "prepares" and sender == self.primary:
            raise Drop("wrong_sender", "the primary does not prepare")
        votes = getattr(self.slots.setdefault(msg.seq, Slot()), kind)
        old = votes.get(sender)
        if old is not None:
            raise Drop("duplicate" if old.digest == msg.digest else "conflict",
                       f"second {kind[:-1]} from replica {sender} for seq {msg.seq}")
        votes[sender] = msg
        self._advance(msg.seq)

    def _advance(self, seq: int) -> None:
        """Check the prepared and committed-local predicates for ``seq``."""
        slot = self.slots.get(seq)
        if slot is None or slot.preprepare is None:
            return
        pp = slot.preprepare
        if not slot.prepared:
            prepares = [p for i, p in sorted(slot.prepares.items()) if p.digest == pp.digest]
            if len(prepares) < 2 * self.f:
                return
            slot.prepared = True
            self.prepared_certs[seq] = PreparedCert(pp, tuple(prepares[: 2 * self.f]), slot.batch)
            commit = self._sign(Commit(pp.view, seq, pp.digest, self.address))
            slot.commits[self.index] = commit
            self._broadcast(commit)
        if not slot.committed:
            commits = [c for i, c in sorted(slot.commits.items()) if c.digest == pp.digest]
            if len(commits) < 2 * self.f + 1:
                return
            slot.committed = True
            cert = CommitCertificate(pp, tuple(commits[: 2 * self.f + 1]))
            self._committed(Executed(cert, slot.batch))

    def _committed(self, entry: Executed) -> None:
        seq = entry.certificate.seq
        if seq <= self.last_executed:
            done = self.history.get(seq)
            if done is not None and done.certificate.digest != entry.certificate.digest:
                self.drops["diverged"] += 1  # impossible with at most f faulty replicas
            return
        self.committed.setdefault(seq, entry)
        while self.last_executed + 1 in self.committed:
            self._execute(self.committed.pop(self.last_executed + 1))

    # ------------------------------------------------------------ execution

    def _execute(self, entry: Executed) -> None:
        cert, batch = entry.certificate, entry.batch
        seq = cert.seq
        fresh = []
        for tx in batch:
            self.pending.pop(record_id(tx), None)
            last = self.last_reply.get(tx.sender)
            if last is not None and tx.nonce <= last.nonce:
                continue
            fresh.append(tx)
            reply = self._sign(Reply(self.view, tx.sender, tx.nonce, self.result_of(seq, tx),
                                     self.address))
            self.last_reply[tx.sender] = reply
            self._out.append(ReplyTo(tx.sender, reply))
        if fresh:
            self.consecutive = 0
            stale = [rid for rid, tx in self.pending.items()
                     if tx.sender in self.last_reply
                     and tx.nonce <= self.last_reply[tx.sender].nonce]
            for rid in stale:
                del self.pending[rid]
        self.inflight.intersection_update(self.pending)
        self.last_executed = seq
        self.state = next_state(self.state, seq, cert.digest)
        if seq == self.low and self.state != self.stable_state:
            self.drops["state_mismatch"] += 1  # impossible with at most f faulty replicas
        self.history[seq] = entry
        if len(self.history) > self.config.catchup_history:
            del self.history[min(self.history)]
        self._out.append(Execute(seq, cert.view, batch, cert, tuple(fresh)))
        if seq % self.config.checkpoint_interval == 0:
            cp = self._sign(Checkpoint(seq, self.state, self.address))
            self.own_checkpoint = cp
            self._broadcast(cp)
            self._add_checkpoint(self.index, cp)
        self._arm_view_timer(restart=True)
