"""Nagar catches up while running: the host appends blocks the node missed (it was paused
or cut off) and sends ``ChainSynced``; the node replays its ledger and ends with the
chain state and (a device) the global model of a node that never fell behind."""

from __future__ import annotations

import pytest

import conformance as kit
from fedledger.assembly.build import build_experiment
from fedledger.protocols.base import ChainSynced, SetTimer, Start
from fedledger.protocols.resources import MAIN

CUT = 3 * 60.0 + 40.0  # step 4 (update) mined: blocks 1-4 on chain
DURABLE = kit.RESTARTS["nagar"].durable


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    config = kit.conformance_config("nagar")
    run_dir = tmp_path_factory.mktemp("nagar-live") / "run"
    exp = kit.simulate(config, run_dir, CUT)
    yield exp, config, run_dir
    exp.close()


def _behind(config, tmp_path, node_id, source, upto):
    """``node_id`` built over a ledger holding ``source``'s blocks up to ``upto``, started."""
    exp = build_experiment(config, tmp_path / "behind", only=node_id)
    store = exp.services[node_id].ledger
    for height in range(1, upto + 1):
        store.append(source.at_height(height))
    return exp


@pytest.mark.parametrize("role", ["device", "miner"])
def test_chain_synced_replays_the_blocks_appended_underneath(run, tmp_path, role):
    exp, config, run_dir = run
    node_id = next(n for n, node in sorted(exp.nodes.items()) if node.role == role)
    source = exp.services[node_id].ledger
    head = source.head().height
    assert head >= 3
    behind = _behind(config, tmp_path, node_id, source, 1)
    try:
        node = behind.nodes[node_id]
        kit.drive_fetches(node, node.handle(Start(CUT - 1.0)), run_dir, CUT - 1.0)
        assert node.state.step == 1
        store = behind.services[node_id].ledger
        for height in range(2, head + 1):  # what the host's catch-up appends
            store.append(source.at_height(height))
        stale = DURABLE(node)
        want = DURABLE(exp.nodes[node_id])
        assert stale != want  # the node has not looked at its ledger yet
        synced = ChainSynced(CUT, MAIN, head - 1, head)
        assert node.handle(ChainSynced(CUT, "other", 1, head)) == []  # another chain
        effects = kit.drive_fetches(node, node.handle(synced), run_dir, CUT)
        assert DURABLE(node) == want
        assert any(isinstance(e, SetTimer) for e in effects), effects  # it goes on
    finally:
        behind.close()
