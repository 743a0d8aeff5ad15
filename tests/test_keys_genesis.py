"""Real keys and membership: ``fedledger keygen``, a signed genesis file, nodes that load
their own key and the genesis, and derived keys refused off loopback."""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedledger.assembly.build import build_experiment, build_protocol
from fedledger.assembly.config import load_config, to_yaml
from fedledger.assembly.member_keys import load_extra_keys
from fedledger.assembly.plugins import registries
from fedledger.assembly.services import (
    GenesisFile,
    Membership,
    MembershipError,
    make_genesis,
    node_keys,
    read_member,
    read_member_file,
)
from fedledger.cli import app
from fedledger.consensus.committee import committee_alpha, make_ticket, verified_outputs
from fedledger.crypto import KeyPair, load_keypair
from fedledger.crypto.keys import KeyFileError
from fedledger.crypto.vrf import derive_vrf_key
from fedledger.ledger.roster import roster_of
from fedledger.protocols.base import PROTOCOLS, NodePlan
from fedledger.protocols.resources import NodeResources
from fedledger.protocols.vanilla import Vanilla
from fedledger.protocols.vanilla.params import VanillaParams
from fedledger.runtime.node.framing import DropReason, NetCounters
from fedledger.runtime.node.handshake import (
    FramedStream,
    HandshakeError,
    Identity,
    dial_handshake,
)
from fedledger.runtime.node.host import NodeHost
from fedledger.runtime.node.options import NodeOptions, load_membership, network_text
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
                convener=str(keys / "convener.pub.json"),
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


# ---------------------------------------------------------------- convener pinning


def _swapped(tmp_path: Path, genesis: Path, keys: Path) -> Path:
    """The same network re-signed by an outsider who put its own key in for c001 (a
    valid signature, by the wrong convener)."""
    real = GenesisFile.load(genesis)
    outsider = KeyPair.generate("ed25519")
    members = {**real.members, "c001": outsider.public}
    forged = GenesisFile(real.config_digest, members, outsider.public, b"")
    signature = outsider.sign(GenesisFile.signed_bytes(real.config_digest, members))
    path = tmp_path / "swapped.json"
    path.write_text(replace(forged, signature=signature).to_json())
    assert GenesisFile.load(path).members["c001"] == outsider.public  # it verifies by itself
    return path


def test_a_node_refuses_a_genesis_not_signed_by_its_pinned_convener(tmp_path):
    config, keys, genesis = network(tmp_path)
    cfg = load_config(config)
    real = GenesisFile.load(genesis)
    swapped = _swapped(tmp_path, genesis, keys)

    def options(path: Path, **pins: str) -> NodeOptions:
        return NodeOptions(
            config=cfg,
            node_id="c000",
            data_dir=tmp_path / "c000",
            listen=("127.0.0.1", 0),
            key_file=keys / "c000.key",
            genesis_file=path,
            **pins,
        )

    with pytest.raises(ValueError, match="pin who may sign it: --convener"):
        options(genesis)
    convener_hex = real.convener.to_bytes().hex()
    for pins in (
        {"convener": convener_hex},
        {"convener": str(keys / "convener.pub.json")},
        {"genesis_sha256": real.digest},
    ):
        assert load_membership(options(genesis, **pins)) is not None  # the real one is taken
    with pytest.raises(MembershipError, match="not by the pinned convener"):
        load_membership(options(swapped, convener=convener_hex))
    with pytest.raises(MembershipError, match="not the pinned"):
        load_membership(options(swapped, genesis_sha256=real.digest))
    with pytest.raises(MembershipError, match="neither a member file nor an Ed25519"):
        load_membership(options(genesis, convener="not-a-key"))

    result = invoke(
        "node", "--config", config, "--node", "c000", "--listen", "127.0.0.1:0",
        "--data-dir", tmp_path / "d", "--key", keys / "c000.key", "--genesis", swapped,
        "--convener", keys / "convener.pub.json",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "not by the pinned convener" in " ".join(result.output.split())
    unpinned = invoke(
        "node", "--config", config, "--node", "c000", "--listen", "127.0.0.1:0",
        "--data-dir", tmp_path / "d", "--key", keys / "c000.key", "--genesis", genesis,
    )  # fmt: skip
    assert unpinned.exit_code == 2 and "--genesis-sha256" in unpinned.output
    made = invoke(
        "genesis", *[keys / f"{n}.pub.json" for n in NODES], "--config", config,
        "--out", tmp_path / "again.json", "--key", keys / "convener.key",
    )  # fmt: skip
    assert convener_hex in made.output and real.digest in made.output  # what to pin


# ---------------------------------------------------------------- extra keys: VRF, secp256k1


class KeyedVanilla(Vanilla):
    """Vanilla whose clients declare a VRF and a secp256k1 key, the server a VRF key."""

    def resources(self, plan: NodePlan, plans: Sequence[NodePlan]) -> NodeResources:
        if plan.node_id == "server":
            return NodeResources(key_schemes=("ed25519", "vrf"))
        return NodeResources(key_schemes=("ed25519", "vrf", "secp256k1"))


KEYED = "test-keyed-vanilla"


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[Path]:
    """A config of the KeyedVanilla protocol, registered for the test only."""
    registries()
    PROTOCOLS.add(KEYED, KeyedVanilla, VanillaParams, "test protocol with extra keys")
    config = tmp_path / "k.yaml"
    config.write_text(vanilla(tmp_path).read_text().replace("vanilla", KEYED))
    try:
        yield config
    finally:
        PROTOCOLS._items.pop(KEYED)  # tests that list every protocol must not see it


def test_resources_accept_extra_key_schemes_after_the_identity_only():
    assert NodeResources(key_schemes=("ed25519", "vrf")).extra_schemes == ("vrf",)
    for bad in (("vrf",), ("ed25519", "dsa"), ()):
        with pytest.raises(ValueError, match="the first is the identity"):
            NodeResources(key_schemes=bad)


def test_keygen_writes_declared_extra_keys_genesis_registers_them_nodes_load_them(
    tmp_path, keyed
):
    keys = tmp_path / "keys"
    for node in NODES:
        result = invoke("keygen", "--out", keys, "--node", node, "--config", keyed)
        assert result.exit_code == 0, result.output
    assert invoke("keygen", "--out", keys, "--node", "convener").exit_code == 0
    for node in NODES:
        extra = json.loads((keys / f"{node}.pub.json").read_text()).get("extra_keys", {})
        schemes = ("vrf",) if node == "server" else ("secp256k1", "vrf")
        assert tuple(sorted(extra)) == schemes, (node, extra)
        for scheme in schemes:
            path = keys / f"{node}.{scheme}.key"
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert load_extra_keys(keys / f"{node}.key", schemes).publics() == extra
    assert not (keys / "convener.vrf.key").exists()  # no config: the identity key only
    cfg = load_config(keyed)
    assert load_extra_keys(keys / "c000.key", ("vrf",)).vrf.public != derive_vrf_key(
        cfg.seed, "c000"
    ).public  # random, not derived

    genesis = tmp_path / "genesis.json"
    members = [keys / f"{n}.pub.json" for n in NODES]
    made = invoke(
        "genesis", *members, "--config", keyed, "--out", genesis, "--key", keys / "convener.key"
    )
    assert made.exit_code == 0, made.output
    signed = GenesisFile.load(genesis)
    for node in NODES:
        assert signed.extra[node] == read_member(keys / f"{node}.pub.json")[2]

    # a member file without the declared keys is refused
    bare = tmp_path / "bare"
    assert invoke("keygen", "--out", bare, "--node", "c001").exit_code == 0
    lacking = invoke(
        "genesis", members[0], members[1], bare / "c001.pub.json", "--config", keyed,
        "--out", tmp_path / "g2.json", "--key", keys / "convener.key",
    )  # fmt: skip
    assert lacking.exit_code == 2
    assert "has no ['secp256k1', 'vrf'] key" in " ".join(lacking.output.split())
    # the registered keys are signed: swapping c000's VRF key breaks the signature
    record = json.loads(genesis.read_text())
    record["extra_keys"]["c000"]["vrf"] = record["extra_keys"]["c001"]["vrf"]
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(record))
    with pytest.raises(MembershipError, match="signature does not verify"):
        GenesisFile.load(forged)

    # a node loads its own extra keys from the files beside --key, checked against the
    # genesis; every member's registered VRF key is in its services
    options = NodeOptions(
        config=cfg, node_id="c000", data_dir=tmp_path / "c000", listen=("127.0.0.1", 0),
        key_file=keys / "c000.key", genesis_file=genesis, genesis_sha256=signed.digest,
    )  # fmt: skip
    membership = load_membership(options)
    svc = build_experiment(cfg, tmp_path / "c000", only="c000", membership=membership)
    try:
        extra = svc.services["c000"].extra
    finally:
        svc.close()
    own = load_extra_keys(keys / "c000.key", ("vrf", "secp256k1"))
    assert extra.vrf == own.vrf and extra.eth == own.eth
    registered = {n: signed.extra[n]["vrf"] for n in NODES}
    assert {n: k.to_bytes().hex() for n, k in extra.vrf_keys.items()} == registered
    assert extra.eth_addresses == {n: signed.extra[n]["secp256k1"] for n in ("c000", "c001")}

    # committee selection verifies tickets against the registered keys: each member's own
    # key passes; a ticket made with the key derivable from the config is refused
    alpha = committee_alpha(cfg.seed, 1, "test")
    tickets = [make_ticket(n, load_extra_keys(keys / f"{n}.key", ("vrf",)).vrf, alpha)
               for n in NODES]  # fmt: skip
    outputs, refused = verified_outputs(tickets, extra.vrf_keys, alpha)
    assert sorted(outputs) == sorted(NODES) and not refused
    forged_ticket = make_ticket("c001", derive_vrf_key(cfg.seed, "c001"), alpha)
    _, refused = verified_outputs([forged_ticket], extra.vrf_keys, alpha)
    assert refused and refused[0][0] == "c001" and "bad proof" in refused[0][1]

    # a key file that is not the registered one is refused at start-up
    (keys / "c000.vrf.key").write_bytes((keys / "c001.vrf.key").read_bytes())
    with pytest.raises(MembershipError, match="not the ones the genesis file registers"):
        load_membership(options)
    (keys / "c000.secp256k1.key").unlink()
    with pytest.raises(KeyFileError, match=r"c000\.secp256k1\.key"):
        load_membership(options)


def test_the_simulator_derives_declared_extra_keys_from_the_seed(tmp_path, keyed):
    cfg = load_config(keyed)
    exp = build_experiment(cfg, tmp_path / "run")
    try:
        for node, svc in exp.services.items():
            assert svc.extra.vrf == derive_vrf_key(cfg.seed, node)
            assert (svc.extra.eth is None) == (node == "server")
            assert svc.extra.vrf_keys == {n: derive_vrf_key(cfg.seed, n).public for n in NODES}
    finally:
        exp.close()
    plain = build_experiment(load_config(vanilla(tmp_path)), tmp_path / "plain")
    try:
        assert all(s.extra.vrf is None and not s.extra.vrf_keys for s in plain.services.values())
    finally:
        plain.close()


def test_genesis_records_the_protocols_committees_signed(tmp_path):
    config = tmp_path / "p.yaml"
    config.write_text(
        "name: p\nseed: 2\nprotocol: {name: pbft-ledger, clients: 1}\nnodes: {count: 4}\n"
        "model: {name: mlp, hidden: [8]}\n"
    )
    cfg = load_config(config)
    nodes = [p.node_id for p in build_protocol(cfg).plan(cfg.nodes.count, cfg.seed)]
    keys = tmp_path / "keys"
    for node in (*nodes, "convener"):
        assert invoke("keygen", "--out", keys, "--node", node).exit_code == 0
    genesis = tmp_path / "genesis.json"
    made = invoke(
        "genesis", *[keys / f"{n}.pub.json" for n in nodes], "--config", config,
        "--out", genesis, "--key", keys / "convener.key",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    signed = GenesisFile.load(genesis)
    replicas = ("r00", "r01", "r02", "r03")
    assert signed.committees == {"pbft": replicas}
    roster = roster_of(signed.block(to_yaml(cfg)))
    assert roster.committee("pbft") == tuple(signed.members[r].address for r in replicas)
    record = json.loads(genesis.read_text())
    record["committees"]["pbft"] = ["r00", "r01", "r02", "c000"]  # a client as a replica
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(record))
    with pytest.raises(MembershipError, match="signature does not verify"):
        GenesisFile.load(forged)
    # the simulator's genesis records the same committee, from derived keys
    derived = node_keys(build_protocol(cfg).plan(cfg.nodes.count, cfg.seed), cfg.seed)
    committee = build_protocol(cfg).committees(build_protocol(cfg).plan(4, cfg.seed))
    sim = roster_of(make_genesis(derived, to_yaml(cfg), committee))
    assert sim.committee("pbft") == tuple(derived[r].address for r in replicas)
    assert roster_of(make_genesis(derived, to_yaml(cfg))) is None  # none: unchanged block
