"""One authenticated connection between two node processes, and a peer's outbox.

A ``Connection`` runs three tasks on a stream whose handshake succeeded: the reader (checks
each envelope's session, sequence number and signature, and hands protocol messages and
requests to the transport's inbox), the writer (sends what waits in the peer's ``Outbox``,
putting a message back when the send fails so the next connection sends it) and the
pinger. ``Transport`` (transport.py) opens, authenticates and keeps these connections.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING

from fedledger.codec import CodecError, decode, decode_as, encode
from fedledger.protocols.base import Message
from fedledger.runtime.node.framing import DropReason, FrameError, NetCounters
from fedledger.runtime.node.handshake import FramedStream, Session
from fedledger.runtime.node.wire import (
    BlobReply,
    BlobRequest,
    BlocksReply,
    BlocksRequest,
    Envelope,
    Ping,
    envelope_ok,
    seal,
)

if TYPE_CHECKING:
    from fedledger.runtime.node.transport import Transport

log = logging.getLogger("fedledger.runtime.node.transport")
_ACCEPTED = (BlobRequest, BlobReply, BlocksRequest, BlocksReply)


class Outbox:
    """A bounded FIFO of encoded messages for one peer."""

    def __init__(self, size: int, counters: NetCounters) -> None:
        self.size = size
        self.counters = counters
        self.items: deque[tuple[bytes, bool]] = deque()
        self.ready = asyncio.Event()

    def put(self, body: bytes, protocol: bool) -> None:
        if len(self.items) >= self.size:
            self.items.popleft()
            self.counters.drop(DropReason.QUEUE_FULL)
        self.items.append((body, protocol))
        self.ready.set()

    def unget(self, item: tuple[bytes, bool]) -> None:
        self.items.appendleft(item)
        self.ready.set()

    async def get(self) -> tuple[bytes, bool]:
        while not self.items:
            self.ready.clear()
            await self.ready.wait()
        return self.items.popleft()


class Connection:
    def __init__(self, transport: Transport, stream: FramedStream, session: Session) -> None:
        self.transport = transport
        self.stream = stream
        self.peer = session.peer
        self.session = session.session
        self.dialer = session.dialer
        self.send_seq = 0
        self.recv_seq = 0
        self.closed = asyncio.Event()
        self.sending = False
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for coro in (self._read_loop(), self._write_loop(), self._ping_loop()):
            self._tasks.append(asyncio.create_task(coro))

    async def send(self, body: bytes) -> None:
        me = self.transport.identity
        async with self._lock:
            self.send_seq += 1
            env = seal(me.key, self.session, self.send_seq, body)
            await self.stream.write_frame(encode(env))

    def close(self, abort: bool = True) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        self.transport.counters.disconnects += 1
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        if abort:
            self.stream.writer.transport.abort()
        else:
            self.stream.close()

    async def _write_loop(self) -> None:
        outbox = self.transport.outboxes[self.peer]
        counters = self.transport.counters
        while True:
            item = await outbox.get()
            self.sending = True
            try:
                await self.send(item[0])
            except (OSError, RuntimeError, ConnectionError):
                outbox.unget(item)  # it goes out on the next connection
                counters.drop(DropReason.SEND_FAILED)
                self.close()
                return
            except asyncio.CancelledError:
                outbox.unget(item)
                raise
            finally:
                self.sending = False
            if item[1]:
                counters.messages_sent += 1
                counters.payload_bytes_sent += len(item[0])

    async def _ping_loop(self) -> None:
        interval = self.transport.settings.ping_interval
        while True:
            await asyncio.sleep(interval)
            try:
                await self.send(encode(Ping(0.0)))
            except (OSError, RuntimeError, ConnectionError):
                self.close()
                return

    async def _read_loop(self) -> None:
        settings = self.transport.settings
        counters = self.transport.counters
        try:
            while True:
                try:
                    frame = await self.stream.read_frame(settings.idle_timeout)
                except TimeoutError:
                    log.info(
                        "closing the connection to %s: idle for %s s",
                        self.peer,
                        settings.idle_timeout,
                    )
                    return
                except FrameError as err:
                    counters.drop(err.reason)
                    log.info("closing the connection to %s: %s", self.peer, err)
                    return
                if frame is None:
                    return
                if not await self._on_frame(frame):
                    return
        except (OSError, ConnectionError):
            return
        except Exception:
            log.exception("closing the connection to %s after an internal error", self.peer)
            return
        finally:
            self.close()

    async def _on_frame(self, frame: bytes) -> bool:
        """Handle one frame; False closes the connection."""
        counters = self.transport.counters
        try:
            env = decode_as(frame, Envelope)
        except CodecError:
            counters.drop(DropReason.MALFORMED)
            return False
        if env.session != self.session or env.seq <= self.recv_seq:
            counters.drop(DropReason.REPLAY)
            return True
        if not envelope_ok(self.transport.identity.members[self.peer], env):
            counters.drop(DropReason.BAD_SIGNATURE)
            return True
        self.recv_seq = env.seq
        try:
            payload = decode(env.body)
        except CodecError:
            counters.drop(DropReason.MALFORMED)
            return True
        if isinstance(payload, Ping):
            return True
        if not isinstance(payload, (Message, *_ACCEPTED)):
            counters.drop(DropReason.UNEXPECTED)
            return True
        if isinstance(payload, Message):
            counters.messages_received += 1
        await self.transport.inbox.put((self.peer, payload))
        return True
