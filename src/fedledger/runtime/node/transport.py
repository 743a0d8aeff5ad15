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

One connection's reader, writer and pinger, and the per-peer outbox: ``connection``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl

from fedledger.codec import encode
from fedledger.runtime.node.admission import Admission, source_of
from fedledger.runtime.node.connection import Connection, Outbox
from fedledger.runtime.node.framing import DropReason, NetCounters
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

log = logging.getLogger(__name__)


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
