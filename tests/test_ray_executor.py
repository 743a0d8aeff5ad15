"""The Ray executor (issue 18): the same ledgers, metrics and summary as inline, on one
machine and on a two-node cluster, and a job whose worker is killed is run again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import Future

import pytest

from fedledger.assembly.config import parse_config
from fedledger.errors import ConfigError
from fedledger.experiment.runner import RunResult, run_experiment
from fedledger.learning.executor import ExecutorReport, InlineExecutor, JobLostError
from fedledger.ledger.store import ChainStore
from fedledger.runtime.ray import RayOptions, RayUnavailableError, make_executor
from fedledger.runtime.sim.simulator import SimulationError

try:
    import ray

    from fedledger.runtime.ray.executor import RayExecutor
except ImportError:  # the simulator's eager path is still tested below, without Ray
    ray = None
needs_ray = pytest.mark.skipif(
    ray is None, reason="ray is not installed: the Ray executor tests need it (pip install ray)"
)

SMALL_RAY = {"include_dashboard": False, "object_store_memory": 200 * 2**20, "log_to_driver": False}
DATA = {"dataset": "digits", "partition": "iid", "val_fraction": 0.2}
MODEL = {"name": "mlp", "hidden": [16]}

VANILLA = {  # alie reads the honest updates of its round: those jobs stay lazy
    "name": "ray-vanilla",
    "seed": 2,
    "rounds": 3,
    "data": DATA,
    "model": MODEL,
    "train": {"epochs": 1, "lr": 0.1, "batch_size": 16, "momentum": 0.5},
    "protocol": {"name": "vanilla", "fraction": 0.8},
    "nodes": {"count": 6, "malicious": [{"count": 1, "attack": {"name": "alie"}}]},
    "output": {"plots": False},
}
POSBFL = {
    **VANILLA,
    "name": "ray-posbfl",
    "rounds": 2,
    "protocol": {"name": "posbfl", "workers": 4, "validators": 3, "miners": 2,
                 "local_epochs": 2, "validation": "reference", "reference_epochs": 1},
    "nodes": {"count": 9, "malicious": [{"count": 1, "attack": {"name": "gaussian_noise"}}]},
}
DFL = {
    **VANILLA,
    "name": "ray-dfl",
    "protocol": {"name": "dfl", "topology": "full", "samples_per_interval": 32,
                 "batch_size": 32, "update_rule": {"name": "filtered"}, "ticks": 30,
                 "report_every": 10},
    "nodes": {"count": 4},
}
MEASURED = {"wall_seconds", "cpu_seconds", "executor"}


def measured_out(run: RunResult) -> tuple[dict, list[str], dict[str, list[str]]]:
    """summary.json less what is measured, metrics less CPU time, ledgers' block hashes."""
    summary = json.loads((run.run_dir / "summary.json").read_text())
    kept = {k: v for k, v in summary.items() if k not in MEASURED}
    lines = (run.run_dir / "metrics.jsonl").read_text().splitlines()
    metrics = [line for line in lines if json.loads(line)["name"] != "cpu_seconds"]
    ledgers = {}
    for path in sorted(run.run_dir.glob("nodes/*/ledger.sqlite")):
        with ChainStore(path) as store:
            ledgers[path.parent.name] = [b.hash for b in store.canonical_chain()]
    return kept, metrics, ledgers


class EagerExecutor:
    """Runs each call when it is submitted (when its job starts, not when it completes),
    and counts the results not yet read: the simulator's eager path without Ray."""

    name = "eager"
    max_in_flight = 3

    def __init__(self) -> None:
        self._inline = InlineExecutor()
        self.unread = 0
        self.most_unread = 0

    def submit(self, fn, /, *args):  # type: ignore[no-untyped-def]
        done = self._inline.submit(fn, *args)
        self.unread += 1
        self.most_unread = max(self.most_unread, self.unread)
        executor = self

        class Read(Future):  # type: ignore[type-arg]
            def result(self, timeout=None):  # type: ignore[no-untyped-def]
                executor.unread -= 1
                return done.result()

        return Read()

    def report(self) -> ExecutorReport:
        return self._inline.report()

    def shutdown(self) -> None:
        return None


@pytest.mark.parametrize("tree", [VANILLA, DFL], ids=["vanilla-alie", "dfl"])
def test_jobs_computed_when_they_start_give_the_inline_results(tmp_path, tree):
    config = parse_config(tree)
    inline = run_experiment(config, tmp_path / "inline")
    eager = EagerExecutor()
    early = run_experiment(config, tmp_path / "eager", executor=eager)
    assert measured_out(early) == measured_out(inline)
    assert early.executor is not None and early.executor["jobs"] > 3
    # at most max_in_flight ahead, and one asked for out of turn
    assert 1 < eager.most_unread <= EagerExecutor.max_in_flight + 1


class LosingExecutor(EagerExecutor):
    def submit(self, fn, /, *args):  # type: ignore[no-untyped-def]
        future: Future[object] = Future()
        future.set_exception(JobLostError("its Ray worker died 3 times (worker 0 ...)"))
        return future


def test_a_lost_job_stops_the_run_naming_node_and_job(tmp_path):
    with pytest.raises(SimulationError, match=r"job \S+ of node \S+ \(TrainJob\) was lost: its"):
        run_experiment(parse_config(VANILLA), tmp_path / "lost", executor=LosingExecutor())


def test_without_ray_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(RayUnavailableError, match="pip install"):
        make_executor("ray", RayOptions())


@pytest.fixture(scope="module")
def executor():
    """One local Ray and one executor (two workers) for the module's runs: workers start
    once, each run's job runner is sent to them when the run starts."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, **SMALL_RAY)
    ex = RayExecutor(RayOptions(max_retries=1))
    yield ex
    ex.shutdown()
    if ray.is_initialized():
        ray.shutdown()


@needs_ray
def test_an_unreachable_cluster_is_named():
    with pytest.raises(RayUnavailableError, match=r"127\.0\.0\.1:9.*ray start --head"):
        make_executor("ray", RayOptions(address="127.0.0.1:9"))
    with pytest.raises(RayUnavailableError, match="HOST:PORT"):
        make_executor("ray", RayOptions(address="no-port-here"))


@needs_ray
def test_the_cli_takes_the_executor_and_names_an_unreachable_cluster(tmp_path):
    from typer.testing import CliRunner

    from fedledger.cli import app

    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(VANILLA))  # JSON is YAML
    out = str(tmp_path / "run")
    result = CliRunner().invoke(app, ["run", str(config), "-q", "--out", out, "--executor",
                                      "ray", "--ray-address", "127.0.0.1:9"])
    assert result.exit_code == 2 and "cannot reach the Ray cluster at" in result.output
    result = CliRunner().invoke(app, ["run", str(config), "-q", "--executor", "dask"])
    assert result.exit_code == 2 and "unknown executor 'dask'" in result.output


def test_options_and_names_are_checked():
    with pytest.raises(ConfigError, match="cpus_per_job: must be > 0, got 0"):
        RayOptions(cpus_per_job=0)
    with pytest.raises(ConfigError, match="max_retries: must be >= 0"):
        RayOptions(max_retries=-1)
    with pytest.raises(ConfigError, match="unknown executor 'dask'; allowed: inline, ray"):
        make_executor("dask")
    with pytest.raises(ConfigError, match="Ray options were given with the inline"):
        make_executor("inline", RayOptions())


@pytest.mark.slow
@needs_ray
def test_the_cli_lists_components_without_importing_ray():
    code = (
        "import sys; from typer.testing import CliRunner; from fedledger.cli import app; "
        "r = CliRunner().invoke(app, ['list']); assert r.exit_code == 0, r.output; "
        "assert 'ray' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.slow
@needs_ray
@pytest.mark.parametrize("tree", [VANILLA, POSBFL, DFL], ids=["vanilla", "posbfl", "dfl"])
def test_ray_gives_the_inline_results(executor, tmp_path, tree):
    config = parse_config(tree)
    inline = run_experiment(config, tmp_path / "inline")
    on_ray = run_experiment(config, tmp_path / "ray", executor=executor)
    assert measured_out(on_ray) == measured_out(inline)
    if tree is POSBFL:
        assert measured_out(inline)[2], "PoS-BFL keeps ledgers"
    usage = json.loads((on_ray.run_dir / "summary.json").read_text())["executor"]
    assert usage["executor"] == "ray" and usage["jobs"] > 0 and usage["workers"] >= 1
    assert "executor" not in json.loads((inline.run_dir / "summary.json").read_text())


@pytest.mark.slow
@needs_ray
def test_a_killed_worker_is_replaced_and_its_job_retried(executor, tmp_path, monkeypatch):
    config = parse_config(VANILLA)
    inline = run_experiment(config, tmp_path / "inline")
    send = executor._send
    sent = []

    def send_then_kill(call):  # type: ignore[no-untyped-def]
        send(call)
        sent.append(call)
        if len(sent) == 5:  # the worker of the fifth job dies while it holds the job
            os.kill(call.tried[-1].where[0], signal.SIGKILL)

    monkeypatch.setattr(executor, "_send", send_then_kill)
    on_ray = run_experiment(config, tmp_path / "ray", executor=executor)
    assert on_ray.executor is not None and on_ray.executor["retries"] >= 1
    assert measured_out(on_ray) == measured_out(inline)


@pytest.mark.slow
@needs_ray
def test_calls_errors_and_a_job_lost_twice(executor):
    # defined here, so they travel by value (workers cannot import this test module)
    def sleep_then(seconds: float, value: int) -> int:
        time.sleep(seconds)
        return value

    def fail(message: str) -> None:
        raise ValueError(message)

    assert executor.submit(sleep_then, 0.0, 7).result(timeout=120) == 7
    with pytest.raises(ValueError, match="bad job"):
        executor.submit(fail, "bad job").result(timeout=60)
    retries = executor._retries
    slow = executor.submit(sleep_then, 60.0, 1)
    for kill in range(2):  # max_retries=1: killed, sent again, killed again: lost
        deadline = time.monotonic() + 120
        busy = []
        while time.monotonic() < deadline and not busy:
            time.sleep(0.3)
            if executor._retries == retries + kill:
                busy = [s for s in executor._slots if s.alive and s.outstanding]
        assert busy, "the job was not running"
        os.kill(executor._where(busy[0])[0], signal.SIGKILL)
    with pytest.raises(JobLostError, match=r"died 2 times \(worker \d+ pid \d+ on node"):
        slow.result(timeout=120)
    assert executor.submit(sleep_then, 0.0, 8).result(timeout=120) == 8  # replaced


@pytest.mark.slow
@needs_ray
def test_a_two_node_cluster_runs_the_jobs_on_both(tmp_path):
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    small = {"object_store_memory": 100 * 2**20, "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, **small})
    try:
        cluster.add_node(num_cpus=1, object_store_memory=100 * 2**20)
        cluster.wait_for_nodes()
        config = parse_config(VANILLA)
        inline = run_experiment(config, tmp_path / "inline")
        options = RayOptions(address=cluster.address)
        on_ray = run_experiment(config, tmp_path / "ray", executor="ray", ray=options)
        assert on_ray.executor is not None
        assert on_ray.executor["workers"] == 2 and on_ray.executor["machines"] == 2
        assert measured_out(on_ray) == measured_out(inline)
        assert not ray.is_initialized(), "the executor leaves the cluster it joined"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
