"""Real keys and membership: ``fedledger keygen``, a signed genesis file, nodes that load
their own key and the genesis, and derived keys refused off loopback."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedledger.assembly.build import build_protocol
from fedledger.assembly.config import load_config, to_yaml
from fedledger.assembly.services import (
    GenesisFile,
    Membership,
    MembershipError,
    make_genesis,
    node_keys,
    read_member_file,
)
from fedledger.cli import app
from fedledger.crypto import load_keypair
from fedledger.runtime.node.framing import DropReason, NetCounters
from fedledger.runtime.node.handshake import (
    FramedStream,
    HandshakeError,
    Identity,
    dial_handshake,
)
from fedledger.runtime.node.host import NodeHost
from fedledger.runtime.node.options import NodeOptions, network_text
from fedledger.runtime.node.settings import NetSettings
from fedledger.runtime.node.transport import Transport
from fedledger.runtime.node.wire import network_digest

NODES = ("server", "c000", "c001")


def vanilla(tmp_path: Path) -> Path:
    config = tmp_path / "v.yaml"
    config.write_text(
        "name: v\nseed: 5\nprotocol: {name: vanilla}\nnodes: {count: 2}\n"
        "model: {name: mlp, hidden: [8]}\n"
    )
    return config


def invoke(*args: str) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def network(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Keys for every node and a convener, and the signed genesis: (config, keys, genesis)."""
    config, keys = vanilla(tmp_path), tmp_path / "keys"
    for node in (*NODES, "convener"):
        result = invoke("keygen", "--out", keys, "--node", node)
        assert result.exit_code == 0, result.output
    genesis = tmp_path / "genesis.json"
    members = [keys / f"{n}.pub.json" for n in NODES]
    result = invoke(
        "genesis", *members, "--config", config, "--out", genesis, "--key",
        keys / "convener.key",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return config, keys, genesis


def test_keygen_writes_a_random_private_key_0600_and_a_member_file(tmp_path):
    keys = tmp_path / "keys"
    assert invoke("keygen", "--out", keys, "--node", "c000").exit_code == 0
    assert invoke("keygen", "--out", tmp_path / "other", "--node", "c000").exit_code == 0
    private = keys / "c000.key"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    node_id, public = read_member_file(keys / "c000.pub.json")
    assert node_id == "c000" and load_keypair(private).public == public
    assert load_keypair(tmp_path / "other" / "c000.key").public != public  # random, not derived
    cfg = load_config(vanilla(tmp_path))
    derived = node_keys(build_protocol(cfg).plan(cfg.nodes.count, cfg.seed), cfg.seed)
    assert derived["c000"].public != public
    again = invoke("keygen", "--out", keys, "--node", "c000")
    assert again.exit_code != 0 and "exists" in again.output
    assert load_keypair(private).public == public  # not overwritten


def test_genesis_is_signed_complete_and_tamper_evident(tmp_path):
    config, keys, path = network(tmp_path)
    signed = GenesisFile.load(path)
    assert sorted(signed.members) == sorted(NODES)
    assert signed.convener == load_keypair(keys / "convener.key").public
    cfg = load_config(config)
    block = signed.block(to_yaml(cfg))
    assert block.header.extra.config_digest == signed.config_digest
    with pytest.raises(MembershipError, match="not the one the genesis file was signed for"):
        signed.block(to_yaml(load_config(config, ("rounds=7",))))

    record = json.loads(path.read_text())
    record["members"]["c001"] = record["members"]["c000"]  # swap in another key
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(record))
    with pytest.raises(MembershipError, match="signature does not verify"):
        GenesisFile.load(forged)

    missing = invoke(
        "genesis", keys / "server.pub.json", keys / "c000.pub.json", "--config", config,
        "--out", tmp_path / "g2.json", "--key", keys / "convener.key",
    )  # fmt: skip
    assert missing.exit_code != 0
    assert "missing member files for ['c001']" in " ".join(missing.output.split())
    with pytest.raises(MembershipError, match="is not its key in the genesis file"):
        Membership(signed, "c000", load_keypair(keys / "c001.key"))
    with pytest.raises(MembershipError, match="not a member of the genesis file"):
        Membership(signed, "c009", load_keypair(keys / "c000.key"))


def test_derived_keys_are_refused_off_loopback(tmp_path):
    cfg = load_config(vanilla(tmp_path))
    base = {"config": cfg, "node_id": "c000", "data_dir": tmp_path}
    NodeOptions(**base, listen=("127.0.0.1", 7000), peers=(("localhost", 7001),))
    with pytest.raises(ValueError, match=r"0\.0\.0\.0:7000 is not a loopback address"):
        NodeOptions(**base, listen=("0.0.0.0", 7000))
    with pytest.raises(ValueError, match=r"10\.1\.2\.3:7001 is not a loopback .*--genesis"):
        NodeOptions(**base, listen=("127.0.0.1", 7000), peers=(("10.1.2.3", 7001),))
    with pytest.raises(ValueError, match="give this node's private key too"):
        NodeOptions(**base, listen=("0.0.0.0", 7000), genesis_file=tmp_path / "g.json")
    result = invoke(
        "node", "--config", vanilla(tmp_path), "--node", "c000", "--listen", "0.0.0.0:0",
        "--data-dir", tmp_path / "d",
    )  # fmt: skip
    assert result.exit_code != 0
    assert "not a loopback address" in " ".join(result.output.split())


async def _dial(port: int, me: Identity) -> object:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    stream = FramedStream(reader, writer, 1 << 20, NetCounters())
    try:
        return await dial_handshake(me, stream, 3.0)
    except HandshakeError as err:
        return err
    finally:
        writer.transport.abort()


def test_a_member_with_only_the_config_cannot_join_a_network_from_a_genesis_file(tmp_path):
    config, keys, genesis = network(tmp_path)
    cfg = load_config(config)

    def host(node: str) -> NodeHost:
        return NodeHost(
            NodeOptions(
                config=cfg,
                node_id=node,
                data_dir=tmp_path / node,
                listen=("127.0.0.1", 0),
                key_file=keys / f"{node}.key",
                genesis_file=genesis,
            )
        )

    server, member = host("server"), host("c000")
    try:
        assert server.identity.members == GenesisFile.load(genesis).members
        assert server.net.tls and member.net.tls  # a genesis network is encrypted
        assert server.identity.key.public == load_keypair(keys / "server.key").public
        # what anyone holding the config can compute: every derived key and its network
        derived = node_keys(build_protocol(cfg).plan(cfg.nodes.count, cfg.seed), cfg.seed)
        publics = {n: k.public for n, k in derived.items()}
        config_net = network_digest(network_text(cfg), make_genesis(derived, to_yaml(cfg)).hash)
        by_config = Identity("c000", derived["c000"], config_net, publics)
        # ... and with the public genesis file too: the right network, but not c000's key
        by_genesis = Identity("c000", derived["c000"], server.identity.network, publics)
        settings = NetSettings(max_frame=1 << 20, chunk_size=1 << 16, ping_interval=0.2)

        async def scenario():
            listener = Transport(server.identity, settings, NetCounters())
            port = await listener.listen("127.0.0.1", 0)
            results = [await _dial(port, by_config), await _dial(port, by_genesis)]
            honest = Transport(member.identity, settings, NetCounters())
            honest.dial("127.0.0.1", port)
            for _ in range(250):
                if listener.is_connected("c000"):
                    break
                await asyncio.sleep(0.02)
            admitted = listener.is_connected("c000")
            await honest.close()
            await listener.close()
            return results, admitted, listener.counters.drops

        (config_only, with_genesis), admitted, drops = asyncio.run(scenario())
    finally:
        for h in (server, member):
            h.worker.shutdown()
            h.exp.close()
    assert isinstance(config_only, HandshakeError) and isinstance(with_genesis, HandshakeError)
    assert drops == {DropReason.WRONG_NETWORK.value: 1, DropReason.UNKNOWN_KEY.value: 1}
    assert admitted  # the member with its own key and the genesis file gets in
