"""Nagar's party modes as real node processes on loopback, against the simulator on the
same config. Transfer FL (3 processes, 6 epochs): B's accuracy and baseline equal the
simulator's. Differential IoT data sharing (4 IoT devices, 3 gateways holding 2-of-3
Shamir shares of each reading, a trainer; 24 hours of readings): the trainer gets the
same readings, error and reward as in the simulator, every node stores the same chain
(the plan and one block per hour). ``fedledger chain verify`` passes on both. Before the
IoT devices were the trainer's peers they never received its plan block on a real
network (the simulator then delivered to any node; a localnet only to neighbours)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedledger.assembly.config import load_config
from fedledger.cli import app
from fedledger.experiment.localnet import Localnet, run_localnet
from fedledger.experiment.runner import run_experiment

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "nagar-sharing.yaml"
OVERRIDES = ("rounds=24",)


@pytest.mark.slow
def test_iot_sharing_localnet_matches_the_simulator(tmp_path: Path) -> None:
    net = Localnet(CONFIG, overrides=OVERRIDES, out=tmp_path / "net", timeout=400, grace=30)
    result = run_localnet(net)
    assert not result.interrupted and set(result.exit_codes.values()) == {0}, result.exit_codes
    real = json.loads((net.run_dir / "summary.json").read_text())["nagar-sharing"]
    sim = run_experiment(load_config(CONFIG, OVERRIDES), tmp_path / "sim").summary
    assert real["readings"] > 0 and real == sim["nagar-sharing"], (real, sim["nagar-sharing"])
    out = CliRunner().invoke(app, ["chain", "verify", str(net.run_dir)])
    assert out.exit_code == 0, out.output
    # every node: the genesis, the plan block and one block per hour
    assert "8 node(s), 208 blocks" in " ".join(out.output.split())


@pytest.mark.slow  # 14 s on a quiet machine, about 95 s on a loaded one
def test_transfer_localnet_matches_the_simulator(tmp_path: Path) -> None:
    """Transfer FL (party A with labels, party B, coordinator C; 6 epochs) on 3 processes:
    B's accuracy and baseline equal the simulator's, and ``chain verify`` passes."""
    config = CONFIG.with_name("nagar-transfer.yaml")
    net = Localnet(config, out=tmp_path / "net", timeout=400, grace=30)
    result = run_localnet(net)
    assert not result.interrupted and set(result.exit_codes.values()) == {0}, result.exit_codes
    real = json.loads((net.run_dir / "summary.json").read_text())["nagar-transfer"]
    sim = run_experiment(load_config(config), tmp_path / "sim").summary["nagar-transfer"]
    assert real["accuracy"] > 0.5 and real == sim, (real, sim)
    out = CliRunner().invoke(app, ["chain", "verify", str(net.run_dir)])
    assert out.exit_code == 0, out.output
