"""DFLBCB's secp256k1 keys: the dev chain's keys derived from the node id in the simulator
and on a localnet, the genesis's registered keys on a real network; a node signing with
any other key is refused by the contract's proof check and by ``chain verify``'s audit."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fedledger.assembly.member_keys import SECP256K1, ExtraKeys, MemberExtras
from fedledger.contracts import eth
from fedledger.contracts.dflbcb import SOURCE, ContractParams, DflbcbContract, Genesis, Stage
from fedledger.contracts.effects import ContractSpec
from fedledger.contracts.localchain import start_chain
from fedledger.contracts.pyevm import PyEvmBackend
from fedledger.contracts.rpc import RpcBackend
from fedledger.errors import ConfigError
from fedledger.experiment.audit_contract import audit_history
from fedledger.protocols.dflbcb import KEYS, Dflbcb, DflbcbParams
from fedledger.protocols.dflbcb.roles import chain_keys, eth_key, seed_stand_in
from fedledger.runtime.node.chain_rpc import record_history
from test_contracts_audit import _rewrite, _stage_tx
from test_contracts_dflbcb import ETH, MODEL0, World

SEED = 7
IDS = ("init", "m00", "m01", "m02", "m03", "p00", "p01")
MEMBERS = IDS[1:5]


def registered_extras() -> MemberExtras:
    """A real network's keys: generated apart from the node ids (fixed here for the test),
    each node's public part in the genesis, its private part with the node."""
    private = {n: ExtraKeys(eth=eth.EthKey.from_seed(99, f"keygen/{n}")) for n in IDS}
    return MemberExtras({n: k.publics() for n, k in private.items()}, private)


def test_the_protocol_declares_a_secp256k1_key_for_every_node():
    proto = Dflbcb(DflbcbParams())
    plans = list(proto.plan(len(IDS), SEED))
    assert all(proto.resources(p, plans).key_schemes == KEYS for p in plans)
    assert KEYS == ("ed25519", SECP256K1)


def test_simulator_and_localnet_keep_the_keys_derived_from_the_node_id():
    # what assembly derives for a node that declares secp256k1 (no genesis file)
    derived = MemberExtras.derived(SEED, {n: (SECP256K1,) for n in IDS})
    for n in IDS:
        assert derived.own(n).eth == seed_stand_in(SEED, n)  # the stand-in is recognized
        own, addresses = chain_keys(n, SEED, IDS, derived.for_node(n, (SECP256K1,)))
        assert own == eth_key(n)  # the key the chain funds at genesis (ContractSpec)
        assert addresses == {m: eth_key(m).address for m in IDS}
    own, _ = chain_keys("m00", SEED, IDS, MemberExtras().for_node("m00", ()))
    assert own == eth_key("m00")  # no key declared at all


def test_a_real_network_node_uses_the_key_its_genesis_registers():
    extras = registered_extras()
    for n in IDS:
        own, addresses = chain_keys(n, SEED, IDS, extras.for_node(n, (SECP256K1,)))
        assert own == extras.own(n).eth and own != eth_key(n)
        assert addresses == extras.eth_addresses()
    # its key file holds another key than the registered one
    wrong = MemberExtras(extras.public, {"m00": ExtraKeys(eth=eth_key("m00"))})
    with pytest.raises(ConfigError, match=r"node 'm00' holds secp256k1 key 0x.* but the "
                                          r"genesis registers 0x"):
        chain_keys("m00", SEED, IDS, wrong.for_node("m00", (SECP256K1,)))
    # a member the genesis registers no key for
    partial = MemberExtras({n: k for n, k in extras.public.items() if n != "p01"},
                           extras.private)
    with pytest.raises(ConfigError, match=r"no secp256k1 key registered for \['p01'\]"):
        chain_keys("m00", SEED, IDS, partial.for_node("m00", (SECP256K1,)))


def _registered_world(chain: Any) -> tuple[World, dict[str, eth.EthKey]]:
    """The contract as a real network's initiator sets it up: the committee its genesis
    registers (``eth_of`` of each member); every node registered with its own key."""
    extras = registered_extras()
    keys = {n: chain_keys(n, SEED, IDS, extras.for_node(n, (SECP256K1,)))[0] for n in IDS}
    for k in keys.values():
        chain.fund(k.address, 100 * ETH)
    c = DflbcbContract.deploy(chain, keys["init"].address)
    g = Genesis(committee=tuple(keys[m].address for m in MEMBERS), model_hash=MODEL0,
                params=ContractParams(), prize_fund=10 * ETH)
    assert c.initialize(keys["init"].address, g).status
    for n in IDS[1:]:
        assert c.register(keys[n].address, 5 * ETH).status
    world = World(chain, c, keys["init"], [keys[m] for m in MEMBERS],
                  [keys[n] for n in IDS[5:]])
    return world, keys


def test_the_contract_refuses_a_proof_share_signed_with_an_unregistered_key():
    w, keys = _registered_world(PyEvmBackend(chain_id=1337))
    cands = [w.req(k, Stage.ELECT, 2 * ETH) for k in w.members]
    addrs = [k.address for k in w.members]
    h = eth.elect_result_hash(addrs, cands)
    # m00 signs with the key derived from its id (the simulator's), not its registered one
    bad = w.proof([eth_key("m00"), keys["m01"]], Stage.ELECT, h)
    r = w.c.submit_elect(w.members[1].address, addrs, cands, h, bad)
    assert not r.status and r.error == "signer not in the current committee", r
    assert w.c.stage() is Stage.ELECT
    good = w.proof([keys["m00"], keys["m01"]], Stage.ELECT, h)
    assert w.c.submit_elect(w.members[0].address, addrs, cands, h, good).status
    assert w.c.stage() is Stage.PLEDGE


@pytest.mark.slow
def test_the_audit_reports_a_proof_share_of_an_unregistered_key():
    with start_chain("devchain") as node:
        w, _ = _registered_world(RpcBackend(node.url))
        assert w.elect(w.members).status and w.pledge(w.nodes).status
        backend = RpcBackend(node.url)
        backend.use_source(SOURCE)
        history = record_history(backend, ContractSpec(SOURCE))
    assert audit_history(history, SOURCE).problems == []
    h = copy.deepcopy(history)
    tx = _stage_tx(h, "submit_pledge")
    contract = tx["to"]

    def resign(args: dict[str, Any]) -> None:  # m00's share by its id-derived key
        digest = eth.proof_digest(h["chain_id"], contract, 1, int(Stage.PLEDGE),
                                  bytes(args["result_hash"]))
        forged = dict(zip("vrs", eth_key("m00").sign_digest(digest).as_tuple(), strict=True))
        args["sigs"] = [forged, *args["sigs"][1:]]

    _rewrite(tx, resign)
    reasons = [p.reason for p in audit_history(h, SOURCE).problems]
    assert any("outside the committee" in r for r in reasons), reasons
