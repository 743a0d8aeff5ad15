"""Federated transfer learning after Liu et al. 2020 (secure FTL), linear representations.

Party A (source) holds features ``x_A`` and labels ``y`` for its samples; party B (target)
holds features ``x_B`` of other samples, with a small overlap ``C`` of samples both hold
(feature spaces and sample spaces differ: Nagar's corrected condition S_i != S_j). Each
learns a map to a common ``r``-dimensional space, ``u_A = x_A W_A``, ``u_B = x_B W_B``.
B's samples are scored against A's label-weighted centroid ``w = (1/N_A) sum_i y_i u_A_i``
(Liu et al., eq. 2): ``phi(u_B) = u_B . w``. The loss over the overlap, with the
logistic loss replaced by its second-order Taylor expansion (Liu et al., section 4), is

``L = (1/|C|) sum_c [-y_c phi_c / 2 + phi_c**2 / 8 + (gamma/2) ||u_A_c - u_B_c||**2]
+ (lambda/2)(||W_A||**2 + ||W_B||**2)``.

Its gradients split into terms each party can compute from the other's encrypted terms:

- A -> B, under A's key: ``[[T1]] = [[-y_c w / 2 - gamma u_A_c]]`` (|C| x r) and
  ``[[T2]] = [[w w^T]]``; B computes ``[[dL/dW_B]] = X_BC^T [[T1]] + (X_BC^T u_BC / 4)
  [[T2]] + gamma X_BC^T u_BC`` (the last term in plaintext, freshly encrypted);
- B -> A, under B's key: ``[[S1]] = [[u_BC]]`` and ``[[S2]] = [[u_BC^T u_BC]]``; A
  computes ``[[dL/dw]] = -y^T [[S1]] / 2 + w^T [[S2]] / 4`` and ``[[dL/dW_A]] = (s_A / N_A)
  [[dL/dw]] - gamma X_AC^T [[S1]] + gamma X_AC^T u_AC`` with ``s_A = sum_i y_i x_A_i``;
- each masks its encrypted gradient (uniform in Z_n), the key owner decrypts it, and the
  sender removes its mask: nobody sees the other's features, representations or labels.

Evaluation: B's non-overlap samples, sign(phi), against the party-only baseline (a
scikit-learn logistic regression on B's features, fitted on the overlap's labels).
Linear maps keep the gradients exact; Liu et al. use small neural networks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedledger.errors import ConfigError
from fedledger.protocols.nagar_vertical.data import FeatureSplit
from fedledger.protocols.nagar_vertical.hemat import Array, Context, Decryptor
from fedledger.protocols.nagar_vertical.vfl import Transcript


@dataclass(frozen=True)
class FtlParams:
    """FTL settings (ours: the paper gives none; gamma and r from the checklist)."""

    dim: int = 4
    gamma: float = 0.3
    l2: float = 1e-2
    lr: float = 0.02
    iterations: int = 300
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dim < 1 or self.iterations < 1:
            raise ConfigError("ftl", f"dim={self.dim}, iterations={self.iterations}; >= 1")
        if self.gamma < 0 or self.l2 < 0 or not self.lr > 0:
            raise ConfigError("ftl", "gamma and l2 must be >= 0 and lr > 0")


@dataclass(frozen=True)
class FtlResult:
    w_a: np.ndarray
    w_b: np.ndarray
    accuracy: float
    baseline: float
    overlap: int
    transcript: Transcript


class Source:
    """Party A: features and labels of its samples; ``own`` holds its key, ``peer`` B's."""

    def __init__(self, split: FeatureSplit, common: tuple[str, ...], p: FtlParams,
                 own: Context, peer: Context, key: Decryptor | None = None) -> None:  # fmt: skip
        assert split.a.y is not None
        self.p, self.own, self.peer, self.key = p, own, peer, key
        self.x, self.y = split.a.x, split.a.y.astype(np.float64)
        self.xc, self.yc = split.a.rows(common), split.a.labels(common).astype(np.float64)
        self.s = self.x.T @ self.y / len(self.y)  # s_A / N_A
        rng = np.random.default_rng([p.seed, 1])
        self.w = rng.normal(0, 0.1, size=(self.x.shape[1], p.dim))
        self._mask: np.ndarray | None = None

    def centroid(self) -> np.ndarray:
        return self.w.T @ self.s

    def encrypted_centroid(self) -> Array:
        """``[[w]]`` under A's own context: what B needs to score its samples."""
        return self.own.encrypt(self.centroid())

    def terms(self) -> tuple:  # type: ignore[type-arg]
        w = self.centroid()
        t1 = -0.5 * self.yc[:, None] * w[None, :] - self.p.gamma * (self.xc @ self.w)
        return self.own.encrypt(t1), self.own.encrypt(np.outer(w, w))

    def masked_gradient(self, s1, s2):  # type: ignore[no-untyped-def]
        f, g, ctx = self.peer.frac_bits, self.p.gamma, self.peer
        dw = ctx.add(
            ctx.lin(-0.5 * self.yc[None, :], s1), ctx.lin(0.25 * self.centroid()[None, :], s2)
        )
        pred = ctx.lin(self.s[:, None], dw)  # scale 3f
        align = ctx.lift(ctx.lin(-g * self.xc.T, s1), f)
        total = ctx.add_plain(ctx.add(pred, align), g * self.xc.T @ (self.xc @ self.w))
        masked, self._mask = ctx.mask(total)
        return masked

    def step(self, opened, n_common: int) -> None:  # type: ignore[no-untyped-def]
        assert self._mask is not None
        grad = self.peer.unmask(opened, self._mask) / n_common + self.p.l2 * self.w
        self._mask = None
        self.w = self.w - self.p.lr * grad


class Target:
    """Party B: features only (its labels are the evaluation's)."""

    def __init__(self, split: FeatureSplit, common: tuple[str, ...], p: FtlParams,
                 own: Context, peer: Context, key: Decryptor | None = None) -> None:  # fmt: skip
        self.p, self.own, self.peer, self.key = p, own, peer, key
        self.xc = split.b.rows(common)
        rng = np.random.default_rng([p.seed, 2])
        self.w = rng.normal(0, 0.1, size=(self.xc.shape[1], p.dim))
        self._mask: np.ndarray | None = None

    def terms(self) -> tuple:  # type: ignore[type-arg]
        u = self.xc @ self.w
        return self.own.encrypt(u), self.own.encrypt(u.T @ u)

    def masked_gradient(self, t1, t2):  # type: ignore[no-untyped-def]
        ctx, u = self.peer, self.xc @ self.w
        total = ctx.add(ctx.lin(self.xc.T, t1), ctx.lin(0.25 * self.xc.T @ u, t2))
        total = ctx.add_plain(total, self.p.gamma * self.xc.T @ u)
        masked, self._mask = ctx.mask(total)
        return masked

    def step(self, opened, n_common: int) -> None:  # type: ignore[no-untyped-def]
        assert self._mask is not None
        grad = self.peer.unmask(opened, self._mask) / n_common + self.p.l2 * self.w
        self._mask = None
        self.w = self.w - self.p.lr * grad

    def masked_scores(self, enc_w: Array, x: np.ndarray) -> tuple[Array, np.ndarray]:
        """``[[phi]] + R`` for rows ``x`` (``phi = x W_B . w``) from A's ``[[w]]``, and R."""
        return self.peer.mask(self.peer.lin(x @ self.w, enc_w))


def train_transfer(
    split: FeatureSplit,
    common: tuple[str, ...],
    params: FtlParams,
    contexts: tuple[Context, Context, Context, Context],
    keys: tuple[Decryptor, Decryptor],
    record: bool = True,
) -> FtlResult:
    """Train on the overlap ``common`` (aligned by PSI); ``contexts`` = (A own, A peer, B own,
    B peer); ``keys`` = (A's key holder, B's key holder)."""
    a = Source(split, common, params, contexts[0], contexts[1], keys[0])
    b = Target(split, common, params, contexts[2], contexts[3], keys[1])
    log = Transcript()
    assert a.key is not None and b.key is not None
    for it in range(params.iterations):
        t1, t2 = a.terms()
        s1, s2 = b.terms()
        ga, gb = a.masked_gradient(s1, s2), b.masked_gradient(t1, t2)
        oa, ob = b.key.open(ga), a.key.open(gb)  # each key owner opens the other's masked sum
        a.step(oa, len(common))
        b.step(ob, len(common))
        if record:
            for sender, to, kind, payload in (
                ("A", "B", "enc_terms", t1), ("A", "B", "enc_terms", t2),
                ("B", "A", "enc_terms", s1), ("B", "A", "enc_terms", s2),
                ("A", "B", "masked_gradient", ga), ("B", "A", "masked_gradient", gb),
                ("B", "A", "opened", oa), ("A", "B", "opened", ob),
            ):  # fmt: skip
                log.add(it, sender, to, kind, payload)
    rest = tuple(i for i in split.b.ids if i not in set(common))
    acc = ftl_accuracy(a, b.w, split, rest)
    base = baseline_accuracy(split, common, rest, params.seed)
    return FtlResult(a.w, b.w, acc, base, len(common), log)


def ftl_accuracy(a: Source, w_b: np.ndarray, split: FeatureSplit, ids: tuple[str, ...]) -> float:
    """sign(phi) on B's non-overlap samples (the evaluation holds their labels)."""
    score = split.b.rows(ids) @ w_b @ a.centroid()
    truth = np.array([split.all_labels[i] for i in ids])
    return float(np.mean(np.where(score >= 0, 1, -1) == truth))


def baseline_accuracy(
    split: FeatureSplit, common: tuple[str, ...], ids: tuple[str, ...], seed: int
) -> float:
    """Party-only: logistic regression on B's features, fitted on the overlap's labels."""
    from sklearn.linear_model import LogisticRegression

    y = np.array([split.all_labels[i] for i in common])
    truth = np.array([split.all_labels[i] for i in ids])
    if len(set(y.tolist())) < 2:
        return float(np.mean(truth == y[0]))
    model = LogisticRegression(max_iter=2000, random_state=seed).fit(split.b.rows(common), y)
    return float(np.mean(model.predict(split.b.rows(ids)) == truth))


def ftl_loss(
    w_a: np.ndarray, w_b: np.ndarray, split: FeatureSplit, common: tuple[str, ...], p: FtlParams
) -> float:
    """The Taylor-approximated FTL loss in plaintext (for tests and monitoring)."""
    assert split.a.y is not None
    s = split.a.x.T @ split.a.y / len(split.a.y)
    w = w_a.T @ s
    ua, ub = split.a.rows(common) @ w_a, split.b.rows(common) @ w_b
    y = split.a.labels(common).astype(np.float64)
    phi = ub @ w
    fit = np.mean(-0.5 * y * phi + phi**2 / 8 + p.gamma / 2 * np.sum((ua - ub) ** 2, axis=1))
    return float(fit + p.l2 / 2 * (np.sum(w_a**2) + np.sum(w_b**2)))
