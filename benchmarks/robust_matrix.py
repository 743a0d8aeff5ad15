"""Final accuracy of robust aggregation rules against attacks: a matrix of experiments.

    .venv/bin/python benchmarks/robust_matrix.py                       # digits, everything
    .venv/bin/python benchmarks/robust_matrix.py --seeds 0 --fractions 0.2 \\
        --partitions iid --rounds 10                                   # a quick subset
    .venv/bin/python benchmarks/robust_matrix.py --quick               # 4 cells, 3 rounds
    .venv/bin/python benchmarks/robust_matrix.py --dataset mnist10k    # the full version

Every cell is vanilla FedAvg (all clients every round) with one aggregation rule, k
clients running one attack (k = round(fraction * clients), drawn with the seed), on IID
or Dirichlet(0.5) partitions; the value is the server's final test accuracy, mean ± std
(sample std) over the seeds. Rules that take the number of tolerated attackers get f = k,
also in the "none" column (the defender is configured for that fraction, nobody attacks),
which shows the price of robustness. A rule that refuses n clients for that f (Krum and
Multi-Krum need n >= 2f + 3, Bulyan n >= 4f + 3) is shown as "n/a (needs n >= ...)".
FLTrust's server holds a root set of 100 samples (``protocol.root_samples``).

The omniscient attacks (alie, ipm, min_max) read the honest updates of the round, which
the simulator gives them: an upper bound on a real adversary.

digits: scikit-learn's 8x8 digits, MLP (64 hidden), 20 clients, 20 rounds.
mnist10k: ../shared/data/mnist-10k (the ``idx`` dataset), MLP (128 hidden), 20 clients,
20 rounds; skipped with a message when the files are absent.

Writes robust_matrix-<dataset>.csv (one row per cell, per-seed values included) and
robust_matrix-<dataset>.png (a heat map per partition and fraction) into --out
(default benchmarks/out/, not tracked by git), and prints the table.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedledger.assembly.config import parse_config
from fedledger.errors import FedledgerError
from fedledger.experiment.runner import run_experiment
from fedledger.learning.aggregate import AGGREGATORS, AggregationContext, AggregationError, Update

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sweep helper beside this file
from sweep import add_ray_option, sweep_pool

REPO = Path(__file__).resolve().parents[1]
MNIST_10K = REPO.parent / "shared" / "data" / "mnist-10k"
ROOT_SAMPLES = 100

#: Rule -> (label, builder of its aggregator spec given f).
RULES: dict[str, tuple[str, Callable[[int], dict[str, Any]]]] = {
    "fedavg": ("FedAvg", lambda f: {"name": "weighted_fedavg"}),
    "krum": ("Krum", lambda f: {"name": "krum", "f": f}),
    "multi_krum": ("Multi-Krum", lambda f: {"name": "multi_krum", "f": f}),
    "median": ("median", lambda f: {"name": "median"}),
    "trimmed_mean": ("trimmed mean", lambda f: {"name": "trimmed_mean", "f": f}),
    "bulyan": ("Bulyan", lambda f: {"name": "bulyan", "f": f}),
    "geometric_median": ("geom. median", lambda f: {"name": "geometric_median"}),
    "fltrust": ("FLTrust", lambda f: {"name": "fltrust"}),
}

#: Column -> (label, the attack spec; None: no attackers).
ATTACKS: dict[str, tuple[str, dict[str, Any] | None]] = {
    "none": ("no attack", None),
    "noise": ("noise", {"name": "gaussian_noise", "sigma": 1.0}),
    "sign_flip": ("sign flip", {"name": "sign_flip", "scale": 4.0}),
    "label_flip": ("label flip", {"name": "label_flip"}),
    "alie": ("ALIE", {"name": "alie"}),
    "ipm": ("IPM", {"name": "ipm", "epsilon": 0.5}),
    "min_max": ("min-max", {"name": "min_max"}),
}

PARTITIONS: dict[str, dict[str, Any]] = {
    "iid": {"name": "iid"},
    "dirichlet": {"name": "dirichlet", "alpha": 0.5},
}


@dataclass(frozen=True)
class DatasetSetup:
    """The fixed part of every cell's config for one dataset."""

    dataset: dict[str, Any]
    model: dict[str, Any]
    train: dict[str, Any]
    clients: int
    rounds: int
    available: Callable[[], str | None]  # None, or why the dataset cannot be used


def _mnist_missing() -> str | None:
    if (MNIST_10K / "images-idx3-ubyte.gz").exists() or (MNIST_10K / "images-idx3-ubyte").exists():
        return None
    return f"MNIST-10k not found at {MNIST_10K}"


DATASETS: dict[str, DatasetSetup] = {
    "digits": DatasetSetup(
        {"name": "digits"},
        {"name": "mlp", "hidden": [64]},
        {"epochs": 1, "lr": 0.1, "batch_size": 16, "momentum": 0.5},
        clients=20,
        rounds=20,
        available=lambda: None,
    ),
    "mnist10k": DatasetSetup(
        {"name": "idx", "path": str(MNIST_10K)},
        {"name": "mlp", "hidden": [128]},
        {"epochs": 1, "lr": 0.05, "batch_size": 32, "momentum": 0.5},
        clients=20,
        rounds=20,
        available=_mnist_missing,
    ),
}


@dataclass(frozen=True)
class MatrixSpec:
    """Which cells to run. ``rounds`` / ``clients`` None: the dataset's defaults."""

    dataset: str = "digits"
    aggregators: tuple[str, ...] = tuple(RULES)
    attacks: tuple[str, ...] = tuple(ATTACKS)
    fractions: tuple[float, ...] = (0.2, 0.4)
    partitions: tuple[str, ...] = tuple(PARTITIONS)
    seeds: tuple[int, ...] = (0, 1, 2)
    rounds: int | None = None
    clients: int | None = None

    def __post_init__(self) -> None:
        for what, given, allowed in (
            ("dataset", (self.dataset,), DATASETS),
            ("aggregator", self.aggregators, RULES),
            ("attack", self.attacks, ATTACKS),
            ("partition", self.partitions, PARTITIONS),
        ):
            unknown = [g for g in given if g not in allowed]
            if unknown:
                raise ValueError(f"unknown {what} {unknown}; allowed: {', '.join(allowed)}")
        bad = [f for f in self.fractions if not 0 < f < 1]
        if bad:
            raise ValueError(f"fractions must satisfy 0 < fraction < 1, got {bad}")
        if not self.seeds:
            raise ValueError("give at least one seed")
        if self.rounds is not None and self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if self.clients is not None and self.clients < 2:
            raise ValueError(f"clients must be >= 2, got {self.clients}")

    @property
    def setup(self) -> DatasetSetup:
        return DATASETS[self.dataset]

    @property
    def num_clients(self) -> int:
        return self.clients or self.setup.clients

    @property
    def num_rounds(self) -> int:
        return self.rounds or self.setup.rounds

    def attackers(self, fraction: float) -> int:
        return round(fraction * self.num_clients)


@dataclass(frozen=True)
class Cell:
    """One aggregator x attack x fraction x partition, over the seeds."""

    partition: str
    fraction: float
    malicious: int
    aggregator: str
    attack: str
    accuracies: tuple[float, ...] = ()
    note: str = ""  # why the cell was not run ("n/a (needs n >= 11)")

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies)) if self.accuracies else math.nan

    @property
    def std(self) -> float:
        if len(self.accuracies) < 2:
            return 0.0
        return float(np.std(self.accuracies, ddof=1))

    def text(self) -> str:
        if self.note:
            return self.note
        if len(self.accuracies) == 1:
            return f"{self.mean:.3f}"
        return f"{self.mean:.3f} ± {self.std:.3f}"


def refusal(aggregator: str, f: int, n: int) -> str:
    """ "" when the rule aggregates n updates with f attackers, else the cell's n/a text.

    Asks the rule itself, on n zero updates, so the requirement is never restated here.
    """
    params = RULES[aggregator][1](f)
    rule = AGGREGATORS.build(params.pop("name"), params)
    zeros = np.zeros(1, dtype=np.float32)
    try:
        rule([Update(zeros) for _ in range(n)], AggregationContext(zeros, zeros))
    except AggregationError as err:
        needed = re.search(r"needs n >= (\d+)[,)]", str(err))
        return f"n/a (needs n >= {needed.group(1)})" if needed else f"n/a ({err})"
    return ""


def cell_config(
    spec: MatrixSpec, aggregator: str, attack: str, fraction: float, partition: str, seed: int
) -> dict[str, Any]:
    """The experiment config (as a YAML tree) of one cell and seed."""
    setup = spec.setup
    k = spec.attackers(fraction)
    protocol: dict[str, Any] = {"name": "vanilla", "aggregator": RULES[aggregator][1](k)}
    if aggregator == "fltrust":
        protocol["root_samples"] = ROOT_SAMPLES
    attack_spec = ATTACKS[attack][1]
    malicious = [] if attack_spec is None or k == 0 else [{"count": k, "attack": attack_spec}]
    return {
        "name": f"robust-{aggregator}-{attack}",
        "seed": seed,
        "rounds": spec.num_rounds,
        "data": {"dataset": setup.dataset, "partition": PARTITIONS[partition]},
        "model": setup.model,
        "train": setup.train,
        "protocol": protocol,
        "nodes": {"count": spec.num_clients, "malicious": malicious},
        "output": {"plots": False},
    }


def final_accuracy(tree: dict[str, Any], run_dir: Path) -> float:
    """One run of a cell (here, in a process or on a Ray worker): its final accuracy."""
    import torch

    torch.set_num_threads(1)
    return float(run_experiment(parse_config(tree), run_dir).summary["final_accuracy"])


def build_table(
    spec: MatrixSpec,
    on_cell: Callable[[Cell, float], None] | None = None,
    ray: str | None = None,
) -> list[Cell]:
    """Run every cell of ``spec`` (each seed in a temporary run directory) and return them,
    in order partition, fraction, aggregator, attack. ``on_cell(cell, seconds)`` is called
    after each cell. ``ray``: spread the runs over Ray (``sweep.LOCAL`` or an address)."""
    cells = []
    with (
        tempfile.TemporaryDirectory(prefix="robust-matrix-") as tmp,
        sweep_pool(ray) as pool,
    ):
        planned = []
        for partition in spec.partitions:
            for fraction in spec.fractions:
                k = spec.attackers(fraction)
                for aggregator in spec.aggregators:
                    note = refusal(aggregator, k, spec.num_clients)
                    for attack in spec.attacks:
                        runs = []
                        for seed in spec.seeds if not note else ():
                            tree = cell_config(spec, aggregator, attack, fraction, partition, seed)
                            run_dir = Path(tmp) / f"{len(planned)}-{seed}"
                            runs.append(pool.submit(final_accuracy, tree, run_dir))
                        planned.append((partition, fraction, k, aggregator, attack, note, runs))
        began = time.perf_counter()
        for partition, fraction, k, aggregator, attack, note, runs in planned:
            accuracies = tuple(run.result() for run in runs)
            cell = Cell(partition, fraction, k, aggregator, attack, accuracies, note)
            cells.append(cell)
            if on_cell is not None:
                on_cell(cell, time.perf_counter() - began)
            began = time.perf_counter()
    return cells


def format_table(spec: MatrixSpec, cells: Sequence[Cell]) -> str:
    """One block per partition and fraction: aggregators down, attacks across."""
    by_key = {(c.partition, c.fraction, c.aggregator, c.attack): c for c in cells}
    width = max(
        [16, *(len(c.text()) + 2 for c in cells), *(len(ATTACKS[a][0]) + 2 for a in spec.attacks)]
    )
    lines = []
    for partition in spec.partitions:
        for fraction in spec.fractions:
            k = spec.attackers(fraction)
            label = "IID" if partition == "iid" else "Dirichlet(0.5)"
            lines.append(
                f"{spec.dataset}, {label}, {k} of {spec.num_clients} clients malicious "
                f"({fraction:.0%}), {spec.num_rounds} rounds, seeds {list(spec.seeds)}"
            )
            lines.append(f"{'':<14}" + "".join(f"{ATTACKS[a][0]:>{width}}" for a in spec.attacks))
            for aggregator in spec.aggregators:
                row = [by_key[(partition, fraction, aggregator, a)] for a in spec.attacks]
                lines.append(
                    f"{RULES[aggregator][0]:<14}" + "".join(f"{c.text():>{width}}" for c in row)
                )
            lines.append("")
    return "\n".join(lines)


def write_csv(path: Path, spec: MatrixSpec, cells: Sequence[Cell]) -> None:
    seed_cols = [f"seed_{s}" for s in spec.seeds]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            [
                "dataset",
                "partition",
                "fraction",
                "malicious",
                "clients",
                "rounds",
                "aggregator",
                "attack",
                "mean",
                "std",
                "note",
                *seed_cols,
            ]
        )
        for c in cells:
            values = [f"{a:.6f}" for a in c.accuracies] or [""] * len(seed_cols)
            writer.writerow(
                [
                    spec.dataset,
                    c.partition,
                    c.fraction,
                    c.malicious,
                    spec.num_clients,
                    spec.num_rounds,
                    c.aggregator,
                    c.attack,
                    "" if c.note else f"{c.mean:.6f}",
                    "" if c.note else f"{c.std:.6f}",
                    c.note,
                    *values,
                ]
            )


def plot_heatmap(path: Path, spec: MatrixSpec, cells: Sequence[Cell]) -> None:
    """One panel per partition and fraction; n/a cells grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_key = {(c.partition, c.fraction, c.aggregator, c.attack): c for c in cells}
    panels = [(p, f) for p in spec.partitions for f in spec.fractions]
    cols = len(spec.fractions)
    rows = len(spec.partitions)
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(1.2 * len(spec.attacks) * cols + 1.5, 0.5 * len(spec.aggregators) * rows + 1.5),
        squeeze=False,
    )
    cmap = plt.get_cmap("viridis").with_extremes(bad="lightgrey")
    image = None
    for (partition, fraction), ax in zip(panels, axes.flat, strict=True):
        grid = np.array(
            [
                [by_key[(partition, fraction, g, a)].mean for a in spec.attacks]
                for g in spec.aggregators
            ]
        )
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0.0, vmax=1.0)
        for i in range(len(spec.aggregators)):
            for j in range(len(spec.attacks)):
                value = grid[i, j]
                text = "n/a" if np.isnan(value) else f"{value:.2f}"
                colour = "black" if np.isnan(value) or value > 0.6 else "white"
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color=colour)
        ax.set_xticks(range(len(spec.attacks)), [ATTACKS[a][0] for a in spec.attacks])
        ax.set_yticks(range(len(spec.aggregators)), [RULES[g][0] for g in spec.aggregators])
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
        ax.tick_params(axis="y", labelsize=7)
        label = "IID" if partition == "iid" else "Dirichlet(0.5)"
        ax.set_title(f"{label}, {fraction:.0%} malicious", fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="final accuracy (mean over seeds)")
    fig.suptitle(
        f"{spec.dataset}: {spec.num_clients} clients, {spec.num_rounds} rounds, "
        f"{len(spec.seeds)} seed(s)",
        fontsize=10,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def parse_args(argv: Sequence[str] | None = None) -> tuple[MatrixSpec, Path, str | None]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=list(DATASETS), default="digits")
    parser.add_argument("--aggregators", nargs="+", choices=list(RULES), default=list(RULES))
    parser.add_argument("--attacks", nargs="+", choices=list(ATTACKS), default=list(ATTACKS))
    parser.add_argument("--fractions", nargs="+", type=float, default=[0.2, 0.4])
    parser.add_argument(
        "--partitions", nargs="+", choices=list(PARTITIONS), default=list(PARTITIONS)
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=None, help="default: the dataset's")
    parser.add_argument("--clients", type=int, default=None, help="default: the dataset's")
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/out")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fedavg and krum, no attack and noise, iid, 20%%, seed 0, 3 rounds; "
        "files go to the temporary directory unless --out is given",
    )
    add_ray_option(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.aggregators, args.attacks = ["fedavg", "krum"], ["none", "noise"]
        args.partitions, args.fractions, args.seeds = ["iid"], [0.2], [0]
        args.rounds = args.rounds or 3
        args.out = args.out or Path(tempfile.gettempdir()) / "fedledger-robust-matrix-quick"
    args.out = args.out or REPO / "benchmarks" / "out"
    try:
        spec = MatrixSpec(
            dataset=args.dataset,
            aggregators=tuple(args.aggregators),
            attacks=tuple(args.attacks),
            fractions=tuple(args.fractions),
            partitions=tuple(args.partitions),
            seeds=tuple(args.seeds),
            rounds=args.rounds,
            clients=args.clients,
        )
    except ValueError as err:
        parser.error(str(err))
    return spec, args.out, args.ray


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    torch.set_num_threads(1)
    spec, out, ray = parse_args(argv)
    missing = spec.setup.available()
    if missing:
        print(f"skipping {spec.dataset}: {missing}")
        return 0
    total = len(spec.partitions) * len(spec.fractions) * len(spec.aggregators) * len(spec.attacks)
    done = 0

    def progress(cell: Cell, seconds: float) -> None:
        nonlocal done
        done += 1
        print(
            f"[{done}/{total}] {cell.partition} {cell.fraction:.0%} {cell.aggregator} "
            f"{cell.attack}: {cell.text()} ({seconds:.1f} s)",
            file=sys.stderr,
            flush=True,
        )

    began = time.perf_counter()
    try:
        cells = build_table(spec, progress, ray)
    except FedledgerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(format_table(spec, cells))
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / f"robust_matrix-{spec.dataset}.csv"
    png_path = out / f"robust_matrix-{spec.dataset}.png"
    write_csv(csv_path, spec, cells)
    plot_heatmap(png_path, spec, cells)
    print(f"wrote {csv_path} and {png_path} ({time.perf_counter() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
