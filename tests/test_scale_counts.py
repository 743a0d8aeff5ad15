"""Per-node work of a run as the network doubles: verifications, messages and bytes.

Issue 19: a protocol whose nodes each re-check every record in every copy they receive
(PoS-BFL's devices verifying every vote in each of the candidate blocks) does work per
node that grows with the square of the network. This check runs every protocol in the
simulator at ``n`` and ``2n`` nodes and counts, per node, the signatures its
:class:`~fedledger.ledger.verify.Verifier` computed (cache hits are not work), the
messages it sent and the bytes it sent (the simulator's counters; no timing). Each count
per node at ``2n`` must stay within ``GROWTH`` times its count at ``n``: linear growth
(a node that checks each of the twice as many records once) doubles it, quadratic
growth quadruples it.

Each protocol grows the way its design scales: PoS-BFL doubles its workers (8 -> 12
devices; every validator votes on every worker's update and every device checks every
vote of the block it applies, so doubling the validators too would make a device's work
quadratic by the paper's design), and a second check bounds each device's signature
checks by the records of the blocks it received, counted once, so a vote found in both
miners' candidate blocks is not checked twice; DFL keeps each node's degree;
pbft-ledger doubles its replicas (its clients stay). A protocol whose nodes sign nothing
must verify nothing at either size.

The simulator's run-wide signature memo (``fedledger.ledger.sigmemo``) answers a
signature another node already computed, but charges each node its own checks: the last
checks run a protocol with and without it and require the same metrics, models, ledgers
and per-node verification counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conformance import BASE
from fedledger.assembly.build import build_experiment
from fedledger.assembly.config import parse_config
from fedledger.experiment.runner import simulator_for
from fedledger.ledger.verify import Verifier
from fedledger.protocols.base import EmitMetric

#: the most any per-node count may grow when the network doubles
GROWTH = 2.5

#: protocol -> (config at n, config at 2n); the node count is ``nodes.count`` (for
#: pbft-ledger its replicas; its two clients, sending the same requests, come on top)
SCALES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "vanilla": (
        {"rounds": 2, "protocol": {"name": "vanilla", "fraction": 1.0}, "nodes": {"count": 4}},
        {"rounds": 2, "protocol": {"name": "vanilla", "fraction": 1.0}, "nodes": {"count": 8}},
    ),
    "posbfl": tuple(  # type: ignore[assignment]
        {
            "rounds": 2,
            "protocol": {"name": "posbfl", "workers": w, "validators": 2, "miners": 2,
                         "local_epochs": 1},
            "nodes": {"count": w + 4},
        }
        for w in (4, 8)
    ),
    "dfl": tuple(  # type: ignore[assignment]
        {
            "protocol": {
                "name": "dfl",
                "topology": "random",
                "degree": 2,
                "buffer_size": 2,
                "samples_per_interval": 32,
                "batch_size": 32,
                "train_interval": [4, 6],
                "block_txs": 2,
                "ticks": 30,
                "report_every": 10,
            },
            "nodes": {"count": n},
        }
        for n in (4, 8)
    ),
    "pbft-ledger": tuple(  # type: ignore[assignment]
        {
            "rounds": 4,
            "protocol": {"name": "pbft-ledger", "clients": 2, "rate": 20.0,
                         "checkpoint_interval": 4},
            "nodes": {"count": n},
            "max_time": 60.0,
        }
        for n in (4, 8)
    ),
}


@dataclass(frozen=True)
class PerNode:
    """A run's work divided by its node count."""

    nodes: int
    verifications: float
    messages: float
    bytes: float


class _Quiet:
    def on_report(self, node_id: str, time: float, step: int, weights: np.ndarray) -> None:
        pass

    def on_metric(self, node_id: str, time: float, metric: EmitMetric) -> None:
        pass


def _verifier_of(node: object) -> Verifier | None:
    gate = getattr(node, "gate", None)
    verifier = getattr(gate, "verifier", None)
    return verifier if isinstance(verifier, Verifier) else None


def measure(raw: Mapping[str, Any], run_dir: Path) -> PerNode:
    """Simulate the experiment ``raw`` and count its work per node (without the run-wide
    signature memo, so each node's verifier computes every check it counts)."""
    config = parse_config({"name": "scale-counts", **BASE, **raw})
    exp = build_experiment(config, run_dir, signature_memo=False)
    sim = simulator_for(exp, _Quiet())
    try:
        stats = sim.run()
    finally:
        exp.close()
    n = int(raw["nodes"]["count"])  # pbft-ledger's clients come on top of its replicas
    verifiers = [v for v in map(_verifier_of, exp.nodes.values()) if v is not None]
    return PerNode(
        nodes=n,
        verifications=sum(v.signatures_checked for v in verifiers) / n,
        messages=stats.messages_sent / n,
        bytes=sum(stats.bytes_sent.values()) / n,
    )


def test_every_ledger_protocol_has_a_scale_entry() -> None:
    from conformance import CONFORMANCE_CONFIGS

    core = {"vanilla", "posbfl", "dfl", "pbft-ledger"}
    assert core <= set(CONFORMANCE_CONFIGS), "a core protocol left the conformance kit"
    assert core <= set(SCALES)


@pytest.mark.parametrize("protocol", sorted(SCALES))
def test_per_node_work_grows_at_most_linearly(protocol: str, tmp_path: Path) -> None:
    small_raw, large_raw = SCALES[protocol]
    small = measure(small_raw, tmp_path / "n")
    large = measure(large_raw, tmp_path / "2n")
    assert small.nodes < large.nodes <= 2 * small.nodes
    for field in ("messages", "bytes", "verifications"):
        at_n, at_2n = getattr(small, field), getattr(large, field)
        if at_n == 0:
            assert at_2n == 0, f"{protocol}: {field} per node 0 at {small.nodes}, {at_2n} at 2n"
            continue
        growth = at_2n / at_n
        assert growth <= GROWTH, (
            f"{protocol}: {field} per node grew {growth:.2f}x from {small.nodes} to "
            f"{large.nodes} nodes ({at_n:.1f} -> {at_2n:.1f}); allowed {GROWTH}x"
        )
    assert small.messages > 0 and large.messages > 0


def test_posbfl_devices_verify_each_vote_once(tmp_path: Path) -> None:
    """With two miners every vote reaches each device in two candidate blocks: a device
    computes its signature once and recognises it the second time (the quadratic trap
    of issue 19 checked every vote of every candidate block)."""
    _, large_raw = SCALES["posbfl"]
    config = parse_config({"name": "scale-votes", **BASE, **large_raw})
    exp = build_experiment(config, tmp_path)
    sim = simulator_for(exp, _Quiet(), max_time=float("inf"))  # the whole run
    try:
        sim.run()
    finally:
        exp.close()
    verifiers = [v for v in map(_verifier_of, exp.nodes.values()) if v is not None]
    assert len(verifiers) == len(exp.nodes)
    assert sum(v.cache_hits for v in verifiers) > 0
    # per device and round at most: workers x validators votes, the workers' and
    # validators' transactions and one header per miner
    p = large_raw["protocol"]
    bound = p["workers"] * p["validators"] + p["workers"] + p["validators"] + p["miners"]
    rounds = large_raw["rounds"]
    for node_id, v in zip(exp.nodes, verifiers, strict=True):
        assert v.signatures_checked <= bound * rounds, (node_id, v.signatures_checked)


class _Recorder:
    """Every metric and reported model of a run, in the order the simulator gave them."""

    def __init__(self) -> None:
        self.metrics: list[tuple[str, float, EmitMetric]] = []
        self.reports: list[tuple[str, float, int, bytes]] = []

    def on_report(self, node_id: str, time: float, step: int, weights: np.ndarray) -> None:
        self.reports.append((node_id, time, step, np.asarray(weights).tobytes()))

    def on_metric(self, node_id: str, time: float, metric: EmitMetric) -> None:
        self.metrics.append((node_id, time, metric))


@dataclass(frozen=True)
class MemoRun:
    recorder: _Recorder
    checked: dict[str, int]  # per node: signatures its verifier counted as checked
    heads: dict[str, bytes]  # per node: its main chain's head hash
    memo_hits: int
    charged: dict[str, float]  # per node: CPU seconds under "blockchain"


def _memo_run(raw: Mapping[str, Any], run_dir: Path, memo: bool) -> MemoRun:
    config = parse_config({"name": "scale-memo", **BASE, **raw})
    exp = build_experiment(config, run_dir, signature_memo=memo)
    recorder = _Recorder()
    sim = simulator_for(exp, recorder)
    try:
        sim.run()
        heads = {n: svc.ledger.head().hash for n, svc in exp.services.items() if svc.chains}
    finally:
        exp.close()
    checked = {n: v.signatures_checked for n, v in
               zip(exp.nodes, map(_verifier_of, exp.nodes.values()), strict=True) if v}
    assert (exp.memo is not None) == memo
    return MemoRun(
        recorder,
        checked,
        heads,
        exp.memo.hits if exp.memo is not None else 0,
        {n: m.seconds.get("blockchain", 0.0) for n, m in exp.meters.items()},
    )


@pytest.mark.parametrize("protocol", ["posbfl", "dfl"])
def test_run_wide_memo_changes_no_result(protocol: str, tmp_path: Path) -> None:
    """Same metrics, models, ledger heads and per-node signature counts with the memo
    as without; the memo answered some checks, and each node whose verifier counted
    checks was charged CPU time for them."""
    raw = SCALES[protocol][1]
    without = _memo_run(raw, tmp_path / "without", memo=False)
    with_memo = _memo_run(raw, tmp_path / "with", memo=True)
    assert with_memo.recorder.metrics == without.recorder.metrics
    assert with_memo.recorder.reports == without.recorder.reports
    assert with_memo.heads == without.heads and with_memo.heads
    assert with_memo.checked == without.checked
    assert sum(without.checked.values()) > 0
    assert with_memo.memo_hits > 0
    for node, count in with_memo.checked.items():
        if count:
            assert with_memo.charged[node] > 0.0, node


def test_simulator_builds_get_the_memo_by_default(tmp_path: Path) -> None:
    raw = SCALES["posbfl"][0]
    config = parse_config({"name": "scale-memo-default", **BASE, **raw})
    exp = build_experiment(config, tmp_path / "all")
    exp.close()
    assert exp.memo is not None
    only = next(iter(exp.nodes))
    single = build_experiment(config, tmp_path / "one", only=only)
    single.close()
    assert single.memo is None
