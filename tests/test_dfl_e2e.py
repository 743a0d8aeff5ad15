"""DFL end to end in the simulator: training, chains that verify, the duplication attack."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from fedledger.assembly.config import parse_config
from fedledger.cli import app
from fedledger.experiment.runner import run_experiment
from fedledger.learning.weights import from_safetensors
from fedledger.ledger.store import ChainStore
from fedledger.storage.blobs import BlobStore

THIEF = "n003"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    config = parse_config(
        {
            "name": "dfl-e2e",
            "seed": 1,
            "data": {"dataset": "digits", "partition": "iid", "val_fraction": 0.2},
            "model": {"name": "mlp", "hidden": [32]},
            "train": {"epochs": 2, "lr": 0.1, "batch_size": 16, "momentum": 0.5},
            "protocol": {
                "name": "dfl",
                "topology": "full",
                "buffer_size": 3,
                "samples_per_interval": 32,
                "batch_size": 32,
                "block_txs": 3,
                "update_rule": {"name": "filtered"},
                "ticks": 160,
                "report_every": 40,
            },
            "nodes": {"count": 5, "malicious": [{"ids": [THIEF], "faults": ["duplicate"]}]},
            "output": {"plots": True},
        }
    )
    return run_experiment(config, out=tmp_path_factory.mktemp("dfl") / "run")


def test_a_small_network_trains_and_reports_dfl_metrics(run):
    s = run.summary
    assert s.final_accuracy > 0.75, s.honest_accuracies
    assert s.horizon.unit == "ticks" and s.horizon.length == run.summary["horizon"]["length"]
    report = s.protocol_report
    assert report["blocks_per_node"] >= 2
    assert report["receipts_per_block"] > 0
    assert report["model_difference_final"] is not None
    assert (run.run_dir / "plots" / "reputation.png").is_file()
    assert (run.run_dir / "plots" / "model_difference.png").is_file()
    names = {json.loads(line)["name"] for line in (run.run_dir / "metrics.jsonl").open()}
    assert {"dfl.reputation", "dfl.block", "dfl.confirmations_per_block"} <= names
    assert "dfl.model_difference" in names
    assert "reputation" not in names  # recorded namespaced


def test_every_chain_passes_chain_verify(run):
    result = CliRunner().invoke(app, ["chain", "verify", str(run.run_dir)])
    assert result.exit_code == 0, result.output


def _models(run_dir, node):
    """(sender address, weights) of every transaction in ``node``'s chain."""
    out = []
    with ChainStore(run_dir / "nodes" / node / "ledger.sqlite") as store:
        blobs = BlobStore(run_dir / "nodes" / node / "blobs")
        for block in store.canonical_chain():
            for tx in block.transactions:
                weights, _ = from_safetensors(blobs.get(tx.payload.model.cid))
                out.append((tx.sender, weights))
    return out


def test_stolen_models_are_recorded_under_the_thiefs_name_but_earn_no_reputation(run):
    run_dir = run.run_dir
    thief_models = _models(run_dir, THIEF)
    assert thief_models, "the thief recorded no blocks"
    thief_address = thief_models[0][0]
    assert all(sender == thief_address for sender, _ in thief_models)
    originals = [w for n in ("n000", "n001", "n002", "n004") for _, w in _models(run_dir, n)]
    stolen = [
        w
        for _, w in thief_models
        if any(np.linalg.norm(w - o) < 1e-3 * np.linalg.norm(o) for o in originals)
    ]
    assert len(stolen) >= len(thief_models) // 2  # its chain holds others' models
    last: dict[tuple[str, str], float] = {}
    for line in (run_dir / "metrics.jsonl").open():
        m = json.loads(line)
        if m["name"] == "dfl.reputation" and m["node"] != THIEF:
            last[(m["node"], m["tags"]["peer"])] = m["value"]
    thief = [v for (_, peer), v in last.items() if peer == THIEF]
    honest = [v for (_, peer), v in last.items() if peer != THIEF]
    assert len(thief) == 4
    assert max(thief) <= 0.5  # never above the initial reputation
    assert min(honest) > 0.5
