"""μDFL live catch-up on a localnet: a client validator stopped with SIGSTOP for several
slots (its peers drop the silent connection) is continued with SIGCONT; its slot timer
skips to the network's slot, it fetches the blocks it missed while running (no restart:
the host's live sync and ``ChainSynced``, or the protocol's own ``BlocksWanted``), asks
for the votes it missed, and ends on the others' chain and finalized checkpoint.

The config is test_mudfl_localnet's (T_Δ = 2 s, 3 rounds); processes are stopped and
checked by the ``nets`` fixture of test_net_processes."""

from __future__ import annotations

import signal
import time

import pytest

from test_mudfl_localnet import _chain, _config, _last
from test_net_bfl import STARTUP, begins, finish, launch, verify
from test_net_processes import journal, nets, wait_until  # noqa: F401  (nets: a fixture)

# over three minutes on 2 cores: run by `make test-long`, not by `make test` (CI budget)
pytestmark = [pytest.mark.slow, pytest.mark.long]

VICTIM = "c001"
PAUSE = 18.0  # three slots, past the peers' 10 s idle timeout


def test_mudfl_validator_stopped_for_slots_catches_up_live(tmp_path, nets):  # noqa: F811
    net = launch(nets, _config(tmp_path), tmp_path / "run", STARTUP + 420)
    wait_until(lambda: _last(net, "c000", "head_height") >= 4, STARTUP + 60, "blocks")
    proc = net.procs.procs[VICTIM]
    proc.signal(signal.SIGSTOP)
    stopped = len(_chain(net, VICTIM))
    time.sleep(PAUSE)
    proc.signal(signal.SIGCONT)
    assert net.epoch is not None
    resumed = time.time() - net.epoch
    result = finish(net)
    assert result.summary["nodes_halted"] == 11

    assert len(begins(net, VICTIM)) == 1, "the validator restarted: not a live catch-up"
    # it caught up while running: the host synced its chain (ChainSynced), or the node
    # asked a block's sender for the missing parents (BlocksWanted) once its slot timer
    # had skipped to the network's slot, whichever came first
    rows = [r for r in journal(net, VICTIM) if r["time"] > resumed - 0.5]
    live = [r for r in rows if r["kind"] == "sync" and r["appended"] >= 1]
    fetched = [
        r
        for r in rows
        if r["kind"] == "metric"
        and r["name"].endswith("rejected")
        and r.get("tags", {}).get("reason") == "unknown_parent"
    ]
    assert live or fetched, "no catch-up after SIGCONT"
    chains = {n: _chain(net, n) for n in net.ids}
    longest = max(chains.values(), key=len)
    for node_id, got in chains.items():
        assert got == longest[: len(got)], f"{node_id}'s ledger disagrees"
    assert len(chains[VICTIM]) > stopped + 3, "the stopped validator did not catch up"
    assert _last(net, VICTIM, "finalized_height") >= _last(net, "c000", "finalized_height")
    verify(net.run_dir)
