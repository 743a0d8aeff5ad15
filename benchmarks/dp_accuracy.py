"""Test accuracy against epsilon: DP-SGD on one node and DP-FedAvg with 10 clients.

    .venv/bin/python benchmarks/dp_accuracy.py --quick      # digits, epsilon 1 and 8 + none
    .venv/bin/python benchmarks/dp_accuracy.py              # MNIST-10k and Fashion-MNIST
    .venv/bin/python benchmarks/dp_accuracy.py --datasets mnist --epochs 10

For each epsilon the noise multiplier is calibrated with the RDP accountant so that the
whole run (Poisson sampling at batch_size / n, round(n / batch_size) steps per epoch)
spends exactly that epsilon at delta 1e-5; "none" trains with the same clipping and no
noise. The table prints the calibrated sigma, the epsilon the accountant reports after
the run, the test accuracy and the seconds taken.

Anchor: Papernot et al., "Tempered Sigmoid Activations for Deep Learning with
Differential Privacy" (AAAI 2021): 98.1% on MNIST at epsilon 2.93 and 86.1% on
Fashion-MNIST at epsilon 2.7, delta 1e-5, on the full 60,000 training images. MNIST-10k
holds 8,000 training images here (2,000 held out), so each epsilon buys 7.5 times less
signal: expect lower figures than the anchor. Fashion-MNIST is read from Debian's
dataset-fashion-mnist (/usr/share/datasets/fashion-mnist); it is skipped with a message
when absent.

The federated table runs vanilla FedAvg in the simulator with 10 clients (iid, all
sampled each round) and ``protocol.dp`` in ``central`` mode (the server clips each
update and noises the mean) and in ``local`` mode (each client clips and noises its own
update), the noise calibrated to the target epsilon over all rounds at delta 1e-5. Its
epsilon is **user level** (one client's whole data), a far stronger unit than DP-SGD's one
image, so it is not comparable figure for figure with the one-node table; "spent eps" is
the run's summary.json ``privacy.epsilon``.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from fedledger.assembly.config import parse_config
from fedledger.experiment.runner import run_experiment
from fedledger.learning.data import (
    DataSource,
    load_digits_source,
    load_idx_source,
    prepare_federated_data,
)
from fedledger.learning.train import Learner
from fedledger.privacy.dp.accountants import make_accountant, noise_multiplier_for
from fedledger.privacy.dp.dpsgd import (
    DPSGDSettings,
    account,
    noise_multiplier_for_run,
    train_dp_sgd,
)

DELTA = 1e-5
ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist-10k"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
EPSILONS = (0.5, 1.0, 2.0, 4.0, 8.0, math.inf)
ANCHOR = {"mnist-10k": "98.1% at eps 2.93", "fashion-mnist": "86.1% at eps 2.7"}


@dataclass(frozen=True)
class Setup:
    name: str
    model: str
    model_params: dict[str, object]
    settings: DPSGDSettings


def setups(quick: bool, epochs: int | None) -> list[tuple[Setup, DataSource | None, str]]:
    """(setup, data source or None, message when the data is missing)."""
    digits = Setup(
        "digits",
        "mlp",
        {"hidden": [32]},
        DPSGDSettings(epochs=15, lr=1.0, batch_size=64, max_grad_norm=1.0),
    )
    image = DPSGDSettings(epochs=15, lr=1.0, batch_size=256, max_grad_norm=1.0, momentum=0.5)
    mnist = Setup("mnist-10k", "lenet5", {"activation": "tanh"}, image)
    fashion = Setup("fashion-mnist", "lenet5", {"activation": "tanh"}, image)
    out: list[tuple[Setup, DataSource | None, str]] = []
    if quick:
        out.append((digits, load_digits_source(), ""))
    else:
        if MNIST_DIR.is_dir():
            out.append((mnist, load_idx_source(str(MNIST_DIR)), ""))
        else:
            out.append((mnist, None, f"{MNIST_DIR} not found"))
        if FASHION_DIR.is_dir():
            out.append((fashion, load_idx_source(str(FASHION_DIR)), ""))
        else:
            out.append(
                (fashion, None, f"{FASHION_DIR} not found (apt-get install dataset-fashion-mnist)")
            )
    if epochs is not None:
        out = [(replace(s, settings=replace(s.settings, epochs=epochs)), d, m) for s, d, m in out]
    return out


def run_one(setup: Setup, source: DataSource, epsilon: float, seed: int) -> tuple[str, ...]:
    data = prepare_federated_data(source, 1, "iid", val_fraction=0.0, seed=seed)
    train, test = data.nodes[0].train, data.test
    learner = Learner(setup.model, setup.model_params, train.input_shape, data.num_classes)
    sigma = noise_multiplier_for_run(epsilon, DELTA, len(train), setup.settings)
    settings = replace(setup.settings, noise_multiplier=sigma)
    start = time.perf_counter()
    result = train_dp_sgd(
        learner.module, learner.init_weights(seed), train.x, train.y, settings, seed + 1
    )
    seconds = time.perf_counter() - start
    accountant = make_accountant("rdp")
    account(result, accountant)
    spent = accountant.spent(DELTA).epsilon
    accuracy = learner.evaluate(result.weights, test.x, test.y).accuracy
    return (
        setup.name,
        "none" if math.isinf(epsilon) else f"{epsilon:g}",
        f"{sigma:.3f}",
        str(result.steps),
        "inf" if math.isinf(spent) else f"{spent:.3f}",
        f"{100 * accuracy:.1f}%",
        f"{seconds:.1f}",
        ANCHOR.get(setup.name, "-"),
    )


@dataclass(frozen=True)
class Federated:
    """A DP-FedAvg setup: the simulator config besides ``protocol.dp``."""

    name: str
    dataset: dict[str, object]
    model: dict[str, object]
    train: dict[str, object]
    rounds: int
    clip: float
    clients: int = 10


def federated_setups(quick: bool, rounds: int | None) -> list[tuple[Federated, str]]:
    """(setup, message when its data is missing, else "")."""
    digits = Federated(
        "digits",
        {"name": "digits"},
        {"name": "mlp", "hidden": [32]},
        {"epochs": 2, "lr": 0.1, "batch_size": 16},
        rounds=5 if quick else 30,
        clip=1.0,
    )
    image = {"epochs": 1, "lr": 0.05, "batch_size": 32, "momentum": 0.5}
    lenet = {"name": "lenet5", "activation": "tanh"}
    mnist = Federated("mnist-10k", {"name": "idx", "path": str(MNIST_DIR)}, lenet, image, 30, 1.0)
    fashion = Federated(
        "fashion-mnist", {"name": "idx", "path": str(FASHION_DIR)}, lenet, image, 30, 1.0
    )
    out = [(digits, "")] if quick else []
    if not quick:
        out.append((mnist, "" if MNIST_DIR.is_dir() else f"{MNIST_DIR} not found"))
        out.append((fashion, "" if FASHION_DIR.is_dir() else f"{FASHION_DIR} not found"))
    if rounds is not None:
        out = [(replace(f, rounds=rounds), m) for f, m in out]
    return out


def run_federated(setup: Federated, mode: str, epsilon: float, seed: int) -> tuple[str, ...]:
    noise: dict[str, float] = (
        {"noise_multiplier": 0.0} if math.isinf(epsilon) else {"target_epsilon": epsilon}
    )
    rate = 1.0  # every client sampled each round (central) / each release (local)
    sigma = 0.0 if math.isinf(epsilon) else noise_multiplier_for(epsilon, DELTA, rate, setup.rounds)
    raw = {
        "name": f"dp-{mode}",
        "seed": seed,
        "rounds": setup.rounds,
        "data": {"dataset": setup.dataset, "partition": "iid"},
        "model": setup.model,
        "train": setup.train,
        "protocol": {
            "name": "vanilla",
            "aggregator": {"name": "fedavg"},
            "dp": {"mode": mode, "clip": setup.clip, "delta": DELTA, **noise},
        },
        "nodes": {"count": setup.clients},
        "output": {"plots": False},
    }
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        summary = run_experiment(parse_config(raw), Path(tmp) / "run").summary
    seconds = time.perf_counter() - start
    spent = (summary.privacy or {}).get("epsilon")
    accuracy = summary.final_accuracy
    return (
        setup.name,
        mode,
        "none" if math.isinf(epsilon) else f"{epsilon:g}",
        f"{sigma:.3f}",
        str(setup.rounds),
        "inf" if spent is None else f"{spent:.3f}",
        "-" if accuracy is None else f"{100 * accuracy:.1f}%",
        f"{seconds:.1f}",
    )


def print_table(rows: list[tuple[str, ...]], header: tuple[str, ...] | None = None) -> None:
    header = header or (
        "dataset", "target eps", "sigma", "steps", "spent eps", "test acc", "s", "anchor"
    )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits, epsilon 1 and 8 + none")
    parser.add_argument("--epochs", type=int, default=None, help="override the epochs")
    parser.add_argument("--epsilons", type=str, default=None, help="comma list; 'none' = inf")
    parser.add_argument("--datasets", type=str, default=None, help="comma list of names")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--rounds", type=int, default=None, help="override DP-FedAvg rounds")
    parser.add_argument(
        "--no-federated", action="store_true", help="skip the DP-FedAvg (10 clients) table"
    )
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(args.threads, os.cpu_count() or 1)))
    if args.epsilons:
        epsilons = tuple(
            math.inf if e.strip() == "none" else float(e) for e in args.epsilons.split(",")
        )
    else:
        epsilons = (1.0, 8.0, math.inf) if args.quick else EPSILONS
    wanted = set(args.datasets.split(",")) if args.datasets else None
    rows: list[tuple[str, ...]] = []
    print(f"DP-SGD, one node, delta {DELTA:g}, RDP accountant, Poisson sampling")
    for setup, source, message in setups(args.quick, args.epochs):
        if wanted is not None and not any(w in setup.name for w in wanted):
            continue
        if source is None:
            print(f"skipping {setup.name}: {message}")
            continue
        s = setup.settings
        print(
            f"{setup.name}: {setup.model} {setup.model_params}, epochs {s.epochs}, "
            f"batch {s.batch_size}, lr {s.lr}, momentum {s.momentum}, C {s.max_grad_norm}",
            flush=True,
        )
        for epsilon in epsilons:
            rows.append(run_one(setup, source, epsilon, args.seed))
            print("  " + "  ".join(rows[-1][:7]), flush=True)
    print()
    print_table(rows)
    if args.no_federated:
        return
    fed_epsilons = (8.0, math.inf) if args.quick and not args.epsilons else epsilons
    fed_rows: list[tuple[str, ...]] = []
    print()
    print(f"DP-FedAvg, 10 clients, user-level epsilon, delta {DELTA:g}, RDP accountant")
    for fed, message in federated_setups(args.quick, args.rounds):
        if wanted is not None and not any(w in fed.name for w in wanted):
            continue
        if message:
            print(f"skipping {fed.name}: {message}")
            continue
        print(f"{fed.name}: {fed.model}, {fed.train}, {fed.rounds} rounds, clip {fed.clip}")
        for mode in ("central", "local"):
            for epsilon in fed_epsilons:
                fed_rows.append(run_federated(fed, mode, epsilon, args.seed))
                print("  " + "  ".join(fed_rows[-1]), flush=True)
    print()
    header = ("dataset", "mode", "target eps", "sigma", "rounds", "spent eps", "test acc", "s")
    print_table(fed_rows, header)


if __name__ == "__main__":
    main()
