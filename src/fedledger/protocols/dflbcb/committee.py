"""A DFLBCB committee member's part: its PBFT replica, the ordered log, each stage's
result at a cut, the End rule, the stage timer (Alg. 2) and the F+1 proof shares that the
End's sender submits to the contract."""

from __future__ import annotations

from fedledger.consensus.pbft import (
    Action,
    BroadcastAll,
    Execute,
    ReplyTo,
    SendTo,
)
from fedledger.consensus.pbft import CancelTimer as PbftCancel
from fedledger.consensus.pbft import SetTimer as PbftSet
from fedledger.contracts import eth
from fedledger.contracts.dflbcb import Stage
from fedledger.contracts.effects import ContractCall
from fedledger.contracts.eth import EcdsaSig
from fedledger.ledger.records import Transaction
from fedledger.protocols.base import (
    Broadcast,
    CancelTimer,
    Effect,
    MessageReceived,
    Send,
    SetTimer,
)
from fedledger.protocols.dflbcb import election
from fedledger.protocols.dflbcb.messages import Answer, Peer, Request, Share
from fedledger.protocols.dflbcb.ordered import (
    ALIVE,
    CAND,
    END,
    PLEDGE,
    STAGE_OF,
    SUB,
    parse_request,
)
from fedledger.protocols.dflbcb.roles import (
    STAGE_TIMER,
)
from fedledger.protocols.dflbcb.timer import StageTimer, TimerParams
from fedledger.protocols.kit import handles


def lie(result_hash: bytes) -> bytes:
    """The ``wrong_end`` fault's hash: a different 32 bytes, never any honest result."""
    return eth.keccak256(b"wrong-end" + result_hash)


class CommitteeMixin:
    """Mixed into :class:`~fedledger.protocols.dflbcb.node.DflbcbNode`; uses its state."""

    # ------------------------------------------------------------ replica

    @handles(Request)
    def on_request(self, event: MessageReceived) -> list[Effect]:
        assert isinstance(event.message, Request)
        self._term_ok(event, event.message.term)
        if self.engine is None or self.boundary is None or event.sender not in self.holders:
            raise self.gate.fail("not_a_client", event.sender)
        tx = event.message.tx
        engine = self.engine
        return self._replica_effects(self.boundary.call(lambda: engine.on_request(self.now, tx)))

    @handles(Peer)
    def on_peer(self, event: MessageReceived) -> list[Effect]:
        assert isinstance(event.message, Peer)
        self._term_ok(event, event.message.term)
        if self.engine is None or self.boundary is None or event.sender not in self.members \
                or event.sender == self.node_id:
            raise self.gate.fail("not_a_member", event.sender)
        body, sender, engine = event.message.body, self.members.index(event.sender), self.engine
        return self._replica_effects(
            self.boundary.call(lambda: engine.on_message(self.now, sender, body)))

    def _replica_effects(self, actions: list[Action]) -> list[Effect]:
        out: list[Effect] = []
        peers = tuple(m for m in self.members if m != self.node_id)
        for a in actions:
            if isinstance(a, SendTo):
                out.append(Send(self.members[a.replica], Peer(self.term, a.msg)))
            elif isinstance(a, BroadcastAll):
                out.append(Broadcast(Peer(self.term, a.msg), to=peers))
            elif isinstance(a, ReplyTo):
                client = self.setup.services.node_of(a.client)
                if client == self.node_id:
                    out += self._on_answer(a.reply)
                elif client is not None:
                    out.append(Send(client, Answer(self.term, a.reply)))
            elif isinstance(a, PbftSet):
                out.append(SetTimer(self._pbft_key(a.key), a.delay))
            elif isinstance(a, PbftCancel):
                out.append(CancelTimer(self._pbft_key(a.key)))
            elif isinstance(a, Execute):
                pass  # the application ran in ``_executed``
        return out + self._flush()

    def _flush(self) -> list[Effect]:
        out, self._app = self._app, []
        return out

    def _executed(self, seq: int, tx: Transaction) -> str:
        """The application: runs once per executed request, in sequence order."""
        try:
            self._apply(seq, tx)
        except Exception as err:  # hostile payloads: eth_abi raises its own types
            self.gate.fail("bad_request", f"{tx.kind}: {type(err).__name__}: {err}")
        return "ok"

    def _apply(self, seq: int, tx: Transaction) -> None:
        node = self.setup.services.node_of(tx.sender)
        if node is None or self.log is None:
            raise ValueError("unknown sender or no contract yet")
        if tx.kind in (CAND, PLEDGE, SUB):
            it, stage, req = parse_request(tx.payload)
            if stage != STAGE_OF[tx.kind] or req.node != self.eth_of[node]:
                raise ValueError("request for another stage or node")
            if not self.log.add(seq, it, stage, req.node, req):
                raise ValueError("invalid or repeated request")
            self._arrival(it, stage)
        elif tx.kind == ALIVE:
            it, stage = tx.payload
            if stage != Stage.WORK or node not in self.members:
                raise ValueError("alive from a non-member")
            self.log.add(seq, int(it), int(stage), self.eth_of[node], None)
            self._arrival(int(it), int(stage))
        elif tx.kind == END:
            it, stage, cut, result_hash = tx.payload
            if node not in self.members or not 0 <= cut < seq:
                raise ValueError("End from a non-member or with a bad cut")
            self.ends.setdefault((it, stage), []).append((seq, cut, result_hash, node))
            self._check_ends(it, stage)
        else:
            raise ValueError(f"kind {tx.kind!r}")

    def _arrival(self, it: int, stage: int) -> None:
        if self.timer is not None and self.timer_for == (it, stage):
            self.timer = self.timer.on_request(self._ms())
            self._app += self._arm()

    # ------------------------------------------------------------ stage results

    def _result(self, it: int, stage: int, cut: int) -> tuple[bytes, tuple] | None:
        """This member's result of (it, stage) over the requests up to ``cut``: (hash,
        payload), or None while it cannot tell yet (its own scoring is unfinished)."""
        assert self.log is not None
        if stage == Stage.ELECT:
            cands = self.log.requests(it, stage, cut)
            need_n = election.need(self.registered, self.p.elect_ratio_bps)
            pool = [election.Candidate(c.node, c.value, self._acc(c.node)) for c in cands]
            members = list(election.elect(pool, need_n, self.p.p_bps))
            return eth.elect_result_hash(members, cands), ("elect", members, cands)
        if stage in (Stage.PLEDGE, Stage.COMMIT):
            reqs = self.log.requests(it, stage, cut)
            if stage == Stage.COMMIT:
                if it not in self.participants:
                    return None
                reqs = [r for r in reqs if r.node in self.participants[it]]
            return eth.requests_result_hash(reqs), ("reqs", reqs)
        work = self.work.get(it)
        if work is None:
            return None
        scores, ghash, gacc, _ = work
        gacc = 1000 if self.forges else gacc  # the forge_work fault's claim
        seen = {e.node for e in self.log.upto(it, stage, cut)}
        alive = [a for a in self.committee if a in seen]
        return (eth.work_result_hash(scores, ghash, gacc, alive),
                ("work", scores, ghash, gacc, alive))

    def _check_ends(self, it: int, stage: int) -> None:
        queue = self.ends.get((it, stage), [])
        while queue and (it, stage) not in self.closed:
            _, cut, result_hash, sender = queue[0]
            mine = self._result(it, stage, cut)
            if mine is None:
                return  # wait for this member's own work
            queue.pop(0)
            if mine[0] != result_hash:
                self.gate.fail("end_mismatch", f"End of ({it}, {stage}) from {sender}")
                continue
            self.closed[(it, stage)] = mine
            if stage == Stage.WORK:
                self._record_scores(it)
            signed = lie(result_hash) if self.lies else result_hash
            digest = eth.proof_digest(self.p.chain_id, self.contract, it, stage, signed)
            sig = self.key.sign_digest(digest)
            share = Share(it, stage, signed, sig.v, sig.r, sig.s)
            if sender == self.node_id:
                self._app += self._collect(self.node_id, share)
            else:
                self._app.append(Send(sender, share))
            if it >= self.it:
                self.log.forget_before(it - 1)  # type: ignore[union-attr]

    # ------------------------------------------------------------ stage timer and End

    def _ms(self) -> int:
        return round(self.now * 1000)

    def _start_stage(self) -> list[Effect]:
        p = self.p
        mt = {0: p.mt_elect, 1: p.mt_pledge, 2: p.mt_commit, 3: p.mt_work}[self.stage]
        expected = {0: len(self.holders), 1: len(self.holders),
                    2: len(self.participants.get(self.it, ())), 3: len(self.committee)}
        params = TimerParams(int(mt * 1000), expected[self.stage], floor_ms=int(p.floor * 1000))
        self.timer = StageTimer(params, self._ms())
        self.timer_for = (self.it, self.stage)
        return self._arm()

    def _arm(self) -> list[Effect]:
        if self.timer is None or self.timer.closed:
            return []
        return [SetTimer(STAGE_TIMER, max(0.0, (self.timer.deadline() - self._ms()) / 1000))]

    def _maybe_end(self) -> list[Effect]:
        """Send End once the stage timer closed (and, in Work, the scoring is done)."""
        it, stage = self.timer_for
        rushed = self.forges and stage == Stage.WORK  # forge_work: End at once
        if self.timer is None or not (self.timer.closed or rushed) or (it, stage) in self.ended \
                or (it, stage) in self.closed or self.engine is None:
            return []
        cut = self.engine.last_executed
        mine = self._result(it, stage, cut)
        if mine is None:
            return []
        self.ended.add((it, stage))
        claimed = lie(mine[0]) if self.lies else mine[0]
        return self._queue(END, (it, stage, cut, claimed))

    # ------------------------------------------------------------ proof shares

    @handles(Share)
    def on_share(self, event: MessageReceived) -> list[Effect]:
        assert isinstance(event.message, Share)
        if event.sender not in self.members or event.sender == self.node_id:
            raise self.gate.fail("not_a_member", event.sender)
        return self._collect(event.sender, event.message)

    def _collect(self, sender: str, sh: Share) -> list[Effect]:
        try:
            digest = eth.proof_digest(self.p.chain_id, self.contract, sh.it, sh.stage,
                                      sh.result_hash)
            sig = EcdsaSig(sh.v, sh.r, sh.s)
            signer = eth.recover(digest, sig)
        except Exception as err:  # hostile values: eth_abi raises its own types
            raise self.gate.fail("bad_share", f"{type(err).__name__}: {err}") from None
        if signer is None or signer != self.eth_of[sender] or signer not in self.committee:
            raise self.gate.fail("bad_share", f"share from {sender}")
        key = (sh.it, sh.stage, sh.result_hash)
        got = self.shares.setdefault(key, {})
        got[signer] = sig
        return self._submit(sh.it, sh.stage)

    def _submit(self, it: int, stage: int) -> list[Effect]:
        closed = self.closed.get((it, stage))
        if closed is None or (it, stage) in self.submitted:
            return []
        result_hash, payload = closed
        got = self.shares.get((it, stage, result_hash), {})
        need = (len(self.committee) - 1) // 3 + 1
        if len(got) < need:
            return []
        self.submitted.add((it, stage))
        chosen = sorted(got, key=lambda a: int(a, 16))[:need]
        sigs = [got[a].as_tuple() for a in chosen]
        if payload[0] == "elect":
            fn, args = "submit_elect", ([eth.checksum(m) for m in payload[1]],
                                        [c.as_tuple() for c in payload[2]], result_hash, sigs)
        elif payload[0] == "reqs":
            fn = "submit_pledge" if stage == Stage.PLEDGE else "submit_commit"
            args = ([r.as_tuple() for r in payload[1]], result_hash, sigs)
        else:
            _, scores, ghash, gacc, alive = payload
            fn, args = "submit_work", ([s.as_tuple() for s in scores], ghash, gacc,
                                       [eth.checksum(a) for a in alive], result_hash, sigs)
        return [ContractCall(f"{fn}:{it}", self.contract, fn, args, self.key.address)]
