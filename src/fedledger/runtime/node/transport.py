"""Authenticated connections between node processes over asyncio TCP.

One connection per peer, identified by the key proven in the handshake (node id by key,
keys from the config, see ``handshake``). Outgoing messages wait in a bounded per-peer
outbox that outlives connections: a message to a peer that is down waits (the oldest is
dropped, counted ``queue_full``, when the outbox is full) and goes out when the peer is
back, which is how a partitioned or restarted peer catches up on what it missed. Each
message is signed when it leaves, under the current session.

Robustness: a frame that does not decode, an oversized length prefix, a truncated frame
or a failed handshake closes the connection; a bad signature or a replayed sequence
number drops the frame. Each is counted by reason. A connection that shows no frame for
``idle_timeout`` seconds (pings go every ``ping_interval``) is closed; the dialing side
reconnects with exponential backoff and jitter. When two nodes dial each other, both
keep the connection opened by the node with the smaller id. With ``settings.tls`` every
connection is TLS 1.3, pinned to the member keys by the handshake (``tls``).

Unauthenticated connections: a handshake (TLS included) must finish within
``handshake_timeout`` seconds of the accept, an absolute deadline; which handshakes are
kept under ``max_handshakes`` and ``max_handshakes_per_address`` is ``admission``'s rule
(evictions counted ``handshake_evicted``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections import deque

from fedledger.codec import CodecError, decode, decode_as, encode
from fedledger.protocols.base import Message
from fedledger.runtime.node.admission import Admission, source_of
from fedledger.runtime.node.framing import (
    DropReason,
    FrameError,
    NetCounters,
)
from fedledger.runtime.node.handshake import (
    FramedStream,
    HandshakeError,
    Identity,
    Session,
    accept_handshake,
    dial_handshake,
)
from fedledger.runtime.node.settings import NetSettings
from fedledger.runtime.node.tls import TlsContexts, make_tls, peer_binding
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

log = logging.getLogger(__name__)
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


class Transport:
    """Listens, dials, authenticates, and moves messages for one node."""

    def __init__(self, identity: Identity, settings: NetSettings, counters: NetCounters) -> None:
        self.identity = identity
        self.settings = settings
        self.counters = counters
        self.inbox: asyncio.Queue[tuple[str, object]] = asyncio.Queue(settings.inbox_size)
        self.outboxes = {
            n: Outbox(settings.queue_size, counters)
            for n in identity.members
            if n != identity.node_id
        }
        self.conns: dict[str, Connection] = {}
        self._addr_peer: dict[tuple[str, int], str] = {}
        self._server: asyncio.Server | None = None
        self._dialers: list[asyncio.Task[None]] = []
        self.admission = Admission(settings.max_handshakes, settings.max_handshakes_per_address)
        self._closing = False
        self.tls: TlsContexts | None = make_tls() if settings.tls else None

    # ------------------------------------------------------------ lifecycle

    async def listen(self, host: str, port: int) -> int:
        """Start accepting connections; return the port (useful with port 0)."""
        self._server = await asyncio.start_server(self._on_accept, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    def dial(self, host: str, port: int) -> None:
        self._dialers.append(asyncio.create_task(self._dial_loop(host, port)))

    def is_connected(self, peer: str) -> bool:
        conn = self.conns.get(peer)
        return conn is not None and not conn.closed.is_set()

    def connected(self) -> list[str]:
        return sorted(p for p in self.conns if self.is_connected(p))

    async def drain(self, timeout: float) -> bool:
        """Wait until every outbox to a connected peer is sent; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            busy = [
                p
                for p, box in self.outboxes.items()
                if self.is_connected(p) and (box.items or self.conns[p].sending)
            ]
            if not busy:
                return True
            await asyncio.sleep(0.05)
        return False

    async def close(self) -> None:
        self._closing = True
        for task in self._dialers:
            task.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self.conns.values()):
            conn.close(abort=False)
        await asyncio.sleep(0)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    # ------------------------------------------------------------ sending

    def send(self, peer: str, payload: object, protocol: bool = True) -> None:
        """Queue ``payload`` for ``peer``; it leaves when a connection is up."""
        box = self.outboxes.get(peer)
        if box is None:
            raise ValueError(
                f"cannot send to {peer!r}: not a peer of {self.identity.node_id}; members are "
                f"{sorted(self.outboxes)}"
            )
        box.put(encode(payload), protocol)

    # ------------------------------------------------------------ connections

    def _register(self, stream: FramedStream, session: Session) -> Connection | None:
        old = self.conns.get(session.peer)
        if old is not None and not old.closed.is_set():
            winner = min(self.identity.node_id, session.peer)
            if old.dialer == winner and session.dialer != winner:
                stream.close()
                return None
            old.close()
        conn = Connection(self, stream, session)
        self.conns[session.peer] = conn
        self.counters.connections += 1
        conn.start()
        log.info("connected to %s (dialed by %s)", session.peer, session.dialer)
        return conn

    async def _secure(
        self, writer: asyncio.StreamWriter, deadline: float, server_side: bool
    ) -> bytes:
        """Start TLS 1.3 on a fresh connection when enabled, by ``deadline`` (loop time);
        the channel binding the handshake then signs (empty without TLS)."""
        if self.tls is None:
            return b""
        try:
            async with asyncio.timeout_at(deadline):
                if server_side:
                    await writer.start_tls(self.tls.server)
                    return self.tls.own_binding
                await writer.start_tls(self.tls.client, server_hostname="fedledger-node")
                return peer_binding(writer)
        except TimeoutError:
            raise HandshakeError(
                DropReason.HANDSHAKE_TIMEOUT, "no TLS 1.3 session within the handshake deadline"
            ) from None
        except ssl.SSLError as err:
            raise HandshakeError(DropReason.BAD_HANDSHAKE, f"TLS: {err}") from None

    def pending_handshakes(self) -> dict[str, int]:
        """Connections still in their handshake, by source address."""
        return self.admission.by_source()

    async def _on_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing:
            self.counters.drop(DropReason.TOO_MANY_CONNECTIONS)
            writer.transport.abort()
            return
        peername = writer.get_extra_info("peername")
        address = source_of(str(peername[0])) if isinstance(peername, tuple) and peername else "?"
        victim = self.admission.make_room(address)
        if victim is not None:
            self.counters.drop(DropReason.HANDSHAKE_EVICTED)
            log.info("closed a handshake from %s to make room", victim.address)
            victim.writer.transport.abort()
        pending = self.admission.add(address, writer)
        stream = FramedStream(reader, writer, self.settings.max_frame, self.counters)

        def on_hello() -> None:
            pending.member_hello = True

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.handshake_timeout
        try:
            binding = await self._secure(writer, deadline, server_side=True)
            session = await accept_handshake(
                self.identity, stream, deadline - loop.time(), on_hello, binding
            )
        except HandshakeError as err:
            if not pending.evicted:
                self.counters.drop(err.reason)
                log.info("refused a connection from %s: %s", address, err)
            writer.transport.abort()
            return
        except (OSError, ConnectionError, RuntimeError):
            writer.transport.abort()
            return
        finally:
            self.admission.remove(pending)
        if pending.evicted or self._closing:
            writer.transport.abort()
            return
        self._register(stream, session)

    async def _dial_loop(self, host: str, port: int) -> None:
        settings = self.settings
        delay = settings.backoff_min
        while not self._closing:
            known = self._addr_peer.get((host, port))
            if known is not None and self.is_connected(known):
                await asyncio.sleep(0.2)
                continue
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port), settings.handshake_timeout
                )
            except (OSError, TimeoutError):
                await asyncio.sleep(delay + random.uniform(0, delay / 2))
                delay = min(settings.backoff_max, delay * 2)
                continue
            stream = FramedStream(reader, writer, settings.max_frame, self.counters)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + settings.handshake_timeout
            try:
                binding = await self._secure(writer, deadline, server_side=False)
                session = await dial_handshake(
                    self.identity, stream, deadline - loop.time(), binding
                )
            except HandshakeError as err:
                self.counters.drop(err.reason)
                log.warning("handshake with %s:%s failed: %s", host, port, err)
                writer.transport.abort()
                await asyncio.sleep(delay + random.uniform(0, delay / 2))
                delay = min(settings.backoff_max, delay * 2)
                continue
            except (OSError, ConnectionError, RuntimeError):
                writer.transport.abort()
                await asyncio.sleep(delay)
                delay = min(settings.backoff_max, delay * 2)
                continue
            self._addr_peer[(host, port)] = session.peer
            conn = self._register(stream, session)
            delay = settings.backoff_min
            if conn is not None:
                await conn.closed.wait()
