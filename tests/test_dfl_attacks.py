"""The DFL simulator's model attacks: uniform random, random by turn, biased."""

from __future__ import annotations

import numpy as np

from fedledger.learning.attacks import ATTACKS, AttackContext


def test_uniform_model_by_turn_and_biased():
    trained = np.linspace(-1, 1, 1000).astype(np.float32)
    ctx = AttackContext(start=np.zeros_like(trained), seed=5)
    uniform = ATTACKS.build("uniform_model", {}).poison_model(trained, ctx)
    assert uniform.dtype == np.float32 and uniform.min() >= 0.0 and uniform.max() < 0.001
    by_turn = ATTACKS.build("random_model_by_turn", {})
    outs = [by_turn.poison_model(trained, ctx) for _ in range(4)]
    assert np.array_equal(outs[0], trained) and np.array_equal(outs[2], trained)
    assert outs[1].max() < 0.001 and outs[3].max() < 0.001
    biased = ATTACKS.build("biased_model", {"max_bias": 0.1}).poison_model(trained, ctx)
    shift = trained - biased
    assert shift.min() >= 0.0 and shift.max() < 0.1 and shift.mean() > 0.03
