"""A DFLBCB node: the initiator, a committee member (PBFT replica, evaluator and also a
participant) or a plain participant, on the state contract through chain effects.

Initiator: deploys the contract and calls ``initialize`` (committee, initial model hash,
parameters, curve). Everyone else registers on ``Initialized``. Requests (candidacy,
pledge, sub-model hash, alive, End) are PBFT client requests to the committee; each
member feeds what its replica executes into an :class:`OrderedLog`. A member's stage
timer (Alg. 2) closing makes it send End(it, stage, cut, hash); the first End whose hash
matches a member's own result over the requests up to ``cut`` closes the stage there and
the member sends its secp256k1 proof share to the End's sender, who calls the contract
with F+1 shares. Contract logs drive everything else (the paper's event listening).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedledger.consensus.pbft import (
    BroadcastAll,
    Client,
    Replica,
    SendTo,
)
from fedledger.consensus.pbft import CancelTimer as PbftCancel
from fedledger.consensus.pbft import SetTimer as PbftSet
from fedledger.contracts import eth
from fedledger.contracts.dflbcb import ContractParams, Genesis, Stage
from fedledger.contracts.effects import ContractCall, ContractDeploy, ContractLog, ContractReceipt
from fedledger.contracts.eth import EcdsaSig, ScoreEntry
from fedledger.learning.jobs import TrainJob
from fedledger.ledger.records import ModelRef, Transaction
from fedledger.protocols.base import (
    CancelTimer,
    Effect,
    EmitMetric,
    FetchBlob,
    Halt,
    MessageReceived,
    NodeSetup,
    ReportModel,
    RunJob,
    Send,
    SetTimer,
    Start,
    TimerFired,
)
from fedledger.protocols.dflbcb.committee import CommitteeMixin
from fedledger.protocols.dflbcb.durable import DurableMixin
from fedledger.protocols.dflbcb.messages import Answer, Request
from fedledger.protocols.dflbcb.ordered import (
    CAND,
    PLEDGE,
    STAGE_OF,
    OrderedLog,
    request_payload,
)
from fedledger.protocols.dflbcb.params import DflbcbParams
from fedledger.protocols.dflbcb.report import observe
from fedledger.protocols.dflbcb.roles import (
    BAD_LAYOUT,
    CLIENT_RETRY,
    FORGE_WORK,
    FUND,
    INITIATOR,
    MEMBER,
    NO_SUBMIT,
    STAGE_TIMER,
    SYBIL,
    SYBIL_FACTOR,
    WRONG_END,
    chain_keys,
)
from fedledger.protocols.dflbcb.term import TermMixin
from fedledger.protocols.dflbcb.timer import StageTimer
from fedledger.protocols.dflbcb.work import WorkMixin
from fedledger.protocols.kit import JobId, KitNode, ModelBlobs, handles
from fedledger.protocols.pbft_ledger.boundary import EngineGate
from fedledger.seeding import derive_seed
from fedledger.storage.cid import cid_from_sha256


class DflbcbNode(CommitteeMixin, WorkMixin, TermMixin, DurableMixin, KitNode[DflbcbParams]):
    def __init__(self, setup: NodeSetup[DflbcbParams]) -> None:
        super().__init__(setup)
        p = self.p = setup.params
        svc = setup.services
        self.role = setup.plan.role
        self.key, self.eth_of = chain_keys(setup.node_id, setup.seed,
                                           [pl.node_id for pl in setup.all_nodes], svc.extra)
        self.node_of_eth = {a: n for n, a in self.eth_of.items()}
        self.members = tuple(pl.node_id for pl in setup.all_nodes if pl.role == MEMBER)
        self.holders = tuple(pl.node_id for pl in setup.all_nodes if pl.role != INITIATOR)
        self.clients = {svc.address_of(n): svc.directory[svc.address_of(n)]
                        for n in self.holders}
        self.outbox: list[tuple[str, tuple]] = []
        self.lies = WRONG_END in setup.faults  # Ends and proof shares over a wrong hash
        self.forges = FORGE_WORK in setup.faults
        self.bad_layout = BAD_LAYOUT in setup.faults
        self.elect_factor = SYBIL_FACTOR if SYBIL in setup.faults else 1
        self.silent_trainer = NO_SUBMIT in setup.faults
        self.term = 0
        self.prev_members: tuple[str, ...] = ()
        self.history_votes: dict[str, tuple] = {}
        self.client: Client | None = None
        self.engine: Replica | None = None
        self.boundary: EngineGate | None = None
        self.blobs = ModelBlobs(svc.blob_store, tuple(setup.initial_weights.shape))
        self.global_w = np.asarray(setup.initial_weights, np.float32)
        self.global_ref = self.blobs.store(self.global_w, 0)
        self.cparams = ContractParams(p_bps=p.p_bps, elect_ratio_bps=p.elect_ratio_bps,
                                      elect_times=p.elect_times,
                                      malicious_permille=p.malicious_permille)
        self.contract = ""
        self.it, self.stage = 0, -1
        self.committee: tuple[str, ...] = ()
        self.registered = 0
        self.participants: dict[int, tuple[str, ...]] = {}
        self.log: OrderedLog | None = None
        self.ends: dict[tuple[int, int], list[tuple[int, int, bytes, str]]] = {}
        self.closed: dict[tuple[int, int], tuple[bytes, tuple]] = {}
        self.shares: dict[tuple[int, int, bytes], dict[str, EcdsaSig]] = {}
        self.submitted: set[tuple[int, int]] = set()
        self.timer: StageTimer | None = None
        self.timer_for: tuple[int, int] = (0, -1)
        self.ended: set[tuple[int, int]] = set()
        self.acc_hist: dict[int, dict[str, int]] = {}  # it -> address -> accepted score
        self.accepted: dict[tuple[int, int], bytes] = {}  # (it, stage) -> accepted hash
        # work stage: sub-models to score, scores, the member's own work result
        self.subs: dict[int, list[tuple[str, bytes]]] = {}
        self.models: dict[int, dict[str, np.ndarray | None]] = {}
        self.scores: dict[int, dict[str, int]] = {}
        self.work: dict[int, tuple[list[ScoreEntry], bytes, int, np.ndarray]] = {}
        self.pending: dict[int, tuple[list[ScoreEntry], bytes, int, np.ndarray]] = {}
        self._app: list[Effect] = []
        self.global_it = 0  # the iteration of the global model being fetched
        self.opened = 0.0  # when the current stage began
        self.subs_log: Any = None  # the last SubmissionsAnnounced (a member scores them)
        self._new_instance()

    # ------------------------------------------------------------ dispatch

    def _dispatch(self, event: Any) -> list[Effect]:
        if isinstance(event, ContractReceipt):
            return self._on_receipt(event)
        if isinstance(event, ContractLog):
            return self._on_log(event)
        return super()._dispatch(event)

    def on_start(self, event: Start) -> list[Effect]:
        if self.role == INITIATOR:
            return [ContractDeploy("deploy", self.key.address)]
        return self._restore()

    # ------------------------------------------------------------ chain

    def _on_receipt(self, ev: ContractReceipt) -> list[Effect]:
        if ev.call_id == "deploy" and ev.status:
            g = Genesis(committee=tuple(self.eth_of[m] for m in self.members),
                        model_hash=self.global_ref.sha256, params=self.cparams)
            args = ([eth.checksum(c) for c in g.committee], g.model_hash, g.params.as_tuple(),
                    list(g.curve_x), list(g.curve_y))
            return [ContractCall("initialize", ev.address, "initialize", args,
                                 self.key.address, value=g.prize_fund)]
        if ev.call_id.startswith("submit"):
            tags = (("call", ev.call_id.split(":")[0]), ("ok", str(ev.status)))
            return [EmitMetric("gas", float(ev.gas), max(self.it, 0), tags)]
        return []

    def _on_log(self, ev: ContractLog) -> list[Effect]:
        return self._on_log_event(ev.log) + self._flush()

    def _on_log_event(self, log: Any) -> list[Effect]:
        if self.contract and log.address != self.contract:
            return []
        name = log.event
        out: list[Effect] = []
        if self.role == INITIATOR and self.contract:
            out += observe(log, self.now, self.opened, self.it)
        if name == "Initialized":
            self.contract = log.address
            self.committee = tuple(eth.checksum(a) for a in log.arg("committee"))
            self.it, self.stage, self.opened = 1, int(Stage.ELECT), self.now
            if self.engine is not None:
                self.log = OrderedLog(self.p.chain_id, self.contract)
                out += self._start_stage()
            if self.role != INITIATOR:
                out.append(ContractCall("register", self.contract, "register", (),
                                        self.key.address, value=FUND))
        elif name == "Registered":
            self.registered += 1
            if eth.checksum(log.arg("node")) == self.key.address and self.stage == Stage.ELECT:
                out += self._request(CAND, self.elect_factor * self.cparams.min_elect_pledge)
        elif name == "CommitteeElected":
            out += self._install(int(log.arg("term")),
                                 tuple(eth.checksum(a) for a in log.arg("members")))
        elif name == "ParticipantsAnnounced":
            nodes = tuple(eth.checksum(a) for a in log.arg("nodes"))
            self.participants[int(log.arg("it"))] = nodes
            if self.key.address in nodes and not self.silent_trainer:
                out.append(RunJob(str(JobId("train", self.it)), self._train_job()))
        elif name == "SubmissionsAnnounced" and self.engine is not None:
            self.subs_log = log
            out += self._fetch_submissions(int(log.arg("it")), log)
        elif name == "GlobalModel":
            out += self._on_global(int(log.arg("it")), bytes(log.arg("model_hash")),
                                   int(log.arg("acc")))
        elif name == "StageChanged":
            out += self._on_stage_changed(log)
        self._mirror_log(log)
        return out

    def _train_job(self) -> TrainJob:
        return TrainJob(self.global_w, self.setup.train,
                        derive_seed(self.setup.seed, "train", self.node_id, self.it))

    def _on_stage_changed(self, log: Any) -> list[Effect]:
        it, frm, to = int(log.arg("it")), int(log.arg("from_stage")), int(log.arg("to_stage"))
        self.accepted[(it, frm)] = bytes(log.arg("result_hash"))
        if frm == Stage.WORK:
            self._record_scores(it)
        self.it = it + 1 if frm == Stage.WORK else it
        self.stage, self.opened = to, self.now
        out: list[Effect] = []
        if self.engine is not None:
            out += self._start_stage()
        if self.role == INITIATOR and frm == Stage.WORK and it >= self.setup.rounds:
            out.append(Halt(f"{it} iterations on chain"))  # after observing the last log
        if to == Stage.ELECT and self.role != INITIATOR:
            out += self._request(CAND, self.elect_factor * self.cparams.min_elect_pledge)
        if to == Stage.PLEDGE and self.role != INITIATOR:
            out += self._request(PLEDGE, self.cparams.min_pledge)
        return out

    def _record_scores(self, it: int) -> None:
        """The accepted Work result's scores join the accuracy history (Alg. 1's acc)
        once this member both closed Work at that hash and saw the contract accept it."""
        closed = self.closed.get((it, int(Stage.WORK)))
        if closed is not None and closed[0] == self.accepted.get((it, int(Stage.WORK))):
            self.acc_hist[it] = {e.node: e.score for e in closed[1][1]}
            self._mirror_scores(it)

    def _on_global(self, it: int, model_hash: bytes, acc: int) -> list[Effect]:
        out: list[Effect] = [EmitMetric("global_acc_permille", float(acc), it)]
        mine = self.work.get(it)
        if mine is not None and mine[1] == model_hash:
            self.global_w = mine[3]
            self.global_ref = ModelRef(cid_from_sha256(model_hash), model_hash, 0)
            out.append(ReportModel(it, self.global_w))
        elif self.role != INITIATOR:
            source = self.node_of_eth.get(self.committee[0]) if self.committee else None
            if source is not None and source != self.node_id:
                self.global_ref = ModelRef(cid_from_sha256(model_hash), model_hash, 0)
                self.global_it = it
                return [*out, FetchBlob(self.global_ref.cid, source)]  # halts on arrival
        if it >= self.setup.rounds and self.role != INITIATOR:
            out.append(Halt(f"{it} iterations on chain"))
        return out

    # ------------------------------------------------------------ requests (PBFT client)

    def _request(self, kind: str, value: int) -> list[Effect]:
        stage = STAGE_OF[kind]
        req = eth.sign_request(self.key, self.p.chain_id, self.contract, self.it, stage, value)
        return self._queue(kind, request_payload(self.it, stage, req))

    def _queue(self, kind: str, payload: tuple) -> list[Effect]:
        if self.replaying:
            return []
        self.outbox.append((kind, payload))
        return self._pump()

    def _pump(self) -> list[Effect]:
        if self.client is None or self.client.busy or not self.outbox:
            return []
        kind, payload = self.outbox.pop(0)
        actions = self.client.request(self.now, kind, payload)
        self._save_nonce()
        return self._client_effects(actions)

    def _client_effects(self, actions: list[Any]) -> list[Effect]:
        out: list[Effect] = []
        for a in actions:
            if isinstance(a, SendTo):
                out += self._to_replica(self.members[a.replica], a.msg)
            elif isinstance(a, BroadcastAll):
                for m in self.members:
                    out += self._to_replica(m, a.msg)
            elif isinstance(a, PbftSet):
                out.append(SetTimer(CLIENT_RETRY, a.delay))
            elif isinstance(a, PbftCancel):
                out.append(CancelTimer(CLIENT_RETRY))
        return out

    def _to_replica(self, member: str, tx: Transaction) -> list[Effect]:
        if member != self.node_id:
            return [Send(member, Request(self.term, tx))]
        engine, boundary = self.engine, self.boundary
        assert engine is not None and boundary is not None
        return self._replica_effects(boundary.call(lambda: engine.on_request(self.now, tx)))

    def _on_answer(self, reply: Any) -> list[Effect]:
        assert self.client is not None
        tx = self.client.outstanding
        out = self._client_effects(self.client.on_reply(self.now, reply))
        if tx is not None and tx.nonce in self.client.latency:
            out.append(EmitMetric("latency", self.client.latency.pop(tx.nonce),
                                  max(self.it, 0), (("kind", tx.kind),)))
        return out + self._pump()

    @handles(Answer)
    def on_answer(self, event: MessageReceived) -> list[Effect]:
        assert isinstance(event.message, Answer)
        self._term_ok(event, event.message.term)
        if self.client is None or event.sender not in self.members \
                or event.sender == self.node_id:  # its own replies never cross the network
            raise self.gate.fail("not_a_member", event.sender)
        return self._on_answer(event.message.reply)

    def on_timer(self, key: str, event: TimerFired) -> list[Effect]:
        if key == CLIENT_RETRY and self.client is not None:
            return self._client_effects(self.client.on_timer(self.now, "retry"))
        prefix = self._pbft_key("")
        if key.startswith(prefix) and self.engine is not None and self.boundary is not None:
            engine, name = self.engine, key[len(prefix):]
            return self._replica_effects(
                self.boundary.call(lambda: engine.on_timer(self.now, name)))
        if key == STAGE_TIMER and self.timer is not None:
            self.timer = self.timer.on_time(self._ms())
            return self._arm() + self._maybe_end()
        raise self.gate.fail("unknown_timer", key)

