"""End to end: `fedledger run` of tiny configs, outputs and determinism."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from fedledger.cli import app

TINY = {
    "name": "tiny",
    "seed": 1,
    "rounds": 3,
    "data": {"dataset": "digits", "partition": "iid"},
    "model": {"name": "mlp", "hidden": [16]},
    "train": {"epochs": 1, "lr": 0.1, "batch_size": 16},
    "protocol": {"name": "vanilla", "fraction": 0.75},
    "nodes": {"count": 4},
}


def write(tmp_path, tree, name="tiny.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(tree))
    return path


def run_cli(*args):
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_run_writes_the_run_directory(tmp_path):
    out = tmp_path / "run"
    code, output = run_cli("run", str(write(tmp_path, TINY)), "--out", str(out), "-q")
    assert code == 0, output
    assert "final accuracy" in output
    for name in (
        "config.yaml",
        "metrics.csv",
        "metrics.jsonl",
        "summary.json",
        "plots/accuracy.png",
    ):
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())
    for key in (
        "protocol",
        "seed",
        "horizon",
        "final_accuracy",
        "honest_accuracies",
        "wall_seconds",
        "virtual_seconds",
    ):
        assert key in summary
    assert summary["protocol"] == "vanilla"
    assert summary["horizon"] == {"unit": "rounds", "length": 3}
    assert summary["host"] == "simulator" and summary["vanilla"] == {}
    assert 0.3 < summary["final_accuracy"] <= 1.0
    header, *rows = (out / "metrics.csv").read_text().splitlines()
    assert header == "node,role,honest,step,time,accuracy,loss"
    assert len(rows) == 3 and all(r.startswith("server,server,1,") for r in rows)
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["rounds"] == 3 and resolved["train"]["lr"] == 0.1


def test_same_config_and_seed_give_identical_metrics(tmp_path):
    path = write(tmp_path, TINY)
    for name in ("a", "b"):
        code, output = run_cli("run", str(path), "--out", str(tmp_path / name), "-q")
        assert code == 0, output
    a = (tmp_path / "a" / "metrics.csv").read_text()
    assert a == (tmp_path / "b" / "metrics.csv").read_text()
    code, _ = run_cli("run", str(path), "--out", str(tmp_path / "c"), "-q", "-o", "seed=2")
    assert code == 0
    assert a != (tmp_path / "c" / "metrics.csv").read_text()


def test_bad_override_is_a_clear_error(tmp_path):
    code, output = run_cli("run", str(write(tmp_path, TINY)), "-o", "train.lr=-3", "-q")
    assert code == 2
    assert "train.lr" in output and "-3" in output


def test_list_shows_every_registry():
    code, output = run_cli("list")
    assert code == 0
    for word in ("vanilla", "mlp", "cnn", "digits", "idx", "dirichlet", "fedavg", "halffedavg"):
        assert word in output
