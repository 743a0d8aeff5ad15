"""The backdoor attack success rate, measured by the runner for every reported model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fedledger.assembly.config import parse_config
from fedledger.assembly.metrics import MEASURED_TAG, attack_metrics
from fedledger.experiment.runner import run_experiment
from fedledger.learning.attacks import ATTACKS, Attack
from fedledger.learning.attacks.backdoor import Backdoor, apply_trigger


def test_backdoor_defines_its_success_rate_and_other_attacks_nothing():
    x = np.zeros((4, 1, 8, 8), np.float32)
    y = np.array([0, 1, 2, 3])

    def predict(images: np.ndarray) -> np.ndarray:  # "target 2 whenever triggered"
        return np.where(images[:, 0, 7, 7] == 1.0, 2, 0)

    assert Backdoor(target=2).test_metrics(predict, x, y) == {"backdoor_asr": 1.0}
    assert Backdoor(target=2, corner="top_left").test_metrics(predict, x, y) == {
        "backdoor_asr": 0.0
    }
    assert Attack().test_metrics(predict, x, y) == {}
    assert ATTACKS.build("sign_flip", {}).test_metrics(predict, x, y) == {}


def test_attack_metrics_measures_equal_attacks_once_and_is_none_without_any():
    x = apply_trigger(np.zeros((3, 1, 8, 8), np.float32))
    y = np.array([1, 2, 3])
    calls: list[int] = []

    def predict(weights: np.ndarray, images: np.ndarray) -> np.ndarray:
        calls.append(len(images))
        return np.full(len(images), int(weights[0]))

    attacks = {"c002": Backdoor(target=1), "c000": Backdoor(target=1), "c001": None}
    measure = attack_metrics(attacks, predict, x, y)
    assert measure is not None
    tags = {"attack": "Backdoor", "nodes": "c000,c002"}
    assert measure(np.array([1.0])) == [("backdoor_asr", 1.0, tags)]  # always says 1
    assert measure(np.array([2.0])) == [("backdoor_asr", 0.0, tags)]  # always says 2
    assert calls == [2, 2]  # one prediction each, on the two images not of the target
    assert attack_metrics({"c000": ATTACKS.build("sign_flip", {})}, predict, x, y) is None


def config(attack: dict | None) -> dict:
    return {
        "name": "backdoor",
        "seed": 0,
        "rounds": 6,
        "data": {"dataset": "digits", "partition": "iid"},
        "model": {"name": "mlp", "hidden": [32]},
        "train": {"epochs": 1, "lr": 0.1, "batch_size": 16, "momentum": 0.5},
        "protocol": {"name": "vanilla", "aggregator": {"name": "fedavg"}},
        "nodes": {
            "count": 8,
            "malicious": [] if attack is None else [{"count": 3, "attack": attack}],
        },
        "output": {"plots": False},
    }


def test_fedavg_learns_the_backdoor_and_the_run_reports_it(tmp_path: Path):
    attack = {"name": "backdoor", "target": 0, "fraction": 0.5}
    result = run_experiment(parse_config(config(attack)), tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    asr = [r for r in rows if r["name"] == "backdoor_asr"]
    assert [r["step"] for r in asr] == [1, 2, 3, 4, 5, 6]
    assert all(r["node"] == "server" for r in asr)
    assert all(r["tags"][MEASURED_TAG[0]] == MEASURED_TAG[1] for r in asr)
    assert asr[0]["tags"]["attack"] == "Backdoor" and len(asr[0]["tags"]["nodes"].split(",")) == 3
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["measured"]["backdoor_asr"] == result.summary.measured["backdoor_asr"]
    assert summary["measured"]["backdoor_asr"] == round(asr[-1]["value"], 6)
    assert summary["measured"]["backdoor_asr"] > 0.9
    assert summary["final_accuracy"] > 0.6  # clean accuracy stays: the backdoor is stealthy


def test_runs_without_a_backdoor_report_no_success_rate(tmp_path: Path):
    result = run_experiment(parse_config(config(None)), tmp_path / "run")
    assert result.summary.measured == {}
    text = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert "backdoor_asr" not in text
