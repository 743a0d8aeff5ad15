"""Transfer mode's parties, what A and B share (:mod:`.ftl_node` has the two nodes and
the message flow): the dealer's hand-out, the plan check and signed results on chain,
DH-PSI, the peer's buffered ciphers (parsed on arrival, the overlap size checked after
the PSI), and openings from coordinator C or combined from t key holders' partials.
"""

from __future__ import annotations

import numpy as np

from fedledger.crypto.psi import PsiParty, scalar_from_seed
from fedledger.privacy.he.errors import HeError
from fedledger.privacy.he.rand import SeededRandom
from fedledger.protocols.base import EmitMetric, MessageReceived, NodeSetup, Send, Start
from fedledger.protocols.kit import handles
from fedledger.protocols.kit.gate import Reject
from fedledger.protocols.nagar_vertical import psi_steps
from fedledger.protocols.nagar_vertical.chained import ChainedNode
from fedledger.protocols.nagar_vertical.committee import Collector, holder_ids
from fedledger.protocols.nagar_vertical.data import PartyData
from fedledger.protocols.nagar_vertical.ftl import FtlParams
from fedledger.protocols.nagar_vertical.hemat import EncArray, Opened, PaillierContext
from fedledger.protocols.nagar_vertical.ledger import RoundRecord, weights_digest
from fedledger.protocols.nagar_vertical.messages import (
    MaskedCipher,
    Opening,
    PartialOpening,
    PsiBlinded,
    PsiReblinded,
)
from fedledger.protocols.nagar_vertical.mode_plans import (
    TRANSFER_REPORTERS,
    transfer_plan,
    transfer_rules,
)
from fedledger.protocols.nagar_vertical.params import NagarVerticalParams
from fedledger.protocols.nagar_vertical.party import Shared
from fedledger.protocols.nagar_vertical.wire import (
    cipher_bytes,
    cipher_from,
    opened_from,
)
from fedledger.seeding import derive_seed

A_ID, B_ID, C_ID = "party-a", "party-b", "coordinator"
ROLE_SOURCE, ROLE_TARGET, ROLE_FTL_C = "ftl_source", "ftl_target", "ftl_coordinator"
DOMAIN = "nagar-transfer"
Effects = list  # type: ignore[type-arg]


#: the simulation dealer's hand-out (the split, labels at A, and the key whole for C or as
#: the committee's threshold shares): the same record as the vertical mode's
FtlShared = Shared


def ftl_params(setup: NodeSetup[NagarVerticalParams]) -> FtlParams:
    p = setup.params
    return FtlParams(p.dim, p.gamma, p.l2, p.lr, setup.horizon.length, setup.seed)


class FtlParty(ChainedNode):
    """The plan check, PSI, the peer's buffered messages, cipher parsing and the signed
    result of each round (epoch), shared by A and B."""

    def __init__(self, setup: NodeSetup[NagarVerticalParams], shared: FtlShared) -> None:
        super().__init__(setup)
        self.shared = shared
        self.is_a = setup.node_id == A_ID
        self.peer = B_ID if self.is_a else A_ID
        self.data: PartyData = shared.split.a if self.is_a else shared.split.b
        self.fp = ftl_params(setup)
        self.epochs = setup.horizon.length
        key_seed = f"{derive_seed(setup.seed, DOMAIN, 'psi', setup.node_id)}".encode()
        self.psi = PsiParty(self.data.ids, scalar_from_seed(key_seed))
        seed = derive_seed(setup.seed, DOMAIN, "he", setup.node_id)
        bits = setup.params.frac_bits
        self.own = PaillierContext(shared.n, bits, SeededRandom(seed, "own"))
        self.peer_ctx = PaillierContext(shared.n, bits, SeededRandom(seed, "peer"))
        self._reblinded = False
        self._reply: PsiReblinded | None = None
        self.common: tuple[str, ...] = ()
        self.step = 0
        self.inbox: dict[tuple[str, int], tuple[EncArray, ...]] = {}  # (kind, step) -> ciphers
        self.used: set[tuple[str, int]] = set()
        self.role = "source" if self.is_a else "target"
        own = transfer_plan(setup, int(self.data.x.shape[1]))
        self.init_ledger(own, TRANSFER_REPORTERS, transfer_rules)
        self.openings = 0  # openings received (from C, or combined from t holders)
        self.collector = (
            None if shared.committee is None else Collector(shared.committee[0], self.gate)
        )
        self.reported = 0  # the last round this party signed its result for
        self.finished = False  # its part of the exchange is over

    def _from_peer(self, event: MessageReceived) -> None:
        name = type(event.message).__name__
        if event.sender != self.peer:
            raise self.gate.fail("not_the_peer", f"{name} from {event.sender}")
        self.ledger.require_plan(name)

    def progress(self) -> tuple[object, ...]:
        return (*super().progress(), self.step, self.openings, bool(self.common), self.finished)

    def report(self, r: int, w: np.ndarray, accuracy: float) -> list:  # type: ignore[type-arg]
        """Sign this party's result of round (epoch) ``r``: its weights after r steps."""
        if r <= self.reported:  # signed before a restart
            return []
        self.reported = r
        w = np.asarray(w, dtype="<f8")
        self.ledger.keep(f"weights/{r}", w.tobytes())
        out = self.ledger.report(r, r, weights_digest(w), accuracy, self.openings, self.now)
        return out + self.seal() if self.ledger.is_sequencer else out  # B, with a committee

    def resumed_weights(self) -> np.ndarray | None:
        """After a restart: the weights kept at the end of the last round on chain, if
        they match the digest this party signed there (None: start from step 0)."""
        r = self.ledger.round
        kept, mine = self.ledger.kept(f"weights/{r}"), self.ledger.result(r, self.role)
        if not r or kept is None or mine is None:
            return None
        w = np.frombuffer(kept, dtype="<f8").copy()
        if weights_digest(w) != mine.weights:
            return None
        self.reported = r
        return w

    def block_stored(self, rec: RoundRecord) -> list:  # type: ignore[type-arg]
        return self.halt() if self.finished and self.ledger.done else []

    def shapes(self, kind: str) -> tuple[tuple[int, ...], ...]:
        """The peer's cipher shapes of ``kind``; -1 for the overlap size before the PSI."""
        c, r = len(self.common) or -1, self.fp.dim
        return ((c, r), (r, r)) if kind == "terms" else ((r,),)

    def cipher(self, data: bytes, shape: tuple[int, ...]) -> EncArray:
        try:
            arr = cipher_from(data, self.shared.n)
        except HeError as exc:
            raise self.gate.fail("bad_cipher", str(exc)) from None
        if len(arr.shape) != len(shape) or any(
            want not in (-1, got) for got, want in zip(arr.shape, shape, strict=True)
        ):
            raise self.gate.fail("bad_shape", f"{arr.shape}; expected {shape}")
        return arr

    def buffer(self, kind: str, step: int, ciphers: tuple[bytes, ...]) -> None:
        """Parse and keep the peer's message of this or the next step (it may be a step
        ahead, and may arrive before this node's PSI finishes)."""
        last = self.epochs if kind == "centroid" else self.epochs - 1
        key = (kind, step)
        if not self.step <= step <= min(self.step + 1, last) or key in self.inbox:
            raise self.gate.fail("wrong_step", f"{kind} of step {step} at step {self.step}")
        if key in self.used:
            raise self.gate.fail("wrong_step", f"{kind} of step {step}: used already")
        shapes = self.shapes(kind)
        self.inbox[key] = tuple(self.cipher(d, s) for d, s in zip(ciphers, shapes, strict=True))

    def take(self, kinds: tuple[str, ...]) -> list[tuple[EncArray, ...]] | None:
        """This step's buffered ciphers of each kind, or None while one is missing; one
        that arrived before the PSI with the wrong overlap size is dropped (counted)."""
        keys = [(kind, self.step) for kind in kinds]
        if not self.common or any(k not in self.inbox for k in keys):
            return None
        for key in keys:
            for arr, shape in zip(self.inbox[key], self.shapes(key[0]), strict=True):
                if arr.shape != shape:  # counted, not raised: the caller's effects stand
                    del self.inbox[key]
                    self.gate.fail("bad_shape", f"{arr.shape}; expected {shape}")
                    return None
        for key in keys:
            self.used.add(key)
        return [self.inbox.pop(key) for key in keys]

    def request(self, phase: str, step: int, masked: EncArray) -> Effects:
        """A masked cipher to C, or to every key holder of the committee."""
        msg = MaskedCipher(phase, step, cipher_bytes(masked))
        if self.collector is None:
            return [Send(C_ID, msg)]
        self.collector.request(phase, step, masked)
        return [Send(h, msg) for h in holder_ids(self.collector.public.m)]

    def expects(self, phase: str, step: int) -> tuple[int, ...] | None:
        """The shape of the opening this node waits for at (phase, step); None: none."""
        return None

    def on_opened(self, phase: str, opened: Opened) -> Effects:
        return []

    def _expected(self, phase: str, step: int) -> tuple[int, ...]:
        shape = self.expects(phase, step)
        if shape is None:
            raise self.gate.fail("wrong_step", f"opening of {phase!r} step {step}")
        return shape

    def _deliver(self, phase: str, opened: Opened, shape: tuple[int, ...]) -> Effects:
        if opened.shape != shape:
            raise self.gate.fail("bad_shape", f"{opened.shape}; expected {shape}")
        self.openings += 1
        return self.on_opened(phase, opened)

    @handles(Opening)
    def on_opening(self, event: MessageReceived) -> Effects:
        msg = event.message
        assert isinstance(msg, Opening)
        if event.sender != C_ID or self.collector is not None:
            raise self.gate.fail("not_the_peer", f"Opening from {event.sender}")
        shape = self._expected(msg.phase, msg.step)
        try:
            opened = opened_from(msg.values, self.shared.n)
        except HeError as exc:
            raise self.gate.fail("bad_cipher", str(exc)) from None
        return self._deliver(msg.phase, opened, shape)

    @handles(PartialOpening)
    def on_partial(self, event: MessageReceived) -> Effects:
        msg = event.message
        assert isinstance(msg, PartialOpening)
        if self.collector is None:
            raise self.gate.fail("not_the_peer", f"PartialOpening from {event.sender}")
        shape = self._expected(msg.phase, msg.step)
        done = self.collector.receive(event.sender, msg)  # refusals counted by reason
        if done is None:
            return []
        return self._deliver(done[0], done[2], shape)

    def on_start(self, event: Start) -> Effects:
        out = self.start_ledger(event.time)
        if self.ledger.done:
            return self.halt("every round is on chain")
        return out + self.plan_accepted() if self.ledger.plan is not None else out

    def plan_accepted(self) -> Effects:
        return [Send(self.peer, PsiBlinded(self.psi.blinded().points))]

    @handles(PsiBlinded)
    def on_blinded(self, event: MessageReceived) -> Effects:
        self._from_peer(event)
        msg = event.message
        assert isinstance(msg, PsiBlinded)
        reply = psi_steps.reblind(self.gate, self.psi, msg, self._reblinded)
        self._reblinded = True
        return [Send(self.peer, reply), *self._maybe_align()]

    @handles(PsiReblinded)
    def on_reblinded(self, event: MessageReceived) -> Effects:
        self._from_peer(event)
        msg = event.message
        assert isinstance(msg, PsiReblinded)
        psi_steps.check_reply(self.gate, msg, self._reply, len(self.data.ids))
        self._reply = msg
        return self._maybe_align()

    def _maybe_align(self) -> Effects:
        if not self._reblinded or self._reply is None or self.common:
            return []
        try:
            common = psi_steps.intersection(self.gate, self.psi, self._reply)
        except Reject:
            self._reply = None
            raise
        if len(common) < 2:
            raise self.gate.fail("empty_alignment", f"{len(common)} common ids")
        self.common = common
        return [EmitMetric("psi_intersection", float(len(common)), 0), *self.aligned()]

    def aligned(self) -> Effects:
        return []
