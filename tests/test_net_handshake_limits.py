"""Handshake limits of a real node: an absolute deadline, a share per source address, and
room for members under a flood of unauthenticated connections.

Everything runs on loopback (127.0.0.0/8: flood clients bind 127.0.0.2 and up, the member
dials from 127.0.0.1), with bounded loops and short timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from fedledger.crypto import KeyPair
from fedledger.runtime.node.admission import source_of
from fedledger.runtime.node.framing import DropReason, NetCounters
from fedledger.runtime.node.handshake import (
    FramedStream,
    HandshakeError,
    Identity,
    dial_handshake,
)
from fedledger.runtime.node.settings import NetSettings
from fedledger.runtime.node.transport import Transport
from fedledger.runtime.node.wire import network_digest

NET = network_digest("config: limits")


def identities(n: int = 2) -> list[Identity]:
    pairs = {f"n{i}": KeyPair.generate("ed25519", bytes([i + 40]) * 32) for i in range(n)}
    members = {k: v.public for k, v in pairs.items()}
    return [Identity(k, v, NET, members) for k, v in pairs.items()]


def settings(**kw: object) -> NetSettings:
    return NetSettings(max_frame=1 << 20, chunk_size=1 << 16, ping_interval=0.2, **kw)


class Client:
    """A raw TCP client from ``source``; ``closed`` is done once the server closes it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.closed = asyncio.create_task(self._wait_closed())

    @classmethod
    async def open(cls, port: int, source: str = "127.0.0.1") -> Client:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=(source, 0)
        )
        return cls(reader, writer)

    async def _wait_closed(self) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while await self.reader.read(4096):
                pass

    async def drip(self, data: bytes) -> bool:
        """Send ``data``; False if the connection is gone."""
        if self.closed.done():
            return False
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (OSError, ConnectionError):
            return False
        return True

    def close(self) -> None:
        self.closed.cancel()
        self.writer.transport.abort()


async def _settle(condition, limit: float = 5.0) -> bool:
    for _ in range(int(limit / 0.02)):
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()


def test_settings_refuse_bad_limits():
    with pytest.raises(ValueError, match="max_handshakes_per_address must be >= 1, got 0"):
        NetSettings(max_handshakes_per_address=0)
    with pytest.raises(ValueError, match="handshake_timeout must be > 0 seconds, got 0"):
        NetSettings(handshake_timeout=0)


def test_sources_are_addresses_and_ipv6_networks():
    assert source_of("127.0.0.2") == "127.0.0.2"
    assert source_of("::ffff:10.0.0.1") == "10.0.0.1"
    assert source_of("2001:db8:1:2:aaaa::1") == source_of("2001:db8:1:2:bbbb::7")
    assert source_of("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert source_of("2001:db8:1:3::1") != source_of("2001:db8:1:2::1")
    assert source_of("fe80::1%eth0") == "fe80::/64"


def test_a_slow_client_is_closed_at_the_deadline_not_kept_alive_by_each_byte():
    """One byte every 0.2 s of a Hello that never completes: before the fix, each read
    restarted the 1 s timeout and the connection stayed open for good."""

    async def scenario():
        (node,) = identities(1)
        t = Transport(node, settings(handshake_timeout=1.0), NetCounters())
        port = await t.listen("127.0.0.1", 0)
        client = await Client.open(port)
        await client.drip((500).to_bytes(4, "big"))  # a frame of 500 bytes ... one by one
        sent = 0
        for _ in range(25):  # 5 s of dripping at most
            await asyncio.sleep(0.2)
            if not await client.drip(b"x"):
                break
            sent += 1
        await _settle(client.closed.done, 2.0)
        closed = client.closed.done()
        client.close()
        await t.close()
        return closed, sent, t.counters.drops

    closed, sent, drops = asyncio.run(scenario())
    assert sent < 20, f"a client dripping {sent} bytes kept its handshake open past the deadline"
    assert closed
    assert drops == {DropReason.HANDSHAKE_TIMEOUT.value: 1}


def test_an_idle_client_is_closed_at_the_deadline():
    async def scenario():
        (node,) = identities(1)
        t = Transport(node, settings(handshake_timeout=0.5), NetCounters())
        port = await t.listen("127.0.0.1", 0)
        client = await Client.open(port)
        closed = await _settle(client.closed.done, 3.0)
        client.close()
        await t.close()
        return closed, t.counters.drops

    closed, drops = asyncio.run(scenario())
    assert closed
    assert drops == {DropReason.HANDSHAKE_TIMEOUT.value: 1}


def test_a_listener_that_stalls_cannot_hold_a_dialer_past_its_deadline():
    async def scenario():
        a, _b = identities()

        async def drip_forever(reader, writer):
            writer.write((500).to_bytes(4, "big"))
            with contextlib.suppress(OSError, ConnectionError):
                for _ in range(50):
                    await asyncio.sleep(0.1)
                    writer.write(b"y")
                    await writer.drain()
            writer.close()

        server = await asyncio.start_server(drip_forever, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        stream = FramedStream(reader, writer, 4096, NetCounters())
        try:
            result: object = await asyncio.wait_for(dial_handshake(a, stream, 0.5), 4.0)
        except (HandshakeError, TimeoutError) as err:
            result = err
        writer.transport.abort()
        server.close()
        return result

    result = asyncio.run(scenario())
    assert isinstance(result, HandshakeError), result
    assert result.reason is DropReason.HANDSHAKE_TIMEOUT


def test_one_address_holds_at_most_its_share_and_a_member_still_gets_in():
    async def scenario():
        a, b = identities()
        net = settings(handshake_timeout=30.0, max_handshakes=64, max_handshakes_per_address=3)
        tb = Transport(b, net, NetCounters())
        port = await tb.listen("127.0.0.1", 0)
        flood = [await Client.open(port, "127.0.0.2") for _ in range(10)]
        seen = await _settle(
            lambda: sum(tb.pending_handshakes().values())
            + tb.counters.drops.get("handshake_evicted", 0)
            == 10
        )
        pending = tb.pending_handshakes()
        await _settle(lambda: sum(c.closed.done() for c in flood) >= 7, 2.0)
        closed = [c.closed.done() for c in flood]
        ta = Transport(a, net, NetCounters())
        ta.dial("127.0.0.1", port)
        admitted = await _settle(lambda: tb.is_connected("n0"), 5.0)
        for c in flood:
            c.close()
        await ta.close()
        await tb.close()
        return seen, pending, closed, admitted, tb.counters.drops

    seen, pending, closed, admitted, drops = asyncio.run(scenario())
    assert seen
    assert pending == {"127.0.0.2": 3}
    assert closed == [True] * 7 + [False] * 3  # the oldest ones went first
    assert drops.get(DropReason.HANDSHAKE_EVICTED.value) == 7
    assert admitted


def test_a_flood_from_many_addresses_does_not_lock_out_a_member():
    """Idle connections from 8 addresses, opened faster than the deadline frees them:
    before the fix they held every slot and the member was refused for good."""

    async def scenario():
        a, b = identities()
        net = settings(handshake_timeout=30.0, max_handshakes=8, max_handshakes_per_address=2)
        tb = Transport(b, net, NetCounters())
        port = await tb.listen("127.0.0.1", 0)
        flood: list[Client] = []
        sources = [f"127.0.0.{i}" for i in range(2, 10)]
        for i in range(24):  # fill every slot first
            flood.append(await Client.open(port, sources[i % len(sources)]))
        await _settle(lambda: sum(tb.pending_handshakes().values()) == 8)
        full = tb.pending_handshakes()
        stop = asyncio.Event()

        async def keep_flooding():
            for i in range(300):  # bounded: about 3 s of new connections
                if stop.is_set():
                    return
                with contextlib.suppress(OSError):
                    flood.append(await Client.open(port, sources[i % len(sources)]))
                await asyncio.sleep(0.01)

        flooder = asyncio.create_task(keep_flooding())
        ta = Transport(a, net, NetCounters())
        ta.dial("127.0.0.1", port)
        admitted = await _settle(lambda: tb.is_connected("n0") and ta.is_connected("n1"), 8.0)
        still = tb.is_connected("n0")
        stop.set()
        await flooder
        for c in flood:
            c.close()
        await ta.close()
        await tb.close()
        return full, admitted, still, ta.counters.drops, tb.counters.drops

    full, admitted, still, member_drops, drops = asyncio.run(scenario())
    assert sum(full.values()) == 8 and max(full.values()) <= 2
    assert admitted and still
    assert member_drops == {}  # the member's own handshake was never refused
    assert drops.get(DropReason.HANDSHAKE_EVICTED.value, 0) >= 16
    assert DropReason.TOO_MANY_CONNECTIONS.value not in drops
