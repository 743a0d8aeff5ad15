"""μDFL committee tickets with VRF keys registered in the genesis (not derivable from the
run's seed): dynasty 0 is D_init, every client proves only its own ticket, members keep
only tickets that verify under the registered key, and the dynasty changes still agree."""

from __future__ import annotations

import pytest

import conformance as kit
from fedledger.assembly.config import parse_config
from fedledger.assembly.member_keys import ExtraKeys, MemberExtras
from fedledger.consensus.committee import committee_alpha
from fedledger.crypto.keys import CryptoError
from fedledger.crypto.vrf import VrfKey, derive_vrf_key
from fedledger.protocols.base import Broadcast, MessageReceived
from fedledger.protocols.kit.gate import Reject
from fedledger.protocols.mudfl import dynasty as dy
from fedledger.protocols.mudfl import rotation as rot
from fedledger.protocols.mudfl import succession, tickets
from fedledger.protocols.mudfl.messages import TicketMsg
from fedledger.protocols.resources import NodeExtraKeys

CUT = 76.5  # slot 25 at T_Δ = 1: dynasty records at heights 10 and 20 are on chain
OTHER_SEED = 4242  # the registered keys: not the ones derived from the run's seed


def _config():
    entry = dict(kit.CONFORMANCE_CONFIGS["mudfl"])
    cfg = {"name": "mudfl-tickets", **kit.BASE, **entry, "rounds": 8}
    cfg["protocol"] = {**entry["protocol"], "dynasty_epochs": 5}
    cfg["nodes"] = {"count": 8}
    return parse_config(cfg)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A simulation whose clients' VRF keys are registered keys of their own."""

    def registered(cls, seed, schemes_of):
        private = {n: ExtraKeys.derive(OTHER_SEED, n, s) for n, s in schemes_of.items() if s}
        return cls({n: k.publics() for n, k in private.items()}, private)

    mp = pytest.MonkeyPatch()
    mp.setattr(MemberExtras, "derived", classmethod(registered))
    run_dir = tmp_path_factory.mktemp("mudfl-tickets") / "run"
    try:
        exp = kit.simulate(_config(), run_dir, CUT)
    finally:
        mp.undo()
    yield exp
    exp.close()


def _clients(exp):
    return sorted(n for n, node in exp.nodes.items() if node.role == "client")


def test_registered_keys_give_d_init_and_agreeing_dynasty_changes(run):
    exp = run
    clients = _clients(exp)
    node = exp.nodes[clients[0]]
    keys = node.ctx.keys
    assert not keys.derived and keys.own is not None
    assert keys.public[clients[0]].to_bytes() == keys.own.public.to_bytes()
    genesis = node.chain.store.genesis().hash
    assert node.ctx.state.known[0].committee == dy.d_init(genesis, clients, {}, 4).committee
    records = {}
    for nid, other in exp.nodes.items():
        found = succession.chain_dynasties(other.chain)
        assert {1, 2} <= set(found), nid
        records[nid] = rot.claim_of(other.chain.store.at_height(20)).record
    assert len({r for r in records.values()}) == 1  # every node holds the same record
    rec = next(iter(records.values()))
    assert {c for c, _ in rec.tickets} == set(clients)  # every client's ticket arrived
    table = dict(rec.credits)
    dy.verify_record(rec, 2, rec.seed, table, 4, keys.public)
    derived = {c: derive_vrf_key(exp.config.seed, c).public for c in clients}
    with pytest.raises(ValueError, match=r"VRF ticket of .* refused"):
        dy.verify_record(rec, 2, rec.seed, table, 4, derived)


def _back_to_dynasty_1(node):
    """Set ``node`` back to dynasty 1, in the slot of block 19 (after the reveal window of
    dynasty 2's RandShare, before its record); returns what to restore."""
    chain, state = node.chain, node.ctx.state
    saved = (state.current, chain.slot, chain.parent, chain.tickets, chain.tickets_sent)
    block = chain.store.at_height(19)
    state.current = state.known[1]
    chain.slot, chain.parent = rot.claim_of(block).slot, block
    chain.tickets, chain.tickets_sent = {}, set()
    return saved


def _restore(node, saved):
    chain, state = node.chain, node.ctx.state
    state.current, chain.slot, chain.parent, chain.tickets, chain.tickets_sent = saved


def test_a_client_proves_only_its_own_ticket_and_sends_it_to_the_committee(run):
    exp = run
    outsider = next(c for c in _clients(exp) if c not in exp.nodes[c].ctx.state.known[1].committee)
    node = exp.nodes[outsider]
    saved = _back_to_dynasty_1(node)
    try:
        effects = tickets.send_own(node.chain)
        assert tickets.send_own(node.chain) == []  # once per dynasty
    finally:
        _restore(node, saved)
    (sent,) = effects
    assert isinstance(sent, Broadcast) and isinstance(sent.message, TicketMsg)
    assert set(sent.to) == set(node.ctx.state.known[1].committee)
    rec = rot.claim_of(node.chain.store.at_height(20)).record
    assert sent.message.number == 2 and sent.message.proof == dict(rec.tickets)[outsider]


def test_a_ticket_proved_with_an_unregistered_key_is_refused(run):
    exp = run
    members = exp.nodes["admin"].ctx.state.known[1].committee
    member = exp.nodes[members[0]]
    sender = next(c for c in _clients(exp) if c != members[0])
    rec = rot.claim_of(member.chain.store.at_height(20)).record
    alpha = committee_alpha(rec.seed, 2, dy.PURPOSE)
    forged = VrfKey.generate().prove(alpha)  # a key nobody registered for the sender
    saved = _back_to_dynasty_1(member)
    try:
        with pytest.raises(Reject, match="ticket of") as err:
            tickets.on_ticket(member.chain, TicketMsg(2, forged), sender)
        assert err.value.reason == "bad_ticket"
        assert sender not in member.chain.tickets.get(2, {})
        # through the node: refused, counted, nothing kept
        now = member.now
        member.handle(MessageReceived(now, sender, TicketMsg(2, forged)))
        assert sender not in member.chain.tickets.get(2, {})
        # the genuine ticket is kept, a second one is refused
        genuine = dict(rec.tickets)[sender]
        tickets.on_ticket(member.chain, TicketMsg(2, genuine), sender)
        assert member.chain.tickets[2][sender] == genuine
        with pytest.raises(Reject, match="second ticket"):
            tickets.on_ticket(member.chain, TicketMsg(2, genuine), sender)
        with pytest.raises(Reject, match="not a client"):
            tickets.on_ticket(member.chain, TicketMsg(2, genuine), "server")
    finally:
        _restore(member, saved)


def test_sortition_keys_from_the_genesis():
    clients = ["c000", "c001"]
    own = {c: derive_vrf_key(7, c) for c in clients}
    public = {c: k.public for c, k in own.items()}
    keys = tickets.SortitionKeys.of(NodeExtraKeys(own["c000"], None, public), "c000", clients, 7)
    assert keys.derived and keys.own == own["c000"]
    keys = tickets.SortitionKeys.of(NodeExtraKeys(own["c000"], None, public), "c000", clients, 8)
    assert not keys.derived
    admin = tickets.SortitionKeys.of(NodeExtraKeys(None, None, public), "admin", clients, 8)
    assert admin.own is None and set(admin.public) == set(clients)
    with pytest.raises(CryptoError, match=r"\['c001'\] have no VRF key"):
        tickets.SortitionKeys.of(
            NodeExtraKeys(own["c000"], None, {"c000": public["c000"]}), "c000", clients, 7
        )
    with pytest.raises(CryptoError, match="not the one registered"):
        tickets.SortitionKeys.of(NodeExtraKeys(own["c001"], None, public), "c000", clients, 7)
