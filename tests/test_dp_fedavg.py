"""DP-FedAvg in vanilla (``protocol.dp``): central and local, validated on load, clipping
enforced, noise 0 equal to FedAvg, epsilon in summary.json, stop at a budget, localnet."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from fedledger.assembly.config import parse_config
from fedledger.errors import ConfigError
from fedledger.experiment.runner import run_experiment
from fedledger.learning.aggregate import Update
from fedledger.learning.jobs import TrainResult
from fedledger.privacy.dp.accountants import epsilon_for
from fedledger.protocols.vanilla.dp import ClientPrivacy, DPFedAvgParams, ServerDP, clip_model

DELTA = 1e-5


def tiny(dp: dict | None, rounds: int = 3, aggregator: str = "fedavg", **protocol) -> dict:
    proto = {"name": "vanilla", "aggregator": {"name": aggregator}, **protocol}
    if dp is not None:
        proto["dp"] = dp
    return {
        "name": "dpfedavg",
        "seed": 4,
        "rounds": rounds,
        "data": {"dataset": "digits", "partition": "iid"},
        "model": {"name": "mlp", "hidden": [16]},
        "train": {"epochs": 1, "lr": 0.1, "batch_size": 16},
        "protocol": proto,
        "nodes": {"count": 4},
        "output": {"plots": False},
    }


def run(tmp_path: Path, name: str, raw: dict) -> tuple[dict, list[dict], list[tuple]]:
    result = run_experiment(parse_config(raw), tmp_path / name)
    out = tmp_path / name
    summary = json.loads((out / "summary.json").read_text())
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rows = [(r.node, r.step, r.accuracy, r.loss) for r in result.rows]
    return summary, metrics, rows


def epsilons(metrics: list[dict], node: str) -> list[float]:
    return [m["value"] for m in metrics if m["name"] == "epsilon_spent" and m["node"] == node]


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("dp", "aggregator", "match"),
    [
        ({"mode": "central", "clip": 1.0}, "fedavg", "exactly one of noise_multiplier"),
        (
            {"mode": "local", "clip": 1.0, "noise_multiplier": 1.0, "target_epsilon": 1.0},
            "fedavg",
            "exactly one of noise_multiplier",
        ),
        ({"mode": "both", "clip": 1.0, "noise_multiplier": 1.0}, "fedavg", "protocol.dp.mode"),
        ({"mode": "central", "clip": 0.0, "noise_multiplier": 1.0}, "fedavg", "protocol.dp.clip"),
        (
            {"mode": "central", "clip": 1.0, "noise_multiplier": 1.0, "accountant": "basic"},
            "fedavg",
            "protocol.dp.accountant",
        ),
        ({"mode": "central", "clip": 1.0, "noise_multiplier": 1.0}, "krum", "averaging aggregator"),
        ({"mode": "central", "clip": 1.0, "noise": 1.0}, "fedavg", "protocol.dp.noise"),
    ],
)
def test_bad_dp_config_is_refused_on_load(dp, aggregator, match) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_config(tiny(dp, aggregator=aggregator))


# ---------------------------------------------------------------- clipping and noise units


def test_clip_model_bounds_the_update_and_leaves_small_ones_untouched() -> None:
    rng = np.random.default_rng(0)
    current = rng.normal(size=50).astype(np.float32)
    big = current + 10 * rng.normal(size=50).astype(np.float32)
    clipped = clip_model(current, big, 0.5)
    assert np.linalg.norm(clipped.astype(np.float64) - current) <= 0.5 * (1 + 1e-5)
    direction = (big - current) / np.linalg.norm(big - current)
    got = (clipped - current) / np.linalg.norm(clipped - current)
    assert np.allclose(direction, got, atol=1e-4)
    small = current + np.float32(1e-3)
    assert clip_model(current, small, 0.5) is small


def test_central_server_clips_every_update_and_noises_the_aggregate() -> None:
    params = DPFedAvgParams(mode="central", clip=0.1, noise_multiplier=2.0)
    server = ServerDP(params, seed=1, rounds=5, num_clients=10, per_round=4)
    current = np.zeros(1000, np.float32)
    updates = [Update(np.full(1000, float(i + 1), np.float32), 10, f"c{i}") for i in range(4)]
    for u in server.clip(current, updates):
        assert np.linalg.norm(u.weights.astype(np.float64)) <= 0.1 * (1 + 1e-5)
    noised = server.noise(current, sampled=4, round_=1)
    assert np.std(noised) == pytest.approx(2.0 * 0.1 / 4, rel=0.1)
    assert np.array_equal(noised, server.noise(current, sampled=4, round_=1))  # seeded
    [metric] = server.metrics(1)
    assert metric.name == "epsilon_spent"
    assert metric.value == pytest.approx(epsilon_for(2.0, DELTA, 0.4, 1, "rdp"))


def test_local_client_clips_then_noises_its_own_update() -> None:
    params = DPFedAvgParams(mode="local", clip=0.2, noise_multiplier=0.0)
    client = ClientPrivacy(params, seed=1, node_id="c000", rounds=3)
    current = np.zeros(500, np.float32)
    trained = TrainResult(np.ones(500, np.float32), 10, 0.5)
    sent, [metric] = client.release(current, trained, 1)
    assert np.linalg.norm(sent.astype(np.float64)) <= 0.2 * (1 + 1e-5)
    assert math.isinf(metric.value)  # no noise: no guarantee
    noisy = ClientPrivacy(params.model_copy(update={"noise_multiplier": 3.0}), 1, "c000", 3)
    sent, [metric] = noisy.release(current, trained, 1)
    assert np.std(sent - clip_model(current, trained.weights, 0.2)) == pytest.approx(
        0.6, rel=0.1
    )
    assert metric.value == pytest.approx(epsilon_for(3.0, DELTA, 1.0, 1, "rdp"))


# ---------------------------------------------------------------- end to end


def test_noise_zero_and_loose_clip_equal_plain_fedavg_exactly(tmp_path: Path) -> None:
    _, _, plain = run(tmp_path, "plain", tiny(None, rounds=2))
    loose = {"clip": 1e6, "noise_multiplier": 0.0}
    central, _, central_rows = run(tmp_path, "central", tiny({"mode": "central", **loose}, 2))
    _, _, local_rows = run(tmp_path, "local", tiny({"mode": "local", **loose}, 2))
    assert central_rows == plain and local_rows == plain
    assert central["privacy"]["epsilon"] is None  # no noise: no finite guarantee


def test_central_dp_fedavg_end_to_end_with_epsilon_in_summary(tmp_path: Path) -> None:
    dp = {"mode": "central", "clip": 2.0, "noise_multiplier": 0.5, "delta": 1e-4}
    summary, metrics, _ = run(tmp_path, "central", tiny(dp, rounds=3, fraction=0.5))
    expected = epsilon_for(0.5, 1e-4, 2 / 4, 3, "rdp")
    assert summary["privacy"] == {
        "epsilon": pytest.approx(expected, abs=1e-6),
        "delta": 1e-4,
        "accountant": "rdp",
    }
    server = epsilons(metrics, "server")
    assert len(server) == 3 and server == sorted(server)
    assert epsilons(metrics, "c000") == []  # clients spend nothing in central mode
    assert summary["last_step"] == 3 and summary["final_accuracy"] is not None


def test_local_dp_fedavg_calibrates_target_epsilon_over_the_run(tmp_path: Path) -> None:
    dp = {"mode": "local", "clip": 1.0, "target_epsilon": 6.0}
    summary, metrics, _ = run(tmp_path, "local", tiny(dp, rounds=3))
    assert 0.97 * 6.0 <= summary["privacy"]["epsilon"] <= 6.0
    for node in ("c000", "c003"):
        values = epsilons(metrics, node)
        assert len(values) == 3 and values == sorted(values)
    assert epsilons(metrics, "server") == []


def test_central_run_stops_before_exceeding_max_epsilon(tmp_path: Path) -> None:
    budget = epsilon_for(1.0, DELTA, 1.0, 2, "rdp")
    dp = {"mode": "central", "clip": 1.0, "noise_multiplier": 1.0, "max_epsilon": budget * 1.01}
    summary, _, _ = run(tmp_path, "capped", tiny(dp, rounds=6))
    assert summary["last_step"] == 2
    assert summary["privacy"]["epsilon"] == pytest.approx(budget, abs=1e-6)
    assert summary["nodes_halted"] == summary["nodes"]


def test_local_server_samples_only_clients_with_budget_left(tmp_path: Path) -> None:
    budget = epsilon_for(2.0, DELTA, 1.0, 2, "rdp") * 1.01
    dp = {"mode": "local", "clip": 1.0, "noise_multiplier": 2.0, "max_epsilon": budget}
    summary, metrics, _ = run(tmp_path, "capped", tiny(dp, rounds=6, fraction=0.5))
    # 4 clients x 2 participations each, 2 per round: 4 rounds, then none is left
    assert summary["last_step"] == 4
    for node in ("c000", "c001", "c002", "c003"):
        assert len(epsilons(metrics, node)) == 2
    assert summary["privacy"]["epsilon"] <= budget


# ---------------------------------------------------------------- localnet


@pytest.mark.slow
def test_localnet_runs_vanilla_with_central_dp_fedavg(tmp_path: Path) -> None:
    from fedledger.cli import app

    raw = tiny({"mode": "central", "clip": 1.0, "noise_multiplier": 0.8}, rounds=2)
    raw["protocol"]["round_timeout"] = 30.0
    config = tmp_path / "dp.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "net"
    result = CliRunner().invoke(
        app, ["localnet", str(config), "--out", str(out), "-q", "--timeout", "120"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["last_step"] == 2 and summary["nodes_halted"] == 5
    assert summary["privacy"]["epsilon"] == pytest.approx(
        epsilon_for(0.8, DELTA, 1.0, 2, "rdp"), abs=1e-6
    )
    sim = tmp_path / "sim"
    assert CliRunner().invoke(app, ["run", str(config), "--out", str(sim), "-q"]).exit_code == 0
    assert json.loads((sim / "summary.json").read_text())["privacy"] == summary["privacy"]
