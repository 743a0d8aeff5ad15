"""PoS-BFL: Table 4 and the malicious-count sweep of Figs. 6-7 (survey section 5.4).

    .venv/bin/python benchmarks/posbfl_table4.py [--quick | --small] [--seeds 3] [--rounds 100]
        [--model cnn|lenet5|mlp] [--sweep 3,4,6,8,10,12,14,16] [--rules paper,reference]
        [--splits 12/5/3,8/9/3] [--jobs 1] [--out benchmarks/out/posbfl] [--keep-runs]
        [--skip-vanilla]

Settings, all from configs/posbfl-mnist.yaml (20 devices, MNIST-10k random equal shards,
batch 10, lr 0.01, 5 local epochs, vh 0.08, 3 Gaussian-noise devices with variance 1):

- Table 4: vanilla FedAvg with 3/20 malicious clients (and with none: the ceiling);
  PoS-BFL with 12W/5V/3M and 8W/9V/3M, once per validation rule (``paper`` =
  Algorithm 1, ``reference`` = the improved rule behind ``protocol.validation``);
- Figs. 6-7: PoS-BFL with 3..16 malicious devices, both splits, each rule.

Every setting runs with ``--seeds`` seeds; the printed figure is the honest devices'
mean test accuracy after the last round, mean and spread (min-max) over seeds, with the
wall time of the runs (each run's ledgers and blobs are removed afterwards unless
``--keep-runs``; metrics, summary and detection stay). ``--quick`` is a small subset for
2 cores: the MLP, 12 rounds, one seed, sweep at 8 malicious only. Results go to
``OUT/results.json`` and the plots ``OUT/accuracy.png`` (accuracy vs round, PoS-BFL vs
vanilla) and ``OUT/sweep.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from sweep import add_ray_option, sweep_pool

REPO = Path(__file__).resolve().parents[1]
BASE = REPO / "configs" / "posbfl-mnist.yaml"
PAPER_TABLE4 = {"vanilla": (0.11, 0.10), "12/5/3": 0.86, "8/9/3": 0.95}
PAPER_SWEEP = {
    "12/5/3": "Fig. 6: 77-90% with fewer than 10 malicious devices",
    "8/9/3": "Fig. 7: 80-95% with at most 4 malicious devices",
}
SPLITS = {"12/5/3": (12, 5, 3), "8/9/3": (8, 9, 3)}


@dataclass(frozen=True)
class Job:
    setting: str  # "vanilla" or a split
    rule: str  # "-" for vanilla
    malicious: int
    seed: int
    rounds: int
    model: str
    out: str
    keep: bool = False


@dataclass(frozen=True)
class Outcome:
    job: Job
    accuracy: float
    curve: tuple[tuple[int, float], ...]
    wall: float
    detection: dict[str, int] | None


def model_spec(name: str) -> dict[str, Any]:
    return {"name": "mlp", "hidden": [64]} if name == "mlp" else {"name": name}


def build_config(job: Job) -> dict[str, Any]:
    raw = yaml.safe_load(BASE.read_text())
    raw["data"]["dataset"]["path"] = str((REPO / raw["data"]["dataset"]["path"]).resolve())
    raw["name"] = f"{job.setting.replace('/', '-')}-{job.rule}-m{job.malicious}-s{job.seed}"
    raw["seed"] = job.seed
    raw["rounds"] = job.rounds
    raw["model"] = model_spec(job.model)
    raw["output"] = {"dir": job.out, "plots": False}
    raw["eval"] = {"every": 1, "batch_size": 1000}
    if job.malicious:
        raw["nodes"]["malicious"][0]["count"] = job.malicious
    else:
        raw["nodes"]["malicious"] = []
    if job.setting == "vanilla":
        raw["protocol"] = {"name": "vanilla", "aggregator": {"name": "weighted_fedavg"}}
    else:
        w, v, m = SPLITS[job.setting]
        raw["protocol"].update(workers=w, validators=v, miners=m, validation=job.rule)
    return raw


def run_job(job: Job) -> Outcome:
    import torch

    torch.set_num_threads(1)
    from fedledger.assembly.config import parse_config
    from fedledger.experiment.runner import run_experiment

    config = parse_config(build_config(job))
    began = time.perf_counter()
    result = run_experiment(config, out=Path(job.out) / config.name)
    wall = time.perf_counter() - began
    if not job.keep:  # ledgers and model blobs: a few hundred MB per CNN run
        shutil.rmtree(result.run_dir / "nodes", ignore_errors=True)
    per_step: dict[int, list[float]] = defaultdict(list)
    for row in result.rows:
        if row.honest:  # vanilla: only its server reports; PoS-BFL: every device
            per_step[row.step].append(row.accuracy)
    curve = tuple((s, sum(a) / len(a)) for s, a in sorted(per_step.items()))
    accuracy = curve[-1][1] if curve else 0.0
    return Outcome(job, accuracy, curve, wall, result.summary.protocol_report.get("detection"))


def plan(args: argparse.Namespace) -> list[Job]:
    jobs = []
    rules = args.rules.split(",")
    for seed in range(args.seeds):
        common = {
            "seed": seed,
            "rounds": args.rounds,
            "model": args.model,
            "out": args.out,
            "keep": args.keep_runs,
        }
        if not args.skip_vanilla:
            jobs.append(Job("vanilla", "-", 0, **common))  # the ceiling: no attack
            jobs.append(Job("vanilla", "-", 3, **common))
        for split in args.splits:
            for rule in rules:
                for malicious in sorted({3, *args.sweep}):
                    jobs.append(Job(split, rule, malicious, **common))
    return jobs


def stats(values: list[float]) -> str:
    if not values:
        return "-"
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{100 * mean:5.1f}%"
    return f"{100 * mean:5.1f}% [{100 * min(values):.1f}-{100 * max(values):.1f}]"


def report(outcomes: list[Outcome], args: argparse.Namespace, wall: float) -> None:
    groups: dict[tuple[str, str, int], list[Outcome]] = defaultdict(list)
    for o in outcomes:
        groups[(o.job.setting, o.job.rule, o.job.malicious)].append(o)
    seeds = args.seeds
    print(f"\nTable 4 (3/20 malicious; {args.model}, {args.rounds} rounds, {seeds} seed(s))")
    print(f"{'setting':<24}{'paper':>10}  {'ours: accuracy':<28}{'wall s':>9}")
    van = groups[("vanilla", "-", 3)]
    paper_vfl = "/".join(f"{100 * p:.0f}%" for p in PAPER_TABLE4["vanilla"])
    print(
        f"{'VFL 3/20':<24}{paper_vfl:>10}  {stats([o.accuracy for o in van]):<28}"
        f"{sum(o.wall for o in van):9.1f}"
    )
    clean = groups[("vanilla", "-", 0)]
    print(
        f"{'VFL 0/20 (no attack)':<24}{'-':>10}  {stats([o.accuracy for o in clean]):<28}"
        f"{sum(o.wall for o in clean):9.1f}"
    )
    for split in args.splits:
        for rule in args.rules.split(","):
            got = groups[(split, rule, 3)]
            label = f"PoS-BFL {split} {rule}"
            print(
                f"{label:<24}{100 * PAPER_TABLE4[split]:>9.0f}%  "
                f"{stats([o.accuracy for o in got]):<28}{sum(o.wall for o in got):9.1f}"
            )
    counts = sorted({o.job.malicious for o in outcomes if o.job.setting != "vanilla"})
    if counts != [3]:
        print("\nFigs. 6-7: final accuracy vs number of malicious devices (of 20)")
        header = "".join(f"{c:>10}" for c in counts)
        print(f"{'split / rule':<22}{header}")
        for split in args.splits:
            for rule in args.rules.split(","):
                cells = "".join(
                    f"{stats([o.accuracy for o in groups[(split, rule, c)]]).split()[0]:>10}"
                    for c in counts
                )
                print(f"{split + ' ' + rule:<22}{cells}")
            print(f"{'':<22}paper {PAPER_SWEEP[split]}")
    print(f"\ntotal wall time {wall:.1f} s ({len(outcomes)} runs, {args.jobs} job(s))")


def plots(outcomes: list[Outcome], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for o in outcomes:
        if o.job.seed == 0 and (o.job.malicious == 3 or o.job.setting == "vanilla"):
            label = (
                f"vanilla FL {o.job.malicious}/20"
                if o.job.setting == "vanilla"
                else f"PoS-BFL {o.job.setting} {o.job.rule}"
            )
            ax.plot([c[0] for c in o.curve], [c[1] for c in o.curve], label=label)
    ax.set(
        xlabel="round",
        ylabel="honest test accuracy",
        ylim=(0, 1),
        title="3/20 malicious (vanilla also 0/20)",
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "accuracy.png")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    series: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for o in outcomes:
        if o.job.setting != "vanilla":
            series[f"{o.job.setting} {o.job.rule}"][o.job.malicious].append(o.accuracy)
    for name, points in sorted(series.items()):
        xs = sorted(points)
        ax.plot(xs, [sum(points[x]) / len(points[x]) for x in xs], marker="o", label=name)
    ax.set(xlabel="malicious devices (of 20)", ylabel="final accuracy", ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "sweep.png")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke form for the test suite: MLP, 2 rounds, 1 seed, 12/5/3 reference rule",
    )
    parser.add_argument("--small", action="store_true", help="MLP, 12 rounds, 1 seed, sweep 8")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--model", default="cnn", choices=("cnn", "lenet5", "mlp"))
    parser.add_argument("--sweep", default="3,4,6,8,10,12,14,16")
    parser.add_argument("--rules", default="paper,reference")
    parser.add_argument("--splits", default=",".join(SPLITS), help="role splits W/V/M")
    parser.add_argument("--skip-vanilla", action="store_true", help="PoS-BFL runs only")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "posbfl"))
    parser.add_argument(
        "--keep-runs", action="store_true", help="keep each run's ledgers and model blobs"
    )
    add_ray_option(parser)
    args = parser.parse_args()
    if args.small:
        args.model, args.rounds, args.seeds, args.sweep = "mlp", 12, 1, "8"
    if args.quick:
        args.model, args.rounds, args.seeds, args.sweep = "mlp", 2, 1, ""
        args.rules, args.splits = "reference", "12/5/3"
    args.sweep = [int(x) for x in str(args.sweep).split(",") if x]
    args.splits = [x for x in args.splits.split(",") if x]
    unknown = [x for x in args.splits if x not in SPLITS]
    if unknown:
        parser.error(f"--splits {unknown}: allowed {', '.join(SPLITS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = plan(args)
    print(
        f"{len(jobs)} runs: {args.model}, {args.rounds} rounds, seeds {args.seeds}, "
        f"sweep {args.sweep}, rules {args.rules}",
        flush=True,
    )
    began = time.perf_counter()
    outcomes = []
    with sweep_pool(args.ray, args.jobs) as pool:  # --ray: each run on its own Ray worker
        for o in pool.map(run_job, jobs):
            outcomes.append(o)
            print(
                f"  {o.job.setting} {o.job.rule} m={o.job.malicious} seed={o.job.seed}: "
                f"{100 * o.accuracy:.1f}% ({o.wall:.0f} s)",
                flush=True,
            )
    wall = time.perf_counter() - began
    (out / "results.json").write_text(
        json.dumps([{**asdict(o), "job": asdict(o.job)} for o in outcomes], indent=1) + "\n"
    )
    plots(outcomes, out)
    report(outcomes, args, wall)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
