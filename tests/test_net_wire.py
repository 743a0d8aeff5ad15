"""The real-network wire: frames, envelopes, handshake, replay rules, blob and chain sync.

Everything here runs in one process; the multi-process tests are in test_net_localnet.py
and test_net_faults.py.
"""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainkit import block, genesis, keys, model_tx
from fedledger.codec import CodecError, decode, encode
from fedledger.crypto import KeyDirectory, KeyPair
from fedledger.ledger.store import ChainStore
from fedledger.ledger.verify import Verifier
from fedledger.protocols.vanilla.messages import ClientUpdate
from fedledger.runtime.node.blobs_fetch import fetch_blob, serve_blob
from fedledger.runtime.node.framing import (
    DropReason,
    FrameDecoder,
    FrameError,
    NetCounters,
    encode_frame,
)
from fedledger.runtime.node.handshake import (
    FramedStream,
    HandshakeError,
    Identity,
    accept_handshake,
    dial_handshake,
)
from fedledger.runtime.node.settings import NetSettings, parse_address
from fedledger.runtime.node.sync import catch_up, serve_blocks
from fedledger.runtime.node.transport import Transport
from fedledger.runtime.node.wire import (
    BlobReply,
    BlobRequest,
    BlocksRequest,
    Envelope,
    Hello,
    envelope_ok,
    network_digest,
    seal,
)
from fedledger.storage.blobs import BlobStore

NET = network_digest("config: a")


def identities(n: int = 3, network: bytes = NET) -> list[Identity]:
    pairs = {f"n{i}": KeyPair.generate("ed25519", bytes([i + 7]) * 32) for i in range(n)}
    members = {k: v.public for k, v in pairs.items()}
    return [Identity(k, v, network, members) for k, v in pairs.items()]


# ---------------------------------------------------------------- frames


def test_frames_split_across_and_within_reads():
    frames = [b"", b"a", b"hello" * 100, bytes(range(256))]
    stream = b"".join(encode_frame(f) for f in frames)
    for step in (1, 3, 7, len(stream)):
        dec = FrameDecoder(1024)
        got = []
        for i in range(0, len(stream), step):
            got += dec.feed(stream[i : i + step])
        assert got == frames
        dec.eof()  # nothing pending


def test_oversized_prefix_is_refused_before_buffering():
    dec = FrameDecoder(100)
    with pytest.raises(FrameError) as err:
        dec.feed((101).to_bytes(4, "big"))
    assert err.value.reason is DropReason.OVERSIZED
    with pytest.raises(FrameError):
        FrameDecoder(100).feed(b"\xff\xff\xff\xff")
    with pytest.raises(ValueError, match="exceeds the frame limit"):
        encode_frame(b"x" * 101, 100)


def test_truncated_frame_is_reported_at_eof():
    dec = FrameDecoder(100)
    assert dec.feed(encode_frame(b"abcdef")[:-2]) == []
    with pytest.raises(FrameError) as err:
        dec.eof()
    assert err.value.reason is DropReason.TRUNCATED
    dec2 = FrameDecoder(100)
    dec2.feed(b"\x00\x00")  # half a prefix
    with pytest.raises(FrameError):
        dec2.eof()


def test_frame_limit_is_checked():
    with pytest.raises(ValueError, match="max_frame"):
        FrameDecoder(10)
    with pytest.raises(ValueError, match="chunk_size"):
        NetSettings(max_frame=1000, chunk_size=1000)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8), st.data())
def test_fuzz_frame_decoder_round_trips_any_split(payloads, data):
    stream = b"".join(encode_frame(p, 300) for p in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    dec = FrameDecoder(300)
    got = []
    last = 0
    for cut in [*cuts, len(stream)]:
        got += dec.feed(stream[last:cut])
        last = cut
    assert got == payloads


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_frame_decoder_on_garbage_only_raises_frame_error(blob):
    dec = FrameDecoder(256)
    try:
        for frame in dec.feed(blob):
            assert len(frame) <= 256
        dec.eof()
    except FrameError as err:
        assert err.reason in (DropReason.OVERSIZED, DropReason.TRUNCATED)


def _valid_envelope_bytes() -> bytes:
    me = identities()[0]
    body = encode(ClientUpdate(3, np.arange(4, dtype=np.float32), 10, 0.5))
    return encode(seal(me.key, b"s" * 16, 1, body))


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_fuzz_record_decoder_on_mutated_envelopes(data):
    raw = bytearray(_valid_envelope_bytes())
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    for candidate in (bytes(raw), bytes(raw[:cut])):
        try:
            value = decode(candidate)
        except CodecError:
            continue
        if isinstance(value, Envelope):  # decodes: the signature must still hold it
            me = identities()[0]
            if not envelope_ok(me.key.public, value):
                continue
            decode(value.body)  # a valid signature over garbage is still refused cleanly


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_record_decoder_on_random_bytes(blob):
    with contextlib.suppress(CodecError):
        decode(blob)


# ---------------------------------------------------------------- envelopes


def test_envelope_signature_binds_session_sequence_and_body():
    me = identities()[0]
    env = seal(me.key, b"s" * 16, 5, b"body")
    assert envelope_ok(me.key.public, env)
    for changed in (
        Envelope(b"t" * 16, 5, b"body", env.signature),
        Envelope(b"s" * 16, 6, b"body", env.signature),
        Envelope(b"s" * 16, 5, b"bodY", env.signature),
    ):
        assert not envelope_ok(me.key.public, changed)
    other = identities()[1]
    assert not envelope_ok(other.key.public, env)


def test_parse_address():
    assert parse_address("127.0.0.1:80") == ("127.0.0.1", 80)
    for bad in ("127.0.0.1", ":80", "h:port", "h:70000"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_address(bad)


# ---------------------------------------------------------------- handshake


async def _pair(dialer: Identity, listener: Identity, timeout: float = 2.0):
    """Run both sides of a handshake over loopback TCP; return (dial result, accept result)."""
    results: dict[str, object] = {}

    async def on_accept(reader, writer):
        stream = FramedStream(reader, writer, 4096, NetCounters())
        try:
            results["accept"] = await accept_handshake(listener, stream, timeout)
        except HandshakeError as err:
            results["accept"] = err
        writer.close()

    server = await asyncio.start_server(on_accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    stream = FramedStream(reader, writer, 4096, NetCounters())
    try:
        dial = await dial_handshake(dialer, stream, timeout)
    except HandshakeError as err:
        dial = err
    for _ in range(100):
        if "accept" in results:
            break
        await asyncio.sleep(0.01)
    writer.close()
    server.close()
    await server.wait_closed()
    return dial, results.get("accept")


def test_handshake_agrees_on_a_fresh_session():
    a, b, _ = identities()
    d1, a1 = asyncio.run(_pair(a, b))
    assert d1.peer == "n1" and a1.peer == "n0"
    assert d1.session == a1.session and d1.dialer == a1.dialer == "n0"
    d2, _ = asyncio.run(_pair(a, b))
    assert d2.session != d1.session  # fresh nonces: an old session cannot be replayed


def test_handshake_refuses_another_network_and_unknown_keys():
    a, b, _ = identities()
    other = identities(network=network_digest("config: b"))[0]
    _, accepted = asyncio.run(_pair(other, b))
    assert isinstance(accepted, HandshakeError)
    assert accepted.reason is DropReason.WRONG_NETWORK
    stranger = Identity("n0", KeyPair.generate("ed25519", b"\x01" * 32), NET, a.members)
    _, accepted = asyncio.run(_pair(stranger, b))
    assert isinstance(accepted, HandshakeError) and accepted.reason is DropReason.UNKNOWN_KEY


def test_handshake_refuses_a_stolen_hello_without_the_key():
    """An attacker replays n0's public Hello but cannot sign the listener's nonce."""
    a, b, _ = identities()
    impostor_key = KeyPair.generate("ed25519", b"\x02" * 32)

    class Impostor(Identity):
        def hello(self) -> Hello:
            return a.hello()  # n0's real key and id, with a fresh nonce

    fake = Impostor("n0", impostor_key, NET, a.members)
    _dial, accepted = asyncio.run(_pair(fake, b))
    assert isinstance(accepted, HandshakeError) and accepted.reason is DropReason.BAD_SIGNATURE


# ---------------------------------------------------------------- transport


def test_transport_moves_messages_both_ways_and_queues_for_absent_peers():
    async def scenario():
        a, b, _c = identities()
        settings = NetSettings(max_frame=1 << 20, chunk_size=1 << 16, ping_interval=0.2)
        ta, tb = Transport(a, settings, NetCounters()), Transport(b, settings, NetCounters())
        port = await tb.listen("127.0.0.1", 0)
        update = ClientUpdate(1, np.ones(3, dtype=np.float32), 5, 0.1)
        ta.send("n1", update)  # queued before any connection exists
        ta.dial("127.0.0.1", port)
        peer, got = await asyncio.wait_for(tb.inbox.get(), 5)
        assert peer == "n0" and got.round == 1 and np.array_equal(got.weights, update.weights)
        tb.send("n0", ClientUpdate(2, np.zeros(2, dtype=np.float32), 1, 0.0))
        peer, got = await asyncio.wait_for(ta.inbox.get(), 5)
        assert peer == "n1" and got.round == 2
        ta.send("n2", update)  # n2 is a member but down: it waits, bounded
        for _ in range(settings.queue_size + 3):
            ta.send("n2", update)
        assert ta.counters.drops == {"queue_full": 4}
        with pytest.raises(ValueError, match="not a peer"):
            ta.send("zz", update)
        assert await ta.drain(2.0)
        await ta.close()
        await tb.close()
        assert ta.counters.messages_sent == 1 and tb.counters.messages_received == 1

    asyncio.run(scenario())


# ---------------------------------------------------------------- blobs and chain sync


class _LoopRpc:
    """Rpc stand-in: answers blob requests from a store, optionally tampered with."""

    def __init__(self, store, chunk, tamper=False):
        self.store, self.chunk, self.tamper = store, chunk, tamper
        self.transport = type("T", (), {"counters": NetCounters()})()
        self.requests = 0

    async def request(self, peer, request, reply_type, timeout):
        self.requests += 1
        reply = serve_blob(self.store, request, self.chunk)
        if self.tamper and reply.data:
            reply = BlobReply(
                reply.req_id, reply.cid, True, reply.offset, reply.total, b"X" + reply.data[1:]
            )
        return reply


def test_blob_fetch_in_chunks_is_verified_against_the_cid(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    data = bytes(range(256)) * 40
    cid = store.put(data)
    rpc = _LoopRpc(store, chunk=1000)
    assert asyncio.run(fetch_blob(rpc, "p", cid, 1000, 1.0, 1 << 20)) == data
    assert rpc.requests == 11
    assert asyncio.run(fetch_blob(rpc, "p", cid, 1000, 1.0, 100)) is None  # over the size cap
    bad = _LoopRpc(store, chunk=1000, tamper=True)
    assert asyncio.run(fetch_blob(bad, "p", cid, 1000, 1.0, 1 << 20)) is None
    assert bad.transport.counters.drops == {"bad_content": 1}
    missing = store.put(b"x")
    store.path(missing).unlink()
    assert asyncio.run(fetch_blob(rpc, "p", missing, 1000, 1.0, 1 << 20)) is None
    assert asyncio.run(fetch_blob(rpc, "p", "not-a-cid", 1000, 1.0, 1 << 20)) is None
    assert not serve_blob(store, BlobRequest(1, "junk", 0, 10), 1000).found


def test_chain_catch_up_appends_verified_blocks_and_fetches_blobs(tmp_path):
    ks = keys(3)
    g = genesis(ks)
    ahead = ChainStore(tmp_path / "ahead.sqlite")
    behind = ChainStore(tmp_path / "behind.sqlite")
    src_blobs, dst_blobs = BlobStore(tmp_path / "b1"), BlobStore(tmp_path / "b2")
    for store in (ahead, behind):
        store.append(g)
    chain = [g]
    for i in range(70):  # more than two batches
        data = f"model {i}".encode()
        src_blobs.put(data)
        chain.append(block(chain[-1], ks[i % 3], (model_tx(ks[i % 3], i, data),)))
        ahead.append(chain[-1])
    for b in chain[1:6]:
        behind.append(b)  # the restarted node already had some blocks

    async def ask_blocks(peer, start, limit):
        return serve_blocks(ahead, BlocksRequest(0, start, limit), 1 << 20)

    async def ask_blob(peer, cid):
        return src_blobs.get(cid)

    directory = KeyDirectory(k.public for k in ks)
    report = asyncio.run(
        catch_up(behind, dst_blobs, Verifier(directory), ["p"], ask_blocks, ask_blob)
    )
    assert report.appended == 65 and report.refused == 0 and report.blobs == 65
    assert behind.head_hash() == ahead.head_hash()

    forged = ChainStore(tmp_path / "forged.sqlite")
    forged.append(g)
    mallory = KeyPair.generate("ed25519", b"\x09" * 32)
    forged.append(block(g, mallory))  # a proposer outside the network

    async def ask_forged(peer, start, limit):
        return serve_blocks(forged, BlocksRequest(0, start, limit), 1 << 20)

    fresh = ChainStore(tmp_path / "fresh.sqlite")
    fresh.append(g)
    verifier = Verifier(directory)
    report = asyncio.run(catch_up(fresh, None, verifier, ["m"], ask_forged, ask_blob))
    assert report.appended == 0 and report.refused == 1
    assert verifier.counter["unknown_sender"] == 1
    assert fresh.head().height == 0


def test_key_file_must_hold_the_member_key(tmp_path):
    from fedledger.crypto import save_keypair
    from fedledger.runtime.node.options import own_key

    member = KeyPair.generate("ed25519", b"\x03" * 32)
    save_keypair(member, tmp_path / "me.pem")
    assert own_key(tmp_path / "me.pem", member, "c000").public == member.public
    save_keypair(KeyPair.generate("ed25519", b"\x04" * 32), tmp_path / "other.pem")
    with pytest.raises(ValueError, match="is not the key of 'c000'"):
        own_key(tmp_path / "other.pem", member, "c000")


def test_network_epoch_is_checked_and_given_to_every_local_node(tmp_path):
    import math
    from pathlib import Path

    from typer.testing import CliRunner

    from fedledger.cli import app
    from fedledger.experiment.localnet import Localnet, default_start_delay
    from fedledger.runtime.node.launch import node_argv
    from fedledger.runtime.node.options import check_epoch

    now = 1_800_000_000.0
    assert check_epoch(now - 3600, now) == now - 3600  # a past epoch: a late or restarted node
    assert check_epoch(now + 60, now) == now + 60
    with pytest.raises(ValueError, match="finite UNIX seconds >= 0"):
        check_epoch(math.nan, now)
    with pytest.raises(ValueError, match="finite UNIX seconds >= 0"):
        check_epoch(-1.0, now)
    with pytest.raises(ValueError, match="not milliseconds"):
        check_epoch(now * 1000, now)
    argv = node_argv(Path("c.yaml"), "d001", 7001, [7000], tmp_path, ("-o", "x=1"), epoch=now)
    assert argv[argv.index("--epoch") + 1] == "1800000000.000000"
    assert argv[-2:] == ["-o", "x=1"]
    assert "--epoch" not in node_argv(Path("c.yaml"), "d001", 7001, [], tmp_path)
    assert default_start_delay(6, cpus=2) == 17.0
    assert default_start_delay(20, cpus=16) == 10.0
    config = tmp_path / "v.yaml"
    config.write_text("name: v\nprotocol: {name: vanilla}\nnodes: {count: 2}\n")
    with pytest.raises(ValueError, match=r"start delay -1\.0 s: allowed 0 to 600 s"):
        Localnet(config, out=tmp_path / "run", start_delay=-1.0)
    net = Localnet(config, out=tmp_path / "run", start_delay=3.0)
    with pytest.raises(RuntimeError, match=r"after Localnet\.start\(\)"):
        net.start_node("c000")
    help_text = CliRunner().invoke(app, ["node", "--help"], env={"COLUMNS": "200"}).output
    assert "--epoch" in help_text and "own start" in help_text
    bad = CliRunner().invoke(
        app,
        [
            *("node", "--config", str(config), "--node", "c000", "--listen", "127.0.0.1:0"),
            *("--data-dir", str(tmp_path), "--epoch", "nan"),
        ],
    )
    assert bad.exit_code != 0 and "--epoch nan" in bad.output


def test_a_request_fails_at_once_when_the_peer_is_gone_or_goes():
    from fedledger.runtime.node.rpc import Rpc

    async def scenario():
        a, b, _c = identities()
        settings = NetSettings(max_frame=1 << 20, chunk_size=1 << 16, ping_interval=0.2)
        ta, tb = Transport(a, settings, NetCounters()), Transport(b, settings, NetCounters())
        rpc = Rpc(ta)
        request = BlobRequest(0, "b" * 64, 0, 1024)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await rpc.request("n1", request, BlobReply, 30.0) is None  # never connected
        port = await tb.listen("127.0.0.1", 0)
        ta.dial("127.0.0.1", port)
        while "n1" not in ta.connected():
            await asyncio.sleep(0.01)
        asked = asyncio.ensure_future(rpc.request("n1", request, BlobReply, 30.0))
        peer, got = await asyncio.wait_for(tb.inbox.get(), 5)  # n1 never answers: it dies
        assert peer == "n0" and isinstance(got, BlobRequest)
        await tb.close()
        assert await asyncio.wait_for(asked, 5) is None
        assert loop.time() - started < 5  # not the 30 s timeout
        assert not rpc._waiting
        await ta.close()

    asyncio.run(scenario())
