"""Vertical FL with B's bias column (VflParams.intercept): same privacy, same HE = plain."""

from __future__ import annotations

import numpy as np
import pytest

from fedledger.errors import ConfigError
from fedledger.privacy.he.paillier import generate_keypair
from fedledger.privacy.he.rand import SeededRandom
from fedledger.protocols.nagar_vertical.data import feature_split
from fedledger.protocols.nagar_vertical.hemat import (
    EncArray,
    KeyHolder,
    Opened,
    PaillierContext,
    PlainContext,
    PlainOpener,
)
from fedledger.protocols.nagar_vertical.vfl import (
    LabelParty,
    VflParams,
    linear_scores,
    train_vertical,
)

PARAMS = VflParams(epochs=1, batch_size=64, seed=4, intercept=True)


@pytest.fixture(scope="module")
def split():  # type: ignore[no-untyped-def]
    return feature_split(0.6, seed=4)


def plain_run(split, params: VflParams = PARAMS):  # type: ignore[no-untyped-def]
    ctx_a = PlainContext(16, np.random.default_rng(1))
    ctx_b = PlainContext(16, np.random.default_rng(2))
    return train_vertical(split, params, ctx_a, ctx_b, PlainOpener(), record=False)


def test_encrypted_run_with_bias_equals_its_twin_and_leaks_nothing(split) -> None:  # type: ignore[no-untyped-def]
    pk, sk = generate_keypair(512, SeededRandom(8, "vfl-bias"))
    ctx_a = PaillierContext(pk.n, 16, SeededRandom(1, "A"))
    ctx_b = PaillierContext(pk.n, 16, SeededRandom(1, "B"))
    he = train_vertical(split, PARAMS, ctx_a, ctx_b, KeyHolder(sk))
    plain = plain_run(split)
    assert he.w_b.shape == (split.b.x.shape[1] + 1,)  # B's features and the bias
    assert he.w_a.shape == (split.a.x.shape[1],)
    assert he.w_b[-1] != 0.0
    assert np.max(np.abs(he.w_a - plain.w_a)) < 1e-4
    assert np.max(np.abs(he.w_b - plain.w_b)) < 1e-4
    assert he.accuracy == plain.accuracy
    for m in he.transcript.messages:  # every message but C's own openings is a real cipher
        if m.sender == "C":
            assert isinstance(m.payload, Opened)
            continue
        assert isinstance(m.payload, EncArray) and m.payload.n == pk.n
        assert all(int(c) % pk.n != 1 for c in m.payload.values.flat)


def test_the_bias_is_not_penalised(split) -> None:  # type: ignore[no-untyped-def]
    # a huge L2 pins every feature weight near 0; the bias still learns the class prior
    params = VflParams(epochs=50, batch_size=16, lr=0.04, l2=20.0, seed=4, intercept=True)
    run = plain_run(split, params)
    assert np.max(np.abs(run.w_a)) < 0.05 and np.max(np.abs(run.w_b[:-1])) < 0.05
    y = split.b.labels(run.alignment.train)
    assert run.w_b[-1] == pytest.approx(2 * y.mean(), abs=0.05)  # Taylor optimum: 2 E[y]


def test_without_intercept_b_keeps_its_feature_count(split) -> None:  # type: ignore[no-untyped-def]
    x, y = split.b.x[:10], np.ones(10)
    ctx = PlainContext(16, np.random.default_rng(0))
    assert LabelParty("B", x, y, ctx, VflParams()).x.shape == x.shape
    with_bias = LabelParty("B", x, y, ctx, VflParams(intercept=True))
    assert with_bias.x.shape == (10, x.shape[1] + 1)
    assert np.all(with_bias.x[:, -1] == 1.0) and with_bias.penalised[-1] == 0.0


def test_linear_scores_adds_the_bias_and_names_a_bad_shape() -> None:
    rows = np.array([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_allclose(linear_scores(rows, np.array([1.0, 1.0])), [3.0, 7.0])
    np.testing.assert_allclose(linear_scores(rows, np.array([1.0, 1.0, -3.0])), [0.0, 4.0])
    with pytest.raises(ConfigError, match="allowed 2 or 3"):
        linear_scores(rows, np.ones(4))
