"""The three nodes of ``nagar-vertical``: party A, party B (labels) and coordinator C.

The exchange is :mod:`.vfl`'s, one message per arrow, so the simulator run computes the
same weights as :func:`~fedledger.protocols.nagar_vertical.vfl.train_vertical` with the
same seeds:

1. A <-> B: DH-PSI (two messages each way); both derive the aligned train/test ids;
2. per step: A -> B ``EncScores``; B -> A ``EncResidual`` and B -> C ``MaskedCipher``;
   A -> C ``MaskedCipher``; C -> A, C -> B ``Opening``; each party then moves;
3. evaluation: A -> B ``EncScores("eval")`` of the test rows; B -> C the masked
   ``[[u + v]]``; C -> B the opening; B scores its test labels and emits ``accuracy``.

B handles the next ``EncScores`` only after its own update (a queue), so both parties
always use the weights of the same step. Everything a node refuses is counted: a sender
that is not the expected peer (``not_the_peer``), a step out of order (``wrong_step``),
a malformed PSI message (``bad_psi``), ciphertext bytes that do not parse under the key
(``bad_cipher``), an array of the wrong shape (``bad_shape``), a second decryption of
the same (party, phase, step) (``repeated_decryption``), repeated PSI (``repeated_psi``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from phe import PaillierPrivateKey

from fedledger.crypto.psi import BlindedSet, PsiError, PsiParty, Reblinded, scalar_from_seed
from fedledger.privacy.he.errors import HeError
from fedledger.privacy.he.rand import SeededRandom
from fedledger.privacy.he.threshold import KeyShare, ThresholdPublicKey
from fedledger.protocols.base import EmitMetric, Halt, MessageReceived, NodeSetup, Send, Start
from fedledger.protocols.kit import REFUSED, KitNode, handles
from fedledger.protocols.nagar_vertical.committee import Collector, holder_ids
from fedledger.protocols.nagar_vertical.data import FeatureSplit, PartyData, is_test_id
from fedledger.protocols.nagar_vertical.hemat import EncArray, KeyHolder, Opened, PaillierContext
from fedledger.protocols.nagar_vertical.messages import (
    EncResidual,
    EncScores,
    MaskedCipher,
    Opening,
    PartialOpening,
    PsiBlinded,
    PsiReblinded,
)
from fedledger.protocols.nagar_vertical.params import NagarVerticalParams
from fedledger.protocols.nagar_vertical.vfl import (
    FeatureParty,
    LabelParty,
    VflParams,
    batches,
)
from fedledger.protocols.nagar_vertical.wire import (
    cipher_bytes,
    cipher_from,
    opened_bytes,
    opened_from,
)
from fedledger.seeding import derive_seed

A_ID, B_ID, C_ID = "party-a", "party-b", "coordinator"
ROLE_A, ROLE_B, ROLE_C = "party_a", "party_b", "coordinator"
DOMAIN = "nagar-vertical"
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
    return VflParams(setup.horizon.length, p.batch_size, p.lr, p.l2, p.test_fraction, setup.seed)


class PartyNode(KitNode[NagarVerticalParams]):
    """PSI and alignment, shared by both parties."""

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

    def _from_peer(self, event: MessageReceived) -> None:
        if event.sender != self.peer:
            name = type(event.message).__name__
            raise self.gate.fail("not_the_peer", f"{name} from {event.sender}")

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
        shape = self.expected_shape(msg.phase, msg.step)
        return self.on_opened(msg.phase, msg.step, self._opened(msg.values, shape))

    @handles(PartialOpening)
    def on_partial(self, event: MessageReceived) -> list:  # type: ignore[type-arg]
        msg = event.message
        assert isinstance(msg, PartialOpening)
        if self.collector is None:
            raise self.gate.fail("not_the_peer", f"PartialOpening from {event.sender}")
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

    def on_start(self, event: Start) -> list:  # type: ignore[type-arg]
        return [Send(self.peer, PsiBlinded(self.psi.blinded().points))]

    @handles(PsiBlinded)
    def on_blinded(self, event: MessageReceived) -> list:  # type: ignore[type-arg]
        self._from_peer(event)
        if self._reblinded:
            raise self.gate.fail("repeated_psi", "a second blinded set")
        msg = event.message
        assert isinstance(msg, PsiBlinded)
        if not msg.points:
            raise self.gate.fail("bad_psi", "an empty blinded set: no id can be aligned")
        try:
            reply = self.psi.reblind(BlindedSet(msg.points))
        except PsiError as exc:
            raise self.gate.fail("bad_psi", str(exc)) from None
        self._reblinded = True
        return [Send(self.peer, PsiReblinded(reply.points)), *self._maybe_align()]

    @handles(PsiReblinded)
    def on_reblinded(self, event: MessageReceived) -> list:  # type: ignore[type-arg]
        self._from_peer(event)
        msg = event.message
        assert isinstance(msg, PsiReblinded)
        if self._reply is not None:
            raise self.gate.fail("repeated_psi", "a second reply")
        if len(msg.points) != len(self.data.ids):
            raise self.gate.fail("bad_psi", f"{len(msg.points)} points for {len(self.data.ids)}")
        self._reply = msg
        return self._maybe_align()

    def _maybe_align(self) -> list:  # type: ignore[type-arg]
        if not self._reblinded or self._reply is None or self.train_ids:
            return []
        try:
            result = self.psi.finish(Reblinded(self._reply.points))
        except PsiError as exc:
            self._reply = None
            raise self.gate.fail("bad_psi", str(exc)) from None
        ids = tuple(sorted(i.decode() for i in result.intersection))  # as vfl.align orders them
        self.test_ids = tuple(i for i in ids if is_test_id(i, self.vp.seed, self.vp.test_fraction))
        test = set(self.test_ids)
        self.train_ids = tuple(i for i in ids if i not in test)
        if not self.train_ids or not self.test_ids:
            raise self.gate.fail("empty_alignment", f"{len(ids)} common ids")
        n_train = len(self.train_ids)
        self.steps = [b for e in range(self.vp.epochs) for b in batches(n_train, self.vp, e)]
        metric = EmitMetric("psi_intersection", float(len(ids)), 0)
        return [metric, *self.aligned()]

    def aligned(self) -> list:  # type: ignore[type-arg]
        return []

    def finish(self, extra: list) -> list:  # type: ignore[type-arg]
        return [*extra, *self.gate.new_metrics(self.vp.epochs), Halt()]


class PartyA(PartyNode):
    """Features only: sends ``[[u]]``, builds its masked gradient from ``[[d]]``."""

    def __init__(self, setup: NodeSetup[NagarVerticalParams], shared: Shared) -> None:
        super().__init__(setup, shared)
        self.party: FeatureParty | None = None
        self.waiting = ""

    def aligned(self) -> list:  # type: ignore[type-arg]
        self.party = FeatureParty("A", self.data.rows(self.train_ids), self.ctx, self.vp)
        return self._scores()

    def _scores(self) -> list:  # type: ignore[type-arg]
        assert self.party is not None
        enc = self.party.encrypted_scores(self.steps[self.step])
        self.waiting = "residual"
        return [Send(B_ID, EncScores("train", self.step, cipher_bytes(enc)))]

    @handles(EncResidual)
    def on_residual(self, event: MessageReceived) -> list:  # type: ignore[type-arg]
        self._from_peer(event)
        msg = event.message
        assert isinstance(msg, EncResidual)
        if self.party is None or self.waiting != "residual" or msg.step != self.step:
            raise self.gate.fail("wrong_step", f"residual of step {msg.step}")
        batch = self.steps[self.step]
        residual = self._cipher(msg.cipher, (len(batch),))
        masked = self.party.masked_gradient(batch, residual)
        self.waiting = "opening"
        return self.request("train", self.step, masked)

    def expected_shape(self, phase: str, step: int) -> tuple[int, ...]:
        if self.party is None or self.waiting != "opening" or (phase, step) != ("train", self.step):
            return super().expected_shape(phase, step)
        return (self.party.x.shape[1],)

    def on_opened(self, phase: str, step: int, opened: Opened) -> list:  # type: ignore[type-arg]
        assert self.party is not None
        self.party.step(opened, len(self.steps[self.step]))
        self.step += 1
        if self.step < len(self.steps):
            return self._scores()
        self.waiting = "done"
        enc = self.ctx.encrypt(self.data.rows(self.test_ids) @ self.party.w)
        return self.finish([Send(B_ID, EncScores("eval", 0, cipher_bytes(enc)))])


class PartyB(PartyNode):
    """Features and labels: answers ``[[u]]`` with ``[[d]]``, scores the test ids at the end."""

    def __init__(self, setup: NodeSetup[NagarVerticalParams], shared: Shared) -> None:
        super().__init__(setup, shared)
        self.party: LabelParty | None = None
        self.queue: list[tuple[str, int, bytes]] = []
        self.scores_seen = 0
        self.eval_seen = False
        self.busy = False
        self._eval_mask: np.ndarray | None = None

    def aligned(self) -> list:  # type: ignore[type-arg]
        y = self.data.labels(self.train_ids)
        self.party = LabelParty("B", self.data.rows(self.train_ids), y, self.ctx, self.vp)
        return self._drain()

    @handles(EncScores)
    def on_scores(self, event: MessageReceived) -> list:  # type: ignore[type-arg]
        self._from_peer(event)
        msg = event.message
        assert isinstance(msg, EncScores)
        if msg.phase == "train" and msg.step == self.scores_seen and msg.step < MAX_STEP:
            self.scores_seen += 1
        elif msg.phase == "eval" and msg.step == 0 and not self.eval_seen and self.scores_seen:
            self.eval_seen = True
        else:
            raise self.gate.fail("wrong_step", f"scores of {msg.phase!r} step {msg.step}")
        self.queue.append((msg.phase, msg.step, msg.cipher))
        return self._drain()

    def _drain(self) -> list:  # type: ignore[type-arg]
        out: list = []  # type: ignore[type-arg]
        while self.queue and not self.busy and self.party is not None:
            phase, step, data = self.queue.pop(0)
            if phase == "train":
                if step >= len(self.steps):
                    self.gate.fail("wrong_step", f"scores of step {step} past the last")
                    continue
                try:
                    enc_u = self._cipher(data, (len(self.steps[step]),))
                except REFUSED:  # counted by _cipher
                    continue
                batch = self.steps[step]
                residual = self.party.residual(batch, enc_u)
                masked = self.party.masked_gradient(batch, residual)
                out += [Send(A_ID, EncResidual(step, cipher_bytes(residual))),
                        *self.request("train", step, masked)]  # fmt: skip
            else:
                try:
                    enc_u = self._cipher(data, (len(self.test_ids),))
                except REFUSED:  # counted by _cipher
                    continue
                total = self.ctx.add_plain(enc_u, self.data.rows(self.test_ids) @ self.party.w)
                masked, self._eval_mask = self.ctx.mask(total)
                out += self.request("eval", 0, masked)
            self.busy = True
        return out

    def expected_shape(self, phase: str, step: int) -> tuple[int, ...]:
        if self.party is not None and self.busy:
            if (phase, step) == ("eval", 0) and self._eval_mask is not None:
                return (len(self.test_ids),)
            if (phase, step) == ("train", self.step) and self._eval_mask is None:
                return (self.party.x.shape[1],)
        return super().expected_shape(phase, step)

    def on_opened(self, phase: str, step: int, opened: Opened) -> list:  # type: ignore[type-arg]
        assert self.party is not None and self.busy
        if phase == "eval" and self._eval_mask is not None:
            scores = self.ctx.unmask(opened, self._eval_mask)
            truth = self.data.labels(self.test_ids)
            acc = float(np.mean(np.where(scores >= 0, 1, -1) == truth))
            self.busy = False
            return self.finish([EmitMetric("accuracy", acc, self.vp.epochs)])
        self.party.step(opened, len(self.steps[self.step]))
        self.step += 1
        self.busy = False
        return self._drain()


class Coordinator(KitNode[NagarVerticalParams]):
    """Hardy et al.'s C: decrypts each masked cipher once and returns it to its sender."""

    def __init__(self, setup: NodeSetup[NagarVerticalParams], shared: Shared) -> None:
        super().__init__(setup)
        assert shared.private_key is not None, "coordinator mode deals a whole key"
        self.key = KeyHolder(shared.private_key)
        self.n = shared.n
        self.opened: set[tuple[str, str, int]] = set()

    @handles(MaskedCipher)
    def on_masked(self, event: MessageReceived) -> list:  # type: ignore[type-arg]
        msg = event.message
        assert isinstance(msg, MaskedCipher)
        if event.sender not in (A_ID, B_ID):
            raise self.gate.fail("not_a_party", f"masked cipher from {event.sender}")
        if msg.phase not in ("train", "eval") or not 0 <= msg.step < MAX_STEP:
            raise self.gate.fail("wrong_step", f"{msg.phase!r} step {msg.step}")
        if msg.phase == "eval" and (event.sender != B_ID or msg.step != 0):
            raise self.gate.fail("wrong_step", f"eval opening for {event.sender}")
        key = (event.sender, msg.phase, msg.step)
        if key in self.opened:
            raise self.gate.fail("repeated_decryption", f"{key}")
        try:
            arr = cipher_from(msg.cipher, self.n)
        except HeError as exc:
            raise self.gate.fail("bad_cipher", str(exc)) from None
        self.opened.add(key)
        opening = self.key.open(arr)
        reply = Opening(msg.phase, msg.step, opened_bytes(opening, self.n))
        out: list = [Send(event.sender, reply)]  # type: ignore[type-arg]
        if msg.phase == "eval":
            epochs = self.setup.horizon.length
            out += [EmitMetric("decryptions", float(self.key.decryptions), epochs),
                    *self.gate.new_metrics(epochs), Halt()]  # fmt: skip
        return out
