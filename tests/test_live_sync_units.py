"""Live catch-up, without processes: when a running node counts as behind (LagWatch), the
watcher loop over fake peers, and a PoS-BFL device told of blocks synced under it
(``ChainSynced``) rebuilding its round from the ledger."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedledger.ledger.records import Block, sign
from fedledger.protocols.base import ChainSynced, SetTimer, Start
from fedledger.protocols.posbfl.messages import RoundRecord
from fedledger.runtime.node.live_sync import LagWatch, PeerView, watch_chains
from fedledger.runtime.node.settings import NetSettings
from test_posbfl_units import Net  # the unit harness: devices over real stores


def test_a_node_one_block_behind_for_a_moment_does_not_sync():
    watch = LagWatch(lag=2)
    assert not watch.observe(own=5, peer=6)  # peers picked the round's block first
    assert not watch.observe(own=6, peer=6)
    assert not watch.observe(own=6, peer=7)
    assert not watch.observe(own=7, peer=8)


def test_a_node_behind_at_two_looks_syncs():
    watch = LagWatch(lag=2)
    assert not watch.observe(own=3, peer=7)  # first look: maybe a moment
    assert watch.observe(own=3, peer=8)  # still below what it saw: behind
    assert not watch.observe(own=8, peer=8)  # caught up


def test_a_node_that_caught_up_by_itself_between_looks_does_not_sync():
    watch = LagWatch(lag=2)
    assert not watch.observe(own=3, peer=7)
    assert not watch.observe(own=7, peer=7)


def test_a_node_on_its_own_fork_one_behind_syncs():
    # it missed one block and went on appending its own: always one below its peers
    watch = LagWatch(lag=2)
    assert not watch.observe(own=6, peer=7, forked=True)
    assert watch.observe(own=7, peer=8, forked=True)


def test_a_stalled_node_syncs_at_the_first_look():
    assert LagWatch(lag=2).observe(own=3, peer=4, stalled=True)
    assert not LagWatch(lag=2).observe(own=4, peer=4, stalled=True)


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 3)), min_size=1, max_size=30))
def test_a_node_never_syncs_while_at_most_one_block_behind_on_the_same_chain(looks):
    watch = LagWatch(lag=2)
    for own, ahead in looks:
        assert not watch.observe(own, own + min(ahead, 1))


def test_lag_and_interval_are_checked():
    with pytest.raises(ValueError, match="lag must be >= 1"):
        LagWatch(lag=0)
    with pytest.raises(ValueError, match="sync_lag must be >= 1"):
        NetSettings(sync_lag=0)
    with pytest.raises(ValueError, match="sync_interval must be > 0"):
        NetSettings(sync_interval=0.0)


def test_the_watcher_syncs_a_chain_its_peers_are_ahead_on():
    heights = {"main": 2}
    synced: list[str] = []
    asked: list[tuple[str, str, int]] = []

    async def ask_head(peer: str, chain: str, height: int, block: bytes) -> PeerView | None:
        asked.append((peer, chain, height))
        if peer == "mute":
            return None
        return PeerView(9, same_block=True)

    async def sync(chain: str) -> int:
        synced.append(chain)
        heights[chain] = 9
        return 7

    async def scenario() -> None:
        task = asyncio.create_task(
            watch_chains(
                ["main"], 0.01, 2, lambda: ["p1", "mute"],
                lambda c: (heights[c], b"h" * 32), ask_head, sync,
            )
        )  # fmt: skip
        for _ in range(200):
            await asyncio.sleep(0.01)
            if synced:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert synced == ["main"]
    assert {peer for peer, _, _ in asked} == {"p1", "mute"}  # peers in turn
    assert all(height == 2 for _, _, height in asked[:2])


def test_a_posbfl_device_rebuilds_and_rejoins_when_blocks_are_synced_under_it(tmp_path):
    net = Net(tmp_path)
    try:
        device = net.devices["d000"]
        ledger = net.services["d000"].ledger
        device.handle(Start(0.0))
        assert device.round == 1
        assert device.handle(ChainSynced(0.5, "main", 0, 0)) == []  # nothing appended
        # the network's chain: three rounds' blocks, appended by the host's live sync
        head = ledger.head()
        for rnd in (1, 2, 3):
            miner = "d009"
            block = Block.create(head.hash, rnd, net.addr(miner), float(rnd), (),
                                 RoundRecord(rnd, (), (), ()))  # fmt: skip
            head = sign(block, net.keys[miner])
            assert ledger.append(head)
        length = net.params.round_length
        assert device.handle(ChainSynced(3 * length + 0.1, "other", 3, 3)) == []
        effects = device.handle(ChainSynced(3 * length + 0.1, "main", 3, 3))
        assert device.state.round == 3  # stakes, blacklist and round rebuilt from the ledger
        assert device.round == 4  # the network's current round, joined at once
        assert any(isinstance(e, SetTimer) for e in effects)
    finally:
        net.close()


def test_the_watcher_syncs_at_once_after_the_node_stalled(monkeypatch):
    import time

    from fedledger.runtime.node import live_sync

    monkeypatch.setattr(live_sync, "STALL", 0.25)
    synced: list[int] = []
    looks = {"n": 0}

    def peers() -> list[str]:
        looks["n"] += 1
        return ["p1"]

    async def ask_head(peer: str, chain: str, height: int, block: bytes) -> PeerView:
        return PeerView(height + 1, same_block=True)  # one ahead: no sync unless stalled

    async def sync(chain: str) -> int:
        synced.append(looks["n"])
        return 1

    async def scenario() -> None:
        task = asyncio.create_task(
            watch_chains(["main"], 0.02, 2, peers, lambda c: (4, b"h" * 32), ask_head, sync)
        )
        while looks["n"] < 3:
            await asyncio.sleep(0.005)
        stalled_at = looks["n"]
        time.sleep(0.6)  # the event loop does not run (SIGSTOP) while the watcher sleeps
        while looks["n"] < stalled_at + 5:
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert synced == [stalled_at + 1]  # the look after the stall, and only that one

    asyncio.run(scenario())
