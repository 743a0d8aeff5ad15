"""A PoS-BFL device: the state machine that gives it a role each round and composes the
worker, validator and miner logic with block selection, ledger and global model.

A round, in virtual seconds after it starts (all deadlines are ``params``):

0            roles from the seeded shuffle; workers train, validators evaluate G_{j-1}
tx_window    validators stop taking worker-transactions
vote_at      validators send signed votes and reports to the miners
mine_at      miners build, sign and broadcast candidate blocks (PoW: after sealing)
select_at    every device picks the legal block (PoS or PoW), appends it to its ledger,
             credits stakes, updates the blacklist, fetches the accepted updates and
             averages them (sample-weighted) into the new global model
round_length the next round starts (or, if the global model is still being fetched,
             as soon as it is ready)

Lost messages and withheld blocks only shrink what a phase sees: no phase waits for a
message. On Start a device rebuilds round, stakes and blacklist from its ledger and the
global model from the blobs of the last accepted updates, so a restarted node resumes.
"""

from __future__ import annotations

import numpy as np

from fedledger.ledger.records import Block
from fedledger.ledger.store import ChainStoreError
from fedledger.protocols.base import (
    BlobReceived,
    Broadcast,
    Effect,
    EmitMetric,
    EvalResult,
    Event,
    FetchBlob,
    Halt,
    JobFinished,
    MessageReceived,
    NodeSetup,
    ProtocolNode,
    ReportModel,
    SetTimer,
    Start,
    TimerFired,
    TrainResult,
)
from fedledger.protocols.posbfl.chainstate import AcceptedUpdate, LedgerState, rebuild, updates_of
from fedledger.protocols.posbfl.checks import Refused
from fedledger.protocols.posbfl.context import FAULT_WITHHOLD_BLOCK, DeviceContext
from fedledger.protocols.posbfl.messages import (
    POSITIVE,
    CandidateBlock,
    RoundRecord,
    VoteBatch,
    WorkerTxMsg,
)
from fedledger.protocols.posbfl.miner import MinerRole
from fedledger.protocols.posbfl.roles import RoundRoles, assign_roles, role_counts
from fedledger.protocols.posbfl.selection import pick_pos, pick_pow
from fedledger.protocols.posbfl.validator import ValidatorRole
from fedledger.protocols.posbfl.worker import WorkerRole, train_job_id

PHASES = ("tx-window", "vote", "mine", "select", "round-end")
_MESSAGES = (WorkerTxMsg, VoteBatch, CandidateBlock)


def average(models: list[tuple[np.ndarray, int]]) -> np.ndarray:
    """Sample-weighted mean, accumulated in float64 in the given order."""
    total = sum(n for _, n in models)
    acc = np.zeros(models[0][0].shape, dtype=np.float64)
    for weights, n in models:
        acc += weights.astype(np.float64) * (n / total)
    return acc.astype(np.float32)


class Device(ProtocolNode):
    def __init__(self, setup: NodeSetup) -> None:
        super().__init__(setup)
        self.ctx = DeviceContext.of(setup)
        self.params = self.ctx.params
        self.counts = role_counts(self.params, len(self.ctx.devices))
        self.state = LedgerState(self.params.blacklist_rounds)
        self.global_weights = np.asarray(setup.initial_weights, dtype=np.float32)
        self.round = 0
        self.roles: RoundRoles | None = None
        self.worker: WorkerRole | None = None
        self.validator: ValidatorRole | None = None
        self.miner: MinerRole | None = None
        self.models: dict[str, np.ndarray] = {}
        self.candidates: dict[bytes, Block] = {}
        self.selected = False
        self.sealed: Block | None = None
        self.buffer: list[MessageReceived] = []
        self.applying: dict[str, tuple[AcceptedUpdate, int]] | None = None
        self.pending: tuple[AcceptedUpdate, ...] = ()
        self.advance_when_applied = False
        self.restoring = False
        self.emitted_rejections: dict[str, int] = {}
        self.now = 0.0  # the time of the event being handled (network time on a real host)

    # ------------------------------------------------------------ events

    def handle(self, event: Event) -> list[Effect]:
        self.now = event.time
        if isinstance(event, Start):
            return self._restore()
        if isinstance(event, MessageReceived):
            return self._on_message(event)
        if isinstance(event, TimerFired):
            return self._on_timer(event)
        if isinstance(event, JobFinished):
            return self._on_job(event)
        if isinstance(event, BlobReceived):
            return self._on_blob(event)
        return []

    def _restore(self) -> list[Effect]:
        self.state = rebuild(self.ctx.services.ledger, self.params.blacklist_rounds)
        self.round = self.state.round
        if self.round >= self.setup.rounds:
            return [Halt("all rounds are on the ledger")]
        if int(self.now // self.params.round_length) >= self.setup.rounds:
            return [Halt("the network's last round is over")]
        if not self.state.last_updates:
            return self._resume()
        self.restoring = True
        return self._collect(self.state.last_updates)

    def _resume(self) -> list[Effect]:
        """Join the network's current round: rounds lie on a grid of network time, round j
        starting at (j - 1) * round_length, so a device that starts late or restarts
        knows where the others are from the time alone."""
        current = int(self.now // self.params.round_length) + 1
        if current > self.setup.rounds:
            return [Halt("the network's last round is over")]
        if self.round >= current:
            # this round's block is on the ledger already (or the clock is behind the
            # ledger): begin the next round at its start on the grid
            return [SetTimer("round-end", self.round * self.params.round_length - self.now)]
        self.round = current - 1
        return self._begin_round()

    def _on_message(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        if not isinstance(msg, _MESSAGES) or not isinstance(msg.round, int):
            self.ctx.gate.fail("bad_payload", f"unexpected message {type(msg).__name__}")
            return []
        if msg.round == self.round + 1 or (self.roles is None and msg.round > self.round):
            if len(self.buffer) < 8 * len(self.ctx.devices):
                self.buffer.append(event)
            return []
        if msg.round != self.round or self.roles is None:
            return []  # late: its round is over here
        if isinstance(msg, WorkerTxMsg):
            return self.validator.on_tx(msg, event.sender) if self.validator else []
        if isinstance(msg, VoteBatch):
            if self.miner is not None:
                self.miner.on_batch(msg, event.sender)
            return []
        self._on_candidate(msg, event.sender)
        return []

    def _on_candidate(self, msg: CandidateBlock, sender: str) -> None:
        if self.selected or self.roles is None:
            return
        gate = self.ctx.gate
        head = self.ctx.services.ledger.head()
        try:
            gate.block(msg.block, head.header, self.roles, self.state)
        except Refused:
            return
        proposer = msg.block.header.proposer
        if self.ctx.services.node_of(proposer) != sender:
            gate.fail("wrong_role", f"{sender} relayed another miner's block")
            return
        known = self.candidates.get(proposer)
        if known is not None and known.hash != msg.block.hash:
            gate.fail("duplicate", f"miner {sender} sent two different blocks")
            return
        self.candidates[proposer] = msg.block

    def _on_timer(self, event: TimerFired) -> list[Effect]:
        key = event.key
        if key == "tx-window" and self.validator is not None:
            self.validator.open = False
        elif key == "vote" and self.validator is not None:
            return self.validator.vote(event.time)
        elif key == "mine" and self.miner is not None:
            return self._mine(event.time)
        elif key == "pow-send" and self.sealed is not None:
            block, self.sealed = self.sealed, None
            return [self._broadcast_block(block)]
        elif key == "select":
            return self._select()
        elif key == "round-end":
            if self.applying is None:
                return self._next_round()
            self.advance_when_applied = True
        return []

    def _on_job(self, event: JobFinished) -> list[Effect]:
        result = event.result
        if self.worker is not None and event.job_id == train_job_id(self.round):
            if not isinstance(result, TrainResult):
                return []
            effects, cid, weights = self.worker.trained(result, event.time)
            self.models[cid] = weights
            return [*effects, EmitMetric("train_loss", result.loss, self.round)]
        if self.validator is not None and isinstance(result, EvalResult):
            self.validator.on_eval(event.job_id, result)
        elif self.validator is not None and isinstance(result, TrainResult):
            return self.validator.on_trained(event.job_id, result)
        return []

    def _on_blob(self, event: BlobReceived) -> list[Effect]:
        if self.validator is not None and event.cid in self.validator.fetching:
            return self.validator.on_blob(event)
        if self.applying is None or event.cid not in self.applying:
            return []
        accepted, attempts = self.applying[event.cid]
        ref = accepted.update.model
        weights = None if event.data is None else self.ctx.model_from(event.data, ref)
        if weights is not None:
            self.models[event.cid] = weights
        elif event.data is None and attempts < self.params.fetch_attempts:
            self.applying[event.cid] = (accepted, attempts + 1)
            return [FetchBlob(event.cid, event.source)]
        elif event.data is not None:
            self.ctx.gate.fail("bad_blob", f"model {event.cid} does not match its reference")
        del self.applying[event.cid]
        return self._finish_apply() if not self.applying else []

    # ------------------------------------------------------------ phases

    def _begin_round(self) -> list[Effect]:
        self.round += 1
        roles = assign_roles(self.ctx.devices, self.counts, self.setup.seed, self.round)
        self.roles = roles
        self.models = {}
        self.candidates = {}
        self.selected = False
        self.sealed = None
        self.advance_when_applied = False
        self.worker = self.validator = self.miner = None
        p = self.params
        # phases are deadlines on the grid; a device that begins late (restart, or a
        # global model fetched past round_length) keeps the others' deadlines and skips
        # the work whose deadline has passed
        late = max(0.0, self.now - (self.round - 1) * p.round_length)
        deadlines = (p.tx_window, p.vote_at, p.mine_at, p.select_at, p.round_length)
        effects: list[Effect] = [
            SetTimer(key, max(0.0, at - late))
            for key, at in zip(PHASES, deadlines, strict=True)
            if at > late or key in ("select", "round-end")
        ]
        me = self.ctx.node_id
        if me in roles.workers:
            if late < p.tx_window:
                self.worker = WorkerRole(self.ctx, roles)
                effects += self.worker.start(self.global_weights)
        elif me in roles.validators:
            if late < p.vote_at:
                self.validator = ValidatorRole(self.ctx, roles, self.state, self.models)
                self.validator.open = late < p.tx_window
                effects += self.validator.start(self.global_weights)
        elif late < p.mine_at:
            self.miner = MinerRole(self.ctx, roles, self.state)
        buffered, self.buffer = self.buffer, []
        for event in buffered:
            effects += self._on_message(event)
        return effects

    def _mine(self, now: float) -> list[Effect]:
        assert self.miner is not None
        head = self.ctx.services.ledger.head()
        block = self.miner.build(now, head)
        if self.ctx.has_fault(FAULT_WITHHOLD_BLOCK):
            return [EmitMetric("withheld_blocks", 1.0, self.round)]
        self.candidates[block.header.proposer] = block  # its own block, trusted
        if self.params.consensus == "pow":
            extra = block.header.extra
            assert isinstance(extra, RoundRecord)
            room = 0.9 * (self.params.select_at - self.params.mine_at)
            self.sealed = block
            delay = (extra.nonce + 1) * self.params.pow_seconds_per_hash
            return [SetTimer("pow-send", min(room, delay))]
        return [self._broadcast_block(block)]

    def _broadcast_block(self, block: Block) -> Effect:
        others = tuple(d for d in self.ctx.devices if d != self.ctx.node_id)
        return Broadcast(CandidateBlock(self.round, block), to=others)

    def _select(self) -> list[Effect]:
        self.selected = True
        step = self.round
        candidates = sorted(self.candidates.values(), key=lambda b: b.hash)
        if self.params.consensus == "pos":
            legal = pick_pos(candidates, self.state.stakes, self.round)
        else:
            legal = pick_pow(candidates)
        effects: list[Effect] = [
            EmitMetric("candidate_blocks", float(len(candidates)), step),
            EmitMetric("forks", float(max(0, len(candidates) - 1)), step),
        ]
        if legal is not None:
            try:
                self.ctx.services.ledger.append(legal)
            except ChainStoreError as err:
                self.ctx.gate.fail("wrong_parent", str(err))
                legal = None
        if legal is None:
            effects.append(EmitMetric("no_block", 1.0, step))
            return effects + self._rejections() + self._collect(())
        newly = self.state.apply(legal)
        effects += self._block_metrics(legal, newly)
        return effects + self._rejections() + self._collect(updates_of(legal))

    def _block_metrics(self, block: Block, newly: tuple[bytes, ...]) -> list[Effect]:
        step = self.round
        record = block.header.extra
        assert isinstance(record, RoundRecord)
        node_of = self.ctx.services.node_of
        miner = node_of(block.header.proposer) or "?"
        positive = sum(1 for v in record.votes if v.value == POSITIVE)
        effects: list[Effect] = [
            EmitMetric("legal_block", float(block.height), step, (("miner", miner),)),
            EmitMetric("votes", float(positive), step, (("value", "positive"),)),
            EmitMetric(
                "votes", float(len(record.votes) - positive), step, (("value", "negative"),)
            ),
            EmitMetric(
                "stake",
                self.state.stakes.get(self.ctx.address, 0.0),
                step,
                (("node", self.ctx.node_id),),
            ),
            EmitMetric("blacklisted", float(len(self.state.blacklist)), step),
        ]
        for outcome in record.outcomes:
            worker = node_of(outcome.worker) or "?"
            effects.append(
                EmitMetric("update_accepted", float(outcome.accepted), step, (("worker", worker),))
            )
        for address in newly:
            effects.append(
                EmitMetric("blacklist_added", 1.0, step, (("worker", node_of(address) or "?"),))
            )
        return effects

    def _rejections(self) -> list[Effect]:
        effects: list[Effect] = []
        for reason, total in sorted(self.ctx.gate.rejections().items()):
            delta = total - self.emitted_rejections.get(reason, 0)
            if delta:
                effects.append(
                    EmitMetric("rejected", float(delta), self.round, (("reason", reason),))
                )
                self.emitted_rejections[reason] = total
        return effects

    def _collect(self, accepted: tuple[AcceptedUpdate, ...]) -> list[Effect]:
        """Gather the accepted updates' weights (own cache, own store, else fetch)."""
        self.pending = accepted
        self.applying = {}
        effects: list[Effect] = []
        for item in accepted:
            ref = item.update.model
            if ref.cid in self.models:
                continue
            weights = self.ctx.own_model(ref)
            if weights is not None:
                self.models[ref.cid] = weights
                continue
            source = self.ctx.services.node_of(item.worker)
            if source is None or ref.cid in self.applying:
                continue
            self.applying[ref.cid] = (item, 1)
            effects.append(FetchBlob(ref.cid, source))
        if not self.applying:
            effects += self._finish_apply()
        return effects

    def _finish_apply(self) -> list[Effect]:
        self.applying = None
        have = [
            (self.models[a.update.model.cid], a.update.model.num_samples)
            for a in sorted(self.pending, key=lambda a: a.tx_id)
            if a.update.model.cid in self.models
        ]
        missing = len(self.pending) - len(have)
        if have:
            self.global_weights = average(have)
        effects: list[Effect] = []
        if missing:
            effects.append(EmitMetric("missing_updates", float(missing), self.round))
        if self.restoring:
            self.restoring = False
            return effects + self._resume()
        effects.append(ReportModel(self.round, self.global_weights))
        if self.advance_when_applied:
            effects += self._next_round()
        return effects

    def _next_round(self) -> list[Effect]:
        if self.round >= self.setup.rounds:
            return [Halt()]
        return self._begin_round()
