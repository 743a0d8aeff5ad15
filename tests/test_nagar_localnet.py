"""Nagar as real node processes on loopback: a miner killed with SIGKILL mid-run; the other
miner mines every later block, the devices finish every round and `fedledger chain
verify` passes on every node's ledger (the dead miner's is a shorter valid prefix).

Steps are scaled to seconds (configs/nagar-quick.yaml's 8 s steps). Processes are stopped
and checked by the ``nets`` fixture of test_net_processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_net_bfl import STARTUP, kill9, launch, metric_rows, verify, write
from test_net_processes import journal, nets, wait_until  # noqa: F401  (nets: a fixture)

pytestmark = pytest.mark.slow

ROUNDS = 3
NAGAR = {
    "name": "net-nagar",
    "seed": 0,
    "rounds": ROUNDS,
    "data": {"dataset": "digits", "partition": "iid"},
    "model": {"name": "mlp", "hidden": []},
    "train": {"epochs": 1, "lr": 0.05, "batch_size": 16},
    "protocol": {
        "name": "nagar",
        "miners": 2,
        "optimizer": "fedavg",
        "local_batch_size": 1,
        "l2": 0.001,
        "consensus": "pow",
        "pow_difficulty": 4,
        "target_interval": 8.0,
        "mine_at": 4.0,
        "select_at": 6.0,
        "step_length": 8.0,
    },
    "nodes": {"count": 7},  # r000, m000, m001, d000..d003
    "output": {"plots": False},
}


def test_localnet_survives_sigkill_of_a_miner(tmp_path: Path, nets) -> None:  # noqa: F811
    net = launch(nets, write(tmp_path, NAGAR), tmp_path / "run", STARTUP + 120)

    def height() -> int:
        blocks = metric_rows(journal(net, "r000"), "block")
        return int(max((r["value"] for r in blocks), default=0))

    wait_until(lambda: height() >= 2, STARTUP + 40, "the plan and a first round's block")
    kill9(net, "m001")
    killed_at = height()
    assert net.wait(tick=0.2), f"not all nodes halted: {net.procs.alive()}"
    result = net.gather()
    codes = {n: c for n, c in result.exit_codes.items() if n != "m001"}
    assert set(codes.values()) == {0}, result.exit_codes
    late = [r for r in metric_rows(journal(net, "r000"), "block") if r["value"] > killed_at + 1]
    assert late and {r["tags"]["miner"] for r in late} == {"m000"}
    for device in ("d000", "d001", "d002", "d003"):
        reported = [r for r in journal(net, device) if r["kind"] == "model"]
        assert reported and max(r["step"] for r in reported) == ROUNDS, device
    verify(tmp_path / "run")
