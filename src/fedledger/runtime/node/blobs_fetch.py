"""Fetching a blob by content id from a peer, in chunks, verified against the id.

The source answers ``BlobRequest(cid, offset, length)`` from its blob store with one
chunk and the blob's total size; the fetcher asks for the chunks in order, refuses a
total above its limit or chunks that do not line up, and accepts the bytes only if they
hash to the content id. Any failure (the peer lacks the blob, times out, lies) gives
None, which the host hands to the protocol as ``BlobReceived(data=None)``.
"""

from __future__ import annotations

import logging

from fedledger.errors import FedledgerError
from fedledger.runtime.node.framing import DropReason
from fedledger.runtime.node.rpc import Rpc
from fedledger.runtime.node.wire import BlobReply, BlobRequest
from fedledger.storage.blobs import BlobStore
from fedledger.storage.cid import matches, sha256_of_cid

log = logging.getLogger(__name__)


def serve_blob(store: BlobStore | None, request: BlobRequest, chunk_size: int) -> BlobReply:
    """The chunk asked for, or ``found=False`` when the store lacks the blob."""
    missing = BlobReply(request.req_id, request.cid, False, request.offset, 0, b"")
    if store is None or request.offset < 0 or request.length < 0:
        return missing
    try:
        sha256_of_cid(request.cid)
        if not store.has(request.cid):
            return missing
        data = store.get(request.cid)
    except (FedledgerError, ValueError):
        return missing
    length = min(request.length, chunk_size)
    chunk = data[request.offset : request.offset + length]
    return BlobReply(request.req_id, request.cid, True, request.offset, len(data), chunk)


async def fetch_blob(
    rpc: Rpc, peer: str, cid: str, chunk_size: int, timeout: float, max_size: int
) -> bytes | None:
    """The blob ``cid`` from ``peer``, verified; None if it cannot be had."""
    try:
        sha256_of_cid(cid)
    except (FedledgerError, ValueError):
        return None
    parts: list[bytes] = []
    offset, total = 0, None
    while total is None or offset < total:
        request = BlobRequest(0, cid, offset, chunk_size)
        reply = await rpc.request(peer, request, BlobReply, timeout)
        if reply is None or not reply.found or reply.cid != cid:
            return None
        bad = (
            reply.offset != offset
            or reply.total > max_size
            or (total is not None and reply.total != total)
            or (not reply.data and offset < reply.total)
            or offset + len(reply.data) > reply.total
        )
        if bad:
            rpc.transport.counters.drop(DropReason.UNEXPECTED)
            log.info("blob %s from %s: inconsistent chunk at offset %d", cid, peer, offset)
            return None
        total = reply.total
        parts.append(reply.data)
        offset += len(reply.data)
    data = b"".join(parts)
    if not matches(cid, data):
        rpc.transport.counters.drop(DropReason.BAD_CONTENT)
        log.warning("blob from %s does not match its content id %s", peer, cid)
        return None
    return data
