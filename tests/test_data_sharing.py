"""Differential data sharing: LDP readings, budgets, sealed and Shamir transports, rewards."""

from __future__ import annotations

import math

import numpy as np
import pytest
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, SealedBox

from fedledger.crypto.shamir import ShamirError, Share, reconstruct
from fedledger.errors import ConfigError
from fedledger.protocols.nagar_vertical.sharing import (
    FEATURES,
    PRIME,
    IotDevice,
    SharingPlan,
    Trainer,
    _encode,
    run_sharing,
    seal,
    sensor_streams,
    share_reading,
)


def test_streams_are_seeded_and_plausible() -> None:
    one, off1 = sensor_streams(3, 48, seed=5)
    two, off2 = sensor_streams(3, 48, seed=5)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(off1, off2)
    assert one.shape == (3, 48, 2)
    assert 0 < one[..., 0].mean() < 35 and 20 < one[..., 1].mean() < 100


def test_readings_are_clipped_then_laplace_noised_with_the_range_as_sensitivity() -> None:
    plan = SharingPlan(epsilon_reading=2.0, epsilon_total=math.inf)
    raw = np.tile([100.0, -50.0], (4000, 1))  # far outside both ranges
    device = IotDevice(0, raw, plan, np.random.default_rng(1))
    out = np.array([device.reading(h) for h in range(len(raw))])
    lows = np.array([f.low for f in FEATURES])
    highs = np.array([f.high for f in FEATURES])
    noise = out - np.clip(raw, lows, highs)  # clipped first: centred on the range edge
    scale = (highs - lows) / plan.epsilon_feature
    assert np.all(np.abs(np.median(noise, axis=0)) < 0.1 * scale)
    np.testing.assert_allclose(np.mean(np.abs(noise), axis=0), scale, rtol=0.08)
    assert not np.any(np.isclose(out, raw).all(axis=1))


def test_the_budget_is_basic_composition_and_refusals_are_counted() -> None:
    plan = SharingPlan(epsilon_reading=0.5, epsilon_total=3.0)
    device = IotDevice(0, np.zeros((10, 2)), plan, np.random.default_rng(0))
    shared = [device.reading(h) for h in range(10)]
    assert sum(r is not None for r in shared) == 6
    assert device.refused_budget == 4
    assert device.epsilon_spent == pytest.approx(3.0)
    result = run_sharing(SharingPlan(epsilon_reading=1.0, epsilon_total=5.0), 3, 8, seed=1)
    assert result.shared == 15 and result.refused_budget == 9
    assert all(e <= 5.0 + 1e-9 for e in result.epsilon_spent)


def test_no_single_gateway_sees_anything() -> None:
    plan = SharingPlan(epsilon_reading=math.inf, epsilon_total=math.inf, gateways=3, threshold=2)
    rng = np.random.default_rng(3)
    # gateway 1's share of a fixed reading, many times: uniform over the field whatever the
    # reading (t - 1 = 1 share of a degree-1 polynomial)
    for value in (np.array([0.0, 0.0]), np.array([39.0, 99.0])):
        ys = np.array([share_reading(0, 0, value, plan, rng)[0].ys[0] for _ in range(2000)])
        frac = ys / PRIME
        assert 0.45 < frac.mean() < 0.55 and 0.28 < frac.std() < 0.30
        assert _encode(float(value[0])) not in set(ys.tolist())
    shares = share_reading(7, 1, np.array([21.5, 64.0]), plan, rng)
    with pytest.raises(ShamirError, match="threshold t=2"):
        reconstruct([Share(shares[0].x, shares[0].ys[0])], 2, PRIME)
    trainer = Trainer(plan, PrivateKey.generate())
    trainer.receive_shares([shares[2], shares[0]])  # any two gateways
    np.testing.assert_allclose(trainer.readings[(7, 1)], [21.5, 64.0], atol=2**-16)


def test_sealed_readings_open_only_for_the_trainer() -> None:
    plan = SharingPlan(transport="sealed")
    trainer = Trainer(plan, PrivateKey.generate())
    msg = seal(trainer.key.public_key, 2, 5, np.array([20.0, 50.0]))
    with pytest.raises(CryptoError):
        SealedBox(PrivateKey.generate()).decrypt(msg.ciphertext)
    trainer.receive_sealed(msg)
    np.testing.assert_array_equal(trainer.readings[(2, 5)], [20.0, 50.0])


def test_the_trainer_sees_only_noised_data_and_its_error_falls_with_epsilon() -> None:
    errors = []
    for eps in (0.5, 2.0, 8.0):
        plan = SharingPlan(epsilon_reading=eps, epsilon_total=math.inf, transport="shamir")
        result = run_sharing(plan, devices=6, hours=48, seed=2)
        errors.append(result.rmse)
        assert result.reward == plan.per_work * result.shared == 6 * 48
    assert errors[0][0] > errors[1][0] > errors[2][0]
    assert errors[0][1] > errors[1][1] > errors[2][1]
    # what a gateway held is nothing like the raw stream
    streams, _ = sensor_streams(6, 48, seed=2)
    plan = SharingPlan(epsilon_reading=1.0, epsilon_total=math.inf)
    gw = run_sharing(plan, devices=6, hours=48, seed=2).gateway_views[0]
    raw = {_encode(float(v)) for v in streams.reshape(-1)}
    assert not raw & {y for s in gw for y in s.ys}


def test_bad_plans_are_refused_with_the_allowed_values() -> None:
    with pytest.raises(ConfigError, match="sealed, shamir"):
        SharingPlan(transport="post")
    with pytest.raises(ConfigError, match="1 <= t <= m"):
        SharingPlan(gateways=2, threshold=3)
    with pytest.raises(ConfigError, match="> 0"):
        SharingPlan(epsilon_reading=0.0)
