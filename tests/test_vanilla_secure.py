"""Vanilla with secure aggregation and with homomorphic aggregation, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fedledger.assembly.config import parse_config
from fedledger.errors import ConfigError
from fedledger.experiment.runner import run_experiment
from fedledger.protocols.base import MessageReceived
from fedledger.protocols.vanilla import nodes
from fedledger.protocols.vanilla.messages import ClientUpdate


def tiny(rounds: int = 2, count: int = 4, malicious=(), **protocol) -> dict:
    return {
        "name": "secure",
        "seed": 5,
        "rounds": rounds,
        "data": {"dataset": "digits", "partition": "iid"},
        "model": {"name": "mlp", "hidden": [16]},
        "train": {"epochs": 1, "lr": 0.1, "batch_size": 16},
        "protocol": {"name": "vanilla", "round_timeout": 30.0, **protocol},
        "nodes": {"count": count, "malicious": list(malicious)},
        "output": {"plots": False},
    }


@pytest.fixture
def spy(monkeypatch):
    """Records the server's models by round and the messages it receives."""
    seen: dict[str, list] = {"models": [], "messages": []}
    end_round = nodes.Server._end_round
    handle = nodes.Server.handle

    def recording_end(self, participants):
        seen["models"].append((self.round, self.weights.copy(), participants))
        return end_round(self, participants)

    def recording_handle(self, event):
        if isinstance(event, MessageReceived):
            seen["messages"].append(event.message)
        return handle(self, event)

    monkeypatch.setattr(nodes.Server, "_end_round", recording_end)
    monkeypatch.setattr(nodes.Server, "handle", recording_handle)
    return seen


def run(spy, tmp_path: Path, name: str, **protocol):
    spy["models"].clear()
    spy["messages"].clear()
    result = run_experiment(parse_config(tiny(**protocol)), tmp_path / name)
    return result, list(spy["models"]), list(spy["messages"])


def metric(run_dir: Path, name: str) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x)["value"] for x in lines if json.loads(x)["name"] == name]


def assert_never_plaintext(messages):
    assert messages, "the server received nothing"
    for m in messages:
        assert not isinstance(m, ClientUpdate)
        for value in vars(m).values():
            assert not (isinstance(value, np.ndarray) and value.dtype == np.float32)


def test_secure_aggregation_matches_plaintext_within_fixed_point_bound(spy, tmp_path):
    _, plain, plain_msgs = run(spy, tmp_path, "plain")
    assert any(isinstance(m, ClientUpdate) for m in plain_msgs)  # the spy sees updates
    sa = {"threshold": 3, "frac_bits": 24, "clamp": 32.0}
    result, secure, msgs = run(spy, tmp_path, "sa", secure_aggregation=sa)
    assert_never_plaintext(msgs)
    assert [(r, p) for r, _, p in secure] == [(r, p) for r, _, p in plain] == [(1, 4), (2, 4)]
    bound = 2.0**-25
    assert np.max(np.abs(secure[0][1] - plain[0][1])) <= bound + 1e-6  # float32 rounding
    assert np.max(np.abs(secure[1][1] - plain[1][1])) < 1e-4  # two rounds of that error
    assert metric(result.run_dir, "vanilla.secure_round_failed") == [0.0, 0.0]
    cpu = json.loads((result.run_dir / "summary.json").read_text())
    assert "crypto" in json.dumps(cpu)


def test_secure_aggregation_survives_a_dropout_and_fails_beyond_threshold(spy, tmp_path):
    drop = [{"ids": ["c001"], "faults": ["drop_after_keys"]}]
    sa = {"threshold": 3, "phase_timeout": 5.0}
    result, models, _ = run(spy, tmp_path, "one", secure_aggregation=sa, malicious=drop)
    assert [p for _, _, p in models] == [3, 3]
    assert metric(result.run_dir, "vanilla.secure_round_failed") == [0.0, 0.0]
    two = [{"ids": ["c001", "c002"], "faults": ["drop_after_keys"]}]
    result, models, _ = run(spy, tmp_path, "two", secure_aggregation=sa, malicious=two)
    assert [p for _, _, p in models] == [0, 0]
    assert metric(result.run_dir, "vanilla.secure_round_failed") == [1.0, 1.0]
    initial = models[0][1]
    np.testing.assert_array_equal(models[1][1], initial)  # the model stays


PAILLIER = {"scheme": "paillier", "key_bits": 512, "threshold": 2, "committee": 3}


def test_paillier_matches_plaintext_and_server_sees_only_ciphertexts(spy, tmp_path):
    _, plain, _ = run(spy, tmp_path, "plain")
    enc = {**PAILLIER, "frac_bits": 20, "clamp": 16.0, "max_total_samples": 4096}
    result, models, msgs = run(spy, tmp_path, "pa", encryption=enc)
    assert_never_plaintext(msgs)
    assert [(r, p) for r, _, p in models] == [(1, 4), (2, 4)]
    assert np.max(np.abs(models[0][1] - plain[0][1])) <= 2.0**-21 + 1e-6
    assert np.max(np.abs(models[1][1] - plain[1][1])) < 1e-4
    assert metric(result.run_dir, "vanilla.secure_round_failed") == [0.0, 0.0]


def test_a_wrong_partial_decryption_is_detected_counted_and_outvoted(spy, tmp_path):
    liar = [{"ids": ["c000"], "faults": ["wrong_partial"]}]
    result, models, _ = run(spy, tmp_path, "liar", encryption=PAILLIER, malicious=liar)
    assert [p for _, _, p in models] == [4, 4]
    assert metric(result.run_dir, "vanilla.secure_round_failed") == [0.0, 0.0]
    lines = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    caught = [m for m in lines if m["name"] == "rejected" and "invalid_partial" in json.dumps(m)]
    assert sum(m["value"] for m in caught) == 2  # once per round


def test_ckks_matches_plaintext_approximately(spy, tmp_path):
    pytest.importorskip("tenseal")
    _, plain, _ = run(spy, tmp_path, "plain")
    _, models, msgs = run(spy, tmp_path, "ck", encryption={"scheme": "ckks"})
    assert_never_plaintext(msgs)
    assert np.max(np.abs(models[0][1] - plain[0][1])) < 1e-4
    assert [p for _, _, p in models] == [4, 4]


@pytest.mark.parametrize(
    "protocol, match",
    [
        ({"secure_aggregation": {"threshold": 2}, "aggregator": {"name": "median"}}, "sum"),
        (
            {"secure_aggregation": {"threshold": 2}, "encryption": {"scheme": "paillier"}},
            "exclude",
        ),
        ({"encryption": {"scheme": "paillier", "threshold": 4, "committee": 3}}, "committee"),
    ],
)
def test_bad_secure_configs_are_config_errors(protocol, match):
    with pytest.raises(ConfigError, match=match):
        parse_config(tiny(**protocol))


@pytest.mark.slow
@pytest.mark.parametrize(
    "secure",
    [
        {"protocol__encryption": {**PAILLIER, "committee": 3}},
        {"protocol__secure_aggregation": {"threshold": 3}},
    ],
    ids=["paillier", "secagg"],
)
def test_localnet_with_secure_aggregation_runs_to_the_end(tmp_path, secure):
    """Real processes on loopback: the masked (secagg) or encrypted (Paillier) sums
    travel as real messages between separate node processes and decode to a model."""
    from typer.testing import CliRunner

    from fedledger.cli import app
    from test_net_processes import write_config

    config = write_config(tmp_path, rounds=2, nodes__count=4, **secure)
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["localnet", str(config), "--out", str(out), "-q", "--timeout", "180"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["nodes_halted"] == 5 and summary["last_step"] == 2
    assert set(summary["exit_codes"].values()) == {0}
    assert metric(out, "vanilla.secure_round_failed") == [0.0, 0.0]
    assert summary["final_accuracy"] > 0.2  # chance is 0.1; 2 rounds reach about 0.29
