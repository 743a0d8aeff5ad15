"""Protocols at scale (issue 19): simulated time per round, per node, and peak memory.

For each protocol (vanilla, posbfl, dfl, pbft-ledger) and each node count, one
simulator run in a fresh process (so its peak resident memory is its own): vanilla and
PoS-BFL run one round, DFL 100 ticks, pbft-ledger 4 requests from each of 2 clients.
All use scikit-learn's digits, a small MLP and one local epoch, so the training work per
node stays the same and what grows with the node count is the protocol's work. PoS-BFL's
roles are 60% workers, 25% validators and 15% miners (the issue's 100-device setting);
DFL keeps degree 4; pbft-ledger's node count is its replicas.

The table prints, per run, the wall and CPU seconds of the simulation (set-up
excluded), both per node, the peak resident memory, and the exponent ``k`` of wall time
against node count fitted (least squares on logs) over this protocol's runs up to that
row: ``k`` near 1 means the per-node cost is flat, near 2 that it grows with the nodes.
A protocol stops growing once one run took longer than ``--budget`` seconds. ``--quick``
runs in this process after one untimed warm-up run per protocol (no child start-up; its
peak memory is then the process's so far).

Goals (issue 19): PoS-BFL's per-device cost at 100 devices within 2x of its cost at 20;
a 100-device PoS-BFL round under 10 s with the MLP on 2 cores; PoS-BFL and DFL at 1,000
nodes complete a round in one process under 8 GiB.

    python benchmarks/protocol_scale.py                # 20, 50, 100, 200, 1000 nodes
    python benchmarks/protocol_scale.py --quick        # 10 and 20 nodes (seconds)
    python benchmarks/protocol_scale.py --protocols posbfl --nodes 20 100
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROTOCOLS = ("vanilla", "posbfl", "dfl", "pbft-ledger")
FULL_NODES = (20, 50, 100, 200, 1000)
QUICK_NODES = (10, 20)


def config_of(protocol: str, n: int, seed: int) -> dict[str, Any]:
    """The raw experiment config of ``protocol`` with ``n`` nodes."""
    base: dict[str, Any] = {
        "name": f"scale-{protocol}-{n}",
        "seed": seed,
        "data": {"dataset": "digits", "partition": "iid", "val_fraction": 0.1},
        "model": {"name": "mlp", "hidden": [16]},
        "train": {"epochs": 1, "lr": 0.1, "batch_size": 16},
        "output": {"plots": False},
        "nodes": {"count": n},
    }
    if protocol == "vanilla":
        return {**base, "rounds": 1, "protocol": {"name": "vanilla", "fraction": 1.0}}
    if protocol == "posbfl":
        validators = max(1, round(0.25 * n))
        miners = max(1, round(0.15 * n))
        workers = n - validators - miners
        return {**base, "rounds": 1, "protocol": {
            "name": "posbfl", "workers": workers, "validators": validators, "miners": miners,
            "local_epochs": 1,
        }}
    if protocol == "dfl":
        return {**base, "protocol": {
            "name": "dfl", "topology": "random", "degree": min(4, n - 1),
            "samples_per_interval": 16, "batch_size": 16, "ticks": 100, "report_every": 50,
        }}
    if protocol == "pbft-ledger":
        return {**base, "rounds": 4, "max_time": 120.0, "protocol": {
            "name": "pbft-ledger", "clients": 2, "rate": 20.0, "checkpoint_interval": 4,
        }}
    raise SystemExit(f"unknown protocol {protocol!r}; allowed: {', '.join(PROTOCOLS)}")


@dataclass(frozen=True)
class Row:
    protocol: str
    nodes: int
    wall: float  # seconds of sim.run()
    cpu: float  # process CPU seconds of sim.run()
    peak_mib: float
    messages: int


class _Quiet:
    def on_report(self, node_id: str, time: float, step: int, weights: object) -> None:
        pass

    def on_metric(self, node_id: str, time: float, metric: object) -> None:
        pass


def run_one(protocol: str, n: int, seed: int) -> Row:
    """One simulation in this process (the child's side of :func:`measure`)."""
    import torch

    from fedledger.assembly.build import build_experiment
    from fedledger.assembly.config import parse_config
    from fedledger.experiment.runner import simulator_for

    torch.set_num_threads(1)
    config = parse_config(config_of(protocol, n, seed))
    with tempfile.TemporaryDirectory(prefix="fedledger-scale-") as tmp:
        exp = build_experiment(config, Path(tmp))
        sim = simulator_for(exp, _Quiet())
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            stats = sim.run()
        finally:
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            exp.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return Row(protocol, n, wall, cpu, peak, stats.messages_sent)


def measure(protocol: str, n: int, seed: int, timeout: float) -> Row | str:
    """One run in a child process; a Row, or why there is none."""
    cmd = [sys.executable, __file__, "--child", protocol, str(n), "--seed", str(seed)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"over {timeout:.0f} s"
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        return f"failed: {tail[:100]}"
    return Row(**json.loads(done.stdout.strip().splitlines()[-1]))


def exponent(rows: list[Row]) -> float:
    """Least-squares slope of log(wall) against log(nodes); nan with fewer than 2 rows."""
    pts = [(math.log(r.nodes), math.log(r.wall)) for r in rows if r.wall > 0]
    if len(pts) < 2:
        return float("nan")
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else float("nan")


HEAD = ("protocol", "nodes", "wall s", "cpu s", "wall/node ms", "cpu/node ms",
        "x per node vs first", "peak MiB", "messages", "k (fit)")


def line(cells: tuple[str, ...]) -> str:
    widths = (11, 6, 8, 8, 12, 11, 19, 9, 9, 8)
    return "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=PROTOCOLS)
    parser.add_argument("--nodes", nargs="+", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=float, default=120.0,
                        help="stop growing a protocol after a run longer than this (s)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="per run (s)")
    parser.add_argument("--quick", action="store_true", help="10 and 20 nodes")
    parser.add_argument("--child", nargs=2, metavar=("PROTOCOL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        row = run_one(args.child[0], int(args.child[1]), args.seed)
        print(json.dumps(row.__dict__))
        return 0
    sizes = args.nodes or (QUICK_NODES if args.quick else FULL_NODES)
    print(line(HEAD))
    for protocol in args.protocols:
        rows: list[Row] = []
        if args.quick:  # untimed: torch's and the protocol's first-call set-up
            run_one(protocol, min(sizes), args.seed)
        for n in sorted(sizes):
            got = (run_one(protocol, n, args.seed) if args.quick
                   else measure(protocol, n, args.seed, args.timeout))
            if isinstance(got, str):
                print(f"{protocol:>11}  {n:>6}  {got}", flush=True)
                break
            rows.append(got)
            first = rows[0]
            growth = (got.wall / got.nodes) / (first.wall / first.nodes)
            print(line((
                protocol, str(n), f"{got.wall:.2f}", f"{got.cpu:.2f}",
                f"{1000 * got.wall / n:.1f}", f"{1000 * got.cpu / n:.1f}",
                f"{growth:.2f}", f"{got.peak_mib:.0f}", str(got.messages),
                f"{exponent(rows):.2f}",
            )), flush=True)
            if got.wall > args.budget:
                break
    print("k: exponent of wall time against nodes (1 = flat per node); goals (issue 19): "
          "PoS-BFL per device at 100 within 2x of 20, a 100-device PoS-BFL round < 10 s, "
          "PoS-BFL and DFL at 1,000 nodes < 8 GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
