"""The view-change half of a replica (a mixin of :class:`~.replica.Replica`).

A backup whose timer for a pending request expires in view v moves to view v+1: it stops
accepting normal-case messages and broadcasts a view-change carrying its stable
checkpoint (with its 2f+1 proof) and its prepared certificates above it. With 2f+1
view-changes for the view it waits in, a replica starts a timer (the base timeout
doubled for each consecutive view change without a request executed); if no valid
new-view arrives in time it moves on to the next view. A replica that holds view-changes
from f+1 others for views above its own joins the smallest such view. The new primary
builds the new-view from 2f+1 view-changes (:func:`~.viewchange.compute_new_view`);
every replica checks it by recomputing O, adopts the stable checkpoint min-s if it is
ahead, and prepares each re-proposed batch in the new view.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedledger.consensus.pbft.actions import CancelTimer, SendTo, SetTimer
from fedledger.consensus.pbft.checks import Drop
from fedledger.consensus.pbft.messages import NewView, PrePrepare, ViewChange
from fedledger.consensus.pbft.state import Slot
from fedledger.consensus.pbft.viewchange import (
    NewViewPlan,
    choose_view_changes,
    compute_new_view,
)

if TYPE_CHECKING:
    from fedledger.consensus.pbft.replica import Replica

    _Base = Replica
else:
    _Base = object


class ViewChanges(_Base):
    """View change, new view and the f+1 join rule."""

    def start_view_change(self, time: float, new_view: int) -> None:
        """Move to ``new_view`` (higher than the current one) and broadcast a view-change."""
        if new_view <= self.view:
            return
        self.view = new_view
        self.active = False
        self.consecutive += 1
        self.slots.clear()
        self.inflight.clear()
        if self.timers.batch:
            self.timers.batch = False
            self._out.append(CancelTimer("batch"))
        if self.timers.view:
            self.timers.view = False
            self._out.append(CancelTimer("view"))
        certs = tuple(self.prepared_certs[s] for s in sorted(self.prepared_certs)
                      if s > self.low)
        vc = self._sign(ViewChange(new_view, self.low, self.stable_proof, certs, self.address))
        self.my_view_change = vc
        for old in [v for v in self.view_changes if v < new_view]:
            del self.view_changes[old]
        self.view_changes.setdefault(new_view, {})[self.index] = vc
        self._broadcast(vc)
        self._view_change_progress(time)

    def _on_view_change(self, time: float, sender: int, vc: ViewChange) -> None:
        self._direct(vc, sender)
        if vc.view < self.view or (vc.view == self.view and self.active):
            nv = self.new_view
            if self.active and nv is not None and nv.view == self.view == vc.view:
                self._out.append(SendTo(sender, nv))
            raise Drop("wrong_view", f"view-change for view {vc.view} in view {self.view}")
        got = self.view_changes.setdefault(vc.view, {})
        if sender in got:
            raise Drop("duplicate", f"view-change for {vc.view} from replica {sender}")
        self.check.view_change(vc, self.config.watermark_window)
        for view, older in self.view_changes.items():
            if view < vc.view:
                older.pop(sender, None)  # one view-change per sender: its latest
        got[sender] = vc
        above = {v: m for v, m in self.view_changes.items() if v > self.view}
        senders = {i for m in above.values() for i in m if i != self.index}
        if len(senders) > self.f:
            self.start_view_change(time, min(above))
        self._view_change_progress(time)

    def _view_change_progress(self, time: float) -> None:
        if self.active:
            return
        got = self.view_changes.get(self.view, {})
        if len(got) < 2 * self.f + 1:
            return
        if not self.timers.view:
            self.timers.view = True
            self._out.append(SetTimer("view", self._timeout()))
        if self.check.primary(self.view) == self.index:
            self._make_new_view(time, choose_view_changes(got, 2 * self.f + 1))

    def _make_new_view(self, time: float, chosen: tuple[ViewChange, ...]) -> None:
        plan = compute_new_view(chosen)
        pps = tuple(
            self._sign(PrePrepare(self.view, e.seq, e.digest, e.timestamp, self.address))
            for e in plan.entries
        )
        nv = self._sign(NewView(self.view, chosen, pps, self.address))
        self._broadcast(nv)
        self._install(time, nv, plan)

    def _on_new_view(self, time: float, sender: int, nv: NewView) -> None:
        signer = self.check.member(nv)  # relayed new-views are fine: the primary signed it
        if signer != self.check.primary(nv.view):
            raise Drop("not_primary", f"new-view for {nv.view} signed by replica {signer}")
        if nv.view < self.view or (nv.view == self.view and self.active):
            raise Drop("wrong_view", f"new-view for view {nv.view} in view {self.view}")
        senders = set()
        try:
            for vc in nv.view_changes:
                if vc.view != nv.view:
                    raise Drop("bad_new_view", f"it holds a view-change for view {vc.view}")
                senders.add(self.check.member(vc))
                self.check.view_change(vc, self.config.watermark_window)
        except Drop as err:
            raise Drop("bad_new_view", str(err)) from None
        if len(senders) != len(nv.view_changes) or len(senders) < 2 * self.f + 1:
            raise Drop("bad_new_view", f"{len(senders)} distinct view-changes")
        plan = compute_new_view(nv.view_changes)
        expected = [(nv.view, e.seq, e.digest, e.timestamp, nv.primary) for e in plan.entries]
        got = [(p.view, p.seq, p.digest, p.timestamp, p.primary) for p in nv.preprepares]
        if got != expected:
            raise Drop("bad_new_view", "its pre-prepares are not the set O of its view-changes")
        for pp in nv.preprepares:
            if self.check.member(pp) != signer:
                raise Drop("bad_new_view", f"pre-prepare {pp.seq} not signed by the primary")
        self._install(time, nv, plan)

    def _install(self, time: float, nv: NewView, plan: NewViewPlan) -> None:
        """Enter ``nv.view``: adopt min-s, log O, prepare it, resume proposing."""
        self.view = nv.view
        self.active = True
        self.new_view = nv
        for old in [v for v in self.view_changes if v <= nv.view]:
            del self.view_changes[old]
        self.slots.clear()
        self.inflight.clear()
        if self.timers.view:
            self.timers.view = False
            self._out.append(CancelTimer("view"))
        if plan.min_s > self.low and plan.stable_state is not None:
            self._make_stable(plan.min_s, plan.stable_state, plan.stable_proof)
        for pp, entry in zip(nv.preprepares, plan.entries, strict=True):
            if pp.seq <= self.low:
                continue
            slot = Slot(preprepare=pp, batch=entry.batch)
            self.slots[pp.seq] = slot
            self._track(entry.batch)
            if not self.is_primary:
                self._send_prepare(slot)
        self.next_seq = max(plan.max_s, self.low) + 1
        for seq in sorted(self.slots):
            self._advance(seq)
        if self.is_primary:
            self._try_propose(time)
        else:
            for rid, tx in self.pending.items():
                if rid not in self.inflight:
                    self._out.append(SendTo(self.primary, tx))
        self._arm_view_timer()

