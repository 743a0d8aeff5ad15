"""The run contract: the run-directory layout, the typed summary, namespaced metric names,
two-part step metrics and the horizon shown by ``fedledger run``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from fedledger.assembly.metrics import (
    MetricNames,
    MetricsRecorder,
    StepCombiner,
    StepSummary,
    UndeclaredMetricError,
    combine_steps,
)
from fedledger.cli import app
from fedledger.experiment.rundir import LocalnetCounters, RunDir, RunSummary, SimCounters
from fedledger.learning.jobs import EvalResult
from fedledger.protocols.base import EmitMetric, Horizon
from fedledger.protocols.dfl import Dfl
from fedledger.protocols.dfl.params import DflParams
from fedledger.protocols.dfl.report import difference_metrics
from fedledger.protocols.results import STEP_NODE
from fedledger.protocols.vanilla import Vanilla, VanillaParams
from fedledger.storage.layout import NodeLayout, RunLayout


def test_the_layout_names_every_file_of_a_run(tmp_path):
    run = RunLayout(tmp_path / "r")
    assert run.config == tmp_path / "r" / "config.yaml"
    assert run.summary.name == "summary.json" and run.metrics_csv.name == "metrics.csv"
    assert run.plot("accuracy.png") == tmp_path / "r" / "plots" / "accuracy.png"
    node = run.node("n001")
    assert node.root == tmp_path / "r" / "nodes" / "n001"
    assert node.ledger == node.root / "ledger.sqlite"
    assert node.chain("inter") == node.root / "chain-inter.sqlite"
    names = (node.blobs.name, node.journal.name, node.log.name)
    assert names == ("blobs", "metrics.jsonl", "node.log")
    assert run.node_ids() == []
    node.root.mkdir(parents=True)
    assert run.node_ids() == ["n001"] and NodeLayout(node.root).node_id == "n001"
    for bad in ("", "../x", "a/b", ".."):
        with pytest.raises(ValueError, match="allowed"):
            run.node(bad)
    with pytest.raises(ValueError, match="chain name"):
        node.chain("a/b")


def test_metric_names_are_namespaced_and_undeclared_ones_refused():
    names = MetricNames(Dfl(DflParams()))
    assert names.qualify("train_loss") == "train_loss"  # common: bare
    assert names.qualify("reputation") == "dfl.reputation"
    with pytest.raises(UndeclaredMetricError, match=r"'made_up'.*reputation"):
        names.qualify("made_up")


def recorder(names=None, step_metrics=None, roles=("a", "b"), **kw):
    return MetricsRecorder(
        evaluate=lambda w: EvalResult(float(w[0]), 0.0, 1),
        roles=dict.fromkeys(roles, "worker"),
        honest=dict.fromkeys(roles, True),
        step_metrics=step_metrics,
        names=names,
        **kw,
    )


def test_the_simulator_recorder_refuses_an_undeclared_metric():
    names = MetricNames(Vanilla(VanillaParams()))
    rec = recorder(names)
    rec.on_metric("a", 1.0, EmitMetric("participants", 3.0, 1))
    assert rec.metrics[0].name == "vanilla.participants"
    with pytest.raises(UndeclaredMetricError, match="'reputation'"):
        rec.on_metric("a", 1.0, EmitMetric("reputation", 1.0, 1))


LAYOUT = (("w", (2, 2)), ("b", (2,)))


@given(
    st.lists(
        st.lists(st.floats(-10, 10, allow_nan=False), min_size=6, max_size=6),
        min_size=2,
        max_size=2,
    )
)
def test_step_metrics_combined_from_journaled_summaries_equal_the_in_process_ones(models):
    weights = {n: np.array(w, np.float32) for n, w in zip(("a", "b"), models, strict=True)}
    step = difference_metrics(LAYOUT)
    # in process (the simulator): the recorder summarizes and combines
    rec = recorder(step_metrics=step)
    for time, (node, w) in enumerate(sorted(weights.items())):
        rec.on_report(node, float(time), 4, w)
    in_process = [m for m in rec.metrics if m.node == STEP_NODE]
    # on a localnet: each node journals its summary as JSON, localnet combines
    journaled = []
    node_rec = recorder(step_metrics=step, on_summary=journaled.append, combine=False)
    for time, (node, w) in enumerate(sorted(weights.items())):
        node_rec.on_report(node, float(time), 4, w)
    assert not [m for m in node_rec.metrics if m.node == STEP_NODE]
    read_back = [
        StepSummary(s.node, s.step, s.time, np.array(json.loads(json.dumps(list(s.summary)))))
        for s in journaled
    ]
    gathered = combine_steps(step, ("a", "b"), read_back)
    assert gathered == in_process
    assert {m.tags["layer"] for m in gathered} == {"w", "b", "all"}


def test_a_step_waits_for_every_node_and_a_restart_replaces_its_summary():
    step = difference_metrics(LAYOUT)
    combiner = StepCombiner(step, ("a", "b"))
    s = np.array([1.0, 2.0])
    assert combiner.add(StepSummary("a", 1, 0.5, s)) == []
    assert combiner.add(StepSummary("a", 1, 0.7, s + 1)) == []  # again after a restart
    rows = combiner.add(StepSummary("b", 1, 0.9, s))
    assert rows and all(r.time == 0.9 and r.node == STEP_NODE for r in rows)
    assert [r.value for r in rows if r.tags["layer"] == "all"] == [2.0]  # 2*|1|/2 per layer
    with pytest.raises(ValueError, match="'c'"):
        combiner.add(StepSummary("c", 1, 1.0, s))


def summary(counters) -> RunSummary:
    return RunSummary(
        name="x",
        protocol="dfl",
        seed=1,
        horizon=Horizon("ticks", 60),
        nodes=2,
        malicious=("n001",),
        final_accuracy=0.5,
        honest_accuracies=(0.5,),
        last_step=60,
        measured={"backdoor_asr": None},
        wall_seconds=1.5,
        cpu_seconds={"ml": 1.25},
        counters=counters,
        protocol_report={"model_difference_final": 0.07},
    )


@pytest.mark.parametrize(
    "counters",
    [
        SimCounters(2.0, 10, 4, 0, 100, 3, 2),
        LocalnetCounters(
            2.0, 4, 0, 100, 90, 80, 6, 2, {"queue_full": 1}, 2, 5.0, {"n001": 0.5},
            {"n000": 0, "n001": None}, False,
        ),
    ],
)
def test_the_summary_is_written_as_json_and_read_back(tmp_path, counters):
    written = summary(counters)
    RunDir(tmp_path).write_summary(written)
    data = json.loads(RunLayout(tmp_path).summary.read_text())
    assert data["horizon"] == {"unit": "ticks", "length": 60} and "rounds" not in data
    assert data["dfl"] == {"model_difference_final": 0.07}  # under the protocol's name
    assert data["host"] == counters.host and data["nodes_halted"] == 2
    assert written["messages"] == 4 and "measured" in written and "nope" not in written
    with pytest.raises(KeyError, match="'nope'"):
        written["nope"]
    assert RunDir(tmp_path).read_summary() == written
    with pytest.raises(ValueError, match="host 'ray'"):
        RunSummary.from_json({**data, "host": "ray"})


def test_run_shows_ticks_for_a_dfl_run(tmp_path: Path):
    config = {
        "name": "ticks",
        "seed": 1,
        "data": {"dataset": "digits", "partition": "iid", "val_fraction": 0.15},
        "model": {"name": "mlp", "hidden": [8]},
        "train": {"epochs": 1, "lr": 0.1, "batch_size": 16},
        "protocol": {"name": "dfl", "topology": "random", "degree": 2, "ticks": 6,
                     "report_every": 3, "samples_per_interval": 16, "batch_size": 16},
        "nodes": {"count": 3},
        "output": {"plots": False},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert "ticks / last tick" in result.output and "rounds" not in result.output
    written = RunDir(out).read_summary()
    assert written.horizon == Horizon("ticks", 6) and written.last_step == 6
    assert written.protocol_report["model_difference_final"] is not None
