"""μDFL (Xu and Chen, TNSM 2022): Fig. 4, Tables III-V and record sizes, paper beside ours.

    .venv/bin/python benchmarks/mudfl_paper.py [--quick]

- Fig. 4: latency of commit (T_ct), block proposal (T_bp) and chain finality (T_cf) per
  epoch cycle for K = 4..20, measured in the simulator over a LAN link model (1 ms
  one-way, 100 Mbit/s per link, exact message sizes): T_ct = a worker's model
  transaction reaching the last committee member; T_bp = slot start to the last node
  storing a PoC block; T_cf = vote window start to the last node committing the
  checkpoint. The simulator's clock has no CPU in it, so "+cpu" adds what this machine
  takes to verify one transaction (T_ct), one block (T_bp) and K votes (T_cf).
- Table IV: the paper's formulas (d_B = d_head + d_tx Th_S, D_ct = d_tx Th_S K,
  D_bp = d_B K, D_cf = d_vt K^2, Th_D = sum / T_M) with the paper's sizes and ours; our
  T_M = the K = 20 cycle + verifying Th_S transactions + sending the block to K members.
- Table V: transaction commit time (a transaction waits for the next slot and its
  block) and committed transactions per second at 1 TPS.
- Table III: the stages (encrypt, store, fetch, decrypt, verify) on the paper's
  431,080-parameter CNN (1.7 MB), AES-256-GCM and the 390,000-iteration PBKDF2 option.
- Record sizes (canonical CBOR, Ed25519) against the paper's 430 / 589 / 613 bytes.
- Final accuracy (the paper reports none): configs/mudfl-quick.yaml beside vanilla
  FedAvg on the same data and settings (skipped with --quick).
- ``--localnet``: Fig. 4 and Tables IV-V measured on real localnets (node processes on
  127.0.0.1, the load generator of mudfl/load.py; benchmarks/_mudfl_localnet.py), for
  K in ``--ks`` at ``--fig4-tps``, 1 TPS and each of ``--loads``; off with --quick.

The paper ran on Raspberry Pi 4s over a LAN with RSA and Flask; absolute timings are
not comparable, the trends are.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedledger.assembly.build import build_experiment
from fedledger.assembly.config import parse_config
from fedledger.codec import encode
from fedledger.crypto.keys import KeyDirectory, KeyPair
from fedledger.experiment.runner import simulator_for
from fedledger.ledger.records import Block, ModelRef, Transaction, record_id, sign
from fedledger.ledger.verify import Verifier
from fedledger.protocols.mudfl import chain as mchain
from fedledger.protocols.mudfl import faults_grind, poc
from fedledger.protocols.mudfl.cipher import ModelCipher
from fedledger.protocols.mudfl.credits import adversary_control
from fedledger.protocols.mudfl.messages import MODEL_TX, LinkVote, ModelUpdate, PocClaim
from fedledger.storage.blobs import BlobStore
from fedledger.storage.cid import cid_of

PAPER_FIG4 = {4: (76, 137, 36), 20: (913, 511, 218)}  # ms: T_ct, T_bp, T_cf
PAPER_TABLE4 = {
    100: (42.6, 1.4, 1.2),
    200: (84.6, 1.8, 1.9),
    500: (210.6, 2.5, 3.3),
    1000: (420.5, 4.9, 3.4),
    2400: (1008.4, 14.7, 2.7),
}
PAPER_SIZES = {"d_tx": 430, "d_vt": 589, "d_head": 613}
CNN_PARAMS = 431_080
LINK = {"latency": 0.001, "bandwidth": 12.5e6, "encode": True}


class Probe:
    """Times logged by wrapping the microchain's handlers (virtual seconds)."""

    def __init__(self) -> None:
        self.tx: dict[bytes, list[float]] = defaultdict(list)
        self.tx_sent: dict[bytes, float] = {}
        self.block: dict[int, list[float]] = defaultdict(list)
        self.commit: dict[int, list[float]] = defaultdict(list)

    def install(self) -> tuple[Any, Any]:
        add_tx, on_block = mchain.Microchain.add_tx, mchain.Microchain.on_block
        probe = self

        def logged_tx(self: mchain.Microchain, tx: Transaction) -> None:
            add_tx(self, tx)
            if tx.kind == MODEL_TX:
                probe.tx[record_id(tx)].append(self._now())
                probe.tx_sent[record_id(tx)] = tx.timestamp

        def logged_block(self: mchain.Microchain, msg: Any, sender: str) -> None:
            on_block(self, msg, sender)
            if not msg.block.header.extra.fallback:
                probe.block[msg.slot].append(self.into_slot(self._now()))

        mchain.Microchain.add_tx = logged_tx  # type: ignore[method-assign]
        mchain.Microchain.on_block = logged_block  # type: ignore[method-assign]
        return add_tx, on_block

    @staticmethod
    def uninstall(saved: tuple[Any, Any]) -> None:
        mchain.Microchain.add_tx, mchain.Microchain.on_block = saved  # type: ignore[method-assign]


class Metrics:
    def __init__(self, probe: Probe, slot_length: float, delta: float) -> None:
        self.probe, self.slot_length, self.delta = probe, slot_length, delta

    def on_report(self, node_id: str, t: float, step: int, weights: np.ndarray) -> None:
        pass

    def on_metric(self, node_id: str, t: float, metric: Any) -> None:
        if metric.name.endswith("committed"):
            slot = int(t // self.slot_length)
            self.probe.commit[slot].append(t - slot * self.slot_length - 2 * self.delta)


def cycle(k: int, slots: int, root: Path) -> dict[str, float]:
    """One simulated microchain with committee K: mean T_ct, T_bp, T_cf in seconds."""
    cfg = {
        "name": f"mudfl-fig4-k{k}",
        "seed": 0,
        "rounds": 100,  # the run must not finish before the slots are up
        "data": {"dataset": "digits", "partition": "iid"},
        "model": {"name": "mlp", "hidden": [8]},
        "train": {"epochs": 1, "lr": 0.1, "batch_size": 512},  # one step: FL is not timed
        "protocol": {
            "name": "mudfl",
            "committee": k,
            "epoch_size": 1,
            "slot": 1.0,
            "score_samples": 0,
        },
        "nodes": {"count": k + 3},
        "network": LINK,
    }
    config = parse_config(cfg)
    probe = Probe()
    saved = probe.install()
    exp = build_experiment(config, root / f"k{k}")
    try:
        chain0 = next(iter(exp.nodes.values())).chain
        sim = simulator_for(
            exp, Metrics(probe, chain0.slot_length, 1.0), max_time=slots * chain0.slot_length
        )
        sim.run()
    finally:
        Probe.uninstall(saved)
        exp.close()
    t_ct = [max(ts) - probe.tx_sent[t] for t, ts in probe.tx.items() if len(ts) >= k - 1]
    t_bp = [max(ts) for ts in probe.block.values()]
    t_cf = [max(ts) for ts in probe.commit.values()]
    return {"ct": _mean(t_ct), "bp": _mean(t_bp), "cf": _mean(t_cf)}


def _mean(xs: list[float]) -> float:
    return statistics.fmean(xs) if xs else math.nan


def _best(fn: Any, repeat: int) -> float:
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def records(keys: KeyPair) -> dict[str, Any]:
    """A model transaction, a checkpoint vote and a block header as the node signs them."""
    ref = ModelRef(cid_of(b"model"), hashlib.sha256(b"m").digest(), 600)
    update = ModelUpdate(3, ref, hashlib.sha256(b"p").digest(), b"k" * 104)
    tx = sign(Transaction(keys.address, 12.5, MODEL_TX, update, 3), keys)
    vote = sign(LinkVote(keys.address, b"s" * 32, 3, b"t" * 32, 6, 0, 7), keys)
    block = sign(Block.create(b"p" * 32, 7, keys.address, 21.0, (tx,), PocClaim(7, 0, 1000)), keys)
    return {"tx": tx, "vote": vote, "block": block}


def cpu_costs(keys: KeyPair, repeat: int) -> dict[str, float]:
    """Seconds to verify one transaction, one vote and one (one-transaction) block."""
    rec = records(keys)
    verifier = Verifier(KeyDirectory([keys.public]), cache_size=0)
    out = {name: _best(lambda r=rec[name]: verifier.check(r), repeat) for name in ("tx", "vote")}
    block = rec["block"]
    out["block"] = _best(lambda: verifier.check_block(block), repeat)
    return out


def sizes(keys: KeyPair) -> dict[str, int]:
    rec = records(keys)
    return {
        "d_tx": len(encode(rec["tx"])),
        "d_vt": len(encode(rec["vote"])),
        "d_head": len(encode(rec["block"].header)),
    }


def stages(repeat: int) -> dict[str, float]:
    """Table III on the CNN's float32 weights (1.7 MB)."""
    data = np.random.default_rng(0).standard_normal(CNN_PARAMS).astype(np.float32).tobytes()
    key = hashlib.sha256(b"model key").digest()
    out: dict[str, float] = {}
    for name, stretch in (("aes-gcm", False), ("pbkdf2-390k", True)):
        out[f"encrypt {name}"] = _best(lambda s=stretch: ModelCipher(key, s).encrypt(data), repeat)
        blob = ModelCipher(key, stretch).encrypt(data)
        out[f"decrypt {name}"] = _best(
            lambda s=stretch, b=blob: ModelCipher(key, s).decrypt(b), repeat
        )
    blob = ModelCipher(key).encrypt(data)
    with tempfile.TemporaryDirectory() as tmp:
        store = BlobStore(Path(tmp))
        out["store"] = _best(lambda: store.put(blob), repeat)
        cid = store.put(blob)
        out["fetch"] = _best(lambda: store.get(cid), repeat)
    digest = hashlib.sha256(data).digest()
    out["verify"] = _best(lambda: hashlib.sha256(data).digest() == digest, repeat)
    return out


def accuracy() -> tuple[float, float]:
    """Final accuracy of configs/mudfl-quick.yaml and of vanilla on its settings."""
    import yaml

    from fedledger.experiment.runner import run_experiment

    raw = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "configs/mudfl-quick.yaml").read_text()
    )
    vanilla = {
        **raw,
        "name": "vanilla-as-mudfl-quick",
        "protocol": {"name": "vanilla"},
        "nodes": {"count": raw["nodes"]["count"] - 3},
    }
    got = []
    with tempfile.TemporaryDirectory() as tmp:
        for cfg in (raw, vanilla):
            result = run_experiment(parse_config(cfg), Path(tmp) / cfg["name"])
            got.append(float(result.summary.final_accuracy or math.nan))
    return got[0], got[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="K = 4, 8, few slots; no accuracy")
    ap.add_argument("--localnet", action="store_true", help="also measure on localnets")
    ap.add_argument("--only-localnet", action="store_true", help="only the localnet part")
    ap.add_argument("--ks", default="4,8,12,16,20", help="committee sizes of the localnets")
    ap.add_argument("--loads", default="100,200,500,1000,2400", help="offered tx/s, largest K")
    ap.add_argument("--fig4-tps", type=float, default=100.0, help="offered tx/s for Fig. 4")
    ap.add_argument("--delta", type=float, default=0.5, help="T_delta of the localnets, s")
    ap.add_argument("--slots", type=int, default=20, help="slots per localnet run")
    ap.add_argument("--out", type=Path, default=None, help="localnet run directories")
    args = ap.parse_args()
    if args.only_localnet:
        localnet_part(args)
        return
    torch.set_num_threads(1)  # the clients' training is not what is timed here
    ks = (4, 8) if args.quick else (4, 8, 12, 16, 20)
    slots = 8 if args.quick else 20
    repeat = 3 if args.quick else 10
    keys = KeyPair.generate("ed25519", seed=b"\x11" * 32)
    cpu = cpu_costs(keys, repeat * 10)

    print(f"Fig. 4: epoch cycle latency, ms (simulator, LAN 1 ms / 100 Mbit/s; {slots} slots)")
    print(
        f"{'K':>3} {'T_ct':>7} {'+cpu':>7} {'T_bp':>7} {'+cpu':>7} {'T_cf':>7} {'+cpu':>7}"
        f" {'T_M+cpu':>8}   paper T_ct/T_bp/T_cf"
    )
    fig4 = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k in ks:
            c = cycle(k, slots, Path(tmp))
            ct, bp, cf = c["ct"], c["bp"], c["cf"]
            ct2, bp2, cf2 = ct + cpu["tx"], bp + cpu["block"], cf + k * cpu["vote"]
            fig4[k] = ct2 + bp2 + cf2
            paper = PAPER_FIG4.get(k)
            ptxt = "/".join(str(x) for x in paper) if paper else "-"
            print(
                f"{k:>3} {1e3 * ct:7.2f} {1e3 * ct2:7.2f} {1e3 * bp:7.2f} {1e3 * bp2:7.2f}"
                f" {1e3 * cf:7.2f} {1e3 * cf2:7.2f} {1e3 * fig4[k]:8.2f}   {ptxt}"
            )

    ours = sizes(keys)
    print("\nRecord sizes, bytes (ours: canonical CBOR, Ed25519; paper: RSA, JSON)")
    print(f"{'record':<8} {'ours':>6} {'paper':>6}")
    for name in ("d_tx", "d_vt", "d_head"):
        print(f"{name:<8} {ours[name]:>6} {PAPER_SIZES[name]:>6}")

    k = 20
    base = fig4.get(20, fig4[max(fig4)])
    print(
        f"\nTable IV: K = 20, T_M from the K = {20 if 20 in fig4 else max(fig4)} cycle"
        " + verifying Th_S transactions + sending the block to K"
    )
    print(
        f"{'Th_S':>5} {'d_B KB':>8} {'paper':>7} {'T_M s':>7} {'paper':>6}"
        f" {'Th_D MB/s':>9} {'paper':>6} {'Th_D(paper sizes, our T_M)':>27}"
    )
    for th, (p_db, p_tm, p_thd) in PAPER_TABLE4.items():
        d_b = ours["d_head"] + ours["d_tx"] * th
        t_m = base + th * cpu["tx"] + d_b * k / LINK["bandwidth"]
        flow = ours["d_tx"] * th * k + d_b * k + ours["d_vt"] * k * k
        pd_b = PAPER_SIZES["d_head"] + PAPER_SIZES["d_tx"] * th
        pflow = PAPER_SIZES["d_tx"] * th * k + pd_b * k + PAPER_SIZES["d_vt"] * k * k
        print(
            f"{th:>5} {d_b / 1024:8.1f} {p_db:7.1f} {t_m:7.3f} {p_tm:6.1f}"
            f" {flow / t_m / 2**20:9.2f} {p_thd:6.1f} {pflow / t_m / 2**20:27.2f}"
        )

    slot_length = 3.0
    commit = slot_length / 2 + base
    per_block = min(2400, int(1.0 / cpu["tx"]))
    print(
        "\nTable V: 1 TPS (T_Δ = 1 s, slot 3 s; a transaction waits half a slot on average,"
        " then its block)"
    )
    print(f"{'':<22} {'ours':>8} {'paper μchain':>12} {'Ethereum':>9}")
    print(f"{'tx committed time (s)':<22} {commit:8.2f} {4.4:12.1f} {4.6:9.1f}")
    print(f"{'tx rate (tx/s)':<22} {per_block / slot_length:8.0f} {227:12d} {124:9d}")
    print(
        f"  (ours: a block holds min(2,400, T_Δ / verify-one-tx = {int(1.0 / cpu['tx'])})"
        " transactions per 3 s slot)"
    )

    st = stages(repeat)
    print("\nTable III: stages on the 431,080-parameter CNN (1.7 MB), seconds")
    print(f"{'stage':<22} {'ours':>8} {'paper':>6}")
    paper3 = {"encrypt": 1.3, "store": 0.16, "fetch": 0.08, "decrypt": 1.3, "verify": None}
    for name, t in st.items():
        p = paper3.get(name.split()[0])
        print(f"{name:<22} {t:8.4f} {p if p is not None else '-':>6}")

    print("\nP_M (Section VIII-D.1): adversary credit share s, P(> K/2 seats)")
    print(f"{'s':>5} " + " ".join(f"{'K=' + str(k):>8}" for k in (4, 8, 12, 16, 20)))
    for s in (0.1, 0.2, 0.3, 0.4, 0.5):
        print(
            f"{s:5.1f} " + " ".join(f"{adversary_control(k, s):8.4f}" for k in (4, 8, 12, 16, 20))
        )
    print("paper: P_M(20, 0.4) <= 0.25")

    grind_slots = 200 if args.quick else 1000
    print(
        f"\nPoC grinding (spec 4; not in the paper): a proposer of share 1/4 tries up to n"
        f" transaction lists per slot, {grind_slots} slots, 8 pooled transactions"
    )
    print(f"{'poc_input':<10} {'tries':>5} {'grinder':>8} {'honest':>7} {'advantage':>9}")
    for mode in (poc.TXS, poc.VRF):
        for tries in (1, 4, 16):
            g = faults_grind.measure(mode, tries=tries, pool=8, slots=grind_slots, seed=0)
            print(
                f"{mode:<10} {tries:>5} {g.grinder_rate:8.3f} {g.honest_rate:7.3f}"
                f" {g.advantage:9.2f}"
            )
    print("(advantage: the grinder's win rate over its credit share; vrf: hc is a VRF output)")

    if args.quick:
        print("\nFinal accuracy: skipped with --quick (full run: configs/mudfl-quick.yaml)")
        print("Localnet measurements: off with --quick (run with --localnet)")
        return
    if args.localnet:
        localnet_part(args)
    ours_acc, vanilla_acc = accuracy()
    print("\nFinal accuracy (paper: none reported)")
    print(f"{'mudfl-quick':<16} {ours_acc:.4f}\n{'vanilla, same':<16} {vanilla_acc:.4f}")


def localnet_part(args: argparse.Namespace) -> None:
    import _mudfl_localnet as mudfl_localnet  # benchmarks/, next to this script

    ks = [int(x) for x in args.ks.split(",")]
    loads = [float(x) for x in args.loads.split(",")]
    root = args.out or Path(tempfile.mkdtemp(prefix="mudfl-localnet-"))
    mudfl_localnet.report(ks, loads, args.delta, args.slots, root, args.fig4_tps)
    print(f"run directories: {root}")


if __name__ == "__main__":
    main()
