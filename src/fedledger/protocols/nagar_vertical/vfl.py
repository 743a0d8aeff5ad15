"""Vertical FL after Hardy et al. 2017: PSI alignment, then Taylor-loss logistic regression.

Party A holds features ``x_A``; party B holds features ``x_B`` and labels ``y`` in
{-1, +1}; the decryptor is Hardy's coordinator C (one key) or a t-of-m committee
(threshold Paillier). The logistic loss ``log(1 + exp(-y w.x))`` is replaced by its
second-order Taylor expansion at 0, ``log 2 - y w.x / 2 + (w.x)**2 / 8``, whose gradient
over a batch ``b`` is ``(1/|b|) sum_i (u_i + v_i - 2 y_i) x_i / 4`` with ``u = x_A w_A``,
``v = x_B w_B``: linear in the encrypted values, so it can be computed under Paillier.

One step (Hardy et al., Algorithm 3, with the 1/4 factor moved after decryption):

1. A -> B: ``[[u]]`` (the batch's partial scores, encrypted under the decryptor's key);
2. B -> A: ``[[d]] = [[u]] + Enc(v - 2y)`` (fresh randomness, so A cannot strip it);
3. A -> C: ``[[X_A^T d]] + [[R_A]]``; B -> C: ``[[X_B^T d]] + [[R_B]]`` (masks uniform in Z_n);
4. C -> A, C -> B: the decrypted masked values; each party removes its mask, divides by
   ``4 |b|``, adds the L2 term and takes a gradient step on its own weights.

With ``intercept`` (our choice; Hardy et al. do not name one) party B, which holds the
labels, appends a constant column of ones to its own block, so the model gets the bias
term scikit-learn's reference fits too; like scikit-learn's, it is not penalised by L2.
It needs nothing new on the wire: B's residual and masked gradient simply carry it.

Neither party ever holds a plaintext of the other's features, scores or the labels; C
sees only uniformly masked values. The batches come from a seeded shuffle of the aligned
(PSI) order that both parties compute from the shared seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from fedledger.crypto.psi import PsiResult, run_psi
from fedledger.errors import ConfigError
from fedledger.protocols.nagar_vertical.data import FeatureSplit, is_test_id
from fedledger.protocols.nagar_vertical.hemat import Array, Context, Decryptor, Opened


@dataclass(frozen=True)
class VflParams:
    """Training settings (the paper gives none: these are ours)."""

    epochs: int = 20
    batch_size: int = 64
    lr: float = 0.5
    l2: float = 1e-3
    test_fraction: float = 0.25
    seed: int = 0
    intercept: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("vfl", f"epochs={self.epochs}, batch_size={self.batch_size}; >= 1")
        if not self.lr > 0 or self.l2 < 0:
            raise ConfigError("vfl", f"lr={self.lr}, l2={self.l2}; allowed: lr > 0, l2 >= 0")
        if not 0 < self.test_fraction < 1:
            raise ConfigError("vfl", f"test_fraction={self.test_fraction}; allowed: (0, 1)")


@dataclass(frozen=True)
class Message:
    """One message of the transcript: who sent what to whom."""

    step: int
    sender: str
    receiver: str
    kind: str
    payload: Array | Opened


@dataclass
class Transcript:
    """Every message of a run, in order (the privacy tests read it)."""

    messages: list[Message] = field(default_factory=list)

    def add(self, step: int, sender: str, to: str, kind: str, payload: Array | Opened) -> None:
        self.messages.append(Message(step, sender, to, kind, payload))

    def received_by(self, who: str) -> list[Message]:
        return [m for m in self.messages if m.receiver == who]

    def bytes_sent(self) -> int:
        return sum(m.payload.size_bytes() for m in self.messages)


class FeatureParty:
    """A party with a block of features for the aligned training rows and its own weights."""

    def __init__(self, name: str, x: np.ndarray, ctx: Context, params: VflParams) -> None:
        self.name = name
        self.x = x
        self.ctx = ctx
        self.params = params
        self.w = np.zeros(x.shape[1])
        self.penalised = np.ones(x.shape[1])  # L2 applies to these coordinates
        self._mask: np.ndarray | None = None

    def scores(self, batch: np.ndarray) -> np.ndarray:
        return self.x[batch] @ self.w

    def score_rows(self, rows: np.ndarray) -> np.ndarray:
        """Scores of rows in this party's raw feature layout (the bias added if it has one)."""
        return linear_scores(rows, self.w)

    def encrypted_scores(self, batch: np.ndarray) -> Array:
        """Step 1 (party A): ``[[u]]``."""
        return self.ctx.encrypt(self.scores(batch))

    def masked_gradient(self, batch: np.ndarray, residual: Array) -> Array:
        """Step 3: ``[[X^T d]] + [[R]]``; the mask is kept for :meth:`step`."""
        grad = self.ctx.lin(self.x[batch].T, residual)
        masked, self._mask = self.ctx.mask(grad)
        return masked

    def step(self, opened: Opened, batch_size: int) -> None:
        """Step 4: unmask, scale, add the L2 term, move."""
        if self._mask is None:
            raise ConfigError(self.name, "an opened gradient arrived before a masked one was sent")
        g = self.ctx.unmask(opened, self._mask) / (4.0 * batch_size)
        g = g + self.params.l2 * self.penalised * self.w
        self._mask = None
        self.w = self.w - self.params.lr * g


class LabelParty(FeatureParty):
    """Party B: features and labels (and, with ``intercept``, the bias as a last column)."""

    def __init__(self, name: str, x: np.ndarray, y: np.ndarray, ctx: Context, p: VflParams) -> None:
        if p.intercept:
            x = np.hstack([x, np.ones((x.shape[0], 1))])
        super().__init__(name, x, ctx, p)
        if p.intercept:
            self.penalised[-1] = 0.0  # scikit-learn does not penalise its intercept either
        self.y = y

    def residual(self, batch: np.ndarray, enc_u: Array) -> Array:
        """Step 2: ``[[u + v - 2y]]``."""
        return self.ctx.add_plain(enc_u, self.scores(batch) - 2.0 * self.y[batch])


def batches(n: int, params: VflParams, epoch: int) -> Iterator[np.ndarray]:
    """The seeded shuffle both parties compute from the shared seed."""
    order = np.random.default_rng([params.seed, epoch]).permutation(n)
    for start in range(0, n, params.batch_size):
        yield order[start : start + params.batch_size]


@dataclass(frozen=True)
class Alignment:
    """The PSI outcome and the common train/test split of the aligned ids."""

    psi_a: PsiResult
    psi_b: PsiResult
    train: tuple[str, ...]
    test: tuple[str, ...]


def align(split: FeatureSplit, params: VflParams) -> Alignment:
    """DH-PSI on the two id sets, then the hash split of the aligned order."""
    ra, rb, _ = run_psi(split.a.ids, split.b.ids, f"psi/{params.seed}".encode())
    if ra.intersection != rb.intersection:
        raise ConfigError("psi", "the two parties disagree on the intersection")
    ids = tuple(sorted(i.decode() for i in ra.intersection))  # by id: independent of the keys
    test = tuple(i for i in ids if is_test_id(i, params.seed, params.test_fraction))
    train = tuple(i for i in ids if i not in set(test))
    return Alignment(ra, rb, train, test)


@dataclass(frozen=True)
class VflResult:
    w_a: np.ndarray
    w_b: np.ndarray
    alignment: Alignment
    accuracy: float
    decryptions: int
    transcript: Transcript


def train_vertical(
    split: FeatureSplit,
    params: VflParams,
    ctx_a: Context,
    ctx_b: Context,
    decryptor: Decryptor,
    record: bool = True,
) -> VflResult:
    """Align by PSI, train, and score on the aligned test ids (the evaluation's view)."""
    al = align(split, params)
    a = FeatureParty("A", split.a.rows(al.train), ctx_a, params)
    b = LabelParty("B", split.b.rows(al.train), split.b.labels(al.train), ctx_b, params)
    log = Transcript()
    step = 0
    for epoch in range(params.epochs):
        for batch in batches(len(al.train), params, epoch):
            enc_u = a.encrypted_scores(batch)
            residual = b.residual(batch, enc_u)
            ga, gb = a.masked_gradient(batch, residual), b.masked_gradient(batch, residual)
            oa, ob = decryptor.open(ga), decryptor.open(gb)
            a.step(oa, len(batch))
            b.step(ob, len(batch))
            if record:
                log.add(step, "A", "B", "enc_scores", enc_u)
                log.add(step, "B", "A", "enc_residual", residual)
                log.add(step, "A", "C", "masked_gradient", ga)
                log.add(step, "B", "C", "masked_gradient", gb)
                log.add(step, "C", "A", "opened", oa)
                log.add(step, "C", "B", "opened", ob)
            step += 1
    acc = accuracy(a.w, b.w, split, al.test)
    return VflResult(a.w, b.w, al, acc, decryptor.decryptions, log)


def linear_scores(rows: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``rows @ w``, where ``w`` may carry one more entry than ``rows`` has columns: the bias."""
    cols = rows.shape[1]
    if len(w) == cols:
        return rows @ w
    if len(w) == cols + 1:
        return rows @ w[:cols] + w[cols]
    raise ConfigError("vfl", f"{len(w)} weights for {cols} features; allowed {cols} or {cols + 1}")


def accuracy(w_a: np.ndarray, w_b: np.ndarray, split: FeatureSplit, ids: tuple[str, ...]) -> float:
    """Test accuracy of sign(u + v) (computed by the evaluation, outside the protocol)."""
    if not ids:
        return float("nan")
    score = linear_scores(split.a.rows(ids), w_a) + linear_scores(split.b.rows(ids), w_b)
    truth = np.array([split.all_labels[i] for i in ids])
    return float(np.mean(np.where(score >= 0, 1, -1) == truth))


def centralized_accuracy(split: FeatureSplit, al: Alignment, seed: int) -> float:
    """scikit-learn's LogisticRegression on the pooled aligned training rows."""
    from sklearn.linear_model import LogisticRegression

    def pooled(ids: tuple[str, ...]) -> np.ndarray:
        return np.hstack([split.a.rows(ids), split.b.rows(ids)])

    model = LogisticRegression(max_iter=2000, random_state=seed)
    model.fit(pooled(al.train), np.array([split.all_labels[i] for i in al.train]))
    truth = np.array([split.all_labels[i] for i in al.test])
    return float(np.mean(model.predict(pooled(al.test)) == truth))
