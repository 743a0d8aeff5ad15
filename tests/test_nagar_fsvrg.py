"""Federated SVRG (Nagar's Algorithm 1, corrected per Konecny et al. 2016) against a direct
numpy implementation on a small convex problem (L2-regularized softmax regression)."""

from __future__ import annotations

import numpy as np
import pytest

from fedledger.learning.fsvrg import (
    aggregation_scaling,
    feature_counts,
    fsvrg_pass,
    gradient_sum,
    scaling,
)
from fedledger.learning.jobs import TrainSettings
from fedledger.learning.models import mlp
from fedledger.learning.solvers import solver
from fedledger.learning.train import Learner  # noqa: F401  (the learner the routines run in)

D, C, L2, H = 6, 3, 0.05, 0.5


def _softmax_grad(w: np.ndarray, x: np.ndarray, y: int) -> np.ndarray:
    """grad of CE(softmax(W x + b), y) + (L2/2)||w||^2, w = [W.ravel(), b]."""
    W, b = w[: C * D].reshape(C, D), w[C * D :]
    z = W @ x + b
    p = np.exp(z - z.max())
    p /= p.sum()
    p[y] -= 1.0
    return np.concatenate([np.outer(p, x).ravel(), p]) + L2 * w


def _problem(seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for k, n_k in enumerate((7, 12, 5)):
        x = rng.normal(size=(n_k, D))
        x[:, k] = 0.0  # device k never sees feature k: S_k and A are not identity
        if k == 2:
            x[:, 3] = 0.0
        xs.append(x)
        ys.append(rng.integers(0, C, size=n_k))
    return xs, ys


def _reference(xs, ys, w, rounds, seeds):
    """Algorithm 1, written out directly (numpy, float64)."""
    K = len(xs)
    n_ks = [len(x) for x in xs]
    n = sum(n_ks)
    feat = np.concatenate([np.tile(np.arange(D), C), np.full(C, -1)])

    def counts(x):
        nz = (x != 0).sum(axis=0)
        return np.where(feat >= 0, nz[np.maximum(feat, 0)], len(x)).astype(float)

    cnt = [counts(x) for x in xs]
    total = sum(cnt)
    S = []
    for k in range(K):
        s = np.ones_like(total)
        m = cnt[k] > 0
        s[m] = (total[m] / n) / (cnt[k][m] / n_ks[k])
        S.append(s)
    omega = sum((c > 0).astype(float) for c in cnt)
    A = np.where(omega > 0, K / np.maximum(omega, 1), 1.0)
    for r in range(rounds):
        pairs = [(xi, yi) for x, y in zip(xs, ys, strict=True) for xi, yi in zip(x, y, strict=True)]
        grad = sum(_softmax_grad(w, xi, yi) for xi, yi in pairs) / n
        wks = []
        for k in range(K):
            wk = w.copy()
            hk = H / n_ks[k]
            for i in np.random.default_rng(seeds[r][k]).permutation(n_ks[k]):
                wk = wk - hk * (
                    S[k]
                    * (_softmax_grad(wk, xs[k][i], ys[k][i]) - _softmax_grad(w, xs[k][i], ys[k][i]))
                    + grad
                )
            wks.append(wk)
        w = w + A * sum((n_ks[k] / n) * (wks[k] - w) for k in range(K))
    return w


def test_fsvrg_matches_numpy_algorithm_1_step_for_step() -> None:
    xs, ys = _problem()
    module = mlp((1, 1, D), C, [])
    w0 = np.random.default_rng(3).normal(scale=0.1, size=C * D + C)
    seeds = [[11, 12, 13], [21, 22, 23]]
    # ours: statistics, gradient sums and local passes through the library functions
    cnt = [feature_counts(module, x) for x in xs]
    n_ks = [len(x) for x in xs]
    n = sum(n_ks)
    total = np.sum(cnt, axis=0)
    S = [scaling(cnt[k], n_ks[k], total, n) for k in range(3)]
    A = aggregation_scaling(cnt)
    w = w0.copy()
    for r in range(2):
        grad = sum(gradient_sum(module, w, x, y, L2)[0] for x, y in zip(xs, ys, strict=True)) / n
        wks = [
            fsvrg_pass(module, w, grad, S[k], H, L2, xs[k], ys[k], seeds[r][k]) for k in range(3)
        ]
        w = w + A * sum((n_ks[k] / n) * (wks[k] - w) for k in range(3))
        ref = _reference(xs, ys, w0.copy(), r + 1, seeds)
        np.testing.assert_allclose(w, ref, atol=2e-5)
    assert not np.allclose(A, 1.0) and not all(np.allclose(s, 1.0) for s in S)


def test_gradient_sum_matches_per_sample_sum() -> None:
    xs, ys = _problem(1)
    module = mlp((1, 1, D), C, [])
    w = np.random.default_rng(0).normal(size=C * D + C)
    got, _ = gradient_sum(module, w, xs[0], ys[0], L2)
    want = sum(_softmax_grad(w, xi, yi) for xi, yi in zip(xs[0], ys[0], strict=True))
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_scaling_edge_cases() -> None:
    s = scaling(np.array([0.0, 2.0, 4.0]), 4, np.array([3.0, 3.0, 8.0]), 8)
    np.testing.assert_allclose(s, [1.0, (3 / 8) / (2 / 4), 1.0])
    a = aggregation_scaling([np.array([0.0, 1.0, 1.0]), np.array([0.0, 0.0, 2.0])])
    np.testing.assert_allclose(a, [1.0, 2.0, 1.0])


def test_fsvrg_is_a_registered_routine_and_descends() -> None:
    xs, ys = _problem(2)
    x, y = np.concatenate(xs), np.concatenate(ys)
    module = mlp((1, 1, D), C, [])
    w = np.zeros(C * D + C)
    f0 = gradient_sum(module, w, x, y, L2)[1]
    for r in range(3):
        grad = gradient_sum(module, w, x, y, L2)[0] / len(x)
        spec = solver("fsvrg", {"h": 1.0, "l2": L2, "full_grad": grad.tolist()})
        assert spec.routine is not None
        res = spec.routine(module, w.astype(np.float32), x, y, TrainSettings(), r)
        w = res.weights.astype(np.float64)
    assert gradient_sum(module, w, x, y, L2)[1] < f0


def test_fsvrg_rejects_mismatched_shapes() -> None:
    module = mlp((1, 1, D), C, [])
    with pytest.raises(ValueError, match="must match"):
        fsvrg_pass(
            module,
            np.zeros(21),
            np.zeros(5),
            np.ones(21),
            0.1,
            0.0,
            np.ones((2, D)),
            np.zeros(2, int),
            0,
        )
