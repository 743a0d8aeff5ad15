"""Transfer mode of ``nagar-vertical``: :mod:`.ftl`'s exchange as three simulator nodes.

Source A (features and labels), target B (other features, no labels) and coordinator C
(the one Paillier key, as in vertical mode). One message per arrow of
:func:`~fedledger.protocols.nagar_vertical.ftl.train_transfer`, so the run computes the
same weights as the library with the same seed and key:

1. A <-> B: DH-PSI (two messages each way); the overlap is the sorted intersection;
2. step k (k = 0..epochs-1, one full-batch step over the overlap each): A -> B
   ``FtlCentroid(k)`` (``[[w]]``) and ``FtlTerms(k)`` (``[[T1]]``, ``[[T2]]``); B -> A
   ``FtlTerms(k)`` (``[[S1]]``, ``[[S2]]``); A -> C and B -> C ``MaskedCipher("train", k)``;
   B -> C ``MaskedCipher("eval", k)`` (its non-overlap scores ``[[x W_B w]] + R``); C -> each
   its ``Opening``; each party steps, B emits ``accuracy`` and ``baseline_accuracy`` at k;
3. after the last step A sends ``FtlCentroid(epochs)`` and B scores the final model.

Each party buffers the peer's messages of its next step (the peer may be one step ahead)
and refuses, counted by reason: a sender that is not the peer (``not_the_peer``), a step
out of order or repeated (``wrong_step``), bad PSI (``bad_psi``, ``repeated_psi``,
``empty_alignment``), ciphertexts that do not parse under the key (``bad_cipher``), an
array of the wrong shape (``bad_shape``). C (:mod:`.ftl_coordinator`) opens each (party,
phase, step) once (``repeated_decryption``) and serves only A and B (``not_a_party``).

The plan is on chain (:mod:`.chained`, :mod:`.mode_plans`): C seals it in block 1 and A
and B start the PSI only once they accept it (earlier work: ``unknown_plan``); each epoch
r ends in a block with A's and B's signed results (steps r, their weights' digest, B's
accuracy after r steps); a party halts once the last epoch is on chain.
"""

from __future__ import annotations

import numpy as np

from fedledger.protocols.base import EmitMetric, MessageReceived, NodeSetup, Send
from fedledger.protocols.kit import handles
from fedledger.protocols.nagar_vertical.ftl import Source, Target, baseline_accuracy
from fedledger.protocols.nagar_vertical.ftl_party import (  # noqa: F401  (re-exported)
    A_ID,
    B_ID,
    C_ID,
    DOMAIN,
    ROLE_FTL_C,
    ROLE_SOURCE,
    ROLE_TARGET,
    Effects,
    FtlParty,
    FtlShared,
)
from fedledger.protocols.nagar_vertical.hemat import Opened
from fedledger.protocols.nagar_vertical.ledger import NO_ACCURACY
from fedledger.protocols.nagar_vertical.mode_messages import FtlCentroid, FtlTerms
from fedledger.protocols.nagar_vertical.params import NagarVerticalParams
from fedledger.protocols.nagar_vertical.wire import cipher_bytes


class SourceNode(FtlParty):
    """Party A: sends ``[[w]]`` and its terms, builds its masked gradient from B's terms."""

    def __init__(self, setup: NodeSetup[NagarVerticalParams], shared: FtlShared) -> None:
        super().__init__(setup, shared)
        self.model: Source | None = None
        self.waiting = ""

    def aligned(self) -> Effects:
        self.model = Source(self.shared.split, self.common, self.fp, self.own, self.peer_ctx)
        w = self.resumed_weights()
        if w is not None:  # a restart: continue after the last round on chain
            self.model.w, self.step = w.reshape(self.model.w.shape), self.ledger.round
        return self._begin()

    def _begin(self) -> Effects:
        assert self.model is not None
        k = self.step
        out: Effects = [Send(B_ID, FtlCentroid(k, cipher_bytes(self.model.encrypted_centroid())))]
        if k == self.epochs:
            self.waiting = "done"
            self.finished = True
            return out + self.block_stored(self.ledger.records[self.ledger.round])
        t1, t2 = self.model.terms()
        out.append(Send(B_ID, FtlTerms(k, cipher_bytes(t1), cipher_bytes(t2))))
        self.waiting = "terms"
        return out + self._try()

    def _try(self) -> Effects:
        if self.model is None or self.waiting != "terms":
            return []
        got = self.take(("terms",))
        if got is None:
            return []
        masked = self.model.masked_gradient(*got[0])
        self.waiting = "opening"
        return self.request("train", self.step, masked)

    @handles(FtlTerms)
    def on_terms(self, event: MessageReceived) -> Effects:
        self._from_peer(event)
        msg = event.message
        assert isinstance(msg, FtlTerms)
        self.buffer("terms", msg.step, (msg.first, msg.second))
        return self._try()

    def expects(self, phase: str, step: int) -> tuple[int, ...] | None:
        if self.model is None or self.waiting != "opening" or (phase, step) != (
            "train", self.step
        ):  # fmt: skip
            return None
        return tuple(self.model.w.shape)

    def on_opened(self, phase: str, opened: Opened) -> Effects:
        assert self.model is not None
        self.model.step(opened, len(self.common))
        self.step += 1
        return self.report(self.step, self.model.w, NO_ACCURACY) + self._begin()


class TargetNode(FtlParty):
    """Party B: sends its terms, scores its non-overlap samples with A's ``[[w]]``."""

    def __init__(self, setup: NodeSetup[NagarVerticalParams], shared: FtlShared) -> None:
        super().__init__(setup, shared)
        self.model: Target | None = None
        self.waiting: set[str] = set()
        self.rest: tuple[str, ...] = ()
        self.baseline = 0.0
        self._eval_mask: np.ndarray | None = None
        self._w_at_step: np.ndarray | None = None
        self.accuracy: list[float] = []

    def aligned(self) -> Effects:
        split = self.shared.split
        self.model = Target(split, self.common, self.fp, self.own, self.peer_ctx)
        common = set(self.common)
        self.rest = tuple(i for i in split.b.ids if i not in common)
        # the evaluation's party-only baseline (B fitted as if it had the overlap's labels)
        self.baseline = baseline_accuracy(split, self.common, self.rest, self.fp.seed)
        w = self.resumed_weights()
        if w is not None:  # a restart: continue after the last round on chain
            self.model.w, self.step = w.reshape(self.model.w.shape), self.ledger.round
        return self._begin()

    def _begin(self) -> Effects:
        assert self.model is not None
        out: Effects = []
        if self.step < self.epochs:
            s1, s2 = self.model.terms()
            out.append(Send(A_ID, FtlTerms(self.step, cipher_bytes(s1), cipher_bytes(s2))))
        return out + self._try()

    def _try(self) -> Effects:
        if self.model is None or self.waiting:
            return []
        k = self.step
        got = self.take(("centroid", "terms") if k < self.epochs else ("centroid",))
        if got is None:
            return []
        self._w_at_step = self.model.w.copy()  # what round k's result will name
        masked, self._eval_mask = self.model.masked_scores(got[0][0], self.data.rows(self.rest))
        out = self.request("eval", k, masked)
        self.waiting = {"eval"}
        if k < self.epochs:
            out += self.request("train", k, self.model.masked_gradient(*got[1]))
            self.waiting.add("train")
        return out

    @handles(FtlTerms, FtlCentroid)
    def on_peer(self, event: MessageReceived) -> Effects:
        self._from_peer(event)
        msg = event.message
        if isinstance(msg, FtlTerms):
            self.buffer("terms", msg.step, (msg.first, msg.second))
        else:
            assert isinstance(msg, FtlCentroid)
            self.buffer("centroid", msg.step, (msg.cipher,))
        return self._try()

    def expects(self, phase: str, step: int) -> tuple[int, ...] | None:
        if self.model is None or phase not in self.waiting or step != self.step:
            return None
        return (len(self.rest),) if phase == "eval" else tuple(self.model.w.shape)

    def on_opened(self, phase: str, opened: Opened) -> Effects:
        assert self.model is not None
        out: Effects = []
        if phase == "eval":
            assert self._eval_mask is not None
            scores = self.peer_ctx.unmask(opened, self._eval_mask)
            truth = np.array([self.shared.split.all_labels[i] for i in self.rest])
            acc = float(np.mean(np.where(scores >= 0, 1, -1) == truth))
            self.accuracy.append(acc)
            out += [EmitMetric("accuracy", acc, self.step),
                    EmitMetric("baseline_accuracy", self.baseline, self.step)]  # fmt: skip
            if self.step:  # round k ends when B has scored the model after k steps
                assert self._w_at_step is not None
                out += self.report(self.step, self._w_at_step, acc)
        else:
            self.model.step(opened, len(self.common))
        self.waiting.discard(phase)
        if self.waiting:
            return out
        if self.step == self.epochs:
            self.finished = True
            return out + self.block_stored(self.ledger.records[self.ledger.round])
        self.step += 1
        return out + self._begin()
