"""One run contract for both hosts: the same small config run in the simulator and as a
localnet of node processes writes the same summary fields and the same metric names.

Values may differ on a real network (timing); for vanilla the models are equal round by
round, which tests/test_net_processes.py already asserts, so it is not repeated here.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from fedledger.assembly.config import load_config
from fedledger.experiment.localnet import Localnet, run_localnet
from fedledger.experiment.rundir import LocalnetCounters, RunDir, SimCounters
from fedledger.experiment.runner import run_experiment
from fedledger.protocols.results import STEP_NODE
from fedledger.storage.layout import RunLayout

pytestmark = pytest.mark.slow

VANILLA = {
    "name": "parity-vanilla",
    "seed": 5,
    "rounds": 2,
    "data": {"dataset": "digits", "partition": "iid"},
    "model": {"name": "mlp", "hidden": [16]},
    "train": {"epochs": 1, "lr": 0.1, "batch_size": 16},
    "protocol": {"name": "vanilla", "fraction": 1.0, "round_timeout": 30.0},
    "nodes": {"count": 3},
    "output": {"plots": False},
}

DFL = {
    "name": "parity-dfl",
    "seed": 1,
    "data": {"dataset": "digits", "partition": "iid", "val_fraction": 0.15},
    "model": {"name": "mlp", "hidden": [16]},
    "train": {"epochs": 1, "lr": 0.1, "batch_size": 16},
    "protocol": {
        "name": "dfl",
        "topology": "random",
        "degree": 2.5,
        "samples_per_interval": 32,
        "train_interval": [1, 2],
        "batch_size": 32,
        "buffer_size": 2,
        "block_txs": 2,
        "receipt_wait": 1.0,
        "confirm_timeout": 3.0,
        "ticks": 12,
        "report_every": 4,
    },
    "nodes": {"count": 4},
    "output": {"plots": False},
}

HOST_FIELDS = {f.name for f in fields(SimCounters)} | {f.name for f in fields(LocalnetCounters)}


def both(tmp_path: Path, tree: dict) -> tuple[dict, dict, Path, Path]:
    """Run ``tree`` in the simulator and as a localnet; their summary.json and dirs."""
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(tree))
    sim = run_experiment(load_config(config_file), tmp_path / "sim")
    net = Localnet(config_file, out=tmp_path / "net", timeout=180, grace=15, start_delay=None)
    result = run_localnet(net)
    assert not result.interrupted and set(result.exit_codes.values()) == {0}, result.exit_codes
    sim_json = json.loads(RunLayout(sim.run_dir).summary.read_text())
    net_json = json.loads(RunLayout(result.run_dir).summary.read_text())
    # what was written reads back as the typed summary the run returned
    assert RunDir(sim.run_dir).read_summary() == sim.summary
    assert RunDir(result.run_dir).read_summary() == result.summary
    return sim_json, net_json, sim.run_dir, result.run_dir


def metric_names(run_dir: Path) -> set[str]:
    lines = RunLayout(run_dir).metrics_jsonl.read_text().splitlines()
    return {json.loads(line)["name"] for line in lines}


def assert_same_contract(sim: dict, net: dict, protocol: str) -> None:
    assert sim["host"] == "simulator" and net["host"] == "localnet"
    assert set(sim) - HOST_FIELDS == set(net) - HOST_FIELDS
    assert set(sim[protocol]) == set(net[protocol])
    assert sim["horizon"] == net["horizon"]
    assert sim["nodes"] == net["nodes"] and sim["malicious"] == net["malicious"]
    assert sim["last_step"] == net["last_step"] == sim["horizon"]["length"]


def test_vanilla_writes_the_same_contract_on_both_hosts(tmp_path):
    sim, net, sim_dir, net_dir = both(tmp_path, VANILLA)
    assert_same_contract(sim, net, "vanilla")
    assert sim["horizon"] == {"unit": "rounds", "length": 2}
    assert metric_names(sim_dir) == metric_names(net_dir)
    assert "cpu_seconds" in metric_names(net_dir)


def test_dfl_step_metrics_are_combined_on_a_localnet_too(tmp_path):
    sim, net, sim_dir, net_dir = both(tmp_path, DFL)
    assert_same_contract(sim, net, "dfl")
    assert sim["horizon"] == {"unit": "ticks", "length": 12}
    # the same names, except that a loaded machine may let a real network's 12 ticks pass
    # without a block (then no per-block metrics): never a name the simulator lacks
    names = metric_names(net_dir)
    assert names <= metric_names(sim_dir)
    assert {"cpu_seconds", "dfl.blocks", "dfl.model_difference"} <= names
    for summary in (sim, net):
        assert summary["dfl"]["model_difference_final"] is not None
    rows = [json.loads(line) for line in RunLayout(net_dir).metrics_jsonl.read_text().splitlines()]
    diff = [r for r in rows if r["name"] == "dfl.model_difference"]
    assert {r["node"] for r in diff} == {STEP_NODE}
    # a step is combined once every node has reported it; on a real network a node may
    # miss a report step, but all of them report the last one
    assert 12 in {r["step"] for r in diff if r["tags"]["layer"] == "all"}
