"""Learner: deterministic training, evaluation, reuse of one module, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedledger.learning.data import DATASETS, FederatedData, prepare_federated_data
from fedledger.learning.train import Learner, LearnerError
from fedledger.learning.weights import Layout, flatten, load_flat
from fedledger.protocols.base import TrainSettings

SETTINGS = TrainSettings(epochs=2, lr=0.05, batch_size=32, momentum=0.9)


@pytest.fixture(scope="module")
def digits() -> FederatedData:
    return prepare_federated_data(DATASETS.build("digits"), 1, "iid", seed=0)


@pytest.fixture(scope="module")
def learner(digits: FederatedData) -> Learner:
    return Learner("mlp", None, digits.input_shape, digits.num_classes)


def test_init_weights_seeded_and_leaves_global_rng(learner: Learner) -> None:
    state = torch.random.get_rng_state()
    a, b, c = learner.init_weights(1), learner.init_weights(1), learner.init_weights(2)
    assert torch.equal(state, torch.random.get_rng_state())
    assert a.dtype == np.float32 and a.shape == (learner.layout.size,)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert isinstance(learner.layout, Layout) and learner.num_weights == 64 * 64 + 64 + 650


def test_training_is_deterministic(learner: Learner, digits: FederatedData) -> None:
    node = digits.nodes[0].train
    w0 = learner.init_weights(0)
    first = learner.train(w0, node.x, node.y, SETTINGS, seed=5)
    other = learner.train(w0, node.x, node.y, SETTINGS, seed=6)
    again = learner.train(w0, node.x, node.y, SETTINGS, seed=5)
    assert np.array_equal(first.weights, again.weights) and first.loss == again.loss
    assert not np.array_equal(first.weights, other.weights)
    assert first.num_samples == len(node)
    assert not np.array_equal(first.weights, w0)  # and the input is untouched:
    assert np.array_equal(w0, learner.init_weights(0))


def test_mlp_learns_digits(learner: Learner, digits: FederatedData) -> None:
    node = digits.nodes[0].train
    before = learner.evaluate(learner.init_weights(0), digits.test.x, digits.test.y)
    result = learner.train(learner.init_weights(0), node.x, node.y, SETTINGS, seed=0)
    after = learner.evaluate(result.weights, digits.test.x, digits.test.y)
    assert before.accuracy < 0.3 and after.accuracy > 0.85
    assert after.loss < before.loss and after.num_samples == len(digits.test)
    predicted = learner.predict(result.weights, digits.test.x)
    assert predicted.dtype == np.int64
    assert np.mean(predicted == digits.test.y) == pytest.approx(after.accuracy)


def test_evaluate_is_batch_size_independent(learner: Learner, digits: FederatedData) -> None:
    w = learner.init_weights(3)
    whole = learner.evaluate(w, digits.test.x, digits.test.y)
    pieces = learner.evaluate(w, digits.test.x, digits.test.y, batch_size=7)
    assert whole.accuracy == pieces.accuracy
    assert whole.loss == pytest.approx(pieces.loss, rel=1e-5)


@pytest.mark.parametrize("name", ["lenet5", "cnn"])
def test_conv_models_train_on_digits(name: str, digits: FederatedData) -> None:
    learner = Learner(name, None, digits.input_shape, 10)
    node = digits.nodes[0].train
    w = learner.init_weights(0)
    result = learner.train(w, node.x[:64], node.y[:64], TrainSettings(batch_size=16), seed=0)
    again = learner.train(w, node.x[:64], node.y[:64], TrainSettings(batch_size=16), seed=0)
    assert np.array_equal(result.weights, again.weights) and np.isfinite(result.loss)


def test_errors(learner: Learner, digits: FederatedData) -> None:
    w = learner.init_weights(0)
    x, y = digits.test.x, digits.test.y
    with pytest.raises(LearnerError, match=r"weights have shape \(3,\), mlp expects \(4810,\)"):
        learner.evaluate(np.zeros(3, np.float32), x, y)
    with pytest.raises(LearnerError, match=r"x must have shape \(N, 1, 8, 8\)"):
        learner.train(w, x[:, :, :4], y, SETTINGS, seed=0)
    with pytest.raises(LearnerError, match="cannot train on 0 samples"):
        learner.train(w, x[:0], y[:0], SETTINGS, seed=0)
    with pytest.raises(LearnerError, match=r"labels span 0\.\.12, allowed 0\.\.9"):
        learner.train(w, x[:2], np.array([0, 12]), SETTINGS, seed=0)
    with pytest.raises(LearnerError, match="batch_size >= 1"):
        learner.train(w, x, y, TrainSettings(batch_size=0), seed=0)


def test_momentum_buffer_carries_a_solver_across_calls(
    learner: Learner, digits: FederatedData
) -> None:
    """Two one-batch calls that hand the momentum buffer on give what one torch SGD
    optimizer gives over the same two batches; without it momentum restarts at zero."""
    node = digits.nodes[0].train
    x1, y1, x2, y2 = node.x[:16], node.y[:16], node.x[16:32], node.y[16:32]
    s = TrainSettings(epochs=1, lr=0.05, batch_size=16, momentum=0.9, weight_decay=1e-3)
    w0 = learner.init_weights(7)
    first = learner.train(w0, x1, y1, s, seed=1)
    assert first.momentum_buffer is not None
    # one step from a zero buffer: the buffer is the step divided by lr
    np.testing.assert_allclose(first.momentum_buffer, (w0 - first.weights) / s.lr, atol=1e-4)
    carried = learner.train(first.weights, x2, y2, s, 2, momentum_buffer=first.momentum_buffer)
    fresh = learner.train(first.weights, x2, y2, s, 2)
    assert not np.allclose(carried.weights, fresh.weights)

    model = learner.module  # the reference: one optimizer over both batches
    load_flat(model, w0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    for x, y in ((x1, y1), (x2, y2)):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        opt.step()
    np.testing.assert_allclose(carried.weights, flatten(model), atol=1e-5)

    no_momentum = TrainSettings(epochs=1, lr=0.05, batch_size=16)
    assert learner.train(w0, x1, y1, no_momentum, seed=1).momentum_buffer is None
    with pytest.raises(LearnerError, match="momentum buffer has shape"):
        learner.train(w0, x1, y1, s, 1, momentum_buffer=np.zeros(3, dtype=np.float32))
