"""Wall time of a vanilla FedAvg round in the simulator and on a real localnet.

The same small experiment (digits, an MLP, IID, one local epoch) runs twice: in the
discrete-event simulator (one process) and as a localnet (one process per node on
127.0.0.1, TCP, signed envelopes). For each it prints the median wall time per round
(from the server's model reports; the first round, which includes set-up, is left out;
the localnet's nodes start together at the shared epoch, see the README ("Run a real network")),
their ratio, the bytes each node sent per round on the network, and the per-message
overhead of the wire format (4-byte frame prefix + envelope with session, sequence
number and Ed25519 signature) against the canonical payload.

    .venv/bin/python benchmarks/network_round.py [--nodes 5] [--rounds 6] [--hidden 64]
    .venv/bin/python benchmarks/network_round.py --quick    # 2 clients, 3 rounds
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from fedledger.assembly.config import parse_config
from fedledger.codec import encode
from fedledger.crypto import KeyPair
from fedledger.experiment.localnet import Localnet, run_localnet
from fedledger.experiment.runner import run_experiment
from fedledger.learning.train import Learner
from fedledger.protocols.vanilla.messages import ClientUpdate, Finish, GlobalModel
from fedledger.runtime.node.framing import encode_frame
from fedledger.runtime.node.journal import read_journal
from fedledger.runtime.node.wire import seal


def config_tree(nodes: int, rounds: int, hidden: int) -> dict:
    return {
        "name": "bench-network-round",
        "seed": 0,
        "rounds": rounds,
        "data": {"dataset": "digits", "partition": "iid"},
        "model": {"name": "mlp", "hidden": [hidden]},
        "train": {"epochs": 1, "lr": 0.05, "batch_size": 16},
        "protocol": {"name": "vanilla", "fraction": 1.0, "round_timeout": 60.0},
        "nodes": {"count": nodes},
        "output": {"dir": "benchmarks/out", "plots": False},
    }


def per_round(times: list[float]) -> float:
    gaps = np.diff(sorted(times))
    return float(statistics.median(gaps[1:] if len(gaps) > 2 else gaps))


def overhead(message: object, key: KeyPair) -> tuple[int, int]:
    """(payload bytes, bytes on the wire) of one protocol message."""
    body = encode(message)
    frame = encode_frame(encode(seal(key, b"\x00" * 16, 2**40, body)), 1 << 30)
    return len(body), len(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5, help="clients (plus one server)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="2 clients, 3 rounds")
    args = parser.parse_args()
    if args.quick:
        args.nodes, args.rounds = 2, 3
    torch.set_num_threads(1)
    tree = config_tree(args.nodes, args.rounds, args.hidden)
    config = parse_config(tree)

    stamps: list[float] = []
    t0 = time.perf_counter()
    sim = run_experiment(config, on_row=lambda _row: stamps.append(time.perf_counter()))
    sim_total = time.perf_counter() - t0
    sim_round = per_round(stamps)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(yaml.safe_dump(tree))
        net = Localnet(path, out=Path(tmp) / "run", timeout=600, grace=20)
        t0 = time.perf_counter()
        result = run_localnet(net)
        net_total = time.perf_counter() - t0
        server = read_journal(net.node_dir("server") / "metrics.jsonl")
        net_round = per_round([r["time"] for r in server if r["kind"] == "model"])
        sent: dict[str, int] = {}
        for node_id in net.ids:
            for item in read_journal(net.node_dir(node_id) / "metrics.jsonl"):
                if item["kind"] == "transport":
                    sent[node_id] = sent.get(node_id, 0) + item["bytes_sent"]
    summary = result.summary

    learner = Learner("mlp", {"hidden": [args.hidden]}, (1, 8, 8), 10)
    weights = learner.init_weights(0)
    key = KeyPair.generate("ed25519", b"\x01" * 32)
    print(
        f"vanilla FedAvg, digits, MLP [{args.hidden}] ({weights.size} parameters), "
        f"{args.nodes} clients + server, {args.rounds} rounds"
    )
    print(
        f"simulator: {sim_round * 1e3:8.1f} ms per round   ({sim_total:.1f} s in all, "
        f"final accuracy {sim.summary['final_accuracy']:.3f})"
    )
    epoch = (
        "the shared epoch set once every node was ready"
        if net.start_delay is None
        else f"the shared epoch {net.start_delay:g} s after the launch"
    )
    print(
        f"localnet:  {net_round * 1e3:8.1f} ms per round   ({net_total:.1f} s in all with "
        f"process start-up up to {epoch}, final accuracy {summary['final_accuracy']:.3f})"
    )
    print(f"ratio localnet / simulator: {net_round / sim_round:.2f}")
    rounds = args.rounds
    clients = [n for n in net.ids if n != "server"]
    print("bytes sent per node per round (all frames: handshakes, pings, messages):")
    print(
        f"  server {sent.get('server', 0) / rounds / 1e3:9.1f} kB   "
        f"client (mean) {np.mean([sent.get(c, 0) for c in clients]) / rounds / 1e3:9.1f} kB"
    )
    share = 1 - summary["payload_bytes_sent"] / max(1, summary["bytes_sent"])
    print(
        f"  all nodes: {summary['bytes_sent'] / 1e6:.2f} MB sent, of which "
        f"{summary['payload_bytes_sent'] / 1e6:.2f} MB protocol payload "
        f"({share:.1%} handshake, ping, framing and signature overhead)"
    )
    print("per-message overhead (frame prefix + envelope + Ed25519 signature):")
    for name, message in (
        ("GlobalModel", GlobalModel(1, weights)),
        ("ClientUpdate", ClientUpdate(1, weights, 287, 0.5)),
        ("Finish", Finish(rounds)),
    ):
        payload, wire = overhead(message, key)
        print(
            f"  {name:<13} payload {payload:>9} B  on the wire {wire:>9} B  "
            f"overhead {wire - payload:>4} B ({(wire - payload) / payload:.2%})"
        )


if __name__ == "__main__":
    main()
