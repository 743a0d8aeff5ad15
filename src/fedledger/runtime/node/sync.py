"""Chain catch-up for protocols that keep a ledger, before the protocol starts.

A node that restarts (or joins late) asks each connected peer for the canonical blocks
above its own head, in batches. Every block goes through the ledger's boundary
``Verifier`` (signatures, Merkle root, link to its stored parent) before it is appended;
a batch whose first block does not link to anything stored (the node sits on a fork)
makes it ask again from further back. The blobs that the new blocks' transactions cite
(``ModelRef`` payloads) and that the local store lacks are fetched from the same peer and
checked against their content ids. Protocols rebuild their state from the ledger on
``Start``, so after this they simply carry on.

Both sides are plain functions over an ``ask_blocks``/``ask_blob`` pair, so a test can
wire two stores together without sockets.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fedledger.codec import encode
from fedledger.ledger.records import Block
from fedledger.ledger.refs import model_refs
from fedledger.ledger.store import ChainStore, ChainStoreError
from fedledger.ledger.verify import Rejected, Verifier
from fedledger.runtime.node.wire import BlocksReply, BlocksRequest
from fedledger.storage.blobs import BlobStore

log = logging.getLogger(__name__)

BATCH = 32
#: (peer, first height, how many) -> the peer's reply, or None if it did not answer
AskBlocks = Callable[[str, int, int], Awaitable[BlocksReply | None]]
#: (peer, content id) -> the verified blob, or None
AskBlob = Callable[[str, str], Awaitable[bytes | None]]


@dataclass
class SyncReport:
    appended: int = 0
    blobs: int = 0
    refused: int = 0
    peers: list[str] = field(default_factory=list)


def serve_blocks(ledger: ChainStore, request: BlocksRequest, max_bytes: int) -> BlocksReply:
    """Canonical blocks from ``request.from_height``, at most ``limit`` (capped at BATCH)
    and ``max_bytes`` in all."""
    head = ledger.head().height
    out: list[bytes] = []
    size = 0
    height = max(0, request.from_height)
    while height <= head and len(out) < min(max(request.limit, 0), BATCH):
        block = ledger.at_height(height)
        if block is None:
            break
        raw = encode(block)
        if out and size + len(raw) > max_bytes:
            break
        out.append(raw)
        size += len(raw)
        height += 1
    return BlocksReply(request.req_id, head, tuple(out))


async def catch_up(
    ledger: ChainStore,
    blobs: BlobStore | None,
    verifier: Verifier,
    peers: list[str],
    ask_blocks: AskBlocks,
    ask_blob: AskBlob,
) -> SyncReport:
    """Append what the peers have above this node's head; return what was done."""
    report = SyncReport()
    for peer in peers:
        start = ledger.head().height + 1
        back = BATCH
        while True:
            reply = await ask_blocks(peer, start, BATCH)
            if reply is None or not reply.blocks:
                break
            try:
                first = verifier.decode(reply.blocks[0], Block)
            except Rejected:
                report.refused += 1
                break
            if first.height > 0 and ledger.get(first.header.parent) is None:
                if start <= 1:
                    break
                start = max(1, start - back)  # on a fork: ask from further back
                back *= 2
                continue
            done = await _append_batch(ledger, blobs, verifier, peer, reply, ask_blob, report)
            if not done:
                break
            start = first.height + len(reply.blocks)
            if start > reply.head_height:
                break
        report.peers.append(peer)
    return report


async def _append_batch(
    ledger: ChainStore,
    blobs: BlobStore | None,
    verifier: Verifier,
    peer: str,
    reply: BlocksReply,
    ask_blob: AskBlob,
    report: SyncReport,
) -> bool:
    for raw in reply.blocks:
        try:
            block = verifier.decode(raw, Block)
            parent = ledger.get(block.header.parent) if block.height > 0 else None
            if block.height > 0 and parent is None:
                raise ChainStoreError(f"parent of block {block.height} is not stored")
            verifier.check_block(block, parent.header if parent else None)
        except (Rejected, ChainStoreError) as err:
            log.warning("sync from %s stopped: %s", peer, err)
            report.refused += 1
            return False
        if blobs is not None:
            for tx in block.transactions:
                for ref in model_refs(tx.payload):
                    if blobs.has(ref.cid):
                        continue
                    data = await ask_blob(peer, ref.cid)
                    if data is not None:
                        blobs.put(data)
                        report.blobs += 1
        try:
            if ledger.append(block):
                report.appended += 1
        except ChainStoreError as err:
            log.warning("sync from %s: block %d not appended: %s", peer, block.height, err)
            report.refused += 1
            return False
    return True
