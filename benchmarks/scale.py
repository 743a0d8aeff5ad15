"""Scaling out (issue 18): wall time and peak memory of simulated runs against node count,
inline and on Ray, and the Ray executor's speedup against the CPUs it is given.

    python benchmarks/scale.py --quick                 # two small inline runs, in-process
    python benchmarks/scale.py                         # the tables below (long)
    python benchmarks/scale.py --table nodes --protocols vanilla --nodes 100 1000 10000
    python benchmarks/scale.py --table cpus --cpus 1 2 4

Table ``nodes``: vanilla FedAvg with 100, 1,000 and 10,000 clients (3 rounds, every
client every round), PoS-BFL and DFL with 100 and 1,000 nodes (PoS-BFL: one round, its
committees frozen at 25 validators and 15 miners beyond 100 devices; DFL: 20 ticks,
degree 4), an MLP (64 hidden) on MNIST-10k, with the inline executor and with Ray on
``--ray-cpus`` CPUs. Past 8,000 clients MNIST-10k has fewer training samples than
clients: the run then uses an enlarged copy (each image also shifted by one pixel, 20,000
training images; the original set is the test set). Table ``cpus``: the paper's CNN, 10
clients, 2 rounds on MNIST-10k, inline and on Ray with 1, 2, ... CPUs; ``speedup`` is
the inline run's simulation wall time over this run's.

Every run is one child process (its peak resident memory is its own; on Ray the
workers' peaks are summed beside it), simulation wall time excludes building the
experiment and starting Ray. ``job x``: the executor's own figure, the jobs' summed
time where they ran over the time the simulator waited for them. A run longer than
``--budget`` seconds is stopped and shown as such. On a shared machine wall time
includes waiting for a core. ``--quick`` runs in this process (its peak memory is then
the process's so far).

Goals (issue 18): 10,000 simulated clients in one run under 8 GiB; Ray on 2 CPUs at
least 1.7x faster than inline for the CNN; PoS-BFL and DFL at 1,000 nodes under 8 GiB.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "data" / "mnist-10k"
NODES = {"vanilla": (100, 1000, 10000), "posbfl": (100, 1000), "dfl": (100, 1000)}
MLP = {"name": "mlp", "hidden": [64]}
CNN = {"name": "cnn"}


def enlarged_mnist(directory: Path) -> Path:
    """MNIST-10k twice (as is and shifted one pixel right) as a train set, and the
    original as the t10k test set, as IDX files in ``directory``."""
    def read(name: str) -> bytes:
        return gzip.decompress((MNIST / name).read_bytes())

    images, labels = read("images-idx3-ubyte.gz"), read("labels-idx1-ubyte.gz")
    n, rows, cols = (int.from_bytes(images[4 + 4 * i : 8 + 4 * i], "big") for i in range(3))
    pixels = np.frombuffer(images, np.uint8, offset=16).reshape(n, rows, cols)
    train = np.concatenate([pixels, np.roll(pixels, 1, axis=2)])
    train_labels = np.concatenate([np.frombuffer(labels, np.uint8, offset=8)] * 2)

    def idx(magic: int, array: np.ndarray) -> bytes:
        dims = b"".join(d.to_bytes(4, "big") for d in array.shape)
        return gzip.compress(magic.to_bytes(4, "big") + dims + array.tobytes(), 1)

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "train-images-idx3-ubyte.gz").write_bytes(idx(0x803, train))
    (directory / "train-labels-idx1-ubyte.gz").write_bytes(idx(0x801, train_labels))
    shutil.copy(MNIST / "images-idx3-ubyte.gz", directory / "t10k-images-idx3-ubyte.gz")
    shutil.copy(MNIST / "labels-idx1-ubyte.gz", directory / "t10k-labels-idx1-ubyte.gz")
    return directory


def config_of(
    protocol: str, n: int, model: dict[str, Any], data: Path, fraction: float = 1.0
) -> dict[str, Any]:
    """The experiment config of one run (see the module doc)."""
    # vanilla clients with a few samples each: no validation split (PoS-BFL's validators
    # and DFL's nodes score models on theirs)
    small = n > 200 and protocol == "vanilla"
    base: dict[str, Any] = {
        "name": f"scale-{protocol}-{n}",
        "seed": 0,
        "data": {"dataset": {"name": "idx", "path": str(data)}, "partition": "iid",
                 "val_fraction": 0.0 if small else 0.1},
        "model": model,
        "train": {"epochs": 1, "lr": 0.05, "batch_size": 16},
        "nodes": {"count": n},
        "eval": {"every": 1, "batch_size": 1000},
        "output": {"plots": False},
    }
    if protocol == "vanilla":
        return {**base, "rounds": 3 if model is MLP else 2,
                "protocol": {"name": "vanilla", "fraction": fraction}}
    if protocol == "posbfl":
        validators, miners = (25, 15) if n >= 100 else (max(1, n // 4), max(1, n // 7))
        return {**base, "rounds": 1, "protocol": {
            "name": "posbfl", "workers": n - validators - miners, "validators": validators,
            "miners": miners, "local_epochs": 1}}
    if protocol == "dfl":
        return {**base, "protocol": {
            "name": "dfl", "topology": "random", "degree": min(4, n - 1),
            "samples_per_interval": 8, "batch_size": 8, "ticks": 20, "report_every": 10}}
    raise SystemExit(f"unknown protocol {protocol!r}; allowed: {', '.join(NODES)}")


def _peak_kib(pid: int) -> int:
    """A live process's peak resident memory (VmHWM), 0 if unreadable."""
    try:
        for text in Path(f"/proc/{pid}/status").read_text().splitlines():
            if text.startswith("VmHWM:"):
                return int(text.split()[1])
    except OSError:
        pass
    return 0


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One run in this (child) process: simulation wall time, peaks, the executor's usage."""
    import torch

    from fedledger.assembly.build import build_experiment
    from fedledger.assembly.config import parse_config
    from fedledger.assembly.metrics import recorder_for
    from fedledger.experiment.runner import simulator_for
    from fedledger.learning.executor import InlineExecutor, JobExecutor
    from fedledger.runtime.ray import executor_usage

    torch.set_num_threads(1)
    config = parse_config(spec["config"])
    executor: JobExecutor = InlineExecutor()
    if spec["executor"] == "ray":
        from fedledger.runtime.ray import RayOptions
        from fedledger.runtime.ray.executor import RayExecutor

        cpus = spec["cpus"]
        executor = RayExecutor(RayOptions(num_cpus=cpus, workers=cpus,
                                          object_store_memory=300 * 2**20))
    workers_kib = 0
    with tempfile.TemporaryDirectory(prefix="fedledger-scale-") as tmp:
        exp = build_experiment(config, Path(tmp))
        recorder = recorder_for(exp)
        sim = simulator_for(exp, recorder, executor=executor)
        try:
            stats = sim.run()
        finally:
            exp.close()
            workers_kib = sum(_peak_kib(pid) for pid in getattr(executor, "worker_pids", list)())
            usage = executor_usage(executor, sim.job_wait_seconds)
            executor.shutdown()
    last = max((r.step for r in recorder.rows), default=0)
    final = [r.accuracy for r in recorder.rows if r.step == last and r.honest]
    return {
        "wall": stats.wall_seconds - usage["startup_seconds"],
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "workers_mib": workers_kib / 1024,
        "jobs": usage["jobs"],
        "job_x": usage["speedup"],
        "accuracy": float(np.mean(final)) if final else None,
    }


def measure(spec: dict[str, Any], budget: float) -> dict[str, Any] | str:
    """One run in a child process: its figures, or why there are none."""
    cmd = [sys.executable, __file__, "--child", json.dumps(spec)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_DEDUP_LOGS": "0"}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=budget, env=env)
    except subprocess.TimeoutExpired:
        return f"over {budget:.0f} s"
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        return f"failed (exit {done.returncode}): {tail[:90]}"
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


HEAD = ("table", "protocol", "nodes", "model", "executor", "CPUs", "wall s", "peak MiB",
        "workers MiB", "jobs", "job x", "speedup", "accuracy")
WIDTHS = (6, 8, 6, 5, 8, 4, 8, 9, 11, 6, 6, 7, 8)


def line(cells: tuple[str, ...]) -> str:
    return "  ".join(c.rjust(w) for c, w in zip(cells, WIDTHS, strict=True))


def row(table: str, spec: dict[str, Any], res: dict[str, Any] | str,
        baseline: float | None) -> str:
    head = (table, spec["protocol"], str(spec["nodes"]), spec["model"], spec["executor"],
            str(spec["cpus"]))
    if isinstance(res, str):
        return line((*head, res, *[""] * 6))
    speedup = f"{baseline / res['wall']:.2f}" if baseline and res["wall"] > 0 else "-"
    job_x = "-" if res["job_x"] is None else f"{res['job_x']:.2f}"
    acc = "-" if res["accuracy"] is None else f"{res['accuracy']:.3f}"
    workers = f"{res['workers_mib']:.0f}" if res["workers_mib"] else "-"
    return line((*head, f"{res['wall']:.1f}", f"{res['peak_mib']:.0f}", workers,
                 str(res["jobs"]), job_x, speedup, acc))


def plan(args: argparse.Namespace, big_data: Path) -> list[tuple[str, dict[str, Any]]]:
    runs: list[tuple[str, dict[str, Any]]] = []
    if "nodes" in args.table:
        for protocol in args.protocols:
            for n in args.nodes or NODES[protocol]:
                data = big_data if n > 8000 else MNIST
                for executor in args.executors:
                    cpus = args.ray_cpus if executor == "ray" else 1
                    runs.append(("nodes", {"protocol": protocol, "nodes": n, "model": "mlp",
                                           "executor": executor, "cpus": cpus,
                                           "config": config_of(protocol, n, MLP, data,
                                                               args.fraction)}))
    if "cpus" in args.table:
        cnn = config_of("vanilla", args.cnn_clients, CNN, MNIST)
        base = {"protocol": "vanilla", "nodes": args.cnn_clients, "model": "cnn",
                "config": cnn}
        runs.append(("cpus", {**base, "executor": "inline", "cpus": 1}))
        for cpus in args.cpus:
            runs.append(("cpus", {**base, "executor": "ray", "cpus": cpus}))
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="vanilla and DFL with 10 nodes, inline, in this process")
    parser.add_argument("--table", nargs="+", choices=("nodes", "cpus"),
                        default=["nodes", "cpus"])
    parser.add_argument("--protocols", nargs="+", choices=list(NODES), default=list(NODES))
    parser.add_argument("--nodes", nargs="+", type=int, default=None,
                        help="node counts (default: the issue's per protocol)")
    parser.add_argument("--executors", nargs="+", choices=("inline", "ray"),
                        default=["inline", "ray"])
    parser.add_argument("--ray-cpus", type=int, default=min(2, os.cpu_count() or 1))
    cpus = [c for c in (1, 2, 4, 8, 16) if c <= (os.cpu_count() or 1)]
    parser.add_argument("--cpus", nargs="+", type=int, default=cpus)
    parser.add_argument("--cnn-clients", type=int, default=10)
    parser.add_argument("--fraction", type=float, default=1.0,
                        help="share of vanilla clients sampled per round (table nodes)")
    parser.add_argument("--budget", type=float, default=900.0, help="seconds per run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    if not (MNIST / "images-idx3-ubyte.gz").exists():
        print(f"skipping: no MNIST-10k at {MNIST}")
        return 0
    if args.quick:
        args.table, args.executors = ["nodes"], ["inline"]
        args.protocols, args.nodes = ["vanilla", "dfl"], [10]
    print(line(HEAD), flush=True)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fedledger-scale-data-") as tmp:
        runs = plan(args, Path(tmp) / "mnist-20k")
        if any(spec["config"]["data"]["dataset"]["path"] != str(MNIST) for _, spec in runs):
            enlarged_mnist(Path(tmp) / "mnist-20k")
        inline: dict[tuple[str, int, str], float] = {}
        for table, spec in runs:  # --quick: in this process (no child start-up)
            res = child(spec) if args.quick else measure(spec, args.budget)
            key = (spec["protocol"], spec["nodes"], spec["model"])
            if spec["executor"] == "inline" and not isinstance(res, str):
                inline[key] = res["wall"]
            print(row(table, spec, res, inline.get(key)), flush=True)
    print(f"{len(runs)} runs in {time.perf_counter() - began:.0f} s; wall s: simulation "
          "only (no set-up, no Ray start); speedup: inline wall / this wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
