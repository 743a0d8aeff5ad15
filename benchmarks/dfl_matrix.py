"""DFL's attack matrix (Table IX), the update/train ratio (Fig. 10) and the CPU split.

    .venv/bin/python benchmarks/dfl_matrix.py --small        # MLP, 300 ticks, a few minutes
    .venv/bin/python benchmarks/dfl_matrix.py --quick        # smoke form (the test suite's)
    .venv/bin/python benchmarks/dfl_matrix.py                 # LeNet-5, 1500 ticks, 3 seeds
    .venv/bin/python benchmarks/dfl_matrix.py --ticks 4000 --seeds 10   # the paper's length

The paper's simulation setting: 10 nodes, random topology where each node connects to 2
peers (average degree 4), buffer 4, batch 64 every 8-12 ticks, ttl 1, MNIST
(../shared/data/mnist-10k), one malicious node (the authors' ``*_x1`` runs). Attacks:
data poisoning = random data (uniform pixels), model poisoning = uniform random models in
[0, 0.001) (``uniform_model``). Each cell is the mean test accuracy of the honest nodes
at the last tick, averaged over the seeds (the Dirichlet partitions are re-drawn per
seed, as the paper's 10 repetitions). The blockchain is kept in (the authors' simulator
removed it): every node signs, verifies, gathers confirmations and keeps its chain.

Beside Table IX's 24 cells it runs our ``filtered`` rule on the same cells; the goal is
at least 0.85 where reputation-0.05 fails (model poisoning, non-IID).

Ratio (Fig. 10): fully connected, IID, node 0 an observer, reputation-0.05, buffer 32, 8
and 2 (update/train about 1:4, 1:1, 4:1); accuracy at quarters of the run.

CPU split (Tables IV and VI): one honest IID run with messages pushed through the real
codec; CPU seconds per activity (blockchain, network, ml, protocol, ...) summed over
nodes, the records on the nodes' chains (blocks, transactions, receipts, confirmations)
and the blockchain CPU per record. ``--model`` picks the model of every run (default:
LeNet-5, MLP with --quick); ``--cpu-models lenet5,cnn`` runs the split once per model.
The paper's model, "the LeNet example in Caffe" (conv 20@5x5, pool, conv 50@5x5, pool,
FC 500, FC 10: 431,080 parameters), is our ``cnn``, not ``lenet5`` (61,706):

    .venv/bin/python benchmarks/dfl_matrix.py --skip matrix,ratio --ticks 300 \
        --cpu-models lenet5,cnn

Writes dfl_matrix.json into --out (default benchmarks/out/) and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from sweep import add_ray_option, sweep_pool

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-10k"

PARTITIONS: dict[str, dict[str, Any]] = {
    "IID": {"name": "iid"},
    "alpha=1": {"name": "dirichlet", "alpha": 1.0},
    "alpha=0.1": {"name": "dirichlet", "alpha": 0.1},
    "2 labels": {"name": "labels", "labels_per_node": 2},
}
ATTACKS: dict[str, dict[str, Any] | None] = {
    "no malicious": None,
    "dataset poisoning": {"name": "random_data"},
    "model poisoning": {"name": "uniform_model", "low": 0.0, "high": 0.001},
}
RULES = {"HalfFedAvg": "halffedavg", "Reputation-0.05": "reputation-0.05", "ours": "filtered"}
# The paper's Table IX / Fig. 9 outcome at 4000 ticks: above 0.9, or training fails.
PAPER_FAILS = {
    ("model poisoning", "HalfFedAvg"): {"IID", "alpha=1", "alpha=0.1", "2 labels"},
    ("model poisoning", "Reputation-0.05"): {"alpha=1", "alpha=0.1", "2 labels"},
}


# Training settings per model family: the MLP's (the --quick runs) and the
# convolutional nets' (LeNet-5 and the paper's Caffe LeNet, our ``cnn``).
MLP_TRAIN = {"epochs": 2, "lr": 0.05, "batch_size": 16, "momentum": 0.5}
CONV_TRAIN = {"epochs": 1, "lr": 0.01, "batch_size": 64, "momentum": 0.9, "weight_decay": 5e-4}
# The paper's model ("the LeNet example in Caffe", 431,080 parameters) is our cnn.
PAPER_MODEL = "cnn"


def model_names() -> list[str]:
    from fedledger.learning.models import MODELS

    return MODELS.names()


def settings(args: argparse.Namespace, model: str | None = None) -> dict[str, Any]:
    """Model and training settings: ``model`` (default ``args.model``) by name; the MLP
    gets one hidden layer of 100 and the MLP's training, the others the conv nets'."""
    name = model or args.model
    spec: dict[str, Any] = {"name": name}
    if name == "mlp":
        spec["hidden"] = [100]
    return {"model": spec, "train": dict(MLP_TRAIN if name == "mlp" else CONV_TRAIN)}


def base_config(
    args: argparse.Namespace, seed: int, model: str | None = None, **protocol: Any
) -> dict[str, Any]:
    proto = {
        "name": "dfl",
        "topology": "random",
        "degree": 4,
        "buffer_size": 4,
        "samples_per_interval": 64,
        "batch_size": 64,
        "train_interval": [8, 12],
        "ttl": 1,
        "block_txs": 4,
        "ticks": args.ticks,
        "report_every": max(10, args.ticks // 10),
        **protocol,
    }
    return {
        "name": "dfl-bench",
        "seed": seed,
        "data": {
            "dataset": {"name": "idx", "path": str(args.data)},
            "partition": {"name": "iid"},
            "test_fraction": 0.2,
            "val_fraction": 0.15,
        },
        **settings(args, model),
        "protocol": proto,
        "nodes": {"count": 10},
        "eval": {"batch_size": 2000},
        "output": {"plots": False},
    }


def matrix_config(args, partition: str, attack: str, rule: str, seed: int) -> dict[str, Any]:
    config = base_config(args, seed, update_rule={"name": RULES[rule]})
    config["data"]["partition"] = PARTITIONS[partition]
    spec = ATTACKS[attack]
    if spec is not None:
        config["nodes"]["malicious"] = [{"count": 1, "attack": spec}]
    return config


def chain_counts(run_dir: Path) -> dict[str, int]:
    """Records on the nodes' canonical chains, summed over nodes (genesis left out)."""
    from fedledger.ledger.store import ChainStore

    counts = {"blocks": 0, "transactions": 0, "receipts": 0, "confirmations": 0}
    for path in sorted(run_dir.glob("nodes/*/ledger.sqlite")):
        with ChainStore(path) as store:
            for block in store.canonical_chain():
                if block.height == 0:
                    continue
                extra = block.header.extra
                counts["blocks"] += 1
                counts["transactions"] += len(block.transactions)
                counts["receipts"] += len(getattr(extra, "receipts", ()))
                counts["confirmations"] += len(getattr(extra, "confirmations", ()))
    return counts


def run_one(config: dict[str, Any], count_chain: bool = False) -> dict[str, Any]:
    """Run one experiment in a temporary directory; its summary and accuracy curve
    (and, with ``count_chain``, the records on its nodes' chains)."""
    import torch

    from fedledger.assembly.config import parse_config
    from fedledger.experiment.runner import run_experiment

    torch.set_num_threads(1)
    out = Path(tempfile.mkdtemp(prefix="dfl-bench-"))
    try:
        result = run_experiment(parse_config(config), out=out / "run")
        curve: dict[int, list[float]] = {}
        for row in result.rows:
            if row.honest:
                curve.setdefault(row.step, []).append(row.accuracy)
        s = result.summary
        report = s.protocol_report
        chain = chain_counts(out / "run") if count_chain else None
        return {
            "accuracy": s.final_accuracy,
            "curve": {step: sum(v) / len(v) for step, v in sorted(curve.items())},
            "cpu": s.cpu_seconds,
            "blocks_per_node": report.get("blocks_per_node"),
            "confirmations_per_block": report.get("confirmations_per_block"),
            "receipts_per_block": report.get("receipts_per_block"),
            "reputation": report.get("reputation_final"),
            "wall": s.wall_seconds,
            "chain": chain,
        }
    finally:
        shutil.rmtree(out, ignore_errors=True)


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def print_matrix(cells: dict[tuple[str, str, str], list[dict[str, Any]]], rules: list[str]):
    print("\nTable IX: honest nodes' mean test accuracy at the last tick (ours | paper)")
    header = f"{'':36s}" + "".join(f"{p:>22s}" for p in PARTITIONS)
    print(header)
    for rule in rules:
        for attack in ATTACKS:
            line = f"{attack + ' ' + rule:36s}"
            for partition in PARTITIONS:
                runs = cells.get((partition, attack, rule))
                if not runs:
                    line += f"{'-':>22s}"
                    continue
                acc = mean([r["accuracy"] for r in runs])
                fails = partition in PAPER_FAILS.get((attack, rule), set())
                paper = "n/a" if rule == "ours" else ("fails" if fails else ">0.9")
                line += f"{acc:>14.3f} | {paper:5s}"
            print(line)


def parameters(model: dict[str, Any]) -> int | None:
    """Trainable parameters of ``model`` on 1x28x28 MNIST with 10 classes."""
    try:
        from fedledger.learning.models import build_model, count_parameters

        params = {k: v for k, v in model.items() if k != "name"}
        return count_parameters(build_model(model["name"], (1, 28, 28), 10, params))
    except Exception:  # only for the printout
        return None


def print_cpu(name: str, res: dict[str, Any], ticks: int) -> dict[str, Any]:
    """Print one model's CPU split and on-chain counts; the figures for the JSON."""
    cpu = res["cpu"]
    total = sum(cpu.values())
    nparams = parameters(settings(argparse.Namespace(model=name))["model"])
    size = f"{nparams:,} parameters" if nparams else "parameters unknown"
    paper = "; the paper's model, the Caffe LeNet" if name == PAPER_MODEL else ""
    print(
        f"\nCPU time per activity, all nodes, model {name} ({size}{paper}), {ticks} ticks "
        "(Tables IV/VI; paper: blockchain < 5%)"
    )
    for activity, seconds in sorted(cpu.items()):
        print(f"  {activity:10s} {seconds:9.3f} s  {100 * seconds / total:6.2f} %")
    print(f"  {'total':10s} {total:9.3f} s")
    print(
        f"  blocks per node {res['blocks_per_node']}, receipts per block "
        f"{res['receipts_per_block']}, confirmed receipts per block "
        f"{res['confirmations_per_block']} (paper Table V/VII: 4 and 35.1 of 36)"
    )
    out: dict[str, Any] = {
        "model": name,
        "parameters": nparams,
        "seconds": cpu,
        "share": {a: v / total for a, v in cpu.items()},
    }
    chain = res.get("chain")
    if chain:
        records = sum(chain.values())
        per = 1e6 * cpu.get("blockchain", 0.0) / records if records else float("nan")
        print(
            f"  on the nodes' chains: {chain['blocks']} blocks, {chain['transactions']} "
            f"transactions, {chain['receipts']} receipts, {chain['confirmations']} "
            f"confirmations; blockchain CPU {per:.0f} us per record on chain"
        )
        out["chain"] = chain
        out["blockchain_us_per_record"] = per
    return out


def print_cpu_table(models: dict[str, dict[str, Any]]) -> None:
    activities = sorted({a for m in models.values() for a in m["seconds"]})
    print("\nCPU split per model (seconds, share of the total)")
    print(f"  {'model':8s}" + "".join(f"{a:>20s}" for a in activities) + f"{'total':>10s}")
    for name, m in models.items():
        cells = "".join(
            f"{m['seconds'].get(a, 0.0):>11.3f} s {100 * m['share'].get(a, 0.0):5.2f}%"
            for a in activities
        )
        print(f"  {name:8s}{cells}{sum(m['seconds'].values()):>9.2f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke form for the test suite: MLP, 40 ticks, one cell per rule, no ratio/cpu",
    )
    parser.add_argument("--small", action="store_true", help="MLP, 300 ticks, one seed")
    parser.add_argument("--ticks", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=None, help="repetitions (seeds 0..k-1)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel runs")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--rules", default="HalfFedAvg,Reputation-0.05,ours")
    parser.add_argument("--attacks", default=",".join(ATTACKS))
    parser.add_argument("--partitions", default=",".join(PARTITIONS))
    parser.add_argument("--skip", default="", help="comma list of: matrix, ratio, cpu")
    parser.add_argument(
        "--model",
        default=None,
        help="model of every run (default: lenet5, mlp with --quick); the paper's model is "
        f"{PAPER_MODEL}; one of: {', '.join(model_names())}",
    )
    parser.add_argument(
        "--cpu-models",
        default=None,
        help="comma list of models: run the CPU split once per model (default: --model)",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    add_ray_option(parser)
    args = parser.parse_args()
    if args.quick:
        args.ticks, args.seeds, args.model = 40, 1, "mlp"
        args.attacks, args.partitions, args.skip = "model poisoning", "IID", "ratio,cpu"
    args.ticks = args.ticks or (300 if args.small else 1500)
    args.seeds = args.seeds or (1 if args.small else 3)
    args.model = args.model or ("mlp" if args.small else "lenet5")
    cpu_models = [m for m in (args.cpu_models or args.model).split(",") if m]
    known = model_names()
    bad_models = [m for m in [args.model, *cpu_models] if m not in known]
    if bad_models:
        allowed = ", ".join(known)
        raise SystemExit(f"--model/--cpu-models: unknown {bad_models}; allowed: {allowed}")
    if not args.data.is_dir():
        raise SystemExit(f"no MNIST data at {args.data}; give --data DIR (IDX files)")
    rules = [r for r in args.rules.split(",") if r]
    attacks = [a for a in args.attacks.split(",") if a]
    partitions = [p for p in args.partitions.split(",") if p]
    for name, allowed in (("rules", RULES), ("attacks", ATTACKS), ("partitions", PARTITIONS)):
        bad = [v for v in locals()[name] if v not in allowed]
        if bad:
            raise SystemExit(f"--{name}: unknown {bad}; allowed: {', '.join(allowed)}")
    skip = set(args.skip.split(",")) - {""}
    jobs: list[tuple[tuple[str, ...], dict[str, Any]]] = []
    if "matrix" not in skip:
        for rule in rules:
            for attack in attacks:
                for partition in partitions:
                    for seed in range(args.seeds):
                        config = matrix_config(args, partition, attack, rule, seed)
                        jobs.append((("matrix", partition, attack, rule), config))
    ratios = {"1:4": 32, "1:1": 8, "4:1": 2}
    if "ratio" not in skip:
        for label, buffer in ratios.items():
            config = base_config(
                args, 0, topology="full", observers=1, buffer_size=buffer, degree=9
            )
            jobs.append((("ratio", label), config))
    if "cpu" not in skip:
        for name in cpu_models:
            config = base_config(args, 0, model=name, update_rule={"name": "reputation-0.05"})
            config["network"] = {"encode": True}
            jobs.append((("cpu", name), config))

    started = time.perf_counter()
    where = f"on Ray ({args.ray})" if args.ray else f"{args.jobs} at a time"
    print(f"{len(jobs)} runs, {args.ticks} ticks each, {where}", flush=True)
    with sweep_pool(args.ray, args.jobs) as pool:  # --ray: each run on its own Ray worker
        futures = [(key, pool.submit(run_one, config, key[0] == "cpu")) for key, config in jobs]
        results = []
        for i, (key, future) in enumerate(futures, 1):
            res = future.result()
            results.append((key, res))
            print(f"[{i}/{len(jobs)}] {' / '.join(key)}: {res['accuracy']:.3f}", flush=True)

    cells: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    report: dict[str, Any] = {
        "ticks": args.ticks,
        "seeds": args.seeds,
        "quick": args.quick,
        "small": args.small,
        "model": args.model,
    }
    for key, res in results:
        if key[0] == "matrix":
            cells.setdefault(key[1:], []).append(res)  # type: ignore[arg-type]
    if cells:
        print_matrix(cells, rules)
        report["matrix"] = [
            {
                "partition": p,
                "attack": a,
                "rule": r,
                "accuracy": mean([x["accuracy"] for x in runs]),
                "per_seed": [x["accuracy"] for x in runs],
                "reputation": [x["reputation"] for x in runs],
            }
            for (p, a, r), runs in cells.items()
        ]
    ratio_rows = [(key[1], res) for key, res in results if key[0] == "ratio"]
    if ratio_rows:
        print("\nUpdate/train ratio (Fig. 10): honest mean accuracy at quarters of the run")
        report["ratio"] = {}
        for label, res in ratio_rows:
            steps = sorted(res["curve"])
            marks = [steps[max(0, len(steps) * q // 4 - 1)] for q in (1, 2, 3, 4)]
            values = "  ".join(f"t={s}: {res['curve'][s]:.3f}" for s in marks)
            print(f"  update/train {label} (buffer {ratios[label]}): {values}")
            report["ratio"][label] = res["curve"]
    cpu_rows = [(key[1], res) for key, res in results if key[0] == "cpu"]
    if cpu_rows:
        report["cpu_models"] = {}
        for name, res in cpu_rows:
            report["cpu_models"][name] = print_cpu(name, res, args.ticks)
        report["cpu"] = report["cpu_models"][cpu_rows[0][0]]
        if len(cpu_rows) > 1:
            print_cpu_table(report["cpu_models"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dfl_matrix.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"\n{time.perf_counter() - started:.0f} s; wrote {args.out / 'dfl_matrix.json'}")


if __name__ == "__main__":
    main()
