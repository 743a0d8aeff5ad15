"""Live catch-up of a running node: a PoS-BFL device stopped with SIGSTOP for several
rounds (its peers drop the silent connection) is continued with SIGCONT, fetches the
blocks it missed from its peers while running (not at a start-up: it never restarts),
is told of them (``ChainSynced``) and takes part again: it picks the later rounds' legal
blocks itself, and its ledger is the others' at the end.

Uses the PoS-BFL localnet settings of test_net_bfl (rounds of 3 s) and the ``nets``
fixture of test_net_processes (no process left behind).
"""

from __future__ import annotations

import signal
import time

import pytest

from fedledger.experiment.localnet import Localnet
from test_net_bfl import (
    POSBFL,
    ROUND,
    STARTUP,
    begins,
    chain,
    finish,
    metric_rows,
    verify,
    write,
)
from test_net_processes import journal, nets, wait_until  # noqa: F401  (nets: a fixture)

pytestmark = pytest.mark.slow

PAUSE = 4 * ROUND  # past the peers' 10 s idle timeout: they drop the stopped device


def _net_time(net) -> float:  # type: ignore[no-untyped-def]
    assert net.epoch is not None
    return time.time() - net.epoch


def test_posbfl_device_stopped_for_rounds_catches_up_live_and_agrees(tmp_path, nets):  # noqa: F811
    rounds = 14
    config = write(tmp_path, POSBFL, rounds=rounds)
    victim = "d002"
    # the device that was stopped may end a little after the others (its last model
    # fetch from devices that halted waits out a timeout): a longer grace than launch's
    net = Localnet(
        config,
        out=tmp_path / "run",
        node_args=("--start-wait", "10"),
        timeout=STARTUP + 3 * rounds * ROUND,
        grace=30,
    )
    nets.append(net)
    net.start()

    def legal_blocks() -> list[dict]:
        return metric_rows(journal(net, victim), "legal_block")

    wait_until(lambda: len(legal_blocks()) >= 2, STARTUP + 60, f"blocks on {victim}")
    proc = net.procs.procs[victim]
    proc.signal(signal.SIGSTOP)
    stopped = _net_time(net)
    time.sleep(PAUSE)
    proc.signal(signal.SIGCONT)
    resumed = _net_time(net)
    assert resumed - stopped >= PAUSE
    result = finish(net)

    assert len(begins(net, victim)) == 1, "the device restarted: not a live catch-up"
    syncs = [r for r in journal(net, victim) if r["kind"] == "sync"]
    live = [s for s in syncs if s["time"] > resumed - 0.5 and s["appended"] >= 1]
    assert live, f"no live sync appended blocks after SIGCONT: {syncs}"
    # it took part again, on the network's chain: after catching up it picked the same
    # legal block as the others (the same height for the same round) while running
    caught_up = min(s["time"] for s in live)
    others = {r["step"]: r["value"] for r in metric_rows(journal(net, "d000"), "legal_block")}
    later = [r for r in legal_blocks() if r["time"] > caught_up]
    in_step = [r["step"] for r in later if others.get(r["step"]) == r["value"]]
    assert in_step, f"{victim} picked no block on the chain after catching up: {later}"
    chains = {n: chain(net, n) for n in net.ids}
    assert all(c == chains["d000"] for c in chains.values()), "ledgers disagree"
    # every round's block but those the pause cost the network (a round whose only
    # validator was the stopped device has none anywhere)
    assert len(chains["d000"]) >= 1 + rounds - int(PAUSE / ROUND) - 1
    assert result.exit_codes[victim] == 0
    verify(net.run_dir)
