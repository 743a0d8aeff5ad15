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
    PbftConfig,
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
from fedledger.protocols.dflbcb.messages import Answer, Request
from fedledger.protocols.dflbcb.ordered import (
    CAND,
    PLEDGE,
    STAGE_OF,
    OrderedLog,
    request_payload,
)
from fedledger.protocols.dflbcb.params import DflbcbParams
from fedledger.protocols.dflbcb.roles import (
    CLIENT_RETRY,
    FUND,
    INITIATOR,
    MEMBER,
    PBFT,
    STAGE_TIMER,
    WRONG_END,
    eth_key,
)
from fedledger.protocols.dflbcb.timer import StageTimer
from fedledger.protocols.dflbcb.work import WorkMixin
from fedledger.protocols.kit import JobId, KitNode, ModelBlobs, handles
from fedledger.protocols.pbft_ledger.boundary import EngineGate
from fedledger.protocols.pbft_ledger.replica import byzantine_of
from fedledger.seeding import derive_seed
from fedledger.storage.cid import cid_from_sha256


class DflbcbNode(CommitteeMixin, WorkMixin, KitNode[DflbcbParams]):
    def __init__(self, setup: NodeSetup[DflbcbParams]) -> None:
        super().__init__(setup)
        p = self.p = setup.params
        svc = setup.services
        self.role = setup.plan.role
        self.key = eth_key(setup.node_id)
        self.eth_of = {pl.node_id: eth_key(pl.node_id).address
                       for pl in setup.all_nodes}
        self.node_of_eth = {a: n for n, a in self.eth_of.items()}
        self.members = tuple(pl.node_id for pl in setup.all_nodes if pl.role == MEMBER)
        self.holders = tuple(pl.node_id for pl in setup.all_nodes if pl.role != INITIATOR)
        keys = [svc.directory[svc.address_of(m)] for m in self.members]
        clients = {svc.address_of(n): svc.directory[svc.address_of(n)] for n in self.holders}
        self.client = Client(svc.keys, keys, retry=p.view_timeout) if self.role != INITIATOR \
            else None
        self.outbox: list[tuple[str, tuple]] = []
        self.lies = WRONG_END in setup.faults  # Ends and proof shares over a wrong hash
        self.engine: Replica | None = None
        if self.role == MEMBER:
            cfg = PbftConfig(batch_window=p.batch_window, view_timeout=p.view_timeout,
                             byzantine=byzantine_of(setup.faults, frozenset(clients)))
            self.engine = Replica(self.members.index(self.node_id), keys, svc.keys, clients,
                                  cfg, result_of=self._executed)
            self.boundary = EngineGate(self.gate, self.engine.drops)
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
        self.acc_hist: dict[str, list[int]] = {}
        # work stage: sub-models to score, scores, the member's own work result
        self.subs: dict[int, list[tuple[str, bytes]]] = {}
        self.models: dict[int, dict[str, np.ndarray | None]] = {}
        self.scores: dict[int, dict[str, int]] = {}
        self.work: dict[int, tuple[list[ScoreEntry], bytes, int, np.ndarray]] = {}
        self.pending: dict[int, tuple[list[ScoreEntry], bytes, int, np.ndarray]] = {}
        self._app: list[Effect] = []

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
        return []

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
        log = ev.log
        if self.contract and log.address != self.contract:
            return []
        name = log.event
        out: list[Effect] = []
        if name == "Initialized":
            self.contract = log.address
            self.committee = tuple(eth.checksum(a) for a in log.arg("committee"))
            self.it, self.stage = 1, int(Stage.ELECT)
            if self.role == MEMBER:
                self.log = OrderedLog(self.p.chain_id, self.contract)
                out += self._start_stage()
            if self.role != INITIATOR:
                out.append(ContractCall("register", self.contract, "register", (),
                                        self.key.address, value=FUND))
        elif name == "Registered":
            self.registered += 1
            if eth.checksum(log.arg("node")) == self.key.address and self.role == MEMBER:
                out += self._request(CAND, self.cparams.min_elect_pledge)
        elif name == "CommitteeElected":
            self.committee = tuple(eth.checksum(a) for a in log.arg("members"))
        elif name == "ParticipantsAnnounced":
            nodes = tuple(eth.checksum(a) for a in log.arg("nodes"))
            self.participants[int(log.arg("it"))] = nodes
            if self.key.address in nodes:
                job = TrainJob(self.global_w, self.setup.train,
                               derive_seed(self.setup.seed, "train", self.node_id, self.it))
                out.append(RunJob(str(JobId("train", self.it)), job))
        elif name == "SubmissionsAnnounced" and self.role == MEMBER:
            out += self._fetch_submissions(int(log.arg("it")), log)
        elif name == "GlobalModel":
            out += self._on_global(int(log.arg("it")), bytes(log.arg("model_hash")),
                                   int(log.arg("acc")))
        elif name == "StageChanged":
            out += self._on_stage_changed(log)
        return out + self._flush()

    def _on_stage_changed(self, log: Any) -> list[Effect]:
        it, frm, to = int(log.arg("it")), int(log.arg("from_stage")), int(log.arg("to_stage"))
        if frm == Stage.WORK:
            closed = self.closed.get((it, frm))
            if closed is not None and closed[0] == bytes(log.arg("result_hash")):
                for entry in closed[1][1]:
                    self.acc_hist.setdefault(entry.node, []).append(entry.score)
        self.it = it + 1 if frm == Stage.WORK else it
        self.stage = to
        out: list[Effect] = []
        if self.role == MEMBER:
            out += self._start_stage()
            if to == Stage.ELECT:
                out += self._request(CAND, self.cparams.min_elect_pledge)
        if to == Stage.PLEDGE and self.role != INITIATOR:
            out += self._request(PLEDGE, self.cparams.min_pledge)
        return out

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
                out.append(FetchBlob(self.global_ref.cid, source))
        if it >= self.setup.rounds:
            out.append(Halt(f"{it} iterations on chain"))
        return out

    # ------------------------------------------------------------ requests (PBFT client)

    def _request(self, kind: str, value: int) -> list[Effect]:
        stage = STAGE_OF[kind]
        req = eth.sign_request(self.key, self.p.chain_id, self.contract, self.it, stage, value)
        return self._queue(kind, request_payload(self.it, stage, req))

    def _queue(self, kind: str, payload: tuple) -> list[Effect]:
        self.outbox.append((kind, payload))
        return self._pump()

    def _pump(self) -> list[Effect]:
        if self.client is None or self.client.busy or not self.outbox:
            return []
        kind, payload = self.outbox.pop(0)
        return self._client_effects(self.client.request(self.now, kind, payload))

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
            return [Send(member, Request(tx))]
        assert self.engine is not None
        return self._replica_effects(self.boundary.call(
            lambda: self.engine.on_request(self.now, tx)))  # type: ignore[union-attr]

    def _on_answer(self, reply: Any) -> list[Effect]:
        assert self.client is not None
        out = self._client_effects(self.client.on_reply(self.now, reply))
        return out + self._pump()

    @handles(Answer)
    def on_answer(self, event: MessageReceived) -> list[Effect]:
        assert isinstance(event.message, Answer)
        if self.client is None or event.sender not in self.members \
                or event.sender == self.node_id:  # its own replies never cross the network
            raise self.gate.fail("not_a_member", event.sender)
        return self._on_answer(event.message.reply)

    def on_timer(self, key: str, event: TimerFired) -> list[Effect]:
        if key == CLIENT_RETRY and self.client is not None:
            return self._client_effects(self.client.on_timer(self.now, "retry"))
        if key.startswith(PBFT) and self.engine is not None:
            engine, name = self.engine, key[len(PBFT):]
            return self._replica_effects(
                self.boundary.call(lambda: engine.on_timer(self.now, name)))
        if key == STAGE_TIMER and self.timer is not None:
            self.timer = self.timer.on_time(self._ms())
            return self._arm() + self._maybe_end()
        raise self.gate.fail("unknown_timer", key)

