"""μDFL as a localnet (one process per node on 127.0.0.1): a client validator killed
with SIGKILL in the middle of the run restarts from its store, catches its chain and its
missed checkpoint votes up from its peers, and the run ends with every ledger agreeing
(one a prefix of another: nodes halt a slot apart) and ``fedledger chain verify`` passing.

T_Δ is 2 s (a slot is 3 T_Δ), as in configs/mudfl-quick.yaml: at 1 s, eleven Python
processes on 2 loaded cores deliver messages more than a second late, which breaks the
synchrony the protocol assumes (blocks then arrive after their slot).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from fedledger.ledger.store import ChainStore
from test_net_bfl import STARTUP, begins, finish, kill9, launch, verify
from test_net_processes import journal, nets, wait_until  # noqa: F401  (nets: a fixture)

# over three minutes on 2 cores: run by `make test-long`, not by `make test` (CI budget)
pytestmark = [pytest.mark.slow, pytest.mark.long]

ROOT = Path(__file__).resolve().parents[1]
VICTIM = "c001"


def _config(tmp_path: Path) -> Path:
    tree = yaml.safe_load((ROOT / "configs" / "mudfl-quick.yaml").read_text())
    tree["protocol"]["slot"] = 2.0
    tree["rounds"] = 3
    tree["output"] = {"plots": False}
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(tree))))
    return path


def _chain(net, node_id: str) -> list[bytes]:
    with ChainStore(net.node_dir(node_id) / "ledger.sqlite") as store:
        return [b.hash for b in store.canonical_chain()]


def _last(net, node_id: str, name: str) -> float:
    names = {name, f"mudfl.{name}"}  # the journal has the bare name, metrics.jsonl prefixed
    rows = [r for r in journal(net, node_id) if r["kind"] == "metric" and r["name"] in names]
    return rows[-1]["value"] if rows else 0.0


def test_mudfl_localnet_survives_sigkill_of_a_validator_and_ledgers_agree(tmp_path, nets):  # noqa: F811
    net = launch(nets, _config(tmp_path), tmp_path / "run", STARTUP + 420)
    wait_until(lambda: _last(net, "c000", "head_height") >= 4, STARTUP + 60, "blocks")
    kill9(net, VICTIM)
    durable = _chain(net, VICTIM)
    assert len(durable) >= 4
    seen = _last(net, "c000", "head_height")
    wait_until(lambda: _last(net, "c000", "head_height") >= seen + 3, 60, "progress")
    net.start_node(VICTIM)
    wait_until(lambda: len(begins(net, VICTIM)) == 2, 90, f"{VICTIM} to begin again")
    result = finish(net)
    assert result.summary["nodes_halted"] == 11

    chains = {n: _chain(net, n) for n in net.ids}
    longest = max(chains.values(), key=len)
    for node_id, got in chains.items():
        assert got == longest[: len(got)], f"{node_id}'s ledger disagrees"
    after = chains[VICTIM]
    # what it had stored survived the kill (its canonical chain may have moved to another
    # branch since: blocks above the finalized checkpoint are not final)
    with ChainStore(net.node_dir(VICTIM) / "ledger.sqlite") as store:
        assert all(store.get(h) is not None for h in durable), "a durable block was lost"
    assert len(after) > len(durable) + 3, "the restarted validator did not catch up"
    # it caught its finality view up too (votes it missed, asked from its peers)
    assert _last(net, VICTIM, "finalized_height") > 0
    server_rows = [r for r in journal(net, "server") if r["kind"] == "model"]
    assert len(server_rows) == 3 and server_rows[-1]["accuracy"] > 0.5
    verify(net.run_dir)
