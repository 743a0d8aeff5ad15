"""Catch-up while running: a node that falls behind its peers on a shared chain (it was
paused, cut off, or too slow) fetches the blocks it missed without a restart.

Every ``interval`` seconds the node asks one connected peer (in turn), on each chain
whose catch-up policy is PEERS, for the peer's block at this node's head height (a
``BlocksRequest`` for one block; the reply carries the peer's head height too). The
node is behind when the peer's head is ``lag`` or more blocks higher, or higher at all
while the peer's block at this node's height is another block (this node built on a
fork it cannot leave by itself: a node that missed one block and goes on appending its
own keeps the same distance). Behind at two looks running, the chain is caught up from
all connected peers (``sync.catch_up``: every block verified at the boundary, cited
blobs fetched; a fork is walked back), and the protocol is told of what was appended
(``ChainSynced``), so it rebuilds its state from the chain as on ``Start``.

The second look keeps a node that is a block behind for a moment (its peers picked the
round's block a few milliseconds earlier) from syncing what its own protocol is about
to append; a node that is really behind stays behind between looks. A node whose event
loop did not run for a while (SIGSTOP, a suspended machine: the sleep between looks
overran by more than ``STALL`` seconds) needs no second look.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from fedledger.codec import CodecError, decode_as
from fedledger.ledger.records import Block
from fedledger.runtime.node.rpc import Rpc
from fedledger.runtime.node.wire import BlocksReply, BlocksRequest

log = logging.getLogger(__name__)

#: seconds a look may come late before the node counts as stalled (it was not running)
STALL = 2.0


@dataclass(frozen=True)
class PeerView:
    """A peer's head height on a chain and whether its block at this node's head height
    is this node's head block (False: the two are on different forks)."""

    head: int
    same_block: bool


#: (peer, chain, this node's head height, its head hash) -> what the peer said, or None
AskHead = Callable[[str, str, int, bytes], Awaitable[PeerView | None]]
#: chain -> blocks appended by a catch-up from the connected peers
SyncChain = Callable[[str], Awaitable[int]]


@dataclass
class LagWatch:
    """When one chain of a running node is behind: at two looks running, a peer's head
    ``lag`` or more blocks above this node's, or above it at all while the peer's block
    at this node's height is another one (a fork); at once after a stall."""

    lag: int = 2
    was_behind: bool = False

    def __post_init__(self) -> None:
        if self.lag < 1:
            raise ValueError(f"lag must be >= 1 block, got {self.lag}")

    def observe(self, own: int, peer: int, forked: bool = False, stalled: bool = False) -> bool:
        """Note a look (own head, peer's head, the peer's block at this node's height is
        another block, the node was stalled); True when the node should catch up now."""
        behind = peer >= own + self.lag or (forked and peer > own)
        fire = (stalled and peer > own) or (behind and self.was_behind)
        self.was_behind = behind and not fire
        return fire


async def watch_chains(
    chains: Sequence[str],
    interval: float,
    lag: int,
    peers: Callable[[], list[str]],
    head: Callable[[str], tuple[int, bytes]],
    ask_head: AskHead,
    sync: SyncChain,
) -> None:
    """Look at one peer's heads every ``interval`` seconds and catch a chain up when the
    node is behind on it (:class:`LagWatch`); runs until cancelled."""
    if not interval > 0:
        raise ValueError(f"live catch-up interval must be > 0 seconds, got {interval!r}")
    watches = {chain: LagWatch(lag) for chain in chains}
    loop = asyncio.get_running_loop()
    turn = 0
    stalled = False
    while True:
        before = loop.time()
        await asyncio.sleep(interval)
        stalled = stalled or loop.time() - before > interval + STALL
        connected = sorted(peers())
        if not connected:
            continue
        peer = connected[turn % len(connected)]
        turn += 1
        answered = False
        for chain in chains:
            height, block = head(chain)
            view = await ask_head(peer, chain, height, block)
            if view is None:
                continue
            answered = True
            forked = not view.same_block
            if watches[chain].observe(height, view.head, forked, stalled):
                log.info("chain %s at %d, %s at %d: catching up", chain, height, peer, view.head)
                await sync(chain)
        stalled = stalled and not answered  # a stall counts until a peer has answered


#: longest wait for a peer's answer to a look (a look is one small block)
LOOK_TIMEOUT = 3.0


async def peer_view(
    rpc: Rpc, peer: str, chain: str, height: int, block: bytes, timeout: float
) -> PeerView | None:
    """Ask ``peer`` for its block at ``height`` on ``chain``: its head height and whether
    that block is ``block`` (None when it does not answer in time or sends garbage)."""
    request = BlocksRequest(0, height, 1, chain)
    reply = await rpc.request(peer, request, BlocksReply, min(timeout, LOOK_TIMEOUT))
    if reply is None:
        return None
    if not reply.blocks:  # the peer is below this node's height
        return PeerView(reply.head_height, True)
    try:
        theirs = decode_as(reply.blocks[0], Block)
    except CodecError:
        return None
    return PeerView(reply.head_height, theirs.hash == block)
