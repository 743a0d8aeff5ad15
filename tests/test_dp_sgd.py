"""DP-SGD: per-sample gradients, clipping that really bounds a sample, noise, accuracy."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import stats
from torch.nn import functional as F

from fedledger.learning.data import load_digits_source, prepare_federated_data
from fedledger.learning.train import Learner
from fedledger.learning.weights import load_flat
from fedledger.privacy.dp.accountants import epsilon_for, make_accountant
from fedledger.privacy.dp.dpsgd import (
    DPSGDSettings,
    account,
    clipped_gradient_sum,
    dp_sgd_schedule,
    noise_multiplier_for_run,
    per_sample_gradients,
    train_dp_sgd,
)
from fedledger.privacy.dp.errors import PrivacyError

DELTA = 1e-5


@pytest.fixture(scope="module")
def digits():
    data = prepare_federated_data(load_digits_source(), 1, "iid", val_fraction=0.0, seed=0)
    return data.nodes[0].train, data.test


@pytest.fixture()
def learner(digits) -> Learner:
    train, _ = digits
    return Learner("mlp", {"hidden": [32]}, train.input_shape, 10)


def test_per_sample_gradients_match_one_backward_per_sample(learner: Learner, digits) -> None:
    train, _ = digits
    load_flat(learner.module, learner.init_weights(0))
    x = torch.from_numpy(train.x[:5])
    y = torch.from_numpy(train.y[:5])
    grads, losses = per_sample_gradients(learner.module, x, y)
    assert grads.shape == (5, sum(p.numel() for p in learner.module.parameters()))
    for i in range(5):
        learner.module.zero_grad()
        loss = F.cross_entropy(learner.module(x[i : i + 1]), y[i : i + 1])
        loss.backward()
        expected = torch.cat([p.grad.reshape(-1) for p in learner.module.parameters()])
        assert torch.allclose(grads[i], expected, atol=1e-6)
        assert losses[i].item() == pytest.approx(loss.item(), rel=1e-5)


def crafted_batch(train) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch of 16 digits and the same batch plus one outlier with a huge gradient."""
    x = torch.from_numpy(train.x[:16])
    y = torch.from_numpy(train.y[:16])
    outlier = torch.full((1, *x.shape[1:]), 500.0)  # saturates the logits: huge gradient
    wrong = torch.tensor([(int(y[0]) + 1) % 10])
    return x, y, torch.cat([x, outlier]), torch.cat([y, wrong])


def test_each_sample_contributes_at_most_the_clip_norm(learner: Learner, digits) -> None:
    train, _ = digits
    load_flat(learner.module, learner.init_weights(1))
    x, y, x2, y2 = crafted_batch(train)
    raw, _ = per_sample_gradients(learner.module, x2, y2)
    assert raw[-1].norm() > 100  # the outlier's unclipped gradient is far above the bound
    bound = 0.5
    base, _ = clipped_gradient_sum(learner.module, x, y, bound)
    with_outlier, _ = clipped_gradient_sum(learner.module, x2, y2, bound)
    assert float((with_outlier - base).norm()) <= bound
    assert float((with_outlier - base).norm()) == pytest.approx(bound, rel=1e-4)


def test_training_step_bounds_one_samples_influence(learner: Learner, digits) -> None:
    # batch_size >= n: sample rate 1 and one step per epoch, every sample in the step, so
    # w1 = w0 - lr * (clipped sum) / n and one added sample moves n * (w0 - w1) / lr by <= C.
    train, _ = digits
    w0 = learner.init_weights(2)
    x, y, x2, y2 = crafted_batch(train)
    settings = DPSGDSettings(epochs=1, lr=0.1, batch_size=64, max_grad_norm=0.5, noise_multiplier=0)
    a = train_dp_sgd(learner.module, w0, x.numpy(), y.numpy(), settings, seed=0)
    b = train_dp_sgd(learner.module, w0, x2.numpy(), y2.numpy(), settings, seed=0)
    assert (a.steps, a.sample_rate, b.sample_rate) == (1, 1.0, 1.0)
    sum_a = (w0.astype(np.float64) - a.weights) * 16 / 0.1
    sum_b = (w0.astype(np.float64) - b.weights) * 17 / 0.1
    assert np.linalg.norm(sum_b - sum_a) <= 0.5 * (1 + 1e-3)


def test_noise_is_gaussian_with_std_multiplier_times_clip_norm(learner: Learner, digits) -> None:
    train, _ = digits
    w0 = learner.init_weights(3)
    x, y = train.x[:40], train.y[:40]
    settings = DPSGDSettings(epochs=1, lr=0.1, batch_size=40, max_grad_norm=0.5, noise_multiplier=2)
    result = train_dp_sgd(learner.module, w0, x, y, settings, seed=4)
    load_flat(learner.module, w0)
    clean, _ = clipped_gradient_sum(learner.module, torch.from_numpy(x), torch.from_numpy(y), 0.5)
    noise = (w0.astype(np.float64) - result.weights) * 40 / 0.1 - clean.double().numpy()
    assert stats.kstest(noise, "norm", args=(0, 1.0)).pvalue > 0.01
    assert noise.std() == pytest.approx(1.0, rel=0.05)


def test_training_is_reproducible_from_the_seed(learner: Learner, digits) -> None:
    train, _ = digits
    w0 = learner.init_weights(5)
    settings = DPSGDSettings(epochs=1, lr=0.5, batch_size=32, noise_multiplier=1.0)
    a = train_dp_sgd(learner.module, w0, train.x[:300], train.y[:300], settings, seed=7)
    b = train_dp_sgd(learner.module, w0, train.x[:300], train.y[:300], settings, seed=7)
    c = train_dp_sgd(learner.module, w0, train.x[:300], train.y[:300], settings, seed=8)
    assert np.array_equal(a.weights, b.weights) and a.loss == b.loss
    assert not np.array_equal(a.weights, c.weights)
    assert a.weights.dtype == np.float32 and a.weights.shape == w0.shape


def test_accuracy_on_digits_stays_reasonable_at_a_loose_epsilon(learner: Learner, digits) -> None:
    train, test = digits
    base = DPSGDSettings(epochs=15, lr=1.0, batch_size=64, max_grad_norm=1.0)
    sigma = noise_multiplier_for_run(8.0, DELTA, len(train), base)
    settings = replace(base, noise_multiplier=sigma)
    w0 = learner.init_weights(0)
    result = train_dp_sgd(learner.module, w0, train.x, train.y, settings, seed=1)
    acc = make_accountant("rdp")
    account(result, acc)
    spent = acc.spent(DELTA)
    assert 7.0 < spent.epsilon <= 8.0
    accuracy = learner.evaluate(result.weights, test.x, test.y).accuracy
    assert accuracy >= 0.85, accuracy
    assert math.isfinite(result.loss)


def test_schedule_and_calibration_agree_with_the_accountant() -> None:
    plan = dp_sgd_schedule(1000, 64, 3)
    assert plan.sample_rate == pytest.approx(0.064) and plan.steps == 3 * 16
    assert dp_sgd_schedule(10, 64, 2).sample_rate == 1.0
    settings = DPSGDSettings(epochs=3, batch_size=64)
    sigma = noise_multiplier_for_run(2.0, DELTA, 1000, settings, rounds=5)
    assert epsilon_for(sigma, DELTA, 0.064, 5 * 48) <= 2.0
    assert epsilon_for(sigma * 0.99, DELTA, 0.064, 5 * 48) > 2.0
    assert noise_multiplier_for_run(math.inf, DELTA, 1000, settings) == 0.0


def test_bad_settings_name_the_value(learner: Learner) -> None:
    with pytest.raises(PrivacyError, match=r"max_grad_norm must be a finite number > 0, got 0"):
        DPSGDSettings(max_grad_norm=0)
    with pytest.raises(PrivacyError, match=r"noise_multiplier must be a finite number >= 0"):
        DPSGDSettings(noise_multiplier=-1)
    with pytest.raises(PrivacyError, match=r"batch_size must be an integer >= 1, got 0"):
        DPSGDSettings(batch_size=0)
    with pytest.raises(PrivacyError, match=r"y must have shape \(2,\)"):
        x = np.zeros((2, 1, 8, 8), dtype=np.float32)
        train_dp_sgd(learner.module, learner.init_weights(0), x, np.zeros(3), DPSGDSettings(), 0)
    with pytest.raises(PrivacyError, match=r"rounds must be an integer >= 1, got 0"):
        noise_multiplier_for_run(1.0, DELTA, 100, DPSGDSettings(), rounds=0)
