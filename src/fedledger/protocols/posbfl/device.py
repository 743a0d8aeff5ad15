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

from fedledger.consensus.abci import ProposeRequest
from fedledger.learning.aggregate import AGGREGATORS, AggregationContext, AggregationError, Update
from fedledger.learning.jobs import JobResult
from fedledger.ledger.records import Block
from fedledger.ledger.store import ChainStoreError
from fedledger.protocols.base import (
    BlobReceived,
    Broadcast,
    ChainSynced,
    Effect,
    EmitMetric,
    EvalResult,
    FetchBlob,
    Halt,
    JobFinished,
    MessageReceived,
    NodeSetup,
    ReportModel,
    SetTimer,
    Start,
    TimerFired,
    TrainResult,
)
from fedledger.protocols.kit.ids import JobId
from fedledger.protocols.kit.node import KitNode, handles
from fedledger.protocols.kit.schedule import JoinAction
from fedledger.protocols.kit.stage import Stage
from fedledger.protocols.posbfl.app import PosBflApp
from fedledger.protocols.posbfl.chainstate import AcceptedUpdate, LedgerState, rebuild, updates_of
from fedledger.protocols.posbfl.context import FAULT_WITHHOLD_BLOCK, DeviceContext
from fedledger.protocols.posbfl.messages import (
    POSITIVE,
    CandidateBlock,
    RoundRecord,
    VoteBatch,
    WorkerTxMsg,
)
from fedledger.protocols.posbfl.miner import MinerRole
from fedledger.protocols.posbfl.params import PosBflParams
from fedledger.protocols.posbfl.phases import (
    MINE,
    POW_SEND,
    ROUND_END,
    SELECT,
    TX_WINDOW,
    VOTE,
    schedule_of,
)
from fedledger.protocols.posbfl.roles import RoundRoles, assign_roles, role_counts
from fedledger.protocols.posbfl.selection import pick_pos, pick_pow
from fedledger.protocols.posbfl.validator import ValidatorRole
from fedledger.protocols.posbfl.worker import WorkerRole, train_job_id
from fedledger.protocols.resources import MAIN
from fedledger.seeding import derive_seed


class Device(KitNode[PosBflParams]):
    unexpected_message = "bad_payload"

    def __init__(self, setup: NodeSetup[PosBflParams]) -> None:
        ctx = DeviceContext.of(setup)
        super().__init__(setup, ctx.gate)
        self.ctx = ctx
        self.params = ctx.params
        self.schedule = schedule_of(self.params)
        self.counts = role_counts(self.params, len(ctx.devices))
        spec = dict(self.params.aggregator)
        self.aggregate = AGGREGATORS.build(spec.pop("name"), spec, where="protocol.aggregator")
        self.state = LedgerState(self.params.blacklist_rounds)
        self.app = PosBflApp(ctx.checks, ctx.services.ledger.head)
        self.global_weights = np.asarray(setup.initial_weights, dtype=np.float32)
        self.round = 0
        self.stage = Stage.IDLE
        self.roles: RoundRoles | None = None
        self.worker: WorkerRole | None = None
        self.validator: ValidatorRole | None = None
        self.miner: MinerRole | None = None
        self.models: dict[str, np.ndarray] = {}
        self.candidates: dict[bytes, Block] = {}
        self.selected = False
        self.sealed: Block | None = None
        self.buffer: list[MessageReceived] = []
        self.fetches: dict[str, tuple[AcceptedUpdate, int]] = {}  # cid -> (update, attempts)
        self.pending: tuple[AcceptedUpdate, ...] = ()

    # ------------------------------------------------------------ events

    def on_start(self, event: Start) -> list[Effect]:
        self.state = rebuild(self.ctx.services.ledger, self.params.blacklist_rounds)
        self.round = self.state.round
        if self.round >= self.setup.rounds:
            return [Halt("all rounds are on the ledger")]
        if self.schedule.current(self.now) > self.setup.rounds:
            return [Halt("the network's last round is over")]
        if not self.state.last_updates:
            return self._resume()
        self.stage = Stage.RESTORING
        return self._collect(self.state.last_updates)

    def on_chain_synced(self, event: ChainSynced) -> list[Effect]:
        """The host fetched blocks this device missed while it ran behind (paused, cut
        off): round, stakes, blacklist and global model are stale. Rebuild them from the
        ledger and join the network's current round, as after a restart."""
        if event.chain != MAIN or event.appended < 1:
            return []
        self.fetches = {}
        return self.on_start(Start(event.time))

    def _resume(self) -> list[Effect]:
        """Join the network's current round on the grid of network time (late join or
        restart): the round's block may be on the ledger already, then wait for the next."""
        join = self.schedule.join(self.round, self.now, self.setup.rounds)
        self.stage = Stage.IDLE
        if join.action is JoinAction.HALT:
            return [Halt("the network's last round is over")]
        if join.action is JoinAction.WAIT:
            return [SetTimer(ROUND_END, join.delay)]
        self.round = join.round - 1
        return self._begin_round()

    @handles(WorkerTxMsg, VoteBatch, CandidateBlock)
    def on_round_message(self, event: MessageReceived) -> list[Effect]:
        """Route a round's message to the role that takes it; buffer the next round's.

        Counted and dropped (the kit has checked the field types already): a round that
        is over here, not positive or past the run's last (``wrong_round``); a round
        further ahead than the next while this device is in a round (``wrong_round``); a
        message its role this round does not take (``wrong_role``); the next round's
        message when the buffer is full (``buffer_full``). A message for a role this
        device holds but joined too late to play (a restart) is dropped uncounted."""
        msg = event.message
        assert isinstance(msg, WorkerTxMsg | VoteBatch | CandidateBlock)
        name = type(msg).__name__
        if msg.round < 1 or msg.round > self.setup.rounds or msg.round < self.round:
            raise self.gate.fail("wrong_round", f"{name} of round {msg.round} at {self.round}")
        if msg.round == self.round + 1 or (self.roles is None and msg.round > self.round):
            if len(self.buffer) >= 8 * len(self.ctx.devices):
                raise self.gate.fail("buffer_full", f"{name} of round {msg.round}")
            self.buffer.append(event)
            return []
        if msg.round != self.round or self.roles is None:
            raise self.gate.fail("wrong_round", f"{name} of round {msg.round} at {self.round}")
        me = self.ctx.node_id
        if isinstance(msg, WorkerTxMsg):
            if me not in self.roles.validators:
                raise self.gate.fail("wrong_role", f"{name} from {event.sender} at a non-validator")
            return self.validator.on_tx(msg, event.sender) if self.validator else []
        if isinstance(msg, VoteBatch):
            if me not in self.roles.miners:
                raise self.gate.fail("wrong_role", f"{name} from {event.sender} at a non-miner")
            if self.miner is not None:
                self.miner.on_batch(msg, event.sender)
            return []
        self._on_candidate(msg, event.sender)
        return []

    def _on_candidate(self, msg: CandidateBlock, sender: str) -> None:
        if self.selected or self.roles is None:
            return
        gate = self.gate
        if not self.app.validate(msg.block).ok:
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

    def on_timer(self, key: str, event: TimerFired) -> list[Effect]:
        if key == TX_WINDOW and self.validator is not None:
            self.validator.open = False
        elif key == VOTE and self.validator is not None:
            return self.validator.vote(event.time)
        elif key == MINE and self.miner is not None:
            return self._mine(event.time)
        elif key == POW_SEND and self.sealed is not None:
            block, self.sealed = self.sealed, None
            return [self._broadcast_block(block)]
        elif key == SELECT:
            return self._select()
        elif key == ROUND_END:
            if not self.stage.gathering:
                return self._next_round()
            self.stage = Stage.APPLYING_LATE
        return []

    def on_job(self, job_id: JobId | None, result: JobResult, event: JobFinished) -> list[Effect]:
        if self.worker is not None and job_id == train_job_id(self.round):
            if not isinstance(result, TrainResult):
                return []
            effects, cid, weights = self.worker.trained(result, event.time)
            self.models[cid] = weights
            return [*effects, EmitMetric("train_loss", result.loss, self.round)]
        if self.validator is not None and isinstance(result, EvalResult):
            self.validator.on_eval(job_id, result)
        elif self.validator is not None and isinstance(result, TrainResult):
            return self.validator.on_trained(job_id, result)
        return []

    def on_blob(self, event: BlobReceived) -> list[Effect]:
        if self.validator is not None and event.cid in self.validator.fetching:
            return self.validator.on_blob(event)
        if not self.stage.gathering or event.cid not in self.fetches:
            return []
        accepted, attempts = self.fetches[event.cid]
        ref = accepted.update.model
        weights = self.ctx.blobs.load(event.data, ref)
        if weights is not None:
            self.models[event.cid] = weights
        elif event.data is None and attempts < self.params.fetch_attempts:
            self.fetches[event.cid] = (accepted, attempts + 1)
            return [FetchBlob(event.cid, event.source)]
        elif event.data is not None:
            self.gate.fail("bad_blob", f"model {event.cid} does not match its reference")
        del self.fetches[event.cid]
        return self._finish_apply() if not self.fetches else []

    # ------------------------------------------------------------ phases

    def _begin_round(self) -> list[Effect]:
        self.round += 1
        self.stage = Stage.ROUND
        roles = assign_roles(self.ctx.devices, self.counts, self.setup.seed, self.round)
        self.roles = roles
        self.models = {}
        self.candidates = {}
        self.selected = False
        self.sealed = None
        self.worker = self.validator = self.miner = None
        # phases are deadlines on the grid; a device that begins late (restart, or a
        # global model fetched past round_length) keeps the others' deadlines and skips
        # the work whose deadline has passed
        schedule = self.schedule
        late = schedule.late(self.round, self.now)
        effects: list[Effect] = list(schedule.timers(late))
        me = self.ctx.node_id
        if me in roles.workers:
            if schedule.open(TX_WINDOW, late):
                self.worker = WorkerRole(self.ctx, roles)
                effects += self.worker.start(self.global_weights)
        elif me in roles.validators:
            if schedule.open(VOTE, late):
                self.validator = ValidatorRole(self.ctx, roles, self.state, self.models, self.app)
                self.validator.open = schedule.open(TX_WINDOW, late)
                effects += self.validator.start(self.global_weights)
        elif schedule.open(MINE, late):
            self.miner = MinerRole(self.ctx, roles, self.state)
        self.app.begin_round(roles, self.state, self.miner)
        buffered, self.buffer = self.buffer, []
        for event in buffered:
            effects += self.on_message(event)
        return effects

    def _mine(self, now: float) -> list[Effect]:
        assert self.miner is not None
        head = self.ctx.services.ledger.head()
        block = self.app.propose(ProposeRequest(head.height + 1, now, head))
        if self.ctx.has_fault(FAULT_WITHHOLD_BLOCK):
            return [EmitMetric("withheld_blocks", 1.0, self.round)]
        self.candidates[block.header.proposer] = block  # its own block, trusted
        if self.params.consensus == "pow":
            extra = block.header.extra
            assert isinstance(extra, RoundRecord)
            room = 0.9 * (self.params.select_at - self.params.mine_at)
            self.sealed = block
            delay = (extra.nonce + 1) * self.params.pow_seconds_per_hash
            return [SetTimer(POW_SEND, min(room, delay))]
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
                self.gate.fail("wrong_parent", str(err))
                legal = None
        if legal is None:
            effects.append(EmitMetric("no_block", 1.0, step))
            return effects + self._rejections() + self._collect(())
        newly = self.app.apply(legal).newly_blacklisted
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
        return list(self.gate.new_metrics(self.round))

    def _collect(self, accepted: tuple[AcceptedUpdate, ...]) -> list[Effect]:
        """Gather the accepted updates' weights (own cache, own store, else fetch)."""
        self.pending = accepted
        self.fetches = {}
        if self.stage is not Stage.RESTORING:
            self.stage = Stage.APPLYING
        effects: list[Effect] = []
        for item in accepted:
            ref = item.update.model
            if ref.cid in self.models:
                continue
            weights = self.ctx.blobs.own(ref)
            if weights is not None:
                self.models[ref.cid] = weights
                continue
            source = self.ctx.services.node_of(item.worker)
            if source is None or ref.cid in self.fetches:
                continue
            self.fetches[ref.cid] = (item, 1)
            effects.append(FetchBlob(ref.cid, source))
        if not self.fetches:
            effects += self._finish_apply()
        return effects

    def _aggregate(self, have: list[AcceptedUpdate]) -> np.ndarray | None:
        """The new global model from the accepted updates (in transaction-id order) by
        the configured aggregator; None if the rule cannot aggregate them."""
        node_of = self.ctx.services.node_of
        updates = [
            Update(
                self.models[a.update.model.cid],
                num_samples=a.update.model.num_samples,
                sender=node_of(a.worker) or "",
            )
            for a in have
        ]
        seed = derive_seed(self.setup.seed, "posbfl-aggregate", self.round)
        context = AggregationContext(current=self.global_weights, seed=seed)
        try:
            return np.asarray(self.aggregate(updates, context), dtype=np.float32)
        except AggregationError:
            return None

    def _finish_apply(self) -> list[Effect]:
        stage = self.stage
        have = [
            a
            for a in sorted(self.pending, key=lambda a: a.tx_id)
            if a.update.model.cid in self.models
        ]
        missing = len(self.pending) - len(have)
        effects: list[Effect] = []
        if have:
            weights = self._aggregate(have)
            if weights is None:
                effects.append(EmitMetric("aggregation_failed", 1.0, self.round))
            else:
                self.global_weights = weights
        if missing:
            effects.append(EmitMetric("missing_updates", float(missing), self.round))
        if stage is Stage.RESTORING:
            return effects + self._resume()
        self.stage = Stage.ROUND
        effects.append(ReportModel(self.round, self.global_weights))
        if stage is Stage.APPLYING_LATE:
            effects += self._next_round()
        return effects

    def _next_round(self) -> list[Effect]:
        if self.round >= self.setup.rounds:
            self.stage = Stage.IDLE
            return [Halt()]
        return self._begin_round()
