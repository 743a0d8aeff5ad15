"""A Nagar node: requester, device or miner, on one schedule of steps.

A step (``step_length`` seconds on the network-time grid) is one of plan, stats, grad or
update (:func:`~fedledger.protocols.nagar.rules.steps_of`). At its start the requester
sends the signed plan to the miners (plan step); each selected device runs its job
(feature counts, gradient sum, or the local F-SVRG / FedAvg pass), clips and Laplace-
noises what leaves it, stores the vector as a blob and sends a signed submission to its
associated miner. Miners verify and forward submissions to each other; at ``mine_at``
each builds a candidate block (PoW: seals it and releases it after attempts x
seconds-per-hash; PoS: only the elected miner); at ``select_at`` every node validates
the candidates, takes the first sealed (PoW) or the leader's (PoS), appends it and
replays it into its chain state; devices fetch the block's vectors and compute the
global model themselves. On Start a node replays its chain (devices refetch the vectors),
so a restarted node resumes.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from fedledger.consensus.selection import find_nonce, first_sealed
from fedledger.learning.jobs import JobResult, TrainJob
from fedledger.ledger.records import Block, Transaction, record_id, sign
from fedledger.ledger.store import ChainStoreError
from fedledger.ledger.verify import Verifier
from fedledger.privacy.dp.mechanisms import LaplaceMechanism
from fedledger.privacy.he.dealer import SeededDealer
from fedledger.protocols.base import (
    BlobReceived,
    Broadcast,
    Effect,
    EmitMetric,
    Event,
    FetchBlob,
    Halt,
    JobFinished,
    MessageReceived,
    NodeSetup,
    ReportModel,
    RunJob,
    Send,
    SetTimer,
    Start,
    TimerFired,
    TrainResult,
)
from fedledger.protocols.kit.blobs import ModelBlobs
from fedledger.protocols.kit.gate import Gate
from fedledger.protocols.kit.ids import JobId
from fedledger.protocols.kit.node import KitNode, handles
from fedledger.protocols.kit.schedule import JoinAction, Phase, RoundSchedule
from fedledger.protocols.kit.stage import Stage
from fedledger.protocols.nagar.chainstate import ChainState, Included, rebuild, submissions
from fedledger.protocols.nagar.checks import Checks
from fedledger.protocols.nagar.decrypt import Decryption
from fedledger.protocols.nagar.faults import DUPLICATE_SUBMISSION, tamper
from fedledger.protocols.nagar.fold import ModelState
from fedledger.protocols.nagar.messages import (
    GRAD,
    PLAN,
    PLAN_TX,
    STATS,
    SUBMIT_TX,
    UPDATE,
    CandidateMsg,
    PartialMsg,
    PartialRequest,
    StepRecord,
    Submission,
    TxMsg,
)
from fedledger.protocols.nagar.params import NagarParams
from fedledger.protocols.nagar.rules import (
    POW_CONTEXT,
    Step,
    associated_miner,
    make_plan,
    phase_epsilon,
    pos_leader,
    pow_base,
    pow_target,
    rewards_of,
    selected,
    steps_of,
)
from fedledger.protocols.nagar.secure import nagar_dealer
from fedledger.seeding import derive_seed

MINE, SELECT, END, POW_SEND = "mine", "select", "step-end", "pow-send"
REQUESTER, DEVICE, MINER = "requester", "device", "miner"
#: fault: the node dies halfway through the run (from step len(steps) // 2 + 1 on it
#: emits nothing: no message, block, partial decryption, timer or job)
KILLED_MIDWAY = "killed_midway"


class NagarNode(KitNode[NagarParams]):
    unexpected_message = "bad_payload"

    def __init__(self, setup: NodeSetup[NagarParams], dealer: SeededDealer | None = None) -> None:
        svc = setup.services
        super().__init__(setup, Gate(Verifier(svc.directory)))
        p = self.params = setup.params
        self.role = setup.plan.role
        nodes = setup.all_nodes
        self.miners = tuple(sorted(n.node_id for n in nodes if n.role == MINER))
        devices = tuple(sorted(svc.address_of(n.node_id) for n in nodes if n.role == DEVICE))
        requester = next(n.node_id for n in nodes if n.role == REQUESTER)
        miners = tuple(sorted(svc.address_of(m) for m in self.miners))
        init = np.asarray(setup.initial_weights, dtype=np.float32)
        rounds = setup.horizon.length
        self.secure: Decryption | None = None
        self.committee: tuple[str, ...] = ()
        if p.encryption is not None:
            by_addr = sorted(self.miners, key=svc.address_of)
            self.committee = tuple(by_addr[: p.encryption.committee])
            self.secure = Decryption(
                p,
                dealer or nagar_dealer(),
                setup.seed,
                setup.plan.node_id,
                self.committee,
                self.gate,
                int(init.size),
                setup.faults,
            )
        self.own_plan = make_plan(
            p,
            svc.address_of(requester),
            "config",
            init,
            rounds,
            devices,
            miners,
            self.secure.digest if self.secure is not None else b"",
        )
        self.checks = Checks(self.gate, svc.node_of, self.own_plan)
        self.blobs = ModelBlobs(svc.blob_store, tuple(init.shape))
        self.steps = steps_of(p, rounds)
        self.schedule = RoundSchedule(
            p.step_length,
            (
                Phase(MINE, p.mine_at),
                Phase(SELECT, p.select_at, True),
                Phase(END, p.step_length, True),
            ),
        )
        self.address = svc.keys.address
        self.state = ChainState(setup.seed)
        self.model = ModelState(init, p, self.address)
        self.stage = Stage.IDLE
        self.step: Step | None = None
        self.pool: dict[bytes, Transaction] = {}
        self.by_sender: dict[bytes, bytes] = {}
        self.candidates: dict[bytes, Block] = {}
        self.sealed: Block | None = None
        self.job_started = 0.0
        self.vectors: dict[str, np.ndarray] = {}
        self.fetches: dict[str, Included] = {}
        self.to_fold: list[Block] = []
        self.ciphers: dict[str, bytes] = {}
        self.give_up = False
        self.dead_from = len(self.steps) // 2 + 1 if KILLED_MIDWAY in setup.faults else 0

    def handle(self, event: Event) -> list[Effect]:
        effects = super().handle(event)
        if self.dead_from and self.step is not None and self.step.index >= self.dead_from:
            return []  # killed: it still sees events but acts on none
        return effects

    # ------------------------------------------------------------ start / schedule

    def on_start(self, event: Start) -> list[Effect]:
        self.state = rebuild(self.setup.services.ledger, self.setup.seed)
        if self.state.step >= len(self.steps):
            return [Halt("all steps are on the ledger")]
        if self.role != DEVICE or not self.state.blocks:
            return self._resume()
        self.stage = Stage.RESTORING
        effects: list[Effect] = []
        enc = tuple(b.header.extra.step for b in self.state.blocks if self._encrypted(b))
        if enc:
            effects.append(Broadcast(PartialRequest(enc), to=self.committee))
        return effects + self._gather(list(self.state.blocks))

    def _encrypted(self, block: Block) -> bool:
        rec = block.header.extra
        return (
            self.secure is not None
            and isinstance(rec, StepRecord)
            and rec.phase
            in (
                GRAD,
                UPDATE,
            )
        )

    def _resume(self) -> list[Effect]:
        join = self.schedule.join(self.state.step, self.now, len(self.steps))
        self.stage = Stage.IDLE
        if join.action is JoinAction.HALT:
            return [Halt("the network's last step is over")]
        if join.action is JoinAction.WAIT:
            return [SetTimer(END, join.delay)]
        return self._begin(join.round)

    def _begin(self, index: int) -> list[Effect]:
        step = self.step = self.steps[index - 1]
        self.stage = Stage.ROUND
        self.pool, self.by_sender, self.candidates, self.sealed = {}, {}, {}, None
        late = self.schedule.late(index, self.now)
        effects: list[Effect] = list(self.schedule.timers(late))
        if not self.schedule.open(MINE, late):
            return effects
        plan = self.state.plan
        if step.phase == PLAN:
            if self.role == REQUESTER and plan is None:
                tx = Transaction(self.address, self.now, PLAN_TX, self.own_plan)
                signed = sign(tx, self.setup.services.keys)
                effects.append(Broadcast(TxMsg(index, signed), to=self.miners))
            return effects
        if self.role != DEVICE or plan is None:
            return effects
        if self.address not in selected(plan, self.state.rnd_seed, step):
            return effects
        self.job_started = self.now
        return [*effects, RunJob(str(JobId(step.phase, index)), self._job(step))]

    def _job(self, step: Step) -> TrainJob:
        train, p = self.setup.train, self.params
        seed = derive_seed(self.setup.seed, "nagar-job", self.node_id, step.index)
        w = self.model.weights
        if step.phase == STATS:
            settings = dataclasses.replace(train, solver="feature_counts", solver_params={})
            return TrainJob(w, settings, seed, shared=False)
        if step.phase == GRAD:
            settings = dataclasses.replace(train, solver="grad_sum", solver_params={"l2": p.l2})
            return TrainJob(w, settings, seed, tag=f"grad-{step.round}", shared=False)
        if p.optimizer == "fedavg":
            settings = dataclasses.replace(train, epochs=p.local_epochs)
            return TrainJob(w, settings, seed, tag=f"round-{step.round}")
        scaling = self.model.s_diag if p.s_scaling else None
        params = {
            "h": p.step_size,
            "l2": p.l2,
            "local_step": p.local_step,
            "full_grad": tuple(float(v) for v in self.model.full_grad),
            "scaling": None if scaling is None else tuple(float(v) for v in scaling),
        }
        settings = dataclasses.replace(train, solver="fsvrg", solver_params=params)
        return TrainJob(w, settings, seed, tag=f"round-{step.round}")

    # ------------------------------------------------------------ device

    def on_job(self, job_id: JobId | None, result: JobResult, event: JobFinished) -> list[Effect]:
        step, plan = self.step, self.state.plan
        if step is None or plan is None or job_id != JobId(step.phase, step.index):
            return []
        assert isinstance(result, TrainResult)
        vec = np.asarray(result.weights, dtype=np.float64)
        if step.phase == UPDATE:
            vec = vec - self.model.weights
        elif step.phase == GRAD:
            vec = vec / max(1, result.num_samples)  # the mean gradient g_k = G_k / n_k
        eps = phase_epsilon(plan, step.phase)
        if eps > 0:
            mech = LaplaceMechanism(self.params.dp_clip, eps, self.params.dp_norm)
            rng = np.random.default_rng(
                derive_seed(self.setup.seed, "nagar-dp", self.node_id, step.index)
            )
            vec = mech.apply(vec, rng)
        if self.secure is not None and step.phase in (GRAD, UPDATE):
            data = self.secure.encrypt(vec, step.index)
            ref = self.blobs.put(data, result.num_samples)
            self.ciphers[ref.cid] = data
        else:
            out = vec.astype(np.float32)
            ref = self.blobs.store(out, result.num_samples)
            self.vectors[ref.cid] = out
        sub = Submission(
            self.state.plan_id, step.index, step.phase, ref, event.time - self.job_started, eps
        )
        sub = tamper(sub, self.setup.faults)
        keys = self.setup.services.keys
        tx = sign(Transaction(self.address, event.time, SUBMIT_TX, sub), keys)
        miner = self.setup.services.node_of(
            associated_miner(plan, self.state.rnd_seed, step, self.address)
        )
        effects: list[Effect] = [Send(miner or "", TxMsg(step.index, tx))]
        if DUPLICATE_SUBMISSION in self.setup.faults:  # a second, distinct transaction
            again = sign(Transaction(self.address, event.time + 1e-6, SUBMIT_TX, sub), keys)
            effects.append(Send(miner or "", TxMsg(step.index, again)))
        if step.phase in (GRAD, UPDATE):
            effects.append(
                EmitMetric("train_loss", result.loss, step.round, (("phase", step.phase),))
            )
        return effects

    # ------------------------------------------------------------ miner

    @handles(TxMsg)
    def on_tx(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        assert isinstance(msg, TxMsg)
        step = self.step
        if self.role != MINER:
            raise self.gate.fail("wrong_role", f"TxMsg from {event.sender} at a {self.role}")
        if step is None or msg.step != step.index or self.stage is not Stage.ROUND:
            raise self.gate.fail("wrong_step", f"TxMsg of step {msg.step}")
        tx_id = record_id(msg.tx)
        if tx_id in self.pool:
            return []
        node_of = self.setup.services.node_of
        if msg.forwarded and event.sender not in self.miners:
            raise self.gate.fail("wrong_role", f"{event.sender} forwarded but is no miner")
        if not msg.forwarded and node_of(msg.tx.sender) != event.sender:
            raise self.gate.fail("wrong_role", f"{event.sender} relayed another's transaction")
        if step.phase == PLAN:
            self.checks.plan_tx(msg.tx)
        else:
            self.checks.submission(msg.tx, self.state, step, tx_id)
            sender = msg.tx.sender
            if not msg.forwarded and not self.checks.assoc_ok(
                self.state, step, sender, self.address
            ):
                raise self.gate.fail("wrong_role", f"{event.sender} is not associated with me")
            if sender in self.by_sender:
                raise self.gate.fail("duplicate", f"second submission of {event.sender}")
            self.by_sender[sender] = tx_id
        self.pool[tx_id] = msg.tx
        if msg.forwarded or step.phase == PLAN:
            return []
        others = tuple(m for m in self.miners if m != self.node_id)
        return [Broadcast(TxMsg(msg.step, msg.tx, True), to=others)] if others else []

    def _mine(self) -> list[Effect]:
        step = self.step
        assert step is not None
        head = self.setup.services.ledger.head()
        plan = self.state.plan or self.own_plan
        height = head.height + 1
        leader = plan.consensus == "pos" and pos_leader(plan, self.state.stakes, head.hash, height)
        if leader and leader != self.address:
            return []
        txs = tuple(sorted(self.pool.values(), key=record_id)[: plan.block_size])
        plan_id = record_id(txs[0]) if step.phase == PLAN and txs else self.state.plan_id
        if step.phase == PLAN and not txs:
            plan_id = b""
        rec = StepRecord(step.index, step.phase, plan_id, rewards_of(plan, txs, self.address))
        if plan.consensus == "pos":
            block = sign(
                Block.create(head.hash, height, self.address, self.now, txs, rec),
                self.setup.services.keys,
            )
            self.candidates[self.address] = block
            return [self._send_block(block)]
        draft = Block.create(head.hash, height, self.address, self.now, txs, rec)
        target = pow_target(plan, height, self.state.times)
        nonce = find_nonce(POW_CONTEXT, pow_base(draft), target)
        room = 0.9 * (self.params.select_at - self.params.mine_at)
        delay = min(room, (nonce + 1) * self.params.pow_seconds_per_hash)
        sealed = dataclasses.replace(rec, nonce=nonce)
        block = Block.create(head.hash, height, self.address, self.now + delay, txs, sealed)
        self.sealed = sign(block, self.setup.services.keys)
        self.candidates[self.address] = self.sealed
        return [SetTimer(POW_SEND, delay), EmitMetric("hashes", float(nonce + 1), step.round)]

    def _send_block(self, block: Block) -> Effect:
        others = tuple(n.node_id for n in self.setup.all_nodes if n.node_id != self.node_id)
        assert self.step is not None
        return Broadcast(CandidateMsg(self.step.index, block), to=others)

    # ------------------------------------------------------------ every node

    @handles(CandidateMsg)
    def on_candidate(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        assert isinstance(msg, CandidateMsg)
        step = self.step
        if step is None or msg.step != step.index or self.stage is not Stage.ROUND:
            raise self.gate.fail("wrong_step", f"CandidateMsg of step {msg.step}")
        proposer = msg.block.header.proposer
        if self.setup.services.node_of(proposer) != event.sender:
            raise self.gate.fail("wrong_role", f"{event.sender} relayed another miner's block")
        head = self.setup.services.ledger.head()
        self.checks.block(msg.block, head.header, self.state, step)
        known = self.candidates.get(proposer)
        if known is not None and known.hash != msg.block.hash:
            raise self.gate.fail("duplicate", f"miner {event.sender} sent two blocks")
        self.candidates[proposer] = msg.block
        return []

    def on_timer(self, key: str, event: TimerFired) -> list[Effect]:
        if self.step is None:
            if key == END:
                return self._next()
            return []
        if key == MINE and self.role == MINER and self.stage is Stage.ROUND:
            return self._mine()
        if key == POW_SEND and self.sealed is not None:
            block, self.sealed = self.sealed, None
            return [self._send_block(block)]
        if key == SELECT and self.stage is Stage.ROUND:
            return self._select()
        if key == END:
            if not self.stage.gathering:
                return self._next()
            self.stage = Stage.APPLYING_LATE
            if self.secure is not None and self.to_fold and not self.fetches:
                self.give_up = True  # only partial decryptions are missing: go on without
                return self._fold()
        return []

    def _select(self) -> list[Effect]:
        step = self.step
        assert step is not None
        self.sealed = None
        blocks = sorted(self.candidates.values(), key=lambda b: b.hash)
        plan = self.state.plan or self.own_plan
        chosen: Block | None
        if plan.consensus == "pow":
            chosen = first_sealed(blocks, lambda b: b.header.extra.nonce, lambda b: b.hash)
        else:
            chosen = blocks[0] if blocks else None
        effects: list[Effect] = [
            EmitMetric(
                "candidate_blocks", float(len(blocks)), step.round, (("phase", step.phase),)
            ),
            EmitMetric("forks", float(max(0, len(blocks) - 1)), step.round),
        ]
        if chosen is not None:
            try:
                self.setup.services.ledger.append(chosen)
            except ChainStoreError as err:
                self.gate.fail("wrong_parent", str(err))
                chosen = None
        effects += list(self.gate.new_metrics(step.round))
        if chosen is None:
            effects.append(EmitMetric("no_block", 1.0, step.round, (("phase", step.phase),)))
            return effects + self._gather([])
        self.state.apply(chosen)
        effects += self._block_metrics(chosen, step)
        member = self.secure is not None and self.secure.share is not None
        gather = self.role == DEVICE or (member and self._encrypted(chosen))
        return effects + self._gather([chosen] if gather else [])

    def _block_metrics(self, block: Block, step: Step) -> list[Effect]:
        node_of = self.setup.services.node_of
        miner = node_of(block.header.proposer) or "?"
        n_subs = len(submissions(block))
        out: list[Effect] = [
            EmitMetric("block", float(block.height), step.round, (("miner", miner),)),
            EmitMetric("block_updates", float(n_subs), step.round, (("phase", step.phase),)),
            EmitMetric(
                "stake",
                self.state.stakes.get(self.address, 0.0),
                step.round,
                (("node", self.node_id),),
            ),
        ]
        if self.role == DEVICE:
            out.append(
                EmitMetric(
                    "epsilon_spent",
                    self.state.epsilon.get(self.address, 0.0),
                    step.round,
                    (("node", self.node_id),),
                )
            )
        return out

    # ------------------------------------------------------------ applying

    def _gather(self, blocks: list[Block]) -> list[Effect]:
        """Collect the vectors of ``blocks`` (own cache or store, else fetch), then fold."""
        self.to_fold = blocks
        self.fetches = {}
        if self.stage is not Stage.RESTORING:
            self.stage = Stage.APPLYING
        effects: list[Effect] = []
        for block in blocks:
            encrypted = self._encrypted(block)
            for item in submissions(block):
                ref = item.sub.model
                if ref.cid in self.vectors or ref.cid in self.fetches or ref.cid in self.ciphers:
                    continue
                if encrypted:
                    store = self.blobs.store_
                    data = store.get(ref.cid) if store.has(ref.cid) else None
                    if data is not None and hashlib.sha256(data).digest() == ref.sha256:
                        self.ciphers[ref.cid] = data
                        continue
                own = None if encrypted else self.blobs.own(ref)
                if own is not None:
                    self.vectors[ref.cid] = own
                    continue
                source = self.setup.services.node_of(item.sender)
                if source is None:
                    continue
                self.fetches[ref.cid] = item
                effects.append(FetchBlob(ref.cid, source))
        if not self.fetches:
            effects += self._fold()
        return effects

    def on_blob(self, event: BlobReceived) -> list[Effect]:
        item = self.fetches.pop(event.cid, None)
        if item is None:
            return []
        if self.secure is not None and item.sub.phase in (GRAD, UPDATE):
            data = event.data
            if data is None or hashlib.sha256(data).digest() != item.sub.model.sha256:
                self.gate.fail("bad_blob", f"ciphertext {event.cid} missing or not matching")
            else:
                self.ciphers[event.cid] = data
            return self._fold() if not self.fetches else []
        weights = self.blobs.load(event.data, item.sub.model)
        if weights is None:
            self.gate.fail("bad_blob", f"vector {event.cid} missing or not matching its reference")
        else:
            self.vectors[event.cid] = weights
        return self._fold() if not self.fetches else []

    def _fold(self) -> list[Effect]:
        effects: list[Effect] = []
        if self.secure is not None:
            effects, waiting = self._decrypt_blocks()
            if waiting and not self.give_up:
                return effects
            if self.give_up and waiting:
                effects.append(EmitMetric("decryption_failed", 1.0, self._round_now()))
            self.give_up = False
            if self.role != DEVICE:
                self.to_fold = []
        for block in self.to_fold:
            rec = block.header.extra
            assert isinstance(rec, StepRecord)
            if self._encrypted(block):
                assert self.secure is not None
                agg = self.secure.aggs[rec.step]
                total = self.secure.totals.get(rec.step)
                applied = total is not None and self.model.fold_total(rec.phase, agg.items, total)
            else:
                items = [i for i in submissions(block) if i.sub.model.cid in self.vectors]
                vecs = [self.vectors[i.sub.model.cid] for i in items]
                applied = self.model.fold(rec.phase, items, vecs)
            rnd = self.steps[rec.step - 1].round
            if rec.phase == UPDATE:
                if not applied:
                    effects.append(EmitMetric("too_few_updates", 1.0, rnd))
                effects.append(ReportModel(rnd, self.model.weights.astype(np.float32)))
        self.to_fold, stage = [], self.stage
        # keep only what later folds can need: the vectors of the current step
        self.vectors, self.ciphers = {}, {}
        if stage is Stage.RESTORING:
            return [e for e in effects if not isinstance(e, ReportModel)] + self._resume()
        self.stage = Stage.ROUND
        if stage is Stage.APPLYING_LATE:
            effects += self._next()
        return effects

    # ------------------------------------------------------------ encrypted aggregates

    def _round_now(self) -> int:
        return self.step.round if self.step is not None else 0

    def _decrypt_blocks(self) -> tuple[list[Effect], bool]:
        """Aggregate the encrypted blocks in ``to_fold``; a member publishes its partial;
        whether a device still waits for partial decryptions."""
        sec = self.secure
        assert sec is not None
        effects: list[Effect] = []
        waiting = False
        devices = tuple(n.node_id for n in self.setup.all_nodes if n.role == DEVICE)
        for block in self.to_fold:
            if not self._encrypted(block):
                continue
            rec = block.header.extra
            assert isinstance(rec, StepRecord)
            items = submissions(block)
            agg = sec.aggregate(self.state.plan_id, rec.step, rec.phase, items, self.ciphers)
            if sec.share is not None and self.role == MINER:
                blob = sec.decrypt(self.state.plan_id, rec.step, agg, agg.agg_id)
                if blob is not None:
                    effects.append(Broadcast(PartialMsg(rec.step, blob), to=devices))
            decryptable = agg.vec is not None and len(agg.items) >= sec.guard.min_updates
            if self.role == DEVICE and decryptable and sec.total(rec.step) is None:
                waiting = True
        return effects, waiting

    @handles(PartialMsg)
    def on_partial(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        assert isinstance(msg, PartialMsg)
        if self.secure is None or self.role != DEVICE:
            raise self.gate.fail("wrong_role", f"partial decryption sent to a {self.role}")
        if not 1 <= msg.step <= len(self.steps):
            raise self.gate.fail("wrong_step", f"partial of step {msg.step}")
        self.secure.receive(msg.step, event.sender, msg.blob)
        if self.to_fold and not self.fetches and self.stage.gathering:
            return self._fold()
        return []

    @handles(PartialRequest)
    def on_partial_request(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        assert isinstance(msg, PartialRequest)
        if self.secure is None or self.secure.share is None:
            raise self.gate.fail("not_a_key_holder", f"{event.sender} asked {self.node_id}")
        if len(msg.steps) > len(self.steps):
            raise self.gate.fail("bad_payload", f"{len(msg.steps)} steps asked")
        published = self.secure.published
        return [
            Send(event.sender, PartialMsg(s, published[s])) for s in msg.steps if s in published
        ]

    def _next(self) -> list[Effect]:
        done = self.step.index if self.step is not None else self.state.step
        if done >= len(self.steps):
            self.stage = Stage.IDLE
            return [Halt()]
        return self._begin(done + 1)
