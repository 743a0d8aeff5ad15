"""μDFL faults end to end in the simulator: a committee member deals a bad PVSS
transcript (``bad_pvss``): the run completes, every dynasty seed still comes from the
qualified set without the bad dealer, its evidence is on chain and re-checkable, it loses
credit and deposit, and ``fedledger chain verify`` passes. Then late slashing evidence on
a fork of that chain: charged once in the next settlement, and a dynasty block that
leaves the charge out is refused."""

from __future__ import annotations

import dataclasses

import pytest
from typer.testing import CliRunner

import conformance as kit
from fedledger.assembly.build import build_experiment
from fedledger.assembly.config import parse_config
from fedledger.cli import app
from fedledger.experiment.runner import run_experiment
from fedledger.ledger.records import Block, Transaction, record_id, sign
from fedledger.protocols.kit.gate import Reject
from fedledger.protocols.mudfl import contents, faults_grind, fetch, poc, proposing, succession
from fedledger.protocols.mudfl import faults_pvss as fp
from fedledger.protocols.mudfl import randshare as rs
from fedledger.protocols.mudfl import rotation as rot
from fedledger.protocols.mudfl import settlement as st
from fedledger.protocols.mudfl.messages import (
    EQUIVOCATION,
    MODEL_TX,
    SLASH_TX,
    BlockMsg,
    PocClaim,
    SlashEvidence,
)

FAULTY = "c001"
FIELDS = dataclasses.fields(st.Settlement)
ROUNDS = 8  # long enough for three dynasty changes (R = 2, 5 epochs each)
PROTOCOL = {
    "dynasty_epochs": 5,  # R = 2: dynasty records at heights 10, 20, ...
    "credit_max": 5000,
    "credit_reward": 100,
    "credit_penalty": 1000,
    "slash_fraction": 0.5,
    "tx_fee": 0.01,
}


def _config():
    entry = dict(kit.CONFORMANCE_CONFIGS["mudfl"])
    cfg = {"name": "mudfl-bad-pvss", **kit.BASE, **entry, "rounds": ROUNDS}
    cfg["protocol"] = {**entry["protocol"], **PROTOCOL}
    cfg["nodes"] = {"count": 8, "malicious": [{"ids": [FAULTY], "faults": ["bad_pvss"]}]}
    return parse_config(cfg)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The whole run, then its stores reopened (nodes restored from their ledgers)."""
    config = _config()
    result = run_experiment(config, out=tmp_path_factory.mktemp("mudfl-bad-pvss"))
    exp = build_experiment(config, result.run_dir)
    yield exp, result
    exp.close()


def _records(chain) -> dict[int, int]:
    return {n: h for n, (h, _) in succession.chain_dynasties(chain).items()}


def _record(chain, height):
    return rot.claim_of(chain.store.at_height(height)).record


def test_the_run_completes_and_chain_verify_passes(run):
    exp, result = run
    assert result.summary["last_step"] == ROUNDS
    assert result.summary["nodes_halted"] == len(exp.nodes)
    run_dir = result.run_dir
    heads = {n: node.chain.store.head_hash() for n, node in exp.nodes.items() if n != FAULTY}
    assert len(set(heads.values())) == 1
    assert set(_records(exp.nodes["admin"].chain)) >= {1}
    result = CliRunner().invoke(app, ["chain", "verify", str(run_dir)])
    assert result.exit_code == 0, result.output


def test_the_bad_dealer_is_excluded_and_the_seed_comes_from_the_qualified_set(run):
    exp, _ = run
    chain, state = exp.nodes["c000"].chain, exp.nodes["c000"].ctx.state
    bad = chain.ctx.services.address_of(FAULTY)
    excluded_in = 0
    for number, height in _records(chain).items():
        running = state.known[number - 1]
        parent = chain.store.at_height(height - 1).hash
        win = rot.window(chain.store, parent, number, chain.params)
        deals, reveals = rot.randshare_records(chain.store, parent, win)
        members = chain.ctx.rotation.members(running)
        trigger = chain.store.at_height(win.trigger).hash
        result = rs.finish(number, members, deals, reveals, running.seed, trigger)
        record = _record(chain, height)
        assert not result.fallback and not record.seed_fallback
        assert record.seed == result.seed
        assert len(result.qualified) >= 2 * rs.fault_bound(len(members)) + 1
        if FAULTY in running.committee:
            excluded_in += 1
            assert bad in {d.dealer for d in deals}  # it dealt, on chain
            assert bad not in result.qualified
            assert [e.phase for e in result.excluded if e.offender == bad] == ["deal"]
        else:
            assert bad not in result.qualified
    assert excluded_in >= 1, f"{FAULTY} sat on no committee that ran RandShare"


def test_evidence_is_on_chain_and_every_node_can_recheck_it(run):
    exp, _ = run
    node = exp.nodes["agg"]  # not a validator: it re-checks from the chain alone
    chain = node.chain
    bad = node.ctx.services.address_of(FAULTY)
    lookup = contents.members_lookup(chain)
    found = [
        tx for b in chain.store.canonical_chain() for tx in b.transactions if tx.kind == fp.PVSS_TX
    ]
    assert found, "no bad_pvss evidence on chain"
    for tx in found:
        assert tx.payload.offender == bad
        assert fp.evidence_problem(node.gate.verifier, tx.payload, lookup) is None
    ev = found[0].payload
    # an honest dealer's deal is no evidence; a deal with a broken signature neither
    honest = next(
        tx
        for b in chain.store.canonical_chain()
        for tx in b.transactions
        if tx.kind == rs.DEAL_TX and tx.sender != bad
    )
    problem = fp.evidence_problem(node.gate.verifier, fp.PvssEvidence(honest), lookup)
    assert problem == "the transcript verifies"
    broken = dataclasses.replace(ev.deal, signature=bytes(64))
    assert "signature" in fp.evidence_problem(node.gate.verifier, fp.PvssEvidence(broken), lookup)
    assert "not known" in fp.evidence_problem(node.gate.verifier, ev, lambda d: None)


def test_the_bad_dealer_loses_one_credit_per_dealing_and_its_deposit(run):
    exp, _ = run
    chain = exp.nodes["admin"].chain
    state = exp.nodes["admin"].ctx.state
    node_of = chain.ctx.services.node_of
    p = chain.params
    previous, low = {c: p.credit_init for c in chain.ctx.clients}, 1
    for number, height in sorted(_records(chain).items()):
        running = state.known[number - 1]
        honest = reports = 0
        for h in range(low, height):
            block = chain.store.at_height(h)
            honest += node_of(block.header.proposer) == FAULTY
            for tx in block.transactions:
                honest += tx.kind == MODEL_TX and node_of(tx.sender) == FAULTY
                reports += tx.kind == fp.PVSS_TX
        dealt_badly = FAULTY in running.committee
        assert (reports > 0) == dealt_badly  # every report names its one bad dealing
        expected = min(p.credit_max, previous[FAULTY] + p.credit_reward * honest)
        expected = max(0, expected - p.credit_penalty * dealt_badly)
        record = _record(chain, height)
        assert dict(record.credits)[FAULTY] == expected
        deposits = {m: (refund, cut) for m, refund, cut in record.settlement.deposits}
        for member, (refund, cut) in deposits.items():
            bad = member == FAULTY
            assert cut == (p.deposit * p.slash_fraction if bad else 0.0)
            assert refund == p.deposit - cut
        if dealt_badly:
            assert FAULTY not in dict(record.settlement.fees)
        previous, low = dict(record.credits), height + 1


# ---------------------------------------------------------------- late evidence (a fork)


def _resign(exp, block: Block, parent: bytes, txs=None, extra=None) -> Block:
    proposer = exp.nodes["admin"].ctx.services.node_of(block.header.proposer)
    copy = Block.create(
        parent,
        block.height,
        block.header.proposer,
        block.header.timestamp,
        block.transactions if txs is None else txs,
        block.header.extra if extra is None else extra,
    )
    return sign(copy, exp.services[proposer].keys)


def _equivocation(exp, offender: str, dynasty: int, reporter: str) -> Transaction:
    keys = exp.services[offender].keys
    claim = PocClaim(10_000, dynasty, 1000, True)
    headers = tuple(
        sign(Block.create(b"\x00" * 32, 3, keys.address, t, (), claim), keys).header
        for t in (1.0, 2.0)
    )
    ev = SlashEvidence(EQUIVOCATION, keys.address, headers)
    rkeys = exp.services[reporter].keys
    return sign(Transaction(rkeys.address, 0.0, SLASH_TX, ev, 0), rkeys)


def test_late_evidence_costs_the_deposit_once_and_a_record_without_it_is_refused(run):
    """On a fork from the dynasty-1 block: evidence of an equivocation in dynasty 0
    lands in dynasty 1's first block. Dynasty 2's record must charge it late; the
    genuine record (no charge) is refused there; the same evidence again in dynasty 2's
    blocks is not charged a second time."""
    exp, _ = run
    node = exp.nodes["c000"]
    chain, state = node.chain, node.ctx.state
    records = _records(chain)
    assert {1, 2} <= set(records), "the run must reach dynasty 2's record"
    s1, s2 = records[1], records[2]
    dyn0 = state.known[0]
    offender = next(m for m in dyn0.committee if m != FAULTY)
    reporters = [m for m in state.known[1].committee if m != offender]
    late_tx = _equivocation(exp, offender, 0, reporters[0])
    problem = contents.evidence_problem(node.gate.verifier, late_tx.payload, chain.credit_table, 64)
    assert problem is None
    # the fork: blocks s1+1 .. s2-1 re-parented, the first one also holding the evidence
    parent = chain.store.at_height(s1).hash
    for h in range(s1 + 1, s2):
        genuine = chain.store.at_height(h)
        txs = (*genuine.transactions, late_tx) if h == s1 + 1 else None
        fork = _resign(exp, genuine, parent, txs)
        chain.store.append(fork)
        parent = fork.hash
    genuine_top = chain.store.at_height(s2)
    claim = rot.claim_of(genuine_top)
    tickets = dict(claim.record.tickets)
    expected = node.ctx.rotation.expected_record(parent, state.known[1], 2, tickets)
    p = chain.params
    assert st.late_charges(expected.settlement) == ((0, offender, p.deposit * p.slash_fraction),)
    assert expected.settlement.slashed == tuple(
        m for m, _, c in claim.record.settlement.deposits if c > 0
    )  # dynasty 1's own slashes are unchanged
    saved = state.current
    try:
        state.current = state.known[1]
        # the record the chain gives, but its settlement without the late charge
        plain = st.Settlement(*(getattr(expected.settlement, f.name) for f in FIELDS))
        wrong = dataclasses.replace(claim, record=dataclasses.replace(expected, settlement=plain))
        block = _resign(exp, genuine_top, parent, (), wrong)
        with pytest.raises(Reject, match="settlement") as err:
            contents.check(chain, block, wrong, node.ctx.services.node_of(block.header.proposer))
        assert err.value.reason == "bad_dynasty_record"
        right = dataclasses.replace(claim, record=expected)
        top = _resign(exp, genuine_top, parent, (), right)
        contents.check(chain, top, right, node.ctx.services.node_of(top.header.proposer))
    finally:
        state.current = saved
    chain.store.append(top)
    # the same offence reported again in dynasty 2's blocks: no second charge
    again = _equivocation(exp, offender, 0, reporters[1])
    nxt = Block.create(top.hash, s2 + 1, top.header.proposer, 1e6, (again,), None)
    nxt = _resign(exp, nxt, top.hash)
    chain.store.append(nxt)
    third = node.ctx.rotation.settlement(nxt.hash, expected.dynasty(), 3)
    assert type(third) is st.Settlement and third.slashed == ()
    # credit: the late evidence cost the offender credit_penalty once (dynasty 2's
    # table), the copy in dynasty 2's blocks costs nothing more (dynasty 3's table)
    genuine_credit = dict(claim.record.credits)[offender]
    assert dict(expected.credits)[offender] == max(0, genuine_credit - p.credit_penalty)
    bare = Block.create(top.hash, s2 + 1, top.header.proposer, 2e6, (), None)
    bare = _resign(exp, bare, top.hash)
    chain.store.append(bare)
    rotation = node.ctx.rotation
    with_copy = rotation.next_credits(nxt.hash, expected.dynasty(), 3)
    assert with_copy == rotation.next_credits(bare.hash, expected.dynasty(), 3)
    every = [chain.store.get(chain.store.ancestor_at(top.hash, s1)), top]
    settled = [rot.claim_of(b).record.settlement for b in every] + [third]
    cut = sum(c for s in settled for m, _, c in s.deposits if m == offender)
    late = sum(a for s in settled for _, m, a in st.late_charges(s) if m == offender)
    assert (cut, late) == (0.0, p.deposit * p.slash_fraction)


# ---------------------------------------------------------------- PoC grinding, VRF mode


def test_grinding_tx_subsets_beats_the_credit_share_and_the_vrf_input_removes_it():
    """K = 4 equal credits (share 0.25), 8 pooled transactions, 8 tries per slot: under
    "txs" the grinder wins about 1 - 0.75^8 = 0.90 of the slots; under "vrf" its tries
    change nothing. Bounds far from tight (400 slots: one standard deviation ~0.022)."""
    txs = faults_grind.measure(poc.TXS, tries=8, pool=8, slots=400, seed=1)
    assert txs.share == 0.25
    assert txs.grinder_rate > 2 * txs.share and txs.advantage > 2.5
    assert abs(txs.honest_rate - txs.share) < 0.1
    vrf = faults_grind.measure(poc.VRF, tries=8, pool=8, slots=400, seed=1)
    assert abs(vrf.grinder_rate - vrf.share) < 0.1 and vrf.advantage < 1.4
    assert abs(vrf.honest_rate - vrf.share) < 0.1
    one = faults_grind.measure(poc.TXS, tries=1, pool=8, slots=400, seed=1)
    assert abs(one.grinder_rate - one.share) < 0.1  # no tries, no advantage


def test_tx_variants_are_distinct_and_bounded():
    items = tuple(range(5))
    got = list(poc.tx_variants(items, 100))
    assert got[0] == items and len(got) == len(set(got)) == 10  # 5 orders, 5 drop-one
    assert list(poc.tx_variants(items, 3)) == got[:3]
    assert list(poc.tx_variants((), 8)) == [()]
    with pytest.raises(ValueError, match="tries"):
        list(poc.tx_variants(items, 0))


@pytest.fixture(scope="module")
def vrf_run(tmp_path_factory):
    entry = dict(kit.CONFORMANCE_CONFIGS["mudfl"])
    cfg = {"name": "mudfl-vrf", **kit.BASE, **entry}
    cfg["protocol"] = {**entry["protocol"], "poc_input": "vrf"}
    cfg["nodes"] = {"count": 7, "malicious": [{"ids": ["c001"], "faults": ["grind_poc"]}]}
    config = parse_config(cfg)
    result = run_experiment(config, out=tmp_path_factory.mktemp("mudfl-vrf"))
    exp = build_experiment(config, result.run_dir)
    yield exp, result
    exp.close()


def test_a_vrf_chain_carries_verified_proofs_and_passes_chain_verify(vrf_run):
    exp, result = vrf_run
    assert result.summary["last_step"] == 2
    chain = exp.nodes["agg"].chain
    keys = chain.ctx.keys.public
    node_of = chain.ctx.services.node_of
    blocks = list(chain.store.canonical_chain())[1:]
    poc_blocks = [b for b in blocks if not b.header.extra.fallback]
    assert poc_blocks
    for b in poc_blocks:
        claim = b.header.extra
        assert isinstance(claim, poc.VrfPocClaim)
        assert poc.vrf_problem(claim, b.parent, poc.VRF, keys[node_of(b.header.proposer)]) is None
        assert "VRF claim" in poc.vrf_problem(claim, b.parent, poc.TXS, None)
        other = keys[next(c for c in keys if c != node_of(b.header.proposer))]
        assert "refused" in poc.vrf_problem(claim, b.parent, poc.VRF, other)
    out = CliRunner().invoke(app, ["chain", "verify", str(result.run_dir)])
    assert out.exit_code == 0, out.output


@pytest.mark.parametrize("how", ["plain claim", "proof of another slot", "garbage proof"])
def test_verify_block_refuses_a_poc_block_without_a_valid_vrf_proof(vrf_run, how):
    exp, _ = vrf_run
    committee = exp.nodes["admin"].ctx.dynasty.committee
    observer, proposer = committee[0], committee[1]
    node = exp.nodes[observer]
    chain = node.chain
    slot = chain.slot_at(node.now) + 1
    chain.slot, chain.parent, chain.slot_blocks = slot, chain.store.head(), {}
    node.now = slot * chain.slot_length + 0.2 * chain.params.slot
    number = node.ctx.dynasty.number
    credit = node.ctx.dynasty.credit_of(proposer)
    vrf_key = exp.nodes[proposer].ctx.keys.own
    if how == "plain claim":
        claim = PocClaim(slot, number, credit, False)
    else:
        alpha_slot = slot + 1 if how == "proof of another slot" else slot
        proof = vrf_key.prove(poc.vrf_alpha(chain.parent.hash, alpha_slot))
        if how == "garbage proof":
            proof = proof[:40] + bytes(40)
        claim = poc.VrfPocClaim(slot, number, credit, False, None, vrf_proof=proof)
    keys = exp.services[proposer].keys
    block = sign(
        Block.create(chain.parent.hash, chain.parent.height + 1, keys.address, node.now, (), claim),
        keys,
    )
    with pytest.raises(Reject) as err:
        chain.on_block(BlockMsg(slot, block), proposer)
    assert err.value.reason == "bad_vrf"


@pytest.mark.parametrize("how", ["plain claim", "garbage proof"])
def test_a_fetched_block_without_a_valid_vrf_proof_is_refused_too(vrf_run, how):
    """Catch-up (fetch.py) checks a missed block's VRF proof like a proposal."""
    exp, _ = vrf_run
    committee = exp.nodes["admin"].ctx.dynasty.committee
    observer, proposer = committee[0], committee[1]
    chain = exp.nodes[observer].chain
    head = chain.store.head()
    slot = chain.slot_at(exp.nodes[observer].now) + 1
    number = chain.ctx.dynasty.number
    credit = chain.ctx.dynasty.credit_of(proposer)
    if how == "plain claim":
        claim = PocClaim(slot, number, credit, False)
    else:
        proof = exp.nodes[proposer].ctx.keys.own.prove(poc.vrf_alpha(head.hash, slot))
        claim = poc.VrfPocClaim(slot, number, credit, False, None, vrf_proof=proof[:40] + bytes(40))
    keys = exp.services[proposer].keys
    block = sign(Block.create(head.hash, head.height + 1, keys.address, 0.0, (), claim), keys)
    problem = fetch._problem(chain, block, proposer)
    assert problem is not None and "VRF" in problem, problem


def test_a_grinding_proposer_finds_a_winning_subset_an_honest_one_would_not(tmp_path):
    """In "txs" mode, slots where the pool's own order loses but a reordered or smaller
    list wins: the grinder proposes there, a valid block no node can tell apart."""
    entry = dict(kit.CONFORMANCE_CONFIGS["mudfl"])
    cfg = {"name": "mudfl-grind", **kit.BASE, **entry}
    cfg["nodes"] = {"count": 7, "malicious": [{"ids": ["c001"], "faults": ["grind_poc"]}]}
    exp = kit.simulate(parse_config(cfg), tmp_path / "run", 10.0)
    try:
        node = exp.nodes["c001"]
        chain = node.chain
        assert "c001" in node.ctx.dynasty.committee, "the grinder must be a validator"
        address = exp.services["c001"].keys.address
        pooled = tuple(Transaction(address, float(i), MODEL_TX, i, i) for i in range(6))
        head = chain.store.head()
        ground = 0
        for slot in range(chain.slot + 1, chain.slot + 41):
            chain.slot = slot
            args = (chain, head.hash, head.height + 1, pooled, 1000, 4000)
            honest, got = proposing.poc_attempt(*args, tries=1), proposing.poc_attempt(*args)
            if got is not None:  # whatever it found is a winning proof
                ids = [record_id(tx) for tx in got[0]]
                hc = poc.poc_hash(head.hash, ids, address, 1000, head.height + 1, slot)
                assert poc.wins(poc.low_bits(hc, 64), 1000, 4000, 64)
            if honest is None and got is not None:
                ground += 1
                assert got[0] != pooled and set(got[0]) <= set(pooled)
            assert honest is None or got == honest  # a winning pool order is kept
        assert ground >= 10  # expected 40 * (0.75 - 0.75^6 ...): about 26 (6 orders, 6 drops)
    finally:
        exp.close()
