"""Time every aggregation rule on one round of the muDFL CNN: 100 updates of 431,080
float32 weights, FedAvg as the baseline in the same process.

    .venv/bin/python benchmarks/aggregators.py [--updates 100] [--dim 431080] [--repeats 3]

The updates are 90 honest models (start + N(0, 0.01^2) per weight) and 10 attackers
(sign-flipped, boosted deltas); robust rules tolerate f = 10 (Bulyan too: n >= 4f + 3).
Each rule is called once to warm up, then ``repeats`` times; the best time is printed
with its ratio to FedAvg's.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from fedledger.learning.aggregate import (
    AGGREGATORS,
    AggregationContext,
    Update,
    robust,  # noqa: F401  (registers the robust rules)
)

RULES: list[tuple[str, dict[str, object]]] = [
    ("fedavg", {}),
    ("krum", {"f": 10}),
    ("multi_krum", {"f": 10}),
    ("bulyan", {"f": 10}),
    ("median", {}),
    ("trimmed_mean", {"f": 10}),
    ("centred_clipping", {"tau": 1.0, "iterations": 3}),
    ("geometric_median", {}),
    ("fltrust", {}),
]


def make_round(n: int, dim: int, attackers: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    start = rng.normal(0.0, 0.05, dim).astype(np.float32)
    updates = []
    for i in range(n):
        delta = rng.normal(0.0, 0.01, dim).astype(np.float32)
        if i < attackers:
            delta *= -5.0
        updates.append(Update(start + delta, num_samples=100))
    trusted = start + rng.normal(0.0, 0.01, dim).astype(np.float32)
    return updates, AggregationContext(current=start, trusted_update=trusted)


def best_time(rule, updates, context, repeats: int) -> float:
    rule(updates, context)
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        rule(updates, context)
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--dim", type=int, default=431_080)
    parser.add_argument("--attackers", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--quick", action="store_true", help="50 updates x 10,000 weights, once"
    )
    args = parser.parse_args()
    if args.quick:  # 50 updates: Bulyan with f = 10 needs n >= 43
        args.updates, args.dim, args.repeats = 50, 10_000, 1
    updates, context = make_round(args.updates, args.dim, args.attackers)
    print(
        f"{args.updates} updates x {args.dim} float32 weights, {args.attackers} attackers, "
        f"best of {args.repeats}, {os.cpu_count()} CPUs visible"
    )
    baseline = 0.0
    print(f"{'rule':<18}{'params':<28}{'seconds':>9}{'x fedavg':>10}")
    for name, params in RULES:
        seconds = best_time(AGGREGATORS.build(name, params), updates, context, args.repeats)
        baseline = baseline or seconds
        text = ", ".join(f"{k}={v}" for k, v in params.items())
        print(f"{name:<18}{text:<28}{seconds:>9.3f}{seconds / baseline:>10.1f}")


if __name__ == "__main__":
    main()
