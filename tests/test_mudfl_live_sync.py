"""μDFL catches up while running: the host appends blocks the node missed (it was paused
or cut off, across two dynasty changes) and sends ``ChainSynced``; the node rebuilds its
finality view and dynasties from the ledger and asks a peer for the votes it missed, and
ends where a node that never fell behind is."""

from __future__ import annotations

import pytest

import conformance as kit
from fedledger.assembly.build import build_experiment
from fedledger.assembly.config import parse_config
from fedledger.protocols.base import (
    Broadcast,
    ChainSynced,
    MessageReceived,
    Send,
    SetTimer,
    Start,
    TimerFired,
)
from fedledger.protocols.kit.ids import TimerKey
from fedledger.protocols.mudfl import succession
from fedledger.protocols.mudfl.messages import VotesReply, VotesRequest
from fedledger.protocols.resources import MAIN

CUT = 76.5  # slot 25 at T_Δ = 1: dynasty records at heights 10 and 20 are on chain
DURABLE = kit.RESTARTS["mudfl"].durable
NODE, PEER = "c000", "c001"


def _config():
    entry = dict(kit.CONFORMANCE_CONFIGS["mudfl"])
    cfg = {"name": "mudfl-live", **kit.BASE, **entry, "rounds": 8}
    cfg["protocol"] = {**entry["protocol"], "dynasty_epochs": 5}
    cfg["nodes"] = {"count": 8}
    return parse_config(cfg)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    config = _config()
    exp = kit.simulate(config, tmp_path_factory.mktemp("mudfl-live") / "run", CUT)
    yield exp, config
    exp.close()


def test_chain_synced_rebuilds_dynasties_and_asks_for_the_missed_votes(run, tmp_path):
    exp, config = run
    source = exp.services[NODE].ledger
    head = source.head().height
    want = DURABLE(exp.nodes[NODE])
    assert head >= 21 and want["dynasty"][0] == 2, want  # two dynasty changes to miss
    behind = build_experiment(config, tmp_path / "behind", only=NODE)
    try:
        store = behind.services[NODE].ledger
        for height in range(1, 9):  # the node ran until height 8, then stopped
            store.append(source.at_height(height))
        node = behind.nodes[NODE]
        node.handle(Start(30.0))
        for height in range(9, head + 1):  # what the host's catch-up appends
            store.append(source.at_height(height))
        assert node.ctx.state.known.keys() == {0}
        assert node.handle(ChainSynced(CUT, "other", 1, head)) == []  # another chain
        effects = node.handle(ChainSynced(CUT, MAIN, head - 8, head))
        # the dynasty records on the synced blocks are known (committees for the votes)
        assert set(succession.committees(node.chain, node.chain.initial)) == {0, 1, 2}
        (ask,) = [e for e in effects if isinstance(e, Broadcast)]
        assert isinstance(ask.message, VotesRequest) and PEER in ask.to
        assert ask.message.above == node.chain.vcf.highest_committed.height
        # a peer answers with the votes it counted
        replies = exp.nodes[PEER].handle(MessageReceived(CUT, NODE, ask.message))
        (reply,) = [e for e in replies if isinstance(e, Send)]
        assert isinstance(reply.message, VotesReply) and reply.to == NODE
        node.handle(MessageReceived(CUT + 0.1, PEER, reply.message))
        got = DURABLE(node)
        for key in ("head", "finalized", "committed", "votes"):
            assert got[key] == want[key], key
        # the takeovers happen at the next slot starts; a restart would do them at once
        node.chain.restore()
        assert DURABLE(node) == want
    finally:
        behind.close()


def test_a_slot_timer_that_fires_late_skips_to_the_network_slot(run):
    """After a pause (SIGSTOP) the slot timer fires slots late: the node begins the slot
    of the network time and schedules the next one at its boundary, instead of running
    behind for good (its blocks and votes would all be refused as late)."""
    exp, _ = run
    node = exp.nodes["c003"]
    chain = node.chain
    late = chain.slot + 1
    now = (late + 3) * chain.slot_length + 0.5  # the timer of slot `late`, 3 slots late
    effects = node.handle(TimerFired(now, str(TimerKey("slot", late))))
    assert chain.slot == late + 3
    timers = {e.key: e.delay for e in effects if isinstance(e, SetTimer)}
    assert timers[str(TimerKey("slot", late + 4))] == pytest.approx(chain.slot_length - 0.5)
    assert timers[str(TimerKey("vote", late + 3))] == pytest.approx(2 * chain.params.slot - 0.5)
