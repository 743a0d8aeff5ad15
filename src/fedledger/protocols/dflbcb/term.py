"""Committee terms and handover (Section 4.2): one PBFT instance per term.

The initial committee (term 0) is the offline-agreed one. Each accepted Elect proof makes
the contract emit ``CommitteeElected(term, members)`` (before its ``StageChanged``); on
that log every node installs the new committee: a member of it builds a fresh PBFT
replica (view 0, sequence 1, the primary is ``members[view mod n]`` in the contract's
weight order), everyone else points a fresh PBFT client at it, and the old instance's
timers are cancelled. Envelopes carry the term, so nothing of an old instance reaches a
new one. Old members send their accepted Work scores (:class:`History`) to new members
that were not in the old committee; a new member adopts a history F+1 old members sent
identically (at least one is honest), since the next election weighs past accuracy.
Only the current committee's proofs pass the contract, so an old committee cannot move
the stage after a handover (the paper's case 1); a new member that has not switched yet
drops the new term's messages, which their senders resend (case 2: a pause).
"""

from __future__ import annotations

from typing import Any

from fedledger.consensus.pbft import Client, PbftConfig, Replica
from fedledger.contracts import eth
from fedledger.protocols.base import CancelTimer, Effect, MessageReceived, Send
from fedledger.protocols.dflbcb.messages import History
from fedledger.protocols.dflbcb.ordered import OrderedLog
from fedledger.protocols.dflbcb.roles import CLIENT_RETRY, INITIATOR, PBFT, STAGE_TIMER
from fedledger.protocols.kit import handles
from fedledger.protocols.pbft_ledger.boundary import EngineGate
from fedledger.protocols.pbft_ledger.replica import byzantine_of

#: The PBFT engine's timer names (``consensus.pbft``).
ENGINE_TIMERS = ("batch", "view", "resend", "catchup")
Rows = tuple[tuple[int, tuple[tuple[str, int], ...]], ...]


class TermMixin:
    """Mixed into :class:`~fedledger.protocols.dflbcb.node.DflbcbNode`; uses its state."""

    def _pbft_key(self, name: str) -> str:
        return f"{PBFT}{self.term}-{name}"

    def _new_instance(self) -> None:
        """Client and (for a member) replica of the current term's committee."""
        svc = self.setup.services
        keys = [svc.directory[svc.address_of(m)] for m in self.members]
        nonce = self.client.nonce if self.client is not None else 0
        self.client = None
        if self.role != INITIATOR:
            self.client = Client(svc.keys, keys, retry=self.p.view_timeout)
            self.client.nonce = nonce  # never reuse a nonce, even across instances
        self.engine = None
        self.log = None
        if self.node_id in self.members:
            cfg = PbftConfig(batch_window=self.p.batch_window, view_timeout=self.p.view_timeout,
                             byzantine=byzantine_of(self.setup.faults, frozenset(self.clients)))
            self.engine = Replica(self.members.index(self.node_id), keys, svc.keys,
                                  self.clients, cfg, result_of=self._executed)
            self.boundary = EngineGate(self.gate, self.engine.drops)
            if self.contract:
                self.log = OrderedLog(self.p.chain_id, self.contract)

    def _install(self, term: int, addresses: tuple[str, ...]) -> list[Effect]:
        """``CommitteeElected``: the new committee takes over with a fresh instance."""
        new = tuple(self.node_of_eth.get(a, "") for a in addresses)
        if "" in new or len(new) < 4:
            self.gate.fail("bad_committee", f"term {term}: {addresses}")
            return []
        out: list[Effect] = []
        old = self.members
        if self.engine is not None:  # retire this member's replica and stage timer
            out += [CancelTimer(self._pbft_key(k)) for k in ENGINE_TIMERS]
            out.append(CancelTimer(STAGE_TIMER))
            rows = self._history_rows()
            out += [Send(m, History(term, rows)) for m in new
                    if m not in old and m != self.node_id]
        if self.client is not None and self.client.busy:
            out.append(CancelTimer(CLIENT_RETRY))
        self.outbox.clear()  # requests of the old term's stages
        self.prev_members, self.members, self.term = old, new, term
        self.committee = addresses
        self.timer = None
        self.history_votes = {}
        self._new_instance()
        return out

    def _term_ok(self, event: MessageReceived, term: Any) -> None:
        if term != self.term:
            raise self.gate.fail("other_term", f"term {term!r} from {event.sender}, "
                                 f"this node is in term {self.term}")

    # ------------------------------------------------------------ accuracy history

    def _history_rows(self) -> Rows:
        return tuple((it, tuple(sorted(self.acc_hist[it].items())))
                     for it in sorted(self.acc_hist))

    @handles(History)
    def on_history(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        assert isinstance(msg, History)
        self._term_ok(event, msg.term)
        if event.sender not in self.prev_members or event.sender == self.node_id \
                or self.engine is None:
            raise self.gate.fail("not_an_old_member", event.sender)
        rows = _checked(msg.rows)
        if rows is None:
            raise self.gate.fail("bad_history", f"from {event.sender}")
        self.history_votes[event.sender] = rows
        need = (len(self.prev_members) - 1) // 3 + 1
        if sum(1 for r in self.history_votes.values() if r == rows) >= need:
            for it, scores in rows:
                if it not in self.acc_hist:
                    self.acc_hist[it] = dict(scores)
                    self._mirror_scores(it)
        return []

    def _acc(self, address: str) -> int:
        """The candidate's average accepted sub-model score (permille; 0 without one)."""
        got = [s[address] for s in self.acc_hist.values() if address in s]
        return sum(got) // len(got) if got else 0


def _checked(rows: Any) -> Rows | None:
    """``rows`` if it is a well-formed history (iterations ascending, addresses sorted,
    scores in 0..1000), else None."""
    if not isinstance(rows, tuple):
        return None
    last = 0
    for row in rows:
        if not (isinstance(row, tuple) and len(row) == 2 and isinstance(row[0], int)
                and row[0] > last and isinstance(row[1], tuple)):
            return None
        last = row[0]
        names = []
        for pair in row[1]:
            if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)
                    and isinstance(pair[1], int) and 0 <= pair[1] <= 1000):
                return None
            if not _is_checksummed(pair[0]):
                return None
            names.append(pair[0])
        if names != sorted(set(names)):
            return None
    return rows


def _is_checksummed(address: str) -> bool:
    try:
        return eth.checksum(address) == address
    except Exception:  # eth_utils raises its own types for malformed text
        return False
