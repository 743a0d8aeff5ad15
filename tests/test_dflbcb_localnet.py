"""DFLBCB as a localnet with the chain started by ``localnet``: the contract lives in its
own process (the py-evm dev chain behind JSON-RPC), every node reaches it only over RPC,
and at the end the contract's recorded history and every ledger verify."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedledger.cli import app
from fedledger.experiment.localnet import Localnet, run_localnet
from fedledger.runtime.node.chain_rpc import chain_file, history_file

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "dflbcb-quick.yaml"


@pytest.mark.slow
def test_dflbcb_quick_localnet_on_a_chain_localnet_starts(tmp_path):
    net = Localnet(CONFIG, overrides=("rounds=1",), out=tmp_path / "run", timeout=400, grace=30)
    result = run_localnet(net)
    assert not result.interrupted and set(result.exit_codes.values()) == {0}, result.exit_codes
    # the chain ran in its own process and was stopped at the end
    info = json.loads(chain_file(net.run_dir).read_text())
    assert info["kind"] == "devchain" and info["url"].startswith("http://127.0.0.1:")
    assert net.chain is not None and net.chain.chain is None
    # every node learned the on-chain accuracy of iteration 1 from the contract's logs
    accs = {}
    for node in net.ids:
        for line in (net.run_dir / "nodes" / node / "metrics.jsonl").read_text().splitlines():
            item = json.loads(line)
            if item.get("name") == "global_acc_permille":
                accs[node] = item["value"]
    assert set(accs) == set(net.ids) and len(set(accs.values())) == 1
    assert next(iter(accs.values())) > 500
    # the history holds the four stage calls of one iteration, and verify replays it
    history = json.loads(history_file(net.run_dir).read_text())
    assert sum(1 for lg in history["logs"] if lg["event"] == "StageChanged") == 4
    out = CliRunner().invoke(app, ["chain", "verify", str(net.run_dir)])
    assert out.exit_code == 0, out.output
    assert "4 stage transitions over 1" in " ".join(out.output.split())
