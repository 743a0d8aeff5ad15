"""Checkpoints, catch-up and retransmission: the recovery half of a replica (a mixin of
:class:`~.replica.Replica`; see its module doc for the rules)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from fedledger.consensus.pbft.actions import Action, SendTo, SetTimer
from fedledger.consensus.pbft.checks import Drop, next_state
from fedledger.consensus.pbft.messages import CatchUp, Checkpoint, Executed, Proposal, Reply, Status
from fedledger.errors import ConfigError

if TYPE_CHECKING:
    from fedledger.consensus.pbft.replica import Replica

    _Base = Replica
else:
    _Base = object


class Recovery(_Base):
    """Checkpoints and garbage collection, catch-up of lagging replicas, retransmission."""

    def _has_work(self) -> bool:
        return bool(
            self.pending or not self.active or self.committed or self._behind()
            or any(not s.committed for s in self.slots.values())
        )

    def _behind(self) -> bool:
        if self.low > self.last_executed:
            return True
        ahead = {i for seq, got in self.checkpoints.items() if seq > self.last_executed
                 for i in got}
        return len(ahead) > self.f

    # ------------------------------------------------------------ restart

    def restore(self, time: float, entries: Sequence[Executed]) -> list[Action]:
        """Resume from batches this replica executed before it stopped (its durable
        ledger: sequence numbers 1..H, in order, with their certificates, checked by the
        caller when it stored them); returns the actions that rejoin the instance.

        Execution state (last executed, state digest, last reply per client, catch-up
        history) is rebuilt; the log of unfinished sequence numbers was not durable, so
        the replica never speaks again in a view in which it may have voted: it enters
        the highest view of its certificates, and if it is that view's primary (whose
        lost proposals it could contradict) it starts a view change at once. It then
        broadcasts its status, so peers send what it missed (catch-up, new view).
        The low watermark stays 0 (no stable checkpoint proof is durable) until peers'
        checkpoints make one stable.
        """
        if self.last_executed or self.slots or self.history:
            raise ConfigError("pbft.restore", "only a fresh replica can be restored")
        self._out = []
        view = 0
        for expected, entry in enumerate(entries, start=1):
            cert = entry.certificate
            if cert.seq != expected:
                raise ConfigError("pbft.restore", f"entry {expected} is for seq {cert.seq}")
            for tx in entry.batch:
                last = self.last_reply.get(tx.sender)
                if last is None or tx.nonce > last.nonce:
                    self.last_reply[tx.sender] = self._sign(Reply(
                        cert.view, tx.sender, tx.nonce, self.result_of(cert.seq, tx),
                        self.address))
            self.state = next_state(self.state, cert.seq, cert.digest)
            self.history[cert.seq] = entry
            if len(self.history) > self.config.catchup_history:
                del self.history[min(self.history)]
            self.last_executed = cert.seq
            view = max(view, cert.view)
        self.next_seq = self.last_executed + 1
        self.view = view
        if self.is_primary and self.last_executed:
            self.start_view_change(time, view + 1)
        self._ask_catchup(broadcast=True)
        return self._finish(time)

    # ------------------------------------------------------------ checkpoints

    def _on_checkpoint(self, time: float, sender: int, cp: Checkpoint) -> None:
        self._direct(cp, sender)
        if cp.seq <= self.low:
            raise Drop("stale", f"checkpoint {cp.seq} at or below h = {self.low}")
        if cp.seq % self.config.checkpoint_interval or cp.seq > self.low + 4 * (
            self.config.watermark_window
        ):
            raise Drop("out_of_window", f"checkpoint at seq {cp.seq}")
        got = self.checkpoints.setdefault(cp.seq, {})
        if sender in got:
            raise Drop("duplicate", f"checkpoint {cp.seq} from replica {sender}")
        self._add_checkpoint(sender, cp)
        if self._behind():
            self._ask_catchup(broadcast=False)

    def _add_checkpoint(self, sender: int, cp: Checkpoint) -> None:
        got = self.checkpoints.setdefault(cp.seq, {})
        got[sender] = cp
        matching = [c for i, c in sorted(got.items()) if c.state == cp.state]
        if len(matching) >= 2 * self.f + 1 and cp.seq > self.low:
            self._make_stable(cp.seq, cp.state, tuple(matching[: 2 * self.f + 1]))

    def _make_stable(self, seq: int, state: bytes, proof: tuple[Checkpoint, ...]) -> None:
        """Checkpoint ``seq`` is stable: move h and discard the log at or below it."""
        self.low, self.stable_state, self.stable_proof = seq, state, proof
        for table in (self.slots, self.prepared_certs, self.checkpoints):
            for old in [s for s in table if s <= seq]:
                del table[old]
        self.next_seq = max(self.next_seq, seq + 1)
        self._window_moved = True
        if self.last_executed < seq:
            self._ask_catchup(broadcast=False)

    # ------------------------------------------------------------ catch-up

    def _status(self) -> Status:
        return self._sign(Status(self.view, self.active, self.last_executed, self.address))

    def _ask_catchup(self, broadcast: bool) -> None:
        """Ask a peer (the next in turn) for executed batches; retried by a timer."""
        if broadcast:
            self._broadcast(self._status())
        else:
            self._catchup_peer = (self._catchup_peer + 1) % self.n
            if self._catchup_peer == self.index:
                self._catchup_peer = (self._catchup_peer + 1) % self.n
            self._out.append(SendTo(self._catchup_peer, self._status()))
        if not self.timers.catchup:
            self.timers.catchup = True
            self._out.append(SetTimer("catchup", self.config.resend_interval))

    def _on_status(self, time: float, sender: int, st: Status) -> None:
        self._direct(st, sender)
        start = st.last_executed + 1
        if start <= self.last_executed and start in self.history:
            stop = min(self.last_executed, st.last_executed + self.config.catchup_chunk)
            entries = tuple(self.history[s] for s in range(start, stop + 1))
            self._out.append(SendTo(sender, CatchUp(entries)))
        behind_view = st.view < self.view or (st.view == self.view and not st.active)
        nv = self.new_view
        if self.active and behind_view and nv is not None and nv.view == self.view:
            self._out.append(SendTo(sender, nv))

    def _on_catchup(self, time: float, sender: int, msg: CatchUp) -> None:
        for entry in msg.entries:
            seq = entry.certificate.seq
            if seq <= self.last_executed or seq in self.committed:
                continue
            self.check.committed(entry.certificate, entry.batch)
            self._committed(entry)
        self._arm_view_timer()

    # ------------------------------------------------------------ retransmission

    def _resend(self) -> None:
        """Re-send this replica's own messages for unfinished work, and its status."""
        if not self.active:
            if self.my_view_change is not None and self.my_view_change.view == self.view:
                self._broadcast(self.my_view_change)
        else:
            for seq in sorted(self.slots):
                slot = self.slots[seq]
                if slot.committed or slot.preprepare is None:
                    continue
                if self.is_primary:
                    self._broadcast(Proposal(slot.preprepare, slot.batch))
                for votes in (slot.prepares, slot.commits):
                    if self.index in votes:
                        self._broadcast(votes[self.index])
        if self.own_checkpoint is not None and self.own_checkpoint.seq > self.low:
            self._broadcast(self.own_checkpoint)
        self._broadcast(self._status())
        if self.active and not self.is_primary:
            for rid, tx in self.pending.items():
                if rid not in self.inflight:
                    self._out.append(SendTo(self.primary, tx))
