"""The parties of ``nagar-vertical``: party A and party B (labels); the coordinator C is in
:mod:`.coordinator`, the key holders in :mod:`.committee`.

The exchange is :mod:`.vfl`'s, one message per arrow, so the simulator run computes the
same weights as :func:`~fedledger.protocols.nagar_vertical.vfl.train_vertical` with the
same seeds:

0. the sequencer's plan block; each party checks it against its own params and data
   (:mod:`.chained`, :mod:`.vplan`) and starts only then;
1. A <-> B: DH-PSI (two messages each way); both derive the aligned train/test ids;
2. per step: A -> B ``EncScores``; B -> A ``EncResidual`` and B -> C ``MaskedCipher``;
   A -> C ``MaskedCipher``; C -> A, C -> B ``Opening``; each party then moves;
3. evaluation: A -> B ``EncScores("eval")`` of the test rows; B -> C the masked
   ``[[u + v]]``; C -> B the opening; B scores its test labels and emits ``accuracy``.

At the end of each epoch each party signs its result (the digest of its weights, steps,
openings; B's last one holds the accuracy) for the sequencer's round block, and halts once
the last round's block is on its chain.

B handles the next ``EncScores`` only after its own update (a queue), so both parties
always use the weights of the same step. Everything a node refuses is counted: a sender
that is not the expected peer (``not_the_peer``), a step out of order (``wrong_step``),
a malformed PSI message (``bad_psi``), ciphertext bytes that do not parse under the key
(``bad_cipher``), an array of the wrong shape (``bad_shape``), a second decryption of
the same (party, phase, step) (``repeated_decryption``), repeated PSI (``repeated_psi``).
"""

from __future__ import annotations

import numpy as np

from fedledger.protocols.base import EmitMetric, MessageReceived, NodeSetup, Send
from fedledger.protocols.kit import REFUSED, handles
from fedledger.protocols.nagar_vertical.hemat import Opened
from fedledger.protocols.nagar_vertical.messages import EncResidual, EncScores
from fedledger.protocols.nagar_vertical.node_ids import (  # noqa: F401  (re-exported)
    A_ID,
    B_ID,
    C_ID,
    DOMAIN,
    ROLE_A,
    ROLE_B,
    ROLE_C,
)
from fedledger.protocols.nagar_vertical.params import NagarVerticalParams
from fedledger.protocols.nagar_vertical.party import (  # noqa: F401  (re-exported)
    MAX_STEP,
    PartyNode,
    Shared,
    vfl_params,
)
from fedledger.protocols.nagar_vertical.vfl import FeatureParty, LabelParty
from fedledger.protocols.nagar_vertical.wire import cipher_bytes


class PartyA(PartyNode):
    """Features only: sends ``[[u]]``, builds its masked gradient from ``[[d]]``."""

    def __init__(self, setup: NodeSetup[NagarVerticalParams], shared: Shared) -> None:
        super().__init__(setup, shared)
        self.party: FeatureParty | None = None
        self.waiting = ""

    def aligned(self) -> list:  # type: ignore[type-arg]
        self.party = FeatureParty("A", self.data.rows(self.train_ids), self.ctx, self.vp)
        if self.resume_w is not None:
            self.party.w = self.resume_w
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
        self.openings += 1
        self.party.step(opened, len(self.steps[self.step]))
        self.step += 1
        out = self.after_step()
        if self.step < len(self.steps):
            return out + self._scores()
        self.waiting = "done"
        self.finished = True
        enc = self.ctx.encrypt(self.party.score_rows(self.data.rows(self.test_ids)))
        return [*out, Send(B_ID, EncScores("eval", 0, cipher_bytes(enc)))]


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
        if self.resume_w is not None:
            self.party.w = self.resume_w
            self.scores_seen = self.step
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
                own = self.party.score_rows(self.data.rows(self.test_ids))
                total = self.ctx.add_plain(enc_u, own)
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
        self.openings += 1
        if phase == "eval" and self._eval_mask is not None:
            scores = self.ctx.unmask(opened, self._eval_mask)
            truth = self.data.labels(self.test_ids)
            acc = float(np.mean(np.where(scores >= 0, 1, -1) == truth))
            self.busy = False
            self.finished = True
            return [EmitMetric("accuracy", acc, self.vp.epochs), *self.report(len(self.ends), acc)]
        self.party.step(opened, len(self.steps[self.step]))
        self.step += 1
        self.busy = False
        return self.after_step() + self._drain()
