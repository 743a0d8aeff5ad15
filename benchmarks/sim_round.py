"""Time and memory of one simulated vanilla FedAvg round with 100 nodes.

digits, the MLP, IID partition, one local epoch. Each round's wall time is read from the
server's per-round reports (the first round, which includes set-up, is left out). The
baseline, run in the same process, is the bare learning work of one round: every
client's local training and one FedAvg, called directly with no simulator. The ratio
round / baseline is the cost of the simulator, messages and measurement around it.
Goal for later issues: under 1 s per round.

    .venv/bin/python benchmarks/sim_round.py [--nodes 100] [--rounds 5]
    .venv/bin/python benchmarks/sim_round.py --quick     # 10 nodes, 2 rounds (seconds)
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

from fedledger.assembly.build import prepare_data
from fedledger.assembly.config import parse_config
from fedledger.experiment.runner import run_experiment
from fedledger.learning.aggregate import AGGREGATORS, AggregationContext, Update
from fedledger.learning.jobs import TrainSettings
from fedledger.learning.train import Learner


def bare_round(config, repeats: int = 3) -> float:
    """Seconds of one round's learning work alone (median of ``repeats``)."""
    data = prepare_data(config, config.nodes.count)
    learner = Learner(config.model.name, config.model.params, data.input_shape, data.num_classes)
    weights = learner.init_weights(config.seed)
    spec = config.train.solver
    settings = TrainSettings(
        **config.train.model_dump(exclude={"solver"}), solver=spec.name, solver_params=spec.params
    )
    fedavg = AGGREGATORS.build("weighted_fedavg")
    first = data.nodes[0].train
    learner.train(weights, first.x, first.y, settings, seed=0)  # untimed: one-off set-up
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        updates = []
        for i, node in enumerate(data.nodes):
            res = learner.train(weights, node.train.x, node.train.y, settings, seed=r * 1000 + i)
            updates.append(Update(res.weights, res.num_samples))
        weights = fedavg(updates, AggregationContext(current=weights))
        learner.evaluate(weights, data.test.x, data.test.y)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--quick", action="store_true", help="10 nodes, 2 rounds (seconds)")
    args = parser.parse_args()
    if args.quick:
        args.nodes, args.rounds = 10, 2
    torch.set_num_threads(args.threads)
    config = parse_config(
        {
            "name": "bench-sim-round",
            "rounds": 1 + args.rounds,
            "data": {"dataset": "digits", "partition": "iid", "val_fraction": 0.1},
            "model": {"name": "mlp", "hidden": [64]},
            "train": {"epochs": 1, "lr": 0.05, "batch_size": 16},
            "protocol": {"name": "vanilla"},
            "nodes": {"count": args.nodes},
            "output": {"plots": False},
        }
    )
    baseline = bare_round(config, repeats=1 if args.quick else 3)
    stamps: list[float] = []
    with tempfile.TemporaryDirectory(prefix="fedledger-sim-round-") as tmp:
        t0 = time.perf_counter()
        result = run_experiment(
            config, Path(tmp) / "timed", on_row=lambda _row: stamps.append(time.perf_counter())
        )
        total = time.perf_counter() - t0
        # Memory in a second run: tracemalloc slows Python down, so it stays out of the timing.
        tracemalloc.start()
        run_experiment(config, Path(tmp) / "traced")
        _, peak_traced = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    per_round = statistics.median(np.diff(stamps)) if len(stamps) > 1 else float("nan")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rounds = 1 + args.rounds
    print(f"nodes: {args.nodes}  rounds: {rounds}  torch threads: {args.threads}")
    print(f"seconds per simulated round (median): {per_round:.3f} s   (goal < 1 s)")
    print(f"bare learning work per round:         {baseline:.3f} s")
    print(f"ratio simulated / bare:               {per_round / baseline:.2f}")
    print(f"whole run incl. set-up:               {total:.3f} s")
    print(f"events per round:                     {result.summary['events'] / rounds:.0f}")
    print(
        f"MB sent per round:                    {result.summary['bytes_sent'] / rounds / 1e6:.2f}"
    )
    print(f"peak traced Python memory (run):      {peak_traced / 1e6:.1f} MB")
    print(f"peak resident set size:               {rss:.0f} MB")


if __name__ == "__main__":
    main()
