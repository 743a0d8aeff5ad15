"""μDFL throughput on a real localnet (one process per node on 127.0.0.1), for
``benchmarks/mudfl_paper.py --localnet``.

Each run is a chain-only μDFL network (``fl: false``): an administrator, an FL server, an
aggregator and K clients, all K of them validators (so all emit the load), every block a
checkpoint (``epoch_size: 1``, the paper's "epoch cycle" of Fig. 4) and no dynasty change
during the run. The load generator offers ``load_tps`` signed data transactions of about
the paper's d_tx = 430 bytes; the nodes' metrics give, per validator and slot, the data
transactions that joined its chain and their commit latency (creation -> in a block on
that validator), the slot-start-to-last-PoC-block delay and the checkpoint commit time.
The launcher samples every node process's CPU time and peak RSS from /proc.

The first ``WARMUP`` slots and the last one are left out of every figure.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fedledger.codec import encode
from fedledger.experiment.localnet import Localnet, run_localnet
from fedledger.ledger.store import ChainStore

WARMUP = 2
CLK = 100.0  # clock ticks per second of /proc/<pid>/stat (os.sysconf("SC_CLK_TCK"))


@dataclass(frozen=True)
class NetRun:
    """What one localnet run measured (latencies in seconds)."""

    k: int
    tps: float
    delta: float
    slots: int
    sent_tps: float  # offered load the emitters actually sent
    committed_tps: float  # data transactions committed per second (median validator)
    lat_mean: float
    lat_p50: float
    lat_p95: float
    lat_max: float
    block_delay: float  # slot start -> last validator storing a PoC block (mean of slots)
    finality: float  # vote window start -> last validator committing the checkpoint
    cpu_pct: float  # mean over validators of CPU% in the measured window
    cpu_s: float  # mean CPU seconds per validator in the window
    rss_mb: float  # largest peak RSS of a validator process
    block_kb: float  # mean encoded size of a canonical block in the window
    net_mbps: float  # MB/s sent by all nodes over the run
    rejected: dict[str, int]
    halted: int


def config(
    k: int, tps: float, delta: float, slots: int, compact: bool = True
) -> dict[str, Any]:
    slot_length = 3 * delta
    return {
        "name": f"mudfl-localnet-k{k}-tps{tps:g}",
        "seed": 0,
        "rounds": 1,
        "data": {"dataset": "digits", "partition": "iid"},
        "model": {"name": "mlp", "hidden": [8]},
        "train": {"epochs": 1, "lr": 0.1, "batch_size": 512},
        "protocol": {
            "name": "mudfl",
            "committee": k,
            "epoch_size": 1,
            "dynasty_epochs": 100000,  # no committee change in the run
            "slot": delta,
            "score_samples": 0,
            "fl": False,
            "max_slots": slots,
            "load_tps": tps,
            "compact_blocks": compact,
            "max_block_txs": max(2400, math.ceil(2 * tps * slot_length)),
        },
        "nodes": {"count": k + 3},
        "output": {"plots": False},
    }


class ProcSampler:
    """CPU seconds and peak RSS of each node process, sampled on the launcher's ticks;
    CPU counted from ``start`` (UNIX time) on."""

    def __init__(self) -> None:
        self.first: dict[str, tuple[float, float]] = {}
        self.last: dict[str, tuple[float, float]] = {}
        self.hwm: dict[str, float] = defaultdict(float)
        self.start: float | None = None

    def tick(self, net: Localnet) -> None:
        if self.start is None and net.epoch is not None:
            slot_length = 3 * float(net.config.protocol.slot)  # type: ignore[attr-defined]
            self.start = net.epoch + WARMUP * slot_length
        now = time.time()
        for node_id, proc in list(net.procs.procs.items()):
            if not proc.alive():
                continue
            got = _proc(proc.pid)
            if got is None:
                continue
            cpu, hwm = got
            self.hwm[node_id] = max(self.hwm[node_id], hwm)
            if self.start is not None and now >= self.start:
                self.first.setdefault(node_id, (now, cpu))
                self.last[node_id] = (now, cpu)

    def cpu(self, node_id: str) -> tuple[float, float]:
        """(CPU seconds, wall seconds) of the node in the window."""
        if node_id not in self.first:
            return math.nan, math.nan
        (t0, c0), (t1, c1) = self.first[node_id], self.last[node_id]
        return c1 - c0, t1 - t0


def _proc(pid: int) -> tuple[float, float] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK  # utime, stime
    lines = status.splitlines()
    hwm = next((int(line.split()[1]) for line in lines if line.startswith("VmHWM")), 0)
    return cpu, hwm / 1024


def _wquantile(pairs: list[tuple[float, float]], q: float) -> float:
    """The ``q`` quantile of values weighted by counts: (value, weight) pairs."""
    pairs = sorted(p for p in pairs if p[1] > 0)
    total = sum(w for _, w in pairs)
    if not total:
        return math.nan
    acc = 0.0
    for value, w in pairs:
        acc += w
        if acc >= q * total:
            return value
    return pairs[-1][0]


def run(
    k: int, tps: float, delta: float, slots: int, root: Path, compact: bool = True
) -> NetRun:
    """One localnet: K validators, ``tps`` offered, T_Δ = ``delta``, ``slots`` slots."""
    root.mkdir(parents=True, exist_ok=True)
    name = f"k{k}-tps{tps:g}-d{delta:g}" + ("" if compact else "-whole")
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config(k, tps, delta, slots, compact)))
    slot_length = 3 * delta
    out = root / f"run-{name}"
    if out.exists():  # a run directory is written once: journals would add up
        shutil.rmtree(out)
    net = Localnet(
        path,
        out=out,
        timeout=300.0 + 4 * (k + 3) + slots * slot_length,
        grace=10.0 + 2 * slot_length,
    )
    sampler = ProcSampler()
    run_localnet(net, on_tick=sampler.tick)
    validators = [r.plan.node_id for r in net.roles if r.plan.role == "client"]
    rows = [json.loads(line) for line in (net.run_dir / "metrics.jsonl").open()]
    window = range(WARMUP, slots - 1)

    def per(name: str) -> dict[str, dict[int, float]]:
        out: dict[str, dict[int, float]] = defaultdict(dict)
        for r in rows:
            if r["name"] == f"mudfl.{name}" and r["step"] in window:
                out[r["node"]][r["step"]] = float(r["value"])
        return out

    seconds = len(window) * slot_length
    committed, lsum = per("load_committed"), per("load_latency_sum")
    p50s, p95s, maxs = per("load_latency_p50"), per("load_latency_p95"), per("load_latency_max")
    counts = [sum(committed[v].values()) for v in validators]
    n_all = sum(counts)
    pair50 = [(p50s[v][s], committed[v][s]) for v in validators for s in p50s[v]]
    pair95 = [(p95s[v][s], committed[v][s]) for v in validators for s in p95s[v]]
    sent = sum(sum(d.values()) for d in per("load_sent").values())
    delays = per("block_delay")
    by_slot: dict[int, float] = defaultdict(float)
    for d in delays.values():
        for s, x in d.items():
            by_slot[s] = max(by_slot[s], x)
    fin: dict[int, float] = defaultdict(float)
    for r in rows:
        if r["name"] == "mudfl.committed" and r["node"] in validators and r["step"] in window:
            into = r["time"] - r["step"] * slot_length - 2 * delta
            fin[r["step"]] = max(fin[r["step"]], into)
    cpu = [sampler.cpu(v) for v in validators]
    summary = json.loads((net.run_dir / "summary.json").read_text())
    rejected: dict[str, int] = defaultdict(int)
    for r in rows:
        if r["name"].endswith("rejected"):
            rejected[r["tags"].get("reason", "?")] += int(r["value"])
    return NetRun(
        k=k,
        tps=tps,
        delta=delta,
        slots=slots,
        sent_tps=sent / seconds,
        committed_tps=statistics.median(counts) / seconds if counts else 0.0,
        lat_mean=sum(sum(d.values()) for d in lsum.values()) / n_all if n_all else math.nan,
        lat_p50=_wquantile(pair50, 0.5),
        lat_p95=_wquantile(pair95, 0.95),
        lat_max=max((x for d in maxs.values() for x in d.values()), default=math.nan),
        block_delay=statistics.fmean(by_slot.values()) if by_slot else math.nan,
        finality=statistics.fmean(fin.values()) if fin else math.nan,
        cpu_pct=100 * statistics.fmean(c / w for c, w in cpu if w and w > 0) if cpu else math.nan,
        cpu_s=statistics.fmean(c for c, _ in cpu) if cpu else math.nan,
        rss_mb=max((sampler.hwm[v] for v in validators), default=math.nan),
        block_kb=_block_kb(net.node_dir(validators[0]) / "ledger.sqlite", window),
        net_mbps=float(summary.get("bytes_sent", 0)) / max(1e-9, slots * slot_length) / 1e6,
        rejected=dict(rejected),
        halted=int(summary.get("nodes_halted", 0)),
    )


def _block_kb(db: Path, window: range) -> float:
    sizes = []
    with ChainStore(db) as store:
        for block in store.canonical_chain():
            extra = block.header.extra
            if getattr(extra, "slot", -1) in window:
                sizes.append(len(encode(block)))
    return statistics.fmean(sizes) / 1024 if sizes else math.nan


PAPER_FIG4 = {4: (76, 137, 36), 20: (913, 511, 218)}  # ms: T_ct, T_bp, T_cf (Th_S = 100)
PAPER_TABLE4_TM = {100: 1.4, 200: 1.8, 500: 2.5, 1000: 4.9, 2400: 14.7}  # s, K = 20
PAPER_TABLE5 = {"commit": (4.4, 4.6), "rate": (227, 124), "cpu": (6.9, 103), "mem": (28, 1232)}
GOAL_LATENCY, GOAL_TPS = 0.5, 2000.0


def _ms(x: float) -> str:
    return f"{1e3 * x:7.0f}" if math.isfinite(x) else f"{'-':>7}"


def row(r: NetRun) -> str:
    return (
        f"{r.k:>3} {r.tps:>6g} {r.sent_tps:7.0f} {r.committed_tps:7.0f} {_ms(r.lat_mean)}"
        f" {_ms(r.lat_p50)} {_ms(r.lat_p95)} {_ms(r.block_delay)} {_ms(r.finality)}"
        f" {r.cpu_pct:6.1f} {r.cpu_s:6.1f} {r.rss_mb:6.0f} {r.block_kb:8.1f} {r.net_mbps:7.2f}"
        f" {r.halted:>3}/{r.k + 3:<3} {_rej(r.rejected)}"
    )


HEADER = (
    f"{'K':>3} {'offer':>6} {'sent/s':>7} {'comm/s':>7} {'mean ms':>7} {'p50 ms':>7}"
    f" {'p95 ms':>7} {'T_bp ms':>7} {'T_cf ms':>7} {'CPU%':>6} {'CPU s':>6} {'RSS MB':>6}"
    f" {'block KB':>8} {'net MB/s':>7} {'halted':>7} rejected"
)


def _rej(rejected: dict[str, int]) -> str:
    top = sorted(rejected.items(), key=lambda kv: -kv[1])[:3]
    return ",".join(f"{k}={v}" for k, v in top) or "-"


def report(
    ks: list[int], loads: list[float], delta: float, slots: int, root: Path, fig4_tps: float
) -> list[NetRun]:
    """Run and print Fig. 4, Table V and Table IV measured on localnets."""
    slot_length = 3 * delta
    print(
        f"\nLocalnet (processes on 127.0.0.1): chain only, all K clients validators and load"
        f" emitters, epoch_size 1, T_delta = {delta} s (slot {slot_length:g} s; a transaction"
        f" waits ~{slot_length / 2:g} s on average for the next slot's block), {slots} slots,"
        f" the first {WARMUP} and the last left out"
    )
    print(
        "commit latency: creation -> in a block on a validator (p50/p95 from per-slot"
        " aggregates, count-weighted); T_bp: slot start -> last validator storing a PoC"
        " block; T_cf: vote window start -> last validator committing the checkpoint;"
        " CPU and RSS: per validator process (RSS includes the imported torch)"
    )
    runs: list[NetRun] = []
    print(f"\nFig. 4 measured: K = {ks}, offered {fig4_tps:g} tx/s (paper: Th_S = 100)")
    print(HEADER)
    fig4 = {}
    for k in ks:
        r = run(k, fig4_tps, delta, slots, root)
        runs.append(r)
        fig4[k] = r
        print(row(r), flush=True)
    for k, (ct, bp, cf) in PAPER_FIG4.items():
        print(f"  paper K={k}: T_ct {ct} ms, T_bp {bp} ms, T_cf {cf} ms (Raspberry Pis, LAN)")
    big = max(fig4)
    print(f"\nTable V measured at 1 TPS, K = {big}")
    one = run(big, 1.0, delta, slots, root)
    runs.append(one)
    print(HEADER)
    print(row(one), flush=True)
    print(f"\nTable IV measured: K = {big}, offered loads {loads}")
    print(HEADER)
    sweep = []
    for tps in loads:
        r = run(big, tps, delta, slots, root)
        runs.append(r)
        sweep.append(r)
        print(row(r), flush=True)
        paper = PAPER_TABLE4_TM.get(int(tps), "-")
        print(f"      paper T_M at Th_S={tps:g}: {paper} s", flush=True)
    best = max(sweep, key=lambda r: r.committed_tps)
    print(f"\nTable V: ours (K = {big}, localnet) beside the paper (μchain, Ethereum)")
    print(f"{'':<26} {'ours':>8} {'paper μchain':>12} {'Ethereum':>9}")
    print(f"{'tx committed time (s)':<26} {one.lat_mean:8.2f} {4.4:12.1f} {4.6:9.1f}")
    print(
        f"{'tx rate (tx/s, best load)':<26} {best.committed_tps:8.0f} {227:12d} {124:9d}"
        f"   (offered {best.tps:g})"
    )
    print(f"{'CPU per validator (%)':<26} {one.cpu_pct:8.1f} {6.9:12.1f} {103:9d}")
    print(f"{'memory per validator (MB)':<26} {one.rss_mb:8.0f} {28:12d} {1232:9d}")
    met = [r for r in runs if r.lat_mean < GOAL_LATENCY and r.committed_tps >= GOAL_TPS]
    print(
        f"\nGoal (K = 20: commit < {GOAL_LATENCY} s and >= {GOAL_TPS:g} tx/s committed): "
        + ("met by " + ", ".join(f"K={r.k} at {r.tps:g}" for r in met) if met else "not met")
        + f"; best committed rate {best.committed_tps:.0f} tx/s at K = {big}"
    )
    return runs
