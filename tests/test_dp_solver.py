"""DP-SGD as the registered solver ``dp_sgd``: selectable in ``train:``, deterministic,
priced by the accountant over the node's horizon, composed in a node's privacy ledger."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import fedledger.privacy  # noqa: F401  (registers dp_sgd)
from fedledger.assembly.build import build_experiment
from fedledger.assembly.config import parse_config
from fedledger.errors import ConfigError
from fedledger.experiment.runner import run_experiment
from fedledger.learning.data import load_digits_source, prepare_federated_data
from fedledger.learning.jobs import PrivacyCost, TrainSettings
from fedledger.learning.solvers import SOLVERS, solver
from fedledger.learning.train import Learner
from fedledger.privacy.dp.accountants import epsilon_for
from fedledger.privacy.dp.dpsgd import dp_sgd_schedule
from fedledger.privacy.dp.errors import PrivacyError
from fedledger.privacy.dp.ledger import PrivacyLedger

DELTA = 1e-5


@pytest.fixture(scope="module")
def digits():
    data = prepare_federated_data(load_digits_source(), 4, "iid", val_fraction=0.0, seed=0)
    return data.nodes[0].train


@pytest.fixture()
def learner(digits) -> Learner:
    return Learner("mlp", {"hidden": [16]}, digits.input_shape, 10)


def dp_settings(**params: object) -> TrainSettings:
    solver_params = {"max_grad_norm": 1.0, "noise_multiplier": 1.1, "delta": DELTA, **params}
    return TrainSettings(
        epochs=1, lr=0.1, batch_size=32, solver="dp_sgd", solver_params=solver_params
    )


def test_dp_sgd_is_a_registered_routine_solver_and_sgd_an_optimizer() -> None:
    assert {"sgd", "sgd_momentum", "dp_sgd"} <= set(SOLVERS.names())
    dp = solver("dp_sgd", {"noise_multiplier": 1.0})
    assert dp.kind == "routine" and dp.routine is not None and dp.optimizer is None
    sgd = solver("sgd")
    assert sgd.kind == "optimizer" and sgd.optimizer is not None and sgd.routine is None


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({}, "exactly one of noise_multiplier"),
        ({"noise_multiplier": 1.0, "target_epsilon": 2.0}, "exactly one of noise_multiplier"),
        ({"noise_multiplier": 1.0, "accountant": "basic"}, "accountant 'basic'.*allowed: pld, rdp"),
        ({"noise_multiplier": -1.0}, "noise_multiplier"),
        ({"noise_multiplier": 1.0, "clip": 1.0}, "clip"),
    ],
)
def test_bad_solver_parameters_are_config_errors_naming_train_solver(params, match) -> None:
    raw = {"train": {"solver": {"name": "dp_sgd", **params}}}
    with pytest.raises(ConfigError, match=f"train.solver.*{match}"):
        parse_config(raw)


def test_unknown_solver_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="dp_sgd"):
        parse_config({"train": {"solver": "adamw"}})


def test_config_selects_dp_sgd_and_the_node_knows_the_horizon(tmp_path: Path) -> None:
    config = parse_config(
        {
            "rounds": 7,
            "nodes": {"count": 2},
            "train": {"solver": {"name": "dp_sgd", "target_epsilon": 3.0}},
            "output": {"plots": False},
        }
    )
    exp = build_experiment(config, tmp_path)
    settings = next(iter(exp.nodes.values())).setup.train
    assert settings.solver == "dp_sgd"
    assert dict(settings.solver_params) == {"target_epsilon": 3.0}
    assert settings.horizon == 7


def test_learner_runs_dp_sgd_deterministically_under_a_seed(learner, digits) -> None:
    w0 = learner.init_weights(1)
    settings = dp_settings()
    a = learner.train(w0, digits.x, digits.y, settings, seed=5)
    b = learner.train(w0, digits.x, digits.y, settings, seed=5)
    c = learner.train(w0, digits.x, digits.y, settings, seed=6)
    assert np.array_equal(a.weights, b.weights) and a.loss == b.loss
    assert not np.array_equal(a.weights, c.weights)
    plan = dp_sgd_schedule(len(digits.y), 32, 1)
    assert a.privacy == PrivacyCost("gaussian", 1.1, plan.sample_rate, plan.steps, DELTA, "rdp")
    # the plain solver on the same learner carries no privacy cost
    sgd = replace(settings, solver="sgd", solver_params={})
    plain = learner.train(w0, digits.x, digits.y, sgd, seed=5)
    assert plain.privacy is None and not np.array_equal(plain.weights, a.weights)


def test_epsilon_grows_with_jobs_and_matches_the_accountant(learner, digits) -> None:
    w = learner.init_weights(2)
    settings = dp_settings()
    ledger: PrivacyLedger | None = None
    epsilons = []
    for job in range(3):
        result = learner.train(w, digits.x, digits.y, settings, seed=job)
        w = result.weights
        assert result.privacy is not None
        ledger = ledger or PrivacyLedger.for_cost(result.privacy)
        epsilons.append(ledger.record(result.privacy).epsilon)
    cost = result.privacy
    assert epsilons == sorted(epsilons) and epsilons[0] < epsilons[-1]
    for jobs, eps in enumerate(epsilons, start=1):
        expected = epsilon_for(1.1, DELTA, cost.sample_rate, cost.steps * jobs, "rdp")
        assert eps == pytest.approx(expected, rel=1e-9)


def test_target_epsilon_is_spread_over_the_horizon(learner, digits) -> None:
    settings = replace(dp_settings(noise_multiplier=None), horizon=1)
    settings = replace(
        settings, solver_params={"target_epsilon": 2.0, "delta": DELTA}, horizon=6
    )
    result = learner.train(learner.init_weights(0), digits.x, digits.y, settings, seed=0)
    cost = result.privacy
    assert cost is not None
    over_run = epsilon_for(
        cost.noise_multiplier, DELTA, cost.sample_rate, cost.steps * 6, "rdp"
    )
    assert 0.97 * 2.0 <= over_run <= 2.0
    short = replace(settings, horizon=1)
    one = learner.train(learner.init_weights(0), digits.x, digits.y, short, seed=0).privacy
    assert one is not None and one.noise_multiplier < cost.noise_multiplier


def test_zero_noise_spends_an_unbounded_epsilon(learner, digits) -> None:
    settings = dp_settings(noise_multiplier=0.0)
    result = learner.train(learner.init_weights(0), digits.x, digits.y, settings, seed=0)
    assert result.privacy is not None
    assert math.isinf(PrivacyLedger.for_cost(result.privacy).record(result.privacy).epsilon)


def test_ledger_budget_and_mixing_rules() -> None:
    cost = PrivacyCost("gaussian", 1.0, 0.1, 10, DELTA, "rdp", budget=6.0)
    ledger = PrivacyLedger.for_cost(cost)
    assert ledger.spent().epsilon == 0.0
    recorded = 0
    while not ledger.would_exceed(cost):
        ledger.record(cost)
        recorded += 1
    assert recorded >= 2 and ledger.spent().epsilon <= 6.0
    assert ledger.spent_after(cost).epsilon > 6.0
    with pytest.raises(PrivacyError, match="cannot be composed"):
        ledger.record(replace(cost, delta=1e-6))
    with pytest.raises(PrivacyError, match="budget"):
        PrivacyLedger("rdp", DELTA, budget=0.0)


def test_vanilla_with_dp_sgd_reports_epsilon_and_stops_at_the_budget(tmp_path: Path) -> None:
    solver_params = {"name": "dp_sgd", "noise_multiplier": 1.0, "max_epsilon": 3.9}
    config = parse_config(
        {
            "name": "dpsgd",
            "seed": 1,
            "rounds": 4,
            "model": {"name": "mlp", "hidden": [16]},
            "train": {"lr": 0.1, "batch_size": 32, "solver": solver_params},
            "protocol": {"name": "vanilla", "round_timeout": 5.0},
            "nodes": {"count": 3},
            "output": {"plots": False},
        }
    )
    result = run_experiment(config, tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    privacy = summary["privacy"]
    assert privacy["delta"] == DELTA and privacy["accountant"] == "rdp"
    assert 3.0 < privacy["epsilon"] <= 3.9
    assert result.summary.privacy == privacy
    rows = [
        json.loads(line)
        for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    eps = [r for r in rows if r["name"] == "epsilon_spent" and r["node"] == "c000"]
    values = [r["value"] for r in eps]
    # about 3.0 after one job, 3.7 after two, 4.2 after three: halted after two
    assert values == sorted(values) and len(values) == 2
    participants = [r["value"] for r in rows if r["name"] == "vanilla.participants"]
    assert participants == [3.0, 3.0, 0.0, 0.0]
