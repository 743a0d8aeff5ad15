"""Framed streams and the handshake that opens every connection.

Dialer                                   Listener
  Hello(network, id, key, nonce_d)  ->
                                    <-   Hello(network, id, key, nonce_l)
  Auth(sig over both nonces)        ->   (checks it)
                                    <-   Auth(sig over both nonces)

Each side checks that the other's network digest (config and genesis) equals its own,
that the claimed node id belongs to the network and that the key is that node's key, and
that the Auth signature over both fresh nonces verifies under that key: so the peer
holds the private key now, and an old handshake cannot be replayed. Both then derive the
session id from the two nonces; every later envelope is bound to it.

Under TLS (``tls``) both sides sign a digest bound to the listener's certificate, so the
handshake also pins the encrypted channel to the member keys.

The whole handshake has one absolute deadline (``timeout`` seconds from its start), not a
timeout per read: a peer that sends one byte at a time cannot keep it open.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from fedledger.codec import CodecError, decode_as, encode
from fedledger.crypto import KeyPair, PublicKey
from fedledger.runtime.node.framing import (
    DropReason,
    FrameDecoder,
    FrameError,
    NetCounters,
    encode_frame,
)
from fedledger.runtime.node.tls import bound_network
from fedledger.runtime.node.wire import (
    NONCE_SIZE,
    VERSION,
    Auth,
    Hello,
    auth_ok,
    session_id,
    sign_auth,
)

READ_SIZE = 64 * 1024


class HandshakeError(Exception):
    def __init__(self, reason: DropReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason


class FramedStream:
    """A TCP stream read and written as frames; counts bytes and frames."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        max_frame: int,
        counters: NetCounters,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.max_frame = max_frame
        self.counters = counters
        self._decoder = FrameDecoder(max_frame)
        self._ready: list[bytes] = []

    async def read_frame(self, timeout: float | None = None) -> bytes | None:
        """The next frame; None at a clean end of stream; FrameError when the stream is
        bad (oversized prefix, truncated frame); TimeoutError when no bytes at all arrive
        for ``timeout`` seconds (a per-read limit: the handshake sets an absolute one)."""
        while not self._ready:
            data = await asyncio.wait_for(self.reader.read(READ_SIZE), timeout)
            if not data:
                self._decoder.eof()
                return None
            self.counters.bytes_received += len(data)
            self._ready.extend(self._decoder.feed(data))
        self.counters.frames_received += 1
        return self._ready.pop(0)

    async def write_frame(self, payload: bytes) -> None:
        frame = encode_frame(payload, self.max_frame)
        self.writer.write(frame)
        await self.writer.drain()
        self.counters.bytes_sent += len(frame)
        self.counters.frames_sent += 1

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()


@dataclass(frozen=True)
class Identity:
    """This node in the network: its id, key pair, the network digest and every member's
    public key by node id."""

    node_id: str
    key: KeyPair
    network: bytes
    members: Mapping[str, PublicKey]

    def hello(self) -> Hello:
        return Hello(
            VERSION,
            self.network,
            self.node_id,
            self.key.scheme,
            self.key.public.to_bytes(),
            os.urandom(NONCE_SIZE),
        )


@dataclass(frozen=True)
class Session:
    peer: str
    session: bytes
    dialer: str  # node id of the side that opened the connection


async def _read_record(stream: FramedStream, cls: type) -> object:
    try:
        frame = await stream.read_frame()
    except FrameError as err:
        raise HandshakeError(err.reason, err.detail) from None
    if frame is None:
        raise HandshakeError(DropReason.BAD_HANDSHAKE, f"stream closed before {cls.__name__}")
    try:
        return decode_as(frame, cls)
    except CodecError as err:
        raise HandshakeError(DropReason.MALFORMED, f"expected {cls.__name__}: {err}") from None


def _check_hello(me: Identity, hello: Hello) -> PublicKey:
    if hello.version != VERSION or hello.network != me.network:
        raise HandshakeError(
            DropReason.WRONG_NETWORK,
            f"peer {hello.node_id[:40]!r} speaks version {hello.version} on network "
            f"{hello.network.hex()[:16]}; this node: version {VERSION}, network "
            f"{me.network.hex()[:16]}",
        )
    key = me.members.get(hello.node_id)
    if key is None or key.scheme != hello.scheme or key.to_bytes() != hello.public_key:
        raise HandshakeError(
            DropReason.UNKNOWN_KEY,
            f"key {hello.public_key.hex()[:16]} claimed for {hello.node_id[:40]!r} is not a "
            "member key of this network",
        )
    if hello.node_id == me.node_id:
        raise HandshakeError(DropReason.BAD_HANDSHAKE, "a peer claims this node's own id")
    if len(hello.nonce) != NONCE_SIZE:
        raise HandshakeError(DropReason.BAD_HANDSHAKE, f"nonce of {len(hello.nonce)} bytes")
    return key


async def _within(timeout: float, work: Awaitable[Session]) -> Session:
    """``work`` if it completes within ``timeout`` seconds from now; HandshakeError
    (HANDSHAKE_TIMEOUT) otherwise, however the peer paces its bytes."""
    try:
        async with asyncio.timeout(timeout):
            return await work
    except TimeoutError:
        raise HandshakeError(
            DropReason.HANDSHAKE_TIMEOUT, f"handshake not complete within {timeout} s"
        ) from None


async def dial_handshake(
    me: Identity, stream: FramedStream, timeout: float, binding: bytes = b""
) -> Session:
    """Open a session as the dialing side, all of it within ``timeout`` seconds;
    ``binding``: the TLS channel's (``tls.peer_binding``), signed with the nonces."""
    return await _within(timeout, _dial(me, stream, binding))


async def accept_handshake(
    me: Identity,
    stream: FramedStream,
    timeout: float,
    on_hello: Callable[[], None] | None = None,
    binding: bytes = b"",
) -> Session:
    """Answer a session as the listening side, all of it within ``timeout`` seconds;
    ``on_hello`` is called once the peer's Hello names a member key of this network;
    ``binding``: the TLS channel's (``TlsContexts.own_binding``)."""
    return await _within(timeout, _accept(me, stream, on_hello, binding))


async def _dial(me: Identity, stream: FramedStream, binding: bytes) -> Session:
    net = bound_network(me.network, binding)
    own = me.hello()
    await stream.write_frame(encode(own))
    peer = await _read_record(stream, Hello)
    assert isinstance(peer, Hello)
    key = _check_hello(me, peer)
    await stream.write_frame(encode(sign_auth(me.key, net, own, peer)))
    auth = await _read_record(stream, Auth)
    assert isinstance(auth, Auth)
    if not auth_ok(key, auth, net, peer, own):
        raise HandshakeError(DropReason.BAD_SIGNATURE, f"{peer.node_id} did not prove its key")
    return Session(peer.node_id, session_id(net, own.nonce, peer.nonce), me.node_id)


async def _accept(
    me: Identity, stream: FramedStream, on_hello: Callable[[], None] | None, binding: bytes
) -> Session:
    net = bound_network(me.network, binding)
    peer = await _read_record(stream, Hello)
    assert isinstance(peer, Hello)
    key = _check_hello(me, peer)
    if on_hello is not None:
        on_hello()
    own = me.hello()
    await stream.write_frame(encode(own))
    auth = await _read_record(stream, Auth)
    assert isinstance(auth, Auth)
    if not auth_ok(key, auth, net, peer, own):
        raise HandshakeError(DropReason.BAD_SIGNATURE, f"{peer.node_id} did not prove its key")
    await stream.write_frame(encode(sign_auth(me.key, net, own, peer)))
    return Session(peer.node_id, session_id(net, peer.nonce, own.nonce), peer.node_id)
