"""FLTrust in vanilla: the server's root set, its trusted update each round, end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedledger.assembly.build import build_experiment, sample_root_set
from fedledger.assembly.config import parse_config
from fedledger.assembly.plugins import registries
from fedledger.errors import ConfigError
from fedledger.experiment.runner import run_experiment
from fedledger.protocols.base import (
    Broadcast,
    CancelTimer,
    JobFinished,
    MessageReceived,
    ReportModel,
    RunJob,
    Start,
    TimerFired,
    TrainJob,
    TrainResult,
    TrainSettings,
)
from fedledger.protocols.vanilla.messages import ClientUpdate
from setupkit import make_setup


def tiny(aggregator: dict, root_samples: int = 0, attack: dict | None = None) -> dict:
    malicious = [] if attack is None else [{"count": 3, "attack": attack}]
    return {
        "name": "fltrust",
        "seed": 3,
        "rounds": 8,
        "data": {"dataset": "digits", "partition": "iid"},
        "model": {"name": "mlp", "hidden": [16]},
        "train": {"epochs": 1, "lr": 0.1, "batch_size": 16, "momentum": 0.5},
        "protocol": {"name": "vanilla", "aggregator": aggregator, "root_samples": root_samples},
        "nodes": {"count": 8, "malicious": malicious},
        "output": {"plots": False},
    }


def test_fltrust_without_root_set_is_a_config_error():
    with pytest.raises(ConfigError, match=r"fltrust.*root_samples >= 1.*got root_samples=0"):
        parse_config(tiny({"name": "fltrust"}))


def test_root_set_is_drawn_from_the_clients_data_which_they_keep(tmp_path: Path):
    plain = build_experiment(parse_config(tiny({"name": "fedavg"})), tmp_path / "a")
    rooted = build_experiment(parse_config(tiny({"name": "fltrust"}, 40)), tmp_path / "b")
    clients = [p.node_id for p in plain.plans if p.role == "client"]
    assert [plain.jobs.num_samples(c) for c in clients] == [
        rooted.jobs.num_samples(c) for c in clients
    ]
    assert plain.jobs.num_samples("server") == 0
    assert rooted.jobs.num_samples("server") == 40
    assert rooted.nodes["server"].setup.num_train_samples == 40
    root = rooted.jobs._nodes["server"].data.train
    pool = {
        (x.tobytes(), int(y))
        for node in rooted.data.nodes
        for x, y in zip(node.train.x, node.train.y, strict=True)
    }
    assert all((x.tobytes(), int(y)) in pool for x, y in zip(root.x, root.y, strict=True))
    again = sample_root_set(rooted.data, 40, 3, "server")  # seeded: the same draw
    np.testing.assert_array_equal(again.train.x, root.x)
    assert len(again.val) == 0


def test_root_set_larger_than_the_clients_data_is_refused(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"protocol.root_samples.*allowed 1\.\."):
        build_experiment(parse_config(tiny({"name": "fltrust"}, 100_000)), tmp_path)


def server(root_samples: int, aggregator: str = "fltrust"):
    reg = registries()["protocol"]
    params = {"aggregator": {"name": aggregator}, "root_samples": root_samples}
    proto = reg.get("vanilla").factory(reg.params("vanilla", params))
    plans = list(proto.plan(2, 0))
    setup = make_setup(
        plan=plans[0],
        all_nodes=tuple(plans),
        seed=0,
        train=TrainSettings(),
        initial_weights=np.zeros(2, np.float32),
        num_train_samples=root_samples,
        params=proto.params,
        rounds=2,
    )
    return proto.create_node(setup)


def test_server_trains_on_its_root_set_and_aggregates_with_the_trusted_update():
    node = server(10)
    effects = node.handle(Start(0.0))
    (job,) = [e for e in effects if isinstance(e, RunJob)]
    assert job.job_id == "root:1" and isinstance(job.job, TrainJob)
    assert job.job.tag == "root-1" and np.array_equal(job.job.weights, np.zeros(2))
    good = ClientUpdate(1, np.array([1.0, 0.0], np.float32), 5, 0.1)
    bad = ClientUpdate(1, np.array([-9.0, 0.0], np.float32), 5, 0.1)
    assert node.handle(MessageReceived(1.0, "c000", good)) == []
    assert node.handle(MessageReceived(1.0, "c001", bad)) == [CancelTimer("round-timeout")]
    # the round waits for the trusted update; a repeated timeout changes nothing
    assert node.handle(TimerFired(600.0, "round-timeout")) == []
    trusted = TrainResult(np.array([2.0, 0.0], np.float32), 10, 0.3)
    effects = node.handle(JobFinished(2.0, "root:1", trusted))
    report = next(e for e in effects if isinstance(e, ReportModel))
    np.testing.assert_allclose(report.weights, [2.0, 0.0])  # good rescaled to ||g0||, bad dropped
    assert effects[0].name == "root_loss" and effects[0].value == pytest.approx(0.3)
    assert any(isinstance(e, Broadcast) and e.message.round == 2 for e in effects)
    assert any(isinstance(e, RunJob) and e.job_id == "root:2" for e in effects)


def test_trusted_update_arriving_first_is_kept_for_the_round():
    node = server(10)
    node.handle(Start(0.0))
    trusted = TrainResult(np.array([0.0, 1.0], np.float32), 10, 0.3)
    assert len(node.handle(JobFinished(0.5, "root:1", trusted))) == 1  # only root_loss
    node.handle(MessageReceived(1.0, "c000", ClientUpdate(1, np.ones(2, np.float32), 5, 0.1)))
    effects = node.handle(
        MessageReceived(1.0, "c001", ClientUpdate(1, np.ones(2, np.float32), 5, 0.1))
    )
    report = next(e for e in effects if isinstance(e, ReportModel))
    np.testing.assert_allclose(report.weights, [0.5**0.5, 0.5**0.5], rtol=1e-6)  # ||g0|| = 1


def test_other_rules_never_train_on_the_root_set():
    effects = server(10, aggregator="median").handle(Start(0.0))
    assert not any(isinstance(e, RunJob) for e in effects)


def test_fltrust_survives_sign_flipping_that_breaks_fedavg(tmp_path: Path):
    attack = {"name": "sign_flip", "scale": 4.0}
    fedavg = run_experiment(parse_config(tiny({"name": "fedavg"}, 0, attack)), tmp_path / "f")
    fltrust = run_experiment(parse_config(tiny({"name": "fltrust"}, 100, attack)), tmp_path / "t")
    assert fedavg.summary["final_accuracy"] < 0.2  # 3 of 8 clients push it to chance
    assert fltrust.summary["final_accuracy"] > 0.6  # honest FedAvg reaches about 0.8
    assert fltrust.summary["jobs"] == fedavg.summary["jobs"] + 8  # one root job per round
