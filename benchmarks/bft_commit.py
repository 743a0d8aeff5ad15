"""PBFT commit latency and throughput: the ``pbft-ledger`` protocol in the simulator and
as a localnet of real processes on loopback.

For each committee size n it runs ``pbft-ledger`` with 4 clients (one request
outstanding each, no batch window) and prints the commit latency per request (client
send to f+1 matching replies: p50, p99) and committed requests per second, beside the
anchors and the goal:

- muDFL's Raspberry Pi committee of 20: 0.9 s commit + 0.5 s proposal + 0.2 s finality;
- CometBFT: 1-4 s per block with 200 validators;
- goal: loopback, 20 replicas: p50 <= 50 ms, p99 <= 250 ms per block.

The simulator uses the configured link latency (``--latency``, 10 ms by default: five
message delays per request, so about 50 ms is its floor); it measures the protocol's
message pattern, not CPU. The localnet runs n replica processes and the clients on this
machine's loopback, with the wall clock: its figures include signature checks, encoding
and scheduling on however many cores there are (n + 4 processes share them).

    .venv/bin/python benchmarks/bft_commit.py --quick   # n=4: simulator + localnet
    .venv/bin/python benchmarks/bft_commit.py           # n = 4..20 sim, 4..max-local localnet
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from fedledger.assembly.config import parse_config
from fedledger.experiment.localnet import Localnet
from fedledger.experiment.runner import run_experiment

SIZES = (4, 7, 10, 13, 16, 20)
ANCHORS = (
    "anchors: muDFL RPi committee of 20: 0.9 s commit + 0.5 s proposal + 0.2 s finality; "
    "CometBFT: 1-4 s per block with 200 nodes",
    "goal: loopback, 20 replicas: p50 <= 50 ms, p99 <= 250 ms per block",
)


def config(n: int, requests: int, clients: int, latency: float, rate: float) -> dict[str, Any]:
    return {
        "name": f"bft-commit-{n}",
        "seed": 0,
        "rounds": requests,
        "data": {"dataset": "digits"},
        "model": {"name": "mlp", "hidden": [8]},
        "protocol": {"name": "pbft-ledger", "clients": clients, "rate": rate,
                     "payload_size": 64, "view_timeout": 2.0, "client_retry": 2.0,
                     "linger": 1.0},
        "nodes": {"count": n},
        "network": {"latency": latency},
        "max_time": 600.0,
        "output": {"plots": False},
    }


def figures(section: dict[str, Any]) -> tuple[str, str, str, str]:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v * 1000:.1f}"

    rps = section.get("committed_per_second")
    return (str(section.get("requests_committed", 0)), ms(section.get("commit_latency_p50_s")),
            ms(section.get("commit_latency_p99_s")), "-" if rps is None else f"{rps:.1f}")


def simulate(n: int, requests: int, latency: float, out: Path) -> tuple[str, ...]:
    raw = config(n, requests, 4, latency, rate=1000.0)
    started = time.perf_counter()
    result = run_experiment(parse_config(raw), out=out / f"sim-{n}")
    wall = time.perf_counter() - started
    return ("simulator", str(n), *figures(dict(result.summary["pbft-ledger"])), f"{wall:.1f}")


def localnet(n: int, requests: int, out: Path) -> tuple[str, ...]:
    raw = config(n, requests, 4, 0.0, rate=1000.0)
    path = out / f"net-{n}.yaml"
    path.write_text(yaml.safe_dump(raw))
    procs = n + 4
    delay = min(120.0, 10.0 + 2.0 * procs + 2.5 * os.getloadavg()[0])
    net = Localnet(path, out=out / f"net-{n}", node_args=("--start-wait", "10"),
                   timeout=delay + 120 + requests, grace=10, start_delay=delay)
    started = time.perf_counter()
    net.start()
    try:
        ok = net.wait(tick=0.2)
    finally:
        result = net.gather(interrupted=False)
    wall = time.perf_counter() - started
    row = figures(dict(result.summary.get("pbft-ledger", {})))
    mode = "localnet" if ok else "localnet (not all halted)"
    return (mode, str(n), *row, f"{wall:.1f}")


def table(rows: list[tuple[str, ...]]) -> str:
    head = ("host", "n", "committed", "p50 ms", "p99 ms", "req/s", "wall s")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = "  ".join
    out = [line(h.ljust(w) for h, w in zip(head, widths, strict=True)),
           line("-" * w for w in widths)]
    out += [line(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="n=4 only, few requests")
    parser.add_argument("--latency", type=float, default=0.01, help="simulated link latency s")
    parser.add_argument("--requests", type=int, default=50, help="requests per client")
    parser.add_argument("--max-local", type=int, default=20, help="largest localnet n")
    parser.add_argument("--no-localnet", action="store_true")
    args = parser.parse_args()
    sizes = (4,) if args.quick else SIZES
    requests = 5 if args.quick else args.requests
    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory(prefix="bft-commit-") as tmp:
        out = Path(tmp)
        for n in sizes:
            rows.append(simulate(n, requests, args.latency, out))
        if not args.no_localnet:
            for n in sizes:
                if n <= args.max_local:
                    rows.append(localnet(n, requests, out))
    print(f"pbft-ledger commit latency (4 clients, {requests} requests each, "
          f"simulated link latency {args.latency * 1000:.0f} ms)")
    print(table(rows))
    for line in ANCHORS:
        print(line)


if __name__ == "__main__":
    main()
