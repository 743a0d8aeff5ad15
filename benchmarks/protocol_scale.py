"""Protocols at scale (issue 19): simulated time per round, per node, and peak memory.

For each protocol (vanilla, posbfl, dfl, pbft-ledger) and each node count, one
simulator run in a fresh process (so its peak resident memory is its own): vanilla and
PoS-BFL run one round, DFL 100 ticks, pbft-ledger 4 requests from each of 2 clients.
All use scikit-learn's digits (Fashion-MNIST past 200 nodes, see :func:`data_of`), a
small MLP and one local epoch, so the training work per node stays about the same and
what grows with the node count is the protocol's work. PoS-BFL's roles are 60% workers,
25% validators and 15% miners (the issue's 100-device setting) up to
``--committee-cap`` devices (100); beyond it the validator and miner committees keep
their size at the cap and the workers grow (at 1,000 devices: 960 / 25 / 15), since with
every role growing each device must check W x V votes per round, which is quadratic in
the devices by the paper's design (``--committee-cap 0`` keeps the fractions at every
size). DFL keeps degree 4; pbft-ledger's node count is its replicas.

The simulator's nodes share one run-wide signature memo (``fedledger.ledger.sigmemo``):
a signature one node verified is not computed again for another, but each node is still
charged the modelled CPU cost of every check it makes. Every fetch of a blob gets the
same bytes (``fedledger.runtime.sim.blobshare``) and nodes share one read-only decode of
a model blob: PoS-BFL at 1,000 devices peaked at 3,076 MiB (it passed 8 GiB before).

The table prints, per run, the wall and CPU seconds of the simulation (set-up
excluded), both per node, the growth of CPU per node against the first row, the peak
resident memory, and the exponent ``k`` of wall time
against node count fitted (least squares on logs) over this protocol's runs up to that
row: ``k`` near 1 means the per-node cost is flat, near 2 that it grows with the nodes.
On a shared machine wall time includes waiting for a core: read the CPU columns.
A protocol stops growing once one run took longer than ``--budget`` seconds. ``--quick``
runs in this process after one untimed warm-up run per protocol (no child start-up; its
peak memory is then the process's so far); ``--quick --nodes 20 100`` gives warm figures
at other sizes. A child's first run pays torch's first-call set-up (about 1.4 s of CPU)
inside its simulated time, which flatters the per-node growth of small runs.

Goals (issue 19): PoS-BFL's per-device cost at 100 devices within 2x of its cost at 20;
a 100-device PoS-BFL round under 10 s with the MLP on 2 cores; PoS-BFL and DFL at 1,000
nodes complete a round in one process under 8 GiB.

    python benchmarks/protocol_scale.py                # 20, 50, 100, 200, 1000 nodes
    python benchmarks/protocol_scale.py --quick        # 10 and 20 nodes (seconds)
    python benchmarks/protocol_scale.py --protocols posbfl --nodes 20 100
    python benchmarks/protocol_scale.py --protocols posbfl dfl --nodes 1000 --budget 1e9
"""

from __future__ import annotations

import argparse
import json
import math
import os
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
COMMITTEE_CAP = 100
LARGE = 200  # past this many nodes the data set is Fashion-MNIST (see data_of)
FASHION_MNIST = Path(os.environ.get("FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))


def posbfl_roles(n: int, cap: int = COMMITTEE_CAP) -> tuple[int, int, int]:
    """(workers, validators, miners) of ``n`` devices: 60 / 25 / 15 % of ``n``, with the
    committees' sizes frozen at ``cap`` devices beyond it (``cap`` 0: never frozen)."""
    base = min(n, cap) if cap > 0 else n
    validators = max(1, round(0.25 * base))
    miners = max(1, round(0.15 * base))
    return n - validators - miners, validators, miners


def data_of(n: int) -> dict[str, Any]:
    """scikit-learn's digits up to 200 nodes; past that its 1,797 samples leave a node one
    or two, so Fashion-MNIST (60,000) from ``FASHION_MNIST`` (Debian's
    dataset-fashion-mnist), or digits without a validation split when it is absent (DFL,
    which evaluates on each node's validation split, then fails)."""
    if n <= LARGE or not FASHION_MNIST.is_dir():
        return {"dataset": "digits", "partition": "iid",
                "val_fraction": 0.1 if n <= LARGE else 0.0}
    return {"dataset": {"name": "idx", "path": str(FASHION_MNIST)}, "partition": "iid",
            "val_fraction": 0.1}


def config_of(
    protocol: str, n: int, seed: int, cap: int = COMMITTEE_CAP
) -> dict[str, Any]:
    """The raw experiment config of ``protocol`` with ``n`` nodes."""
    base: dict[str, Any] = {
        "name": f"scale-{protocol}-{n}",
        "seed": seed,
        "data": data_of(n),
        "model": {"name": "mlp", "hidden": [16]},
        "train": {"epochs": 1, "lr": 0.1, "batch_size": 16},
        "output": {"plots": False},
        "nodes": {"count": n},
    }
    if protocol == "vanilla":
        return {**base, "rounds": 1, "protocol": {"name": "vanilla", "fraction": 1.0}}
    if protocol == "posbfl":
        workers, validators, miners = posbfl_roles(n, cap)
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
    roles: str  # PoS-BFL: workers/validators/miners; else ""
    setup: float  # wall seconds of build_experiment
    wall: float  # seconds of sim.run()
    cpu: float  # process CPU seconds of sim.run()
    peak_mib: float
    messages: int
    checked: float  # signatures each node's verifier counted as checked, mean per node
    memo_hits: int  # of those, answered by the run-wide memo


class _Quiet:
    def on_report(self, node_id: str, time: float, step: int, weights: object) -> None:
        pass

    def on_metric(self, node_id: str, time: float, metric: object) -> None:
        pass


def _checked(node: object) -> int:
    verifier = getattr(getattr(node, "gate", None), "verifier", None)
    return int(getattr(verifier, "signatures_checked", 0))


def run_one(protocol: str, n: int, seed: int, cap: int = COMMITTEE_CAP) -> Row:
    """One simulation in this process (the child's side of :func:`measure`)."""
    import torch

    from fedledger.assembly.build import build_experiment
    from fedledger.assembly.config import parse_config
    from fedledger.experiment.runner import simulator_for

    torch.set_num_threads(1)
    raw = config_of(protocol, n, seed, cap)
    config = parse_config(raw)
    roles = ""
    if protocol == "posbfl":
        p = raw["protocol"]
        roles = f"{p['workers']}/{p['validators']}/{p['miners']}"
    with tempfile.TemporaryDirectory(prefix="fedledger-scale-") as tmp:
        setup = time.perf_counter()
        exp = build_experiment(config, Path(tmp))
        setup = time.perf_counter() - setup
        sim = simulator_for(exp, _Quiet())
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            stats = sim.run()
        finally:
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            exp.close()
        checked = sum(_checked(node) for node in exp.nodes.values()) / n
        hits = exp.memo.hits if exp.memo is not None else 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return Row(protocol, n, roles, setup, wall, cpu, peak, stats.messages_sent, checked, hits)


def measure(protocol: str, n: int, seed: int, timeout: float, cap: int) -> Row | str:
    """One run in a child process; a Row, or why there is none."""
    cmd = [sys.executable, __file__, "--child", protocol, str(n), "--seed", str(seed),
           "--committee-cap", str(cap)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"over {timeout:.0f} s"
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        return f"failed (exit {done.returncode}): {tail[:100]}"
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


HEAD = ("protocol", "nodes", "roles W/V/M", "setup s", "wall s", "cpu s", "wall/node ms",
        "cpu/node ms", "cpu/node x", "peak MiB", "messages", "sigs/node", "memo hits",
        "k (fit)")


def line(cells: tuple[str, ...]) -> str:
    widths = (11, 5, 11, 7, 7, 7, 12, 11, 10, 8, 8, 9, 9, 7)
    return "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=PROTOCOLS)
    parser.add_argument("--nodes", nargs="+", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=float, default=120.0,
                        help="stop growing a protocol after a run longer than this (s)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="per run (s)")
    parser.add_argument("--committee-cap", type=int, default=COMMITTEE_CAP,
                        help="PoS-BFL: freeze validator/miner counts beyond this many "
                        "devices (0: 25%% / 15%% at every size)")
    parser.add_argument("--quick", action="store_true", help="10 and 20 nodes")
    parser.add_argument("--child", nargs=2, metavar=("PROTOCOL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    cap = args.committee_cap
    if args.child:
        row = run_one(args.child[0], int(args.child[1]), args.seed, cap)
        print(json.dumps(row.__dict__))
        return 0
    sizes = args.nodes or (QUICK_NODES if args.quick else FULL_NODES)
    print(line(HEAD))
    for protocol in args.protocols:
        rows: list[Row] = []
        if args.quick:  # untimed: torch's and the protocol's first-call set-up
            run_one(protocol, min(sizes), args.seed, cap)
        for n in sorted(sizes):
            got = (run_one(protocol, n, args.seed, cap) if args.quick
                   else measure(protocol, n, args.seed, args.timeout, cap))
            if isinstance(got, str):
                print(f"{protocol:>11}  {n:>5}  {got}", flush=True)
                break
            rows.append(got)
            first = rows[0]
            growth = (got.cpu / got.nodes) / (first.cpu / first.nodes) if first.cpu else 0.0
            print(line((
                protocol, str(n), got.roles or "-", f"{got.setup:.1f}", f"{got.wall:.2f}",
                f"{got.cpu:.2f}", f"{1000 * got.wall / n:.1f}", f"{1000 * got.cpu / n:.1f}",
                f"{growth:.2f}", f"{got.peak_mib:.0f}", str(got.messages),
                f"{got.checked:.0f}", str(got.memo_hits), f"{exponent(rows):.2f}",
            )), flush=True)
            if got.wall > args.budget:
                break
    print("k: exponent of wall time against nodes (1 = flat per node); cpu/node x: CPU per "
          "node against the first row; sigs/node: signature checks charged per node (memo "
          "hits included); goals (issue 19): PoS-BFL per device at 100 within 2x of 20, a "
          "100-device PoS-BFL round < 10 s, PoS-BFL and DFL at 1,000 nodes < 8 GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
