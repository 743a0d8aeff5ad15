"""Byzantine-robust aggregation rules: hand-computed cases, loop-based references,
refusals, and robustness to far outliers."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.errors import ConfigError
from fedledger.learning.aggregate import robust  # noqa: F401  (registers the rules)
from fedledger.learning.aggregate.base import (
    AGGREGATORS,
    AggregationContext,
    AggregationError,
    Update,
)
from fedledger.learning.aggregate.robust_common import pairwise_sq_distances

ROBUST = [
    "krum",
    "multi_krum",
    "bulyan",
    "median",
    "trimmed_mean",
    "centred_clipping",
    "geometric_median",
    "fltrust",
]


def ups(rows: np.ndarray | list[list[float]]) -> list[Update]:
    return [Update(np.asarray(r, dtype=np.float32)) for r in np.asarray(rows, dtype=np.float32)]


def run(name: str, rows, context: AggregationContext | None = None, **params) -> np.ndarray:
    rule = AGGREGATORS.build(name, params)
    out = rule(ups(rows), context or AggregationContext())
    assert out.dtype == np.float32
    assert out.shape == np.asarray(rows).shape[1:]
    return out


# --------------------------------------------------------------- loop references


def ref_sq_dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(sum((float(x) - float(y)) ** 2 for x, y in zip(a, b, strict=True)))


def ref_krum_scores(rows: np.ndarray, f: int) -> list[float]:
    n = len(rows)
    k = max(n - f - 2, 1)
    scores = []
    for i in range(n):
        dists = sorted(ref_sq_dist(rows[i], rows[j]) for j in range(n) if j != i)
        scores.append(sum(dists[:k]) if n > 1 else 0.0)
    return scores


def ref_multi_krum(rows: np.ndarray, f: int, m: int) -> np.ndarray:
    scores = ref_krum_scores(rows, f)
    best = sorted(range(len(rows)), key=lambda i: (scores[i], i))[:m]
    return np.mean(rows[sorted(best)].astype(np.float64), axis=0)


def ref_median(rows: np.ndarray) -> np.ndarray:
    return np.array([statistics.median(map(float, col)) for col in rows.T])


def ref_trimmed(rows: np.ndarray, k: int) -> np.ndarray:
    n = len(rows)
    return np.array([statistics.fmean(sorted(map(float, col))[k : n - k]) for col in rows.T])


def ref_bulyan(rows: np.ndarray, f: int) -> np.ndarray:
    n = len(rows)
    theta, beta = n - 2 * f, n - 4 * f
    remaining = list(range(n))
    chosen = []
    for _ in range(theta):
        scores = ref_krum_scores(rows[remaining], f)
        best = min(range(len(remaining)), key=lambda i: (scores[i], i))
        chosen.append(remaining.pop(best))
    out = []
    for col in rows[sorted(chosen)].T:
        med = statistics.median(map(float, col))
        closest = sorted(map(float, col), key=lambda v: abs(v - med))[:beta]
        out.append(statistics.fmean(closest))
    return np.array(out)


def ref_centred_clip(rows: np.ndarray, centre: np.ndarray, tau: float, iters: int) -> np.ndarray:
    v = centre.astype(np.float64)
    for _ in range(iters):
        total = np.zeros_like(v)
        for x in rows.astype(np.float64):
            diff = x - v
            norm = math.sqrt(float(diff @ diff))
            total += diff * (min(1.0, tau / norm) if norm > 0 else 1.0)
        v = v + total / len(rows)
    return v


def ref_geomedian(rows: np.ndarray, nu: float, max_iter: int, tol: float) -> np.ndarray:
    pts = rows.astype(np.float64)
    v = pts.mean(axis=0)

    def objective(z: np.ndarray) -> float:
        return sum(math.dist(z, p) for p in pts) / len(pts)

    obj = objective(v)
    for _ in range(max_iter):
        betas = [1.0 / max(nu, math.dist(v, p)) for p in pts]
        v = sum(b * p for b, p in zip(betas, pts, strict=True)) / sum(betas)
        prev, obj = obj, objective(v)
        if abs(prev - obj) <= tol * obj:
            break
    return v


def ref_fltrust(rows: np.ndarray, current: np.ndarray, trusted: np.ndarray) -> np.ndarray:
    g0 = trusted.astype(np.float64) - current
    n0 = math.sqrt(float(g0 @ g0))
    total, weight = np.zeros_like(g0), 0.0
    for x in rows.astype(np.float64):
        g = x - current
        ng = math.sqrt(float(g @ g))
        if ng == 0 or n0 == 0:
            continue
        trust = max(0.0, float(g @ g0) / (ng * n0))
        total += trust * g * (n0 / ng)
        weight += trust
    return current + (total / weight if weight > 0 else 0.0)


# --------------------------------------------------------------- hand-computed cases


def test_krum_and_multi_krum_by_hand() -> None:
    rows = [[0, 0], [1, 0], [2, 0], [100, 0], [101, 0]]
    # f=1, 2 neighbours: scores 5, 2, 5, 1 + 98^2, 1 + 99^2
    assert run("krum", rows, f=1).tolist() == [1, 0]
    assert run("multi_krum", rows, f=1).tolist() == [25.75, 0]  # m = n - f = 4
    assert run("multi_krum", rows, f=1, m=3).tolist() == [1, 0]


def test_median_and_trimmed_mean_by_hand() -> None:
    assert run("median", [[1, 5], [2, 6], [10, -1]]).tolist() == [2, 5]
    assert run("median", [[1], [2], [3], [4]]).tolist() == [2.5]
    assert run("trimmed_mean", [[1], [2], [3], [100]], f=1).tolist() == [2.5]
    assert run("trimmed_mean", [[1], [2], [3], [100]], beta=0.25).tolist() == [2.5]
    assert run("trimmed_mean", [[1], [2], [3], [100]], beta=0.2).tolist() == [26.5]  # k = 0


def test_bulyan_by_hand() -> None:
    # Krum picks 2, then 1 (tie with 3, lower index), 3, 0 (tie with 4), 4; beta = 3 values
    # closest to the median 2 are 1, 2, 3.
    rows = [[0], [1], [2], [3], [4], [50], [-50]]
    assert run("bulyan", rows, f=1).tolist() == [2.0]


def test_centred_clipping_by_hand() -> None:
    context = AggregationContext(current=np.zeros(2, np.float32))
    out = run("centred_clipping", [[3, 4], [0, 1]], context, tau=2.0)
    np.testing.assert_allclose(out, [0.6, 1.3], rtol=1e-6)


def test_geometric_median_by_hand() -> None:
    square = [[0, 0], [1, 0], [0, 1], [1, 1]]
    np.testing.assert_allclose(run("geometric_median", square), [0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(run("geometric_median", [[0], [1], [10]]), [1.0], atol=1e-3)


def test_weighted_geometric_median_uses_num_samples() -> None:
    rule = AGGREGATORS.build("geometric_median", {"weighted": True, "tol": 0.0})
    heavy = [Update(np.zeros(1, np.float32), 3), Update(np.full(1, 10, np.float32), 1)]
    np.testing.assert_allclose(rule(heavy, AggregationContext()), [0.0], atol=1e-3)
    with pytest.raises(AggregationError, match="num_samples >= 0"):
        rule([Update(np.zeros(1, np.float32), -1)], AggregationContext())


def test_fltrust_by_hand() -> None:
    context = AggregationContext(
        current=np.zeros(2, np.float32), trusted_update=np.array([1, 0], np.float32)
    )
    out = run("fltrust", [[2, 0], [0, 5], [-1, 0], [1, 1]], context)
    s = 1 / math.sqrt(2)
    np.testing.assert_allclose(out, np.array([1 + s * s, s * s]) / (1 + s), rtol=1e-6)


def test_fltrust_no_trust_returns_current() -> None:
    current = np.array([1.0, 2.0], np.float32)
    context = AggregationContext(current=current, trusted_update=np.array([2, 2], np.float32))
    out = run("fltrust", [[0, 2], [1, 2]], context)  # one opposite, one zero delta
    assert out.tolist() == current.tolist()


def test_fltrust_needs_current_and_trusted() -> None:
    rule = AGGREGATORS.build("fltrust")
    with pytest.raises(AggregationError, match="missing: current, trusted_update"):
        rule(ups([[1.0]]), AggregationContext())
    with pytest.raises(AggregationError, match="missing: trusted_update"):
        rule(ups([[1.0]]), AggregationContext(current=np.zeros(1, np.float32)))


# --------------------------------------------------------------- references on random inputs


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 3), st.integers(0, 4), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_distance_rules_match_references(f: int, extra: int, dim: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 2 * f + 3 + extra
    rows = rng.normal(size=(n, dim)).astype(np.float32)
    scores = ref_krum_scores(rows, f)
    best = min(range(n), key=lambda i: (scores[i], i))
    np.testing.assert_array_equal(run("krum", rows, f=f), rows[best])
    for m in (1, n - f, n):
        expected = ref_multi_krum(rows, f, m)
        np.testing.assert_allclose(run("multi_krum", rows, f=f, m=m), expected, rtol=1e-5)
    if n >= 4 * f + 3:
        np.testing.assert_allclose(run("bulyan", rows, f=f), ref_bulyan(rows, f), rtol=1e-5)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 12), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_coordinate_rules_match_references(n: int, dim: int, seed: int) -> None:
    rows = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    np.testing.assert_allclose(run("median", rows), ref_median(rows), rtol=1e-6, atol=1e-7)
    for k in range((n - 1) // 2 + 1):
        np.testing.assert_allclose(
            run("trimmed_mean", rows, f=k), ref_trimmed(rows, k), rtol=1e-5, atol=1e-6
        )
    beta = 0.3
    expected = ref_trimmed(rows, math.floor(beta * n))
    np.testing.assert_allclose(run("trimmed_mean", rows, beta=beta), expected, rtol=1e-5)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 10), st.integers(1, 6), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_clipping_and_geomedian_match_references(n: int, dim: int, iters: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(n, dim)).astype(np.float32)
    current = rng.normal(size=dim).astype(np.float32)
    context = AggregationContext(current=current)
    tau = float(rng.uniform(0.2, 3.0))
    out = run("centred_clipping", rows, context, tau=tau, iterations=iters)
    np.testing.assert_allclose(out, ref_centred_clip(rows, current, tau, iters), atol=1e-5)
    out = run("geometric_median", rows, nu=1e-6, max_iter=50, tol=1e-9)
    np.testing.assert_allclose(out, ref_geomedian(rows, 1e-6, 50, 1e-9), atol=1e-4)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 10), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_fltrust_matches_reference(n: int, dim: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(n, dim)).astype(np.float32)
    current = rng.normal(size=dim).astype(np.float32)
    trusted = rng.normal(size=dim).astype(np.float32)
    context = AggregationContext(current=current, trusted_update=trusted)
    expected = ref_fltrust(rows, current.astype(np.float64), trusted)
    np.testing.assert_allclose(run("fltrust", rows, context), expected, rtol=1e-5, atol=1e-5)


def test_distances_survive_float32_cancellation() -> None:
    # Weights near 1000 differing by ~1e-2: ||x||^2 in float32 would swamp the distances.
    rng = np.random.default_rng(3)
    rows = (1000 + rng.normal(scale=1e-2, size=(9, 50))).astype(np.float32)
    exact = np.array([[ref_sq_dist(a, b) for b in rows] for a in rows])
    np.testing.assert_allclose(pairwise_sq_distances(rows), exact, rtol=1e-9, atol=1e-12)
    scores = ref_krum_scores(rows, 2)
    assert np.array_equal(run("krum", rows, f=2), rows[int(np.argmin(scores))])


# --------------------------------------------------------------- refusals and parameters


@pytest.mark.parametrize(("name", "n", "f", "needed"), [
    ("krum", 6, 2, 7),
    ("multi_krum", 4, 1, 5),
    ("bulyan", 10, 2, 11),
    ("bulyan", 6, 1, 7),
])  # fmt: skip
def test_refuses_too_few_updates(name: str, n: int, f: int, needed: int) -> None:
    rows = np.zeros((n, 3), np.float32)
    factor = 4 if name == "bulyan" else 2
    pattern = rf"{name} needs n >= {factor}f \+ 3 .* got n={n}, f={f} \(needs n >= {needed}"
    with pytest.raises(AggregationError, match=pattern):
        run(name, rows, f=f)
    run(name, np.zeros((needed, 3), np.float32), f=f)  # enough: accepted


def test_trimmed_mean_refuses_trimming_everything() -> None:
    with pytest.raises(AggregationError, match=r"got n=4, f=2 \(needs n >= 5\)"):
        run("trimmed_mean", np.zeros((4, 2)), f=2)


def test_multi_krum_refuses_m_above_n() -> None:
    with pytest.raises(AggregationError, match="m=9 exceeds"):
        run("multi_krum", np.zeros((5, 2)), f=1, m=9)


@pytest.mark.parametrize(("name", "params", "key"), [
    ("krum", {"f": -1}, "f"),
    ("krum", {"g": 1}, "g"),
    ("trimmed_mean", {"beta": 0.5}, "beta"),
    ("trimmed_mean", {"beta": 0.1, "f": 1}, "not both"),
    ("centred_clipping", {"tau": 0}, "tau"),
    ("centred_clipping", {"centre": "mean"}, "centre"),
    ("geometric_median", {"max_iter": 0}, "max_iter"),
    ("fltrust", {"f": 1}, "f"),
])  # fmt: skip
def test_bad_params_are_config_errors(name: str, params: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        AGGREGATORS.build(name, params, where="aggregator")


def test_centred_clipping_without_current_names_the_fix() -> None:
    with pytest.raises(AggregationError, match="use centre='median'"):
        run("centred_clipping", [[1.0], [2.0]])
    assert run("centred_clipping", [[1.0], [2.0], [3.0]], centre="median", tau=10).tolist() == [2.0]


def test_shapes_must_agree() -> None:
    rule = AGGREGATORS.build("median")
    with pytest.raises(AggregationError, match="different shapes"):
        rule(
            [Update(np.zeros(2, np.float32)), Update(np.zeros(3, np.float32))], AggregationContext()
        )


# --------------------------------------------------------------- robustness


def honest_and_outliers(n: int, f: int, dim: int = 20) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    honest = (1.0 + 0.1 * rng.normal(size=(n - f, dim))).astype(np.float32)
    outliers = np.full((f, dim), 1e6, np.float32)
    return honest, np.concatenate([outliers, honest])


@pytest.mark.parametrize("name", ROBUST)
def test_robust_rules_ignore_far_outliers(name: str) -> None:
    honest, rows = honest_and_outliers(n=19, f=4)
    start = np.ones(rows.shape[1], np.float32)
    context = AggregationContext(current=start, trusted_update=honest[0])
    params = {"f": 4} if name in ("krum", "multi_krum", "bulyan", "trimmed_mean") else {}
    out = run(name, rows, context, **params)
    assert np.abs(out - honest.mean(axis=0)).max() < 0.5, out
    assert np.abs(rows.mean(axis=0) - honest.mean(axis=0)).max() > 1e5  # FedAvg is not


@pytest.mark.parametrize("name", ROBUST)
def test_non_finite_updates_are_dropped(name: str) -> None:
    honest, rows = honest_and_outliers(n=11, f=2)
    rows[0, 3], rows[1, 0] = np.nan, np.inf
    start = np.ones(rows.shape[1], np.float32)
    context = AggregationContext(current=start, trusted_update=honest[0])
    params = {"f": 2} if name in ("krum", "multi_krum", "bulyan", "trimmed_mean") else {}
    out = run(name, rows, context, **params)
    assert np.isfinite(out).all()
    assert np.abs(out - honest.mean(axis=0)).max() < 0.5


def test_all_non_finite_is_an_error() -> None:
    with pytest.raises(AggregationError, match="all 3 updates contain NaN"):
        run("median", np.full((3, 2), np.nan))


def test_registered_names() -> None:
    assert set(ROBUST) <= set(AGGREGATORS.names())
