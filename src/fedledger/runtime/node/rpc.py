"""Requests and replies between nodes (blob chunks, block batches) over the transport.

A request carries a ``req_id`` unique in this process; the reply with that id completes
the caller's future. A reply nobody waits for (late, or forged) is dropped and counted
``unexpected``; a request that is not answered in time returns None.
"""

from __future__ import annotations

import asyncio
import itertools
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
        req_id = next(self._ids)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[(peer, req_id)] = future
        try:
            self.transport.send(peer, replace(request, req_id=req_id), protocol=False)
            reply = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return None
        finally:
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
