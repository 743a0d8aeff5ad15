"""The core of a Nagar node: its state, the step schedule and what every role shares.

A run is a sequence of steps (``step_length`` seconds on the network-time grid) of plan,
stats, grad or update (:func:`~fedledger.protocols.nagar.rules.steps_of`). The roles are
layered on this class: :mod:`.applying` (fetch, decrypt and fold a block's vectors),
:mod:`.mining` (verify and forward submissions, build, seal and choose blocks) and
:mod:`.node` (start, the device's submission, timers).
"""

from __future__ import annotations

import numpy as np

from fedledger.ledger.records import Block, Transaction, sign
from fedledger.ledger.verify import Verifier
from fedledger.privacy.he.dealer import SeededDealer
from fedledger.protocols.base import (
    Broadcast,
    Effect,
    Event,
    Halt,
    NodeSetup,
    RunJob,
    SetTimer,
)
from fedledger.protocols.kit.blobs import ModelBlobs
from fedledger.protocols.kit.gate import Gate
from fedledger.protocols.kit.ids import JobId
from fedledger.protocols.kit.node import KitNode
from fedledger.protocols.kit.schedule import JoinAction, Phase, RoundSchedule
from fedledger.protocols.kit.stage import Stage
from fedledger.protocols.nagar.chainstate import ChainState, Included
from fedledger.protocols.nagar.checks import Checks
from fedledger.protocols.nagar.decrypt import Decryption
from fedledger.protocols.nagar.fold import ModelState
from fedledger.protocols.nagar.jobs import train_job
from fedledger.protocols.nagar.messages import (
    GRAD,
    PLAN,
    PLAN_TX,
    UPDATE,
    CandidateMsg,
    StepRecord,
    TxMsg,
)
from fedledger.protocols.nagar.params import NagarParams
from fedledger.protocols.nagar.rules import (
    Step,
    make_plan,
    selected,
    steps_of,
)
from fedledger.protocols.nagar.secure import nagar_dealer
from fedledger.protocols.nagar.traffic import (
    VaultIntake,
    cipher_blob_bytes,
    part_limit,
    parts_per_step,
    plain_blob_bytes,
)
from fedledger.protocols.nagar.vault import Reassembly

MINE, SELECT, END, POW_SEND = "mine", "select", "step-end", "pow-send"
POS_BACKUP = "pos-backup"  # a PoS backup miner's turn (the elected one was silent)
REQUESTER, DEVICE, MINER = "requester", "device", "miner"
#: fault: the node dies halfway through the run (from step len(steps) // 2 + 1 on it
#: emits nothing: no message, block, partial decryption, timer or job)
KILLED_MIDWAY = "killed_midway"


class NagarCore(KitNode[NagarParams]):
    """The node's state, its step schedule and what every role shares."""

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
                setup.meter,
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
        self.initial = init
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
        self.vault = Reassembly()  # consortium mode: sealed blobs being read
        self.intake: VaultIntake | None = None  # consortium mode: a member's part limits
        if p.consortium is not None and self.role == MINER:
            blob = plain_blob_bytes(self.blobs.encode, tuple(init.shape))
            if self.secure is not None:
                pub, layout = self.secure.pub, self.secure.layout
                blob = max(blob, cipher_blob_bytes(int(pub.n), layout, int(init.size)))
            m = len(self.miners)
            self.intake = VaultIntake(parts_per_step(m), part_limit(blob, m))
        self.dead_from = len(self.steps) // 2 + 1 if KILLED_MIDWAY in setup.faults else 0

    def handle(self, event: Event) -> list[Effect]:
        effects = super().handle(event)
        if self.dead_from and self.step is not None and self.step.index >= self.dead_from:
            return []  # killed: it still sees events but acts on none
        return effects

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
        plan, p = self.state.plan, self.params
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
        job = train_job(self.setup.train, p, self.model, self.setup.seed, self.node_id, step)
        return [*effects, RunJob(str(JobId(step.phase, index)), job)]

    def _send_block(self, block: Block) -> Effect:
        others = tuple(n.node_id for n in self.setup.all_nodes if n.node_id != self.node_id)
        assert self.step is not None
        return Broadcast(CandidateMsg(self.step.index, block), to=others)

    def _round_now(self) -> int:
        return self.step.round if self.step is not None else 0

    def _next(self) -> list[Effect]:
        done = self.step.index if self.step is not None else self.state.step
        if done >= len(self.steps):
            self.stage = Stage.IDLE
            return [Halt()]
        return self._begin(done + 1)
