"""The encrypted transport: TLS 1.3 under the node handshake, pinned to the member keys.

A TCP relay on loopback sits between two transports and records every byte: with TLS no
plaintext model bytes cross it; without TLS (the loopback-only derived-key mode) they do,
so the check can see plaintext when it is there.
"""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np
import pytest

from fedledger.crypto import KeyPair
from fedledger.protocols.vanilla.messages import ClientUpdate
from fedledger.runtime.node.framing import DropReason, NetCounters
from fedledger.runtime.node.handshake import Identity
from fedledger.runtime.node.settings import NetSettings
from fedledger.runtime.node.tls import bound_network, end_point, make_tls
from fedledger.runtime.node.transport import Transport
from fedledger.runtime.node.wire import network_digest

NET = network_digest("config: tls")


def identities(n: int = 2) -> list[Identity]:
    pairs = {f"n{i}": KeyPair.generate("ed25519", bytes([i + 60]) * 32) for i in range(n)}
    members = {k: v.public for k, v in pairs.items()}
    return [Identity(k, v, NET, members) for k, v in pairs.items()]


class Relay:
    """Forwards TCP both ways and keeps a copy of the bytes; ``swap`` replaces the
    listener's TLS certificate with another's (a machine in the middle)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.seen = bytearray()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                self.seen += data
                writer.write(data)
                await writer.drain()
        writer.transport.abort()

    async def _on_client(self, reader, writer) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)
        self._tasks += [
            asyncio.create_task(self._pipe(reader, up_w)),
            asyncio.create_task(self._pipe(up_r, writer)),
        ]

    async def close(self) -> None:
        self.server.close()
        for task in self._tasks:
            task.cancel()


async def _exchange(tls: bool) -> tuple[bytes, bytes, object]:
    a, b = identities()
    net = NetSettings(max_frame=1 << 20, chunk_size=1 << 16, ping_interval=0.2, tls=tls)
    ta, tb = Transport(a, net, NetCounters()), Transport(b, net, NetCounters())
    relay = Relay(await tb.listen("127.0.0.1", 0))
    port = await relay.start()
    weights = (np.arange(2000, dtype=np.float32) * 0.25 + 1000.0).astype(np.float32)
    ta.send("n1", ClientUpdate(3, weights, 17, 0.5))
    ta.dial("127.0.0.1", port)
    peer, got = await asyncio.wait_for(tb.inbox.get(), 10)
    await ta.close()
    await tb.close()
    await relay.close()
    assert peer == "n0" and np.array_equal(got.weights, weights)
    return bytes(relay.seen), weights.tobytes(), tb.tls


# the Hello's node ids as the codec writes them: the CBOR text key "node_id" and the
# value "n0" (11 bytes: a shorter probe, e.g. the value alone, turned up by chance in a
# few kilobytes of certificates and ciphertext)
HELLO_ID_0, HELLO_ID_1 = b"\x67node_id\x62n0", b"\x67node_id\x62n1"


def test_no_plaintext_model_bytes_cross_the_wire_with_tls():
    seen, model, tls = asyncio.run(_exchange(tls=True))
    assert tls is not None
    probe = model[400:464]  # 64 bytes from the middle of the weights
    assert probe not in seen
    # not even the node ids of the Hello, as the codec writes them
    assert HELLO_ID_0 not in seen and HELLO_ID_1 not in seen
    assert seen[:1] == b"\x16"  # a TLS handshake record opens the stream


def test_the_relay_does_see_model_bytes_without_tls():
    seen, model, tls = asyncio.run(_exchange(tls=False))
    assert tls is None
    assert model[400:464] in seen
    assert HELLO_ID_0 in seen and HELLO_ID_1 in seen  # the probes of the TLS test are real


def test_the_handshake_is_bound_to_the_listener_certificate():
    one, two = make_tls(), make_tls()
    assert one.certificate != two.certificate
    assert end_point(one.certificate) == one.own_binding != two.own_binding
    assert bound_network(NET, b"") == NET
    assert bound_network(NET, one.own_binding) != bound_network(NET, two.own_binding)


def test_a_machine_in_the_middle_with_its_own_certificate_is_refused():
    """The dialer sees the middle's certificate; the listener signs over its own: the
    Auth signatures do not verify and no session opens."""

    async def scenario():
        a, b = identities()
        net = NetSettings(max_frame=1 << 20, chunk_size=1 << 16, ping_interval=0.2, tls=True)
        ta, tb = Transport(a, net, NetCounters()), Transport(b, net, NetCounters())
        middle = make_tls()
        target = await tb.listen("127.0.0.1", 0)

        async def intercept(reader, writer):  # terminates TLS itself, then relays plaintext
            with contextlib.suppress(OSError, ConnectionError):
                await writer.start_tls(middle.server)
                up_r, up_w = await asyncio.open_connection("127.0.0.1", target)
                await up_w.start_tls(tb.tls.client, server_hostname="fedledger-node")

                async def pipe(r, w):
                    with contextlib.suppress(OSError, ConnectionError):
                        while data := await r.read(65536):
                            w.write(data)
                            await w.drain()
                    w.transport.abort()

                await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

        server = await asyncio.start_server(intercept, "127.0.0.1", 0)
        ta.dial("127.0.0.1", server.sockets[0].getsockname()[1])
        for _ in range(100):
            if ta.counters.drops or tb.counters.drops:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        connected = ta.connected() + tb.connected()
        await ta.close()
        await tb.close()
        server.close()
        return connected, ta.counters.drops, tb.counters.drops

    connected, _dialer_drops, listener_drops = asyncio.run(scenario())
    assert connected == []
    assert listener_drops.get(DropReason.BAD_SIGNATURE.value, 0) >= 1


@pytest.mark.parametrize("tls", [True, False])
def test_an_idle_client_is_closed_at_the_deadline_with_or_without_tls(tls):
    async def scenario():
        (node,) = identities(1)
        net = NetSettings(max_frame=1 << 20, chunk_size=1 << 16, handshake_timeout=0.5, tls=tls)
        t = Transport(node, net, NetCounters())
        port = await t.listen("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if tls:
            writer.write(b"\x16\x03\x01\x02\x00")  # a TLS record header, then nothing
        try:
            data = await asyncio.wait_for(reader.read(100), 3.0)
        except (OSError, ConnectionError):
            data = b""
        writer.transport.abort()
        await t.close()
        return data, t.counters.drops

    data, drops = asyncio.run(scenario())
    assert data == b""
    assert drops == {DropReason.HANDSHAKE_TIMEOUT.value: 1}
