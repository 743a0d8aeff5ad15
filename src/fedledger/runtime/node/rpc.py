"""Requests and replies between nodes (blob chunks, block batches) over the transport.

A request carries a ``req_id`` unique in this process; the reply with that id completes
the caller's future. A reply nobody waits for (late, or forged) is dropped and counted
``unexpected``; a request that is not answered in time returns None, and so does one to
a peer that is not connected or whose connection closes while it waits (a peer killed
in the middle of a blob fetch fails the fetch at once instead of after the timeout, so
the caller can try again or go on without it).
"""

from __future__ import annotations

import asyncio
import itertools
from asyncio import FIRST_COMPLETED
from dataclasses import replace
from typing import TypeVar

from fedledger.runtime.node.framing import DropReason
from fedledger.runtime.node.transport import Transport
from fedledger.runtime.node.wire import Reply, Request

R = TypeVar("R")


class Rpc:
    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._ids = itertools.count(1)
        self._waiting: dict[tuple[str, int], asyncio.Future[Reply]] = {}

    async def request(
        self, peer: str, request: Request, reply_type: type[R], timeout: float
    ) -> R | None:
        """Send ``request`` (its ``req_id`` is replaced) and wait for the reply."""
        conn = self.transport.conns.get(peer)
        if conn is None or conn.closed.is_set():
            return None
        req_id = next(self._ids)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[(peer, req_id)] = future
        closed = asyncio.ensure_future(conn.closed.wait())
        try:
            self.transport.send(peer, replace(request, req_id=req_id), protocol=False)
            await asyncio.wait({future, closed}, timeout=timeout, return_when=FIRST_COMPLETED)
            if not future.done():
                return None  # timed out, or the connection closed
            reply = future.result()
        finally:
            closed.cancel()
            self._waiting.pop((peer, req_id), None)
        if not isinstance(reply, reply_type):
            self.transport.counters.drop(DropReason.UNEXPECTED)
            return None
        return reply

    def on_reply(self, peer: str, reply: Reply) -> None:
        future = self._waiting.get((peer, reply.req_id))
        if future is None or future.done():
            self.transport.counters.drop(DropReason.UNEXPECTED)
            return
        future.set_result(reply)
