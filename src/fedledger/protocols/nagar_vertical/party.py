"""What both ``nagar-vertical`` parties share: the data and key the dealer hands out, the
plan check before any work, PSI and alignment, the epoch ends at which each party signs
its result for the chain, and resuming after the last round on chain (:mod:`.node` has
party A and party B).
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from itertools import accumulate

import numpy as np
from phe import PaillierPrivateKey

from fedledger.crypto.psi import PsiParty, scalar_from_seed
from fedledger.privacy.he.errors import HeError
from fedledger.privacy.he.rand import SeededRandom
from fedledger.privacy.he.threshold import KeyShare, ThresholdPublicKey
from fedledger.protocols.base import Effect, EmitMetric, MessageReceived, NodeSetup, Send, Start
from fedledger.protocols.kit import REFUSED, handles
from fedledger.protocols.kit.gate import Reject
from fedledger.protocols.nagar_vertical import psi_steps
from fedledger.protocols.nagar_vertical.chained import ChainedNode
from fedledger.protocols.nagar_vertical.committee import Collector, holder_ids
from fedledger.protocols.nagar_vertical.data import FeatureSplit, PartyData, is_test_id
from fedledger.protocols.nagar_vertical.hemat import EncArray, Opened, PaillierContext
from fedledger.protocols.nagar_vertical.ledger import NO_ACCURACY, PartyResult, weights_digest
from fedledger.protocols.nagar_vertical.messages import (
    MaskedCipher,
    Opening,
    PartialOpening,
    PsiBlinded,
    PsiReblinded,
)
from fedledger.protocols.nagar_vertical.node_ids import A_ID, B_ID, C_ID, DOMAIN, ROLE_A, ROLE_B
from fedledger.protocols.nagar_vertical.params import NagarVerticalParams
from fedledger.protocols.nagar_vertical.vfl import VflParams, batches
from fedledger.protocols.nagar_vertical.vplan import REPORTERS, vertical_plan, vertical_rules
from fedledger.protocols.nagar_vertical.wire import cipher_bytes, cipher_from, opened_from
from fedledger.seeding import derive_seed

MAX_STEP = 1 << 20


@dataclass(frozen=True)
class Shared:
    """What the simulation's dealer hands out: the data split and the decryption key, whole
    (coordinator mode) or as threshold shares (committee mode)."""

    split: FeatureSplit
    private_key: PaillierPrivateKey | None = None
    committee: tuple[ThresholdPublicKey, tuple[KeyShare, ...]] | None = None

    @property
    def n(self) -> int:
        if self.committee is not None:
            return int(self.committee[0].n)
        assert self.private_key is not None
        return int(self.private_key.public_key.n)


def vfl_params(setup: NodeSetup[NagarVerticalParams]) -> VflParams:
    p = setup.params
    return VflParams(
        setup.horizon.length, p.batch_size, p.lr, p.l2, p.test_fraction, setup.seed, p.intercept
    )


class PartyNode(ChainedNode):
    """The plan check, PSI and alignment, results on chain: what both parties share."""

    def __init__(self, setup: NodeSetup[NagarVerticalParams], shared: Shared) -> None:
        super().__init__(setup)
        self.shared = shared
        self.is_a = setup.node_id == A_ID
        self.peer = B_ID if self.is_a else A_ID
        self.data: PartyData = shared.split.a if self.is_a else shared.split.b
        self.vp = vfl_params(setup)
        key_seed = f"{derive_seed(setup.seed, DOMAIN, 'psi', setup.node_id)}".encode()
        self.psi = PsiParty(self.data.ids, scalar_from_seed(key_seed))
        rng = SeededRandom(derive_seed(setup.seed, DOMAIN, "he", setup.node_id), "ctx")
        self.ctx = PaillierContext(shared.n, setup.params.frac_bits, rng)
        self._reblinded = False
        self._reply: PsiReblinded | None = None
        self.train_ids: tuple[str, ...] = ()
        self.test_ids: tuple[str, ...] = ()
        self.steps: list[np.ndarray] = []
        self.step = 0
        self.collector = (
            None if shared.committee is None else Collector(shared.committee[0], self.gate)
        )
        self.role = ROLE_A if self.is_a else ROLE_B
        own = vertical_plan(setup, int(self.data.x.shape[1]))
        self.init_ledger(own, REPORTERS, vertical_rules)
        self.ends: list[int] = []  # the step count at the end of each epoch
        self.openings = 0  # openings received
        self.reported = 0  # the last round this party signed its result for
        self.finished = False  # its part of the exchange is over
        self.resume_w: np.ndarray | None = None
        self._early: MessageReceived | None = None  # the peer's PSI before the plan

    def _from_peer(self, event: MessageReceived) -> None:
        name = type(event.message).__name__
        if event.sender != self.peer:
            raise self.gate.fail("not_the_peer", f"{name} from {event.sender}")
        self.ledger.require_plan(name)

    def progress(self) -> tuple[object, ...]:
        return (*super().progress(), self.step, self.openings, self._reblinded, self.finished)

    def _cipher(self, data: bytes, shape: tuple[int, ...]) -> EncArray:
        try:
            arr = cipher_from(data, self.shared.n)
        except HeError as exc:
            raise self.gate.fail("bad_cipher", str(exc)) from None
        if arr.shape != shape:
            raise self.gate.fail("bad_shape", f"{arr.shape}; expected {shape}")
        return arr

    def _opened(self, data: bytes, shape: tuple[int, ...]) -> Opened:
        try:
            opened = opened_from(data, self.shared.n)
        except HeError as exc:
            raise self.gate.fail("bad_cipher", str(exc)) from None
        if opened.shape != shape:
            raise self.gate.fail("bad_shape", f"{opened.shape}; expected {shape}")
        return opened

    def request(self, phase: str, step: int, masked: EncArray) -> list:  # type: ignore[type-arg]
        """Send a masked cipher to the coordinator, or to every committee member."""
        msg = MaskedCipher(phase, step, cipher_bytes(masked))
        if self.collector is None:
            return [Send(C_ID, msg)]
        self.collector.request(phase, step, masked)
        return [Send(h, msg) for h in holder_ids(self.collector.public.m)]

    @handles(Opening)
    def on_opening(self, event: MessageReceived) -> list:  # type: ignore[type-arg]
        msg = event.message
        assert isinstance(msg, Opening)
        if self.collector is not None or event.sender != C_ID:
            raise self.gate.fail("not_the_peer", f"Opening from {event.sender}")
        self.ledger.require_plan("Opening")
        shape = self.expected_shape(msg.phase, msg.step)
        return self.on_opened(msg.phase, msg.step, self._opened(msg.values, shape))

    @handles(PartialOpening)
    def on_partial(self, event: MessageReceived) -> list:  # type: ignore[type-arg]
        msg = event.message
        assert isinstance(msg, PartialOpening)
        if self.collector is None:
            raise self.gate.fail("not_the_peer", f"PartialOpening from {event.sender}")
        self.ledger.require_plan("PartialOpening")
        shape = self.expected_shape(msg.phase, msg.step)
        done = self.collector.receive(event.sender, msg)
        if done is None:
            return []
        phase, step, opened = done
        if opened.shape != shape:
            raise self.gate.fail("bad_shape", f"{opened.shape}; expected {shape}")
        return self.on_opened(phase, step, opened)

    def expected_shape(self, phase: str, step: int) -> tuple[int, ...]:
        """The shape of the opening this node waits for; refuses any other (phase, step)."""
        raise self.gate.fail("wrong_step", f"opening of {phase!r} step {step}")

    def on_opened(self, phase: str, step: int, opened: Opened) -> list:  # type: ignore[type-arg]
        return []

    def on_start(self, event: Start) -> list[Effect]:
        out = self.start_ledger(event.time)
        if self.ledger.done:
            return self.halt("every round is on chain")
        return out + self.plan_accepted() if self.ledger.plan is not None else out

    def plan_accepted(self) -> list[Effect]:
        """Start PSI; a blinded set the peer sent before this node held the plan (refused
        then, as ``unknown_plan``: the peer may accept the plan first) is examined now."""
        out: list[Effect] = [Send(self.peer, PsiBlinded(self.psi.blinded().points))]
        early, self._early = self._early, None
        if early is not None:
            with suppress(*REFUSED):  # counted by the check that refused it
                out += self.on_blinded(early)
        return out

    @handles(PsiBlinded)
    def on_blinded(self, event: MessageReceived) -> list:  # type: ignore[type-arg]
        if event.sender == self.peer and self.ledger.plan is None:
            self._early = event  # the last one only
        self._from_peer(event)
        msg = event.message
        assert isinstance(msg, PsiBlinded)
        reply = psi_steps.reblind(self.gate, self.psi, msg, self._reblinded)
        self._reblinded = True
        return [Send(self.peer, reply), *self._maybe_align()]

    @handles(PsiReblinded)
    def on_reblinded(self, event: MessageReceived) -> list:  # type: ignore[type-arg]
        self._from_peer(event)
        msg = event.message
        assert isinstance(msg, PsiReblinded)
        psi_steps.check_reply(self.gate, msg, self._reply, len(self.data.ids))
        self._reply = msg
        return self._maybe_align()

    def _maybe_align(self) -> list:  # type: ignore[type-arg]
        if not self._reblinded or self._reply is None or self.train_ids:
            return []
        try:
            ids = psi_steps.intersection(self.gate, self.psi, self._reply)
        except Reject:
            self._reply = None
            raise
        self.test_ids = tuple(i for i in ids if is_test_id(i, self.vp.seed, self.vp.test_fraction))
        test = set(self.test_ids)
        self.train_ids = tuple(i for i in ids if i not in test)
        if not self.train_ids or not self.test_ids:
            raise self.gate.fail("empty_alignment", f"{len(ids)} common ids")
        n_train = len(self.train_ids)
        per_epoch = [list(batches(n_train, self.vp, e)) for e in range(self.vp.epochs)]
        self.steps = [b for epoch in per_epoch for b in epoch]
        self.ends = list(accumulate(len(epoch) for epoch in per_epoch))
        metric = EmitMetric("psi_intersection", float(len(ids)), 0)
        if self.ledger.round:
            resumed = self._resume(self.ledger.round)
            if resumed:
                return [metric, *self.halt(resumed)]
        return [metric, *self.aligned()]

    def _resume(self, r: int) -> str:
        """Continue after round ``r`` (on chain) with the weights kept at its end; the
        reason it cannot, or ''."""
        kept = self.ledger.kept(f"weights/{r}")
        mine = self.ledger.result(r, self.role)
        if kept is None or mine is None:
            return f"cannot resume after round {r}: its weights were not kept"
        w = np.frombuffer(kept, dtype="<f8").copy()
        if weights_digest(w) != mine.weights:
            return f"cannot resume after round {r}: kept weights differ from the chain's digest"
        self.resume_w = w
        self.step = self.openings = self.ends[r - 1]
        self.reported = r
        return ""

    def aligned(self) -> list:  # type: ignore[type-arg]
        return []

    def after_step(self) -> list[Effect]:
        """Sign this party's result when a step ends an epoch (B's last: after evaluation)."""
        r = self.reported + 1
        if r > len(self.ends) or self.step != self.ends[r - 1]:
            return []
        if r == len(self.ends) and not self.is_a:
            return []
        return self.report(r, NO_ACCURACY)

    def report(self, r: int, accuracy: float) -> list[Effect]:
        assert self.party is not None  # type: ignore[attr-defined]
        w = np.asarray(self.party.w, dtype="<f8")  # type: ignore[attr-defined]
        self.reported = r
        self.ledger.keep(f"weights/{r}", w.tobytes())
        out = self.ledger.report(r, self.step, weights_digest(w), accuracy, self.openings, self.now)
        return out + self.seal() if self.ledger.is_sequencer else out

    def decryptions(self, results: tuple[PartyResult, ...], final: bool) -> int:
        return sum(r.openings for r in results)  # committee mode: each opening took t holders

    def block_stored(self, rec: object) -> list[Effect]:
        return self.halt() if self.finished and self.ledger.done else []
