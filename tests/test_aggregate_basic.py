"""FedAvg, weighted FedAvg, HalfFedAvg and reputation-0.05 on hand-computed vectors."""

from __future__ import annotations

import numpy as np
import pytest

from fedledger.learning.aggregate import AGGREGATORS, AggregationContext, AggregationError, Update
from fedledger.learning.aggregate.basic import reputation_weighted


def vec(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


A = Update(vec(1, 2, 3), num_samples=1, sender="a", accuracy=0.5)
B = Update(vec(3, 6, 9), num_samples=3, sender="b", accuracy=1.0)
C = Update(vec(5, 4, 0), num_samples=0, sender="c", accuracy=0.25)
OWN = vec(0, 0, 8)


def run(name: str, updates: list[Update], **context: object) -> np.ndarray:
    return AGGREGATORS.build(name)(updates, AggregationContext(**context))  # type: ignore[arg-type]


def test_registered() -> None:
    for name in ("fedavg", "weighted_fedavg", "halffedavg", "reputation"):
        assert name in AGGREGATORS


def test_fedavg_plain_mean() -> None:
    out = run("fedavg", [A, B, C])
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [3, 4, 4])


def test_weighted_fedavg_by_samples() -> None:
    # (1*[1,2,3] + 3*[3,6,9] + 0*C) / 4
    np.testing.assert_allclose(run("weighted_fedavg", [A, B, C]), [2.5, 5, 7.5])


def test_weighted_fedavg_errors() -> None:
    with pytest.raises(AggregationError, match="positive total num_samples, got 0"):
        run("weighted_fedavg", [C])
    with pytest.raises(AggregationError, match=r"\('x', -2\)"):
        run("weighted_fedavg", [A, Update(vec(0, 0, 0), num_samples=-2, sender="x")])


def test_halffedavg_eq2() -> None:
    # (mean([1,2,3],[3,6,9]) + [0,0,8]) / 2 = ([2,4,6] + [0,0,8]) / 2
    np.testing.assert_allclose(run("halffedavg", [A, B], current=OWN), [1, 2, 7])


def test_halffedavg_needs_own_model() -> None:
    with pytest.raises(AggregationError, match=r"context\.current"):
        run("halffedavg", [A])
    with pytest.raises(AggregationError, match=r"shape \(2,\)"):
        run("halffedavg", [A], current=vec(1, 2))


def test_reputation_eq3_eq4_and_punishment() -> None:
    reputation = {"a": 1.0, "b": 0.5, "c": 0.8, "z": 0.3}
    model, new = reputation_weighted([A, B, C], OWN, reputation)
    # weights = reputation * accuracy = 0.5, 0.5, 0.2; normalised 5/12, 5/12, 2/12
    mixed = (5 * vec(1, 2, 3) + 5 * vec(3, 6, 9) + 2 * vec(5, 4, 0)) / 12
    np.testing.assert_allclose(model, (mixed + OWN) / 2, rtol=1e-6)
    # the least accurate model's creator (c, 0.25) loses 0.05; others unchanged
    assert new == {"a": 1.0, "b": 0.5, "c": 0.75, "z": 0.3}
    assert reputation == {"a": 1.0, "b": 0.5, "c": 0.8, "z": 0.3}  # input untouched


def test_reputation_aggregator_matches_pure_function() -> None:
    reputation = {"a": 0.2, "b": 0.9}
    expected, _ = reputation_weighted([A, B], OWN, reputation)
    got = run("reputation", [A, B], current=OWN, reputation=reputation)
    np.testing.assert_array_equal(got, expected)


def test_reputation_new_peers_start_at_one_and_ties_are_all_punished() -> None:
    tie = Update(vec(7, 7, 7), sender="d", accuracy=0.25)
    model, new = reputation_weighted([A, C, tie], OWN, {})
    weights = np.array([0.5, 0.25, 0.25]) / 1.0
    mixed = weights[0] * vec(1, 2, 3) + weights[1] * vec(5, 4, 0) + weights[2] * vec(7, 7, 7)
    np.testing.assert_allclose(model, (mixed + OWN) / 2, rtol=1e-6)
    assert new == {"a": 1.0, "c": 0.95, "d": 0.95}


def test_reputation_all_zero_falls_back_to_halffedavg() -> None:
    reputation = {"a": 0.0, "b": 0.0}
    model, new = reputation_weighted([A, B], OWN, reputation)
    np.testing.assert_allclose(model, run("halffedavg", [A, B], current=OWN))
    assert new == {"a": 0.0, "b": 0.0}  # punishment stops at 0


def test_reputation_decays_to_exactly_zero() -> None:
    table: dict[str, float] = {}
    for _ in range(25):
        _, table = reputation_weighted([A, B], OWN, table)
    assert table == {"a": 0.0, "b": 1.0}


def test_reputation_penalty_parameter_and_errors() -> None:
    rule = AGGREGATORS.build("reputation", {"penalty": 0.1})
    assert rule([A, B], AggregationContext(current=OWN)).shape == (3,)
    _, new = reputation_weighted([A, B], OWN, {}, penalty=0.1)
    assert new["a"] == pytest.approx(0.9)
    with pytest.raises(AggregationError, match=r"accuracy in \[0, 1\]; got .*\('x', None\)"):
        reputation_weighted([A, Update(vec(0, 0, 0), sender="x")], OWN, {})
    with pytest.raises(AggregationError, match=r"context\.current"):
        run("reputation", [A])


def test_stack_errors() -> None:
    with pytest.raises(AggregationError, match="no updates"):
        run("fedavg", [])
    with pytest.raises(AggregationError, match="different shapes"):
        run("fedavg", [A, Update(vec(1, 2))])
