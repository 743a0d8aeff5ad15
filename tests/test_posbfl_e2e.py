"""PoS-BFL end to end in the simulator: digits, a small MLP, 3 Gaussian-noise workers."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from fedledger.assembly.build import build_protocol, prepare_data
from fedledger.assembly.config import parse_config, to_yaml
from fedledger.assembly.services import make_genesis, node_keys, open_node_services
from fedledger.cli import app
from fedledger.experiment.runner import run_experiment
from fedledger.learning.train import Learner
from fedledger.ledger.store import ChainStore
from fedledger.protocols.base import BlobReceived, FetchBlob, Start, TrainSettings
from fedledger.protocols.posbfl.chainstate import updates_of
from fedledger.storage import BlobStore
from setupkit import make_setup

ROUNDS = 6


def config(protocol: dict, name: str):
    return parse_config(
        {
            "name": name,
            "seed": 3,
            "rounds": ROUNDS,
            "data": {"dataset": "digits", "partition": "iid", "val_fraction": 0.25},
            "model": {"name": "mlp", "hidden": [32]},
            "train": {"epochs": 3, "lr": 0.1, "batch_size": 10, "momentum": 0.5},
            "protocol": protocol,
            "nodes": {
                "count": 12,
                "malicious": [{"count": 3, "attack": {"name": "gaussian_noise", "sigma": 1.0}}],
            },
            "output": {"plots": False},
        }
    )


POSBFL = {
    "name": "posbfl",
    "workers": 6,
    "validators": 4,
    "miners": 2,
    "local_epochs": 8,
    "validation": "reference",
    "reference_epochs": 3,
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("posbfl")
    pos = run_experiment(config(POSBFL, "pos"), out=root / "pos")
    again = run_experiment(config(POSBFL, "pos"), out=root / "again")
    vanilla = run_experiment(config({"name": "vanilla"}, "van"), out=root / "van")
    return pos, again, vanilla


def heads(run_dir):
    out = {}
    for node_dir in sorted((run_dir / "nodes").iterdir()):
        with ChainStore(node_dir / "ledger.sqlite") as store:
            out[node_dir.name] = [b.hash for b in store.canonical_chain()]
    return out


def test_noise_workers_are_detected_and_honest_accuracy_beats_vanilla(runs):
    pos, _, vanilla = runs
    s = pos.summary
    report = s.protocol_report
    assert report["legal_blocks"] == ROUNDS
    detection = report["detection"]
    malicious_updates = detection["TP"] + detection["FN"]
    assert malicious_updates > 0
    assert detection["TP"] >= 0.75 * malicious_updates, detection
    assert detection["FP"] <= 0.1 * (detection["FP"] + detection["TN"]), detection
    # after the first round every noisy update is voted out
    rows = list(csv.DictReader((pos.run_dir / "detection.csv").open()))
    assert all(int(r["FN"]) == 0 for r in rows if int(r["round"]) > 1), rows
    assert s.final_accuracy > vanilla.summary.final_accuracy + 0.2
    assert s.final_accuracy > 0.8


def test_every_ledger_verifies_and_honest_chains_are_identical(runs):
    pos = runs[0]
    result = CliRunner().invoke(app, ["chain", "verify", str(pos.run_dir)])
    assert result.exit_code == 0, result.output
    chains = heads(pos.run_dir)
    honest = {n: c for n, c in chains.items() if n not in pos.summary.malicious}
    assert len({tuple(c) for c in honest.values()}) == 1
    assert len(next(iter(honest.values()))) == ROUNDS + 1
    assert pos.summary.protocol_report["honest_chains_identical"] is True


def test_two_runs_give_identical_metrics_and_ledgers(runs):
    pos, again, _ = runs
    assert (pos.run_dir / "metrics.csv").read_text() == (again.run_dir / "metrics.csv").read_text()
    assert heads(pos.run_dir) == heads(again.run_dir)


def test_stakes_on_chain_add_up_to_the_recorded_rewards(runs):
    pos = runs[0]
    with ChainStore(pos.run_dir / "nodes" / "d000" / "ledger.sqlite") as store:
        total = 0.0
        for block in store.canonical_chain():
            if block.height:
                total += sum(r.amount for r in block.header.extra.rewards)
    stakes = {}
    for line in (pos.run_dir / "metrics.jsonl").open():
        m = json.loads(line)
        if m["name"] == "posbfl.stake" and m["step"] == ROUNDS:
            stakes[m["tags"]["node"]] = m["value"]
    assert len(stakes) == 12
    assert sum(stakes.values()) == pytest.approx(total)


def test_a_restarted_device_rebuilds_its_state_from_ledger_and_blobs(runs):
    pos = runs[0]
    cfg = config(POSBFL, "pos")
    data = prepare_data(cfg, 12)
    learner = Learner("mlp", {"hidden": [32]}, data.test.x.shape[1:], data.test.num_classes)
    protocol = build_protocol(cfg)
    plans = list(protocol.plan(12, cfg.seed))
    keys = node_keys(plans, cfg.seed)
    genesis = make_genesis(keys, to_yaml(cfg))
    node = "d004"
    svc = open_node_services(node, pos.run_dir / "nodes" / node, keys, genesis)
    try:
        setup = make_setup(
            plan=next(p for p in plans if p.node_id == node),
            all_nodes=tuple(plans),
            seed=cfg.seed,
            train=TrainSettings(),
            initial_weights=learner.init_weights(cfg.seed),
            num_train_samples=1,
            params=protocol.params,
            rounds=ROUNDS + 1,
            services=svc,
        )
        device = protocol.create_node(setup)
        restart_at = ROUNDS * protocol.params.round_length  # the network's clock goes on
        effects = device.handle(Start(restart_at))
        assert device.round == ROUNDS and device.state.round == ROUNDS
        last = svc.ledger.head()
        assert {u.tx_id for u in device.state.last_updates} == {u.tx_id for u in updates_of(last)}
        for fetch in [e for e in effects if isinstance(e, FetchBlob)]:
            blobs = BlobStore(pos.run_dir / "nodes" / fetch.source / "blobs")
            blob = blobs.get(fetch.cid)
            device.handle(BlobReceived(restart_at + 1.0, fetch.cid, fetch.source, blob))
        assert device.round == ROUNDS + 1  # resumed with the next round
        restored = device.global_weights
    finally:
        svc.ledger.close()
    acc = learner.evaluate(restored, data.test.x, data.test.y).accuracy
    final = [r for r in pos.rows if r.node == node and r.step == ROUNDS]
    assert final and abs(final[0].accuracy - acc) < 1e-9


def test_forging_withholding_and_vote_flipping_leave_honest_chains_intact(tmp_path):
    from fedledger.protocols.posbfl.roles import assign_roles, role_counts

    protocol = {**POSBFL, "workers": 5, "validators": 4, "miners": 3, "consensus": "pow"}
    cfg = config(protocol, "faults").model_copy(update={"rounds": 4})
    raw = cfg.model_dump(mode="json")
    raw["nodes"]["malicious"] = [
        {"ids": ["d001"], "faults": ["forge_block"]},
        {"ids": ["d002"], "faults": ["withhold_block"]},
        {"ids": ["d003"], "faults": ["flip_votes"]},
    ]
    result = run_experiment(parse_config(raw), out=tmp_path / "faults")
    s = result.summary.protocol_report
    check = CliRunner().invoke(app, ["chain", "verify", str(result.run_dir)])
    assert check.exit_code == 0, check.output
    assert s["honest_chains_identical"] is True
    chains = heads(result.run_dir)
    honest = [c for n, c in chains.items() if n not in ("d001", "d002", "d003")]
    assert len(honest[0]) == 5 and all(c == honest[0] for c in honest)
    params = build_protocol(parse_config(raw)).params
    devices = tuple(f"d{i:03d}" for i in range(12))
    mined = [
        assign_roles(devices, role_counts(params, 12), cfg.seed, r).miners for r in (1, 2, 3, 4)
    ]
    assert any("d001" in m for m in mined) and any("d002" in m for m in mined)
    assert s["rejected"].get("bad_outcome", 0) > 0  # the forged blocks were refused
    with ChainStore(result.run_dir / "nodes" / "d000" / "ledger.sqlite") as store:
        proposers = {b.header.proposer for b in store.canonical_chain() if b.height}
    keys = node_keys(build_protocol(parse_config(raw)).plan(12, cfg.seed), cfg.seed)
    assert keys["d001"].address not in proposers and keys["d002"].address not in proposers
