"""Nagar live catch-up on a localnet: a device stopped with SIGSTOP for several steps (its
peers drop the silent connection) is continued with SIGCONT, fetches the blocks it
missed while running (no restart), replays its ledger on ``ChainSynced`` and finishes
the run on the others' chain with their global model.

The config is test_nagar_localnet's (8 s steps); processes are stopped and checked by
the ``nets`` fixture of test_net_processes."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from test_nagar_localnet import NAGAR
from test_net_bfl import STARTUP, begins, chain, finish, launch, metric_rows, verify, write
from test_net_processes import journal, nets, wait_until  # noqa: F401  (nets: a fixture)

pytestmark = pytest.mark.slow

STEP = float(NAGAR["protocol"]["step_length"])  # type: ignore[index]
PAUSE = 3 * STEP  # past the peers' 10 s idle timeout
ROUNDS = 8  # steps enough to go on for a while after the pause


def test_nagar_device_stopped_for_steps_catches_up_live(tmp_path: Path, nets) -> None:  # noqa: F811
    net = launch(nets, write(tmp_path, NAGAR, rounds=ROUNDS), tmp_path / "run", STARTUP + 240)
    victim = "d001"

    def height() -> int:
        blocks = metric_rows(journal(net, "r000"), "block")
        return int(max((r["value"] for r in blocks), default=0))

    wait_until(lambda: height() >= 2, STARTUP + 40, "the plan and a first step's block")
    proc = net.procs.procs[victim]
    proc.signal(signal.SIGSTOP)
    stopped_at = height()
    time.sleep(PAUSE)
    proc.signal(signal.SIGCONT)
    assert net.epoch is not None
    resumed = time.time() - net.epoch
    result = finish(net)

    assert height() > stopped_at + 1, "the network did not go on without the device"
    assert len(begins(net, victim)) == 1, "the device restarted: not a live catch-up"
    syncs = [r for r in journal(net, victim) if r["kind"] == "sync"]
    live = [s for s in syncs if s["time"] > resumed - 0.5 and s["appended"] >= 1]
    assert live, f"no live sync appended blocks after SIGCONT: {syncs}"
    chains = {n: chain(net, n) for n in net.ids}
    assert all(c == chains["r000"] for c in chains.values()), "ledgers disagree"
    reported = [r for r in journal(net, victim) if r["kind"] == "model"]
    assert reported and max(r["step"] for r in reported) == ROUNDS
    # it computed the same global model as a device that never stopped
    other = [r for r in journal(net, "d000") if r["kind"] == "model"]
    assert (reported[-1]["accuracy"], reported[-1]["loss"]) == (
        other[-1]["accuracy"],
        other[-1]["loss"],
    )
    assert result.exit_codes[victim] == 0
    verify(net.run_dir)
