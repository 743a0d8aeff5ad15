"""DP mechanisms: clipping, noise distributions (Kolmogorov-Smirnov at fixed seeds), order."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from fedledger.privacy.dp.errors import PrivacyError
from fedledger.privacy.dp.mechanisms import (
    GaussianMechanism,
    LaplaceMechanism,
    clip,
    clip_rows,
    gaussian_noise,
    l2_laplace_noise,
    laplace_noise,
    laplace_share,
    vector_norm,
)

P_MIN = 0.01  # a KS p-value below this at the fixed seed means the distribution is wrong


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---------------------------------------------------------------- clipping


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_clip_scales_a_long_vector_to_the_bound_and_keeps_its_direction(norm: str) -> None:
    v = rng(1).normal(0, 10, size=1000).astype(np.float32)
    out = clip(v, 2.5, norm)
    assert out.dtype == np.float32
    assert vector_norm(out, norm) <= 2.5
    assert vector_norm(out, norm) == pytest.approx(2.5, rel=1e-5)
    ratio = out.astype(np.float64) / v
    assert np.allclose(ratio, ratio[0], rtol=1e-5)


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_clip_leaves_a_short_vector_unchanged_as_a_copy(norm: str) -> None:
    v = np.array([0.1, -0.2, 0.3], dtype=np.float32)
    out = clip(v, 10.0, norm)
    assert np.array_equal(out, v)
    out[0] = 5
    assert v[0] == np.float32(0.1)


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float32, st.integers(1, 64), elements=st.floats(-1e6, 1e6, width=32)),
    st.floats(1e-3, 1e3),
    st.sampled_from(["l1", "l2"]),
)
def test_clip_never_exceeds_the_bound(v: np.ndarray, bound: float, norm: str) -> None:
    out = clip(v, bound, norm)
    assert vector_norm(out, norm) <= bound
    if vector_norm(v, norm) <= bound:
        assert np.array_equal(out, v)


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_clip_rows_bounds_each_sample_separately(norm: str) -> None:
    m = np.vstack([np.full(8, 100.0), np.full(8, 0.01), np.zeros(8)])
    out = clip_rows(m, 1.0, norm)
    norms = vector_norm(out, norm, axis=1)
    assert norms[0] == pytest.approx(1.0) and norms[0] <= 1.0
    assert np.array_equal(out[1:], m[1:])


def test_clip_errors_name_the_bad_value() -> None:
    with pytest.raises(PrivacyError, match=r"max_norm must be a finite number > 0, got -1"):
        clip(np.ones(3), -1)
    with pytest.raises(PrivacyError, match=r"norm must be one of l1, l2, got 'l3'"):
        clip(np.ones(3), 1.0, "l3")  # type: ignore[arg-type]
    with pytest.raises(PrivacyError, match=r"1 non-finite"):
        clip(np.array([1.0, np.nan]), 1.0)
    with pytest.raises(PrivacyError, match=r"2-D"):
        clip_rows(np.ones(3), 1.0)


# ---------------------------------------------------------------- noise distributions


def test_gaussian_noise_has_the_asked_scale() -> None:
    sample = gaussian_noise(20_000, 0.7, rng(2))
    assert stats.kstest(sample, "norm", args=(0, 0.7)).pvalue > P_MIN
    assert stats.kstest(sample, "norm", args=(0, 0.8)).pvalue < P_MIN  # the test has power
    assert sample.std() == pytest.approx(0.7, rel=0.02)


def test_laplace_noise_l1_form_is_iid_laplace() -> None:
    sample = laplace_noise((100, 200), 0.3, rng(3)).ravel()
    assert stats.kstest(sample, "laplace", args=(0, 0.3)).pvalue > P_MIN
    assert stats.kstest(sample, "laplace", args=(0, 0.35)).pvalue < P_MIN


def test_l2_laplace_radius_is_gamma_of_the_dimension() -> None:
    d, scale = 50, 0.2
    g = rng(4)
    radii = np.array([np.linalg.norm(l2_laplace_noise(d, scale, g)) for _ in range(3000)])
    assert stats.kstest(radii, "gamma", args=(d, 0, scale)).pvalue > P_MIN
    assert stats.kstest(radii, "gamma", args=(d + 3, 0, scale)).pvalue < P_MIN
    assert radii.mean() == pytest.approx(d * scale, rel=0.02)


def test_l2_laplace_direction_is_uniform_on_the_sphere() -> None:
    # On the unit sphere of R^3 each coordinate of a uniform point is uniform on [-1, 1]
    # (Archimedes' hat-box theorem).
    g = rng(5)
    points = np.array([l2_laplace_noise(3, 1.0, g) for _ in range(4000)])
    units = points / np.linalg.norm(points, axis=1, keepdims=True)
    for axis in range(3):
        assert stats.kstest(units[:, axis], "uniform", args=(-1, 2)).pvalue > P_MIN


def test_laplace_shares_of_k_parties_sum_to_laplace() -> None:
    g = rng(6)
    total = sum(laplace_share(20_000, 0.5, 5, g) for _ in range(5))
    assert stats.kstest(total, "laplace", args=(0, 0.5)).pvalue > P_MIN
    one = laplace_share(20_000, 0.5, 5, rng(7))
    assert stats.kstest(one, "laplace", args=(0, 0.5)).pvalue < P_MIN  # a share alone is not


def test_noise_is_reproducible_from_the_seed() -> None:
    assert np.array_equal(gaussian_noise(10, 1.0, rng(8)), gaussian_noise(10, 1.0, rng(8)))
    assert np.array_equal(l2_laplace_noise(10, 1.0, rng(8)), l2_laplace_noise(10, 1.0, rng(8)))
    assert not np.array_equal(laplace_noise(10, 1.0, rng(8)), laplace_noise(10, 1.0, rng(9)))


def test_noise_errors_name_the_bad_value() -> None:
    with pytest.raises(PrivacyError, match=r"std must be a finite number >= 0, got -0.1"):
        gaussian_noise(3, -0.1, rng())
    with pytest.raises(PrivacyError, match=r"scale must be a finite number >= 0, got inf"):
        laplace_noise(3, math.inf, rng())
    with pytest.raises(PrivacyError, match=r"dim must be an integer >= 1, got 0"):
        l2_laplace_noise(0, 1.0, rng())
    with pytest.raises(PrivacyError, match=r"parties must be an integer >= 1, got 0"):
        laplace_share(3, 1.0, 0, rng())
    with pytest.raises(PrivacyError, match=r"numpy.random.Generator"):
        gaussian_noise(3, 1.0, 42)  # type: ignore[arg-type]


# ---------------------------------------------------------------- mechanisms


def test_gaussian_mechanism_clips_before_adding_noise() -> None:
    v = np.full(5000, 1e4, dtype=np.float32)  # norm ~7e5, far above the bound
    mech = GaussianMechanism(clip_norm=1.0, noise_multiplier=0.5)
    out = mech.apply(v, rng(10))
    noise = gaussian_noise(5000, 0.5, rng(10))
    residual = out.astype(np.float64) - noise
    assert np.allclose(residual, clip(v, 1.0), atol=1e-6)
    assert vector_norm(residual) <= 1.0 + 1e-4
    assert stats.kstest(out - clip(v, 1.0), "norm", args=(0, 0.5)).pvalue > P_MIN


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_laplace_mechanism_clips_before_adding_noise(norm: str) -> None:
    v = rng(11).normal(0, 100, size=400)
    mech = LaplaceMechanism(clip_norm=2.0, epsilon=1.0, norm=norm)  # type: ignore[arg-type]
    out = mech.apply(v, rng(12))
    residual = out - mech.noise(400, rng(12))
    assert np.allclose(residual, clip(v, 2.0, norm))  # type: ignore[arg-type]
    assert vector_norm(residual, norm) <= 2.0 + 1e-9  # type: ignore[arg-type]


def test_laplace_mechanism_scale_is_sensitivity_over_epsilon() -> None:
    assert LaplaceMechanism(1.5, 0.5).scale == pytest.approx(6.0)  # 2C / eps (replace-one)
    assert LaplaceMechanism(1.5, 0.5, sensitivity=1.5).scale == pytest.approx(3.0)
    l1 = LaplaceMechanism(1.0, 2.0, "l1").noise(30_000, rng(13))
    assert stats.kstest(l1, "laplace", args=(0, 1.0)).pvalue > P_MIN
    g = rng(14)
    mech = LaplaceMechanism(1.0, 4.0, "l2")
    radii = [np.linalg.norm(mech.noise(20, g)) for _ in range(2000)]
    assert stats.kstest(radii, "gamma", args=(20, 0, 0.5)).pvalue > P_MIN


def test_infinite_epsilon_means_clipping_only_and_no_draws() -> None:
    v = np.linspace(-3, 3, 101).astype(np.float32)
    for mech in (
        LaplaceMechanism(1.0, math.inf, "l1"),
        LaplaceMechanism(1.0, math.inf, "l2"),
        GaussianMechanism(1.0, 0.0),
    ):
        g = rng(15)
        out = mech.apply(v, g)
        assert np.array_equal(out, clip(v, 1.0, getattr(mech, "norm", "l2")))
        assert g.bit_generator.state == rng(15).bit_generator.state
    within = np.array([0.1, 0.2], dtype=np.float32)
    assert np.array_equal(GaussianMechanism(1.0, 0.0).apply(within, rng()), within)


def test_numpy_scalars_are_accepted_as_parameters() -> None:
    mech = GaussianMechanism(np.float32(1.0), np.float64(0.5))  # type: ignore[arg-type]
    assert mech.std == pytest.approx(0.5)
    assert LaplaceMechanism(np.float32(1.0), np.float32(2.0)).scale == pytest.approx(1.0)  # type: ignore[arg-type]


def test_mechanism_parameters_are_checked() -> None:
    with pytest.raises(PrivacyError, match=r"epsilon must be > 0 \(inf means no noise\), got 0"):
        LaplaceMechanism(1.0, 0)
    with pytest.raises(PrivacyError, match=r"epsilon .* got nan"):
        LaplaceMechanism(1.0, math.nan)
    with pytest.raises(PrivacyError, match=r"clip_norm must be a finite number > 0, got 0"):
        GaussianMechanism(0, 1.0)
    with pytest.raises(PrivacyError, match=r"noise_multiplier must be a finite number >= 0"):
        GaussianMechanism(1.0, -1.0)
    with pytest.raises(PrivacyError, match=r"sensitivity must be a finite number > 0"):
        LaplaceMechanism(1.0, 1.0, sensitivity=0.0)
