"""μDFL dynasty changes run by the node: RandShare deals and reveals on chain in their
slot windows, the dynasty record at the switch height checked in verify_block, the
takeover only once that block is finalized, credits recomputed from the chain, and the
dynasties restored on restart."""

from __future__ import annotations

import dataclasses

import pytest

import conformance as kit
from fedledger.assembly.build import build_experiment
from fedledger.assembly.config import parse_config
from fedledger.ledger.records import Block, Transaction, sign
from fedledger.protocols.base import Broadcast, Start
from fedledger.protocols.kit.gate import Reject
from fedledger.protocols.mudfl import contents, poc, succession
from fedledger.protocols.mudfl import randshare as rs
from fedledger.protocols.mudfl import rotation as rot
from fedledger.protocols.mudfl import settlement as st
from fedledger.protocols.mudfl.messages import (
    DOUBLE_VOTE,
    EQUIVOCATION,
    FAULT_TX,
    MODEL_TX,
    SLASH_TX,
    BlockMsg,
    Fault,
    LinkVote,
    PocClaim,
    SlashEvidence,
    TxMsg,
)
from fedledger.protocols.mudfl.params import MuDflParams

CUT = 76.5  # mid-slot (slot 25 at T_Δ = 1), after the proposals arrived

PROTOCOL = {
    "dynasty_epochs": 5,  # R = 2: records at heights 10, 20, ...
    "credit_init": 1000,
    "credit_max": 5000,
    "credit_reward": 100,
    "credit_penalty": 1000,
    "tx_fee": 0.01,
}


def _config():
    entry = dict(kit.CONFORMANCE_CONFIGS["mudfl"])
    cfg = {"name": "mudfl-succession", **kit.BASE, **entry, "rounds": 8}
    cfg["protocol"] = {**entry["protocol"], **PROTOCOL}
    cfg["nodes"] = {
        "count": 8,
        "malicious": [{"ids": ["c004"], "faults": ["tamper_model"]}],
    }
    return parse_config(cfg)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run through two dynasty changes; takeover calls logged as (node, slot,
    finalized height, pending record height, took over)."""
    calls: list[tuple[str, int, int, int, bool]] = []
    original = succession.takeover

    def logged(chain):
        pending = succession.pending_record(chain)
        effects = original(chain)
        if pending is not None:
            fin = chain.vcf.finalized.height
            calls.append((chain.ctx.node_id, chain.slot, fin, pending[0], bool(effects)))
        return effects

    mp = pytest.MonkeyPatch()
    mp.setattr(succession, "takeover", logged)
    config = _config()
    run_dir = tmp_path_factory.mktemp("mudfl-succession") / "run"
    try:
        exp = kit.simulate(config, run_dir, CUT)
    finally:
        mp.undo()
    yield exp, calls, config, run_dir
    exp.close()


def _records(chain):
    return {n: h for n, (h, _) in succession.chain_dynasties(chain).items()}


def test_every_node_changes_dynasty_twice_and_agrees(run):
    exp, _, _, _ = run
    heads = {node.chain.store.head_hash() for node in exp.nodes.values()}
    assert len(heads) == 1
    admin = exp.nodes["admin"].chain
    assert _records(admin) == {1: 10, 2: 20}
    for node in exp.nodes.values():
        assert node.ctx.dynasty.number == 2
        assert node.ctx.state.heights == {1: 10, 2: 20}
        assert node.chain.vcf.rule.committee == frozenset(node.ctx.committee_addresses())
    # blocks after the takeover name the new dynasty; the new committee proposes them
    for block in admin.store.canonical_chain():
        claim = rot.claim_of(block)
        if claim is not None and block.height > 22:
            assert claim.dynasty == 2
            proposer = admin.ctx.services.node_of(block.header.proposer)
            assert proposer in exp.nodes["admin"].ctx.dynasty.committee


def test_randshare_runs_on_chain_in_its_windows_and_gives_an_unflagged_seed(run):
    exp, _, _, _ = run
    chain = exp.nodes["c000"].chain
    state = exp.nodes["c000"].ctx.state
    for number, height in _records(chain).items():
        parent = chain.store.at_height(height - 1)
        win = rot.window(chain.store, parent.hash, number, chain.params)
        deals, reveals = rot.randshare_records(chain.store, parent.hash, win)
        running = state.known[number - 1]
        members = chain.ctx.rotation.members(running)
        assert {d.dealer for d in deals} == {m.address for m in members}
        assert len(reveals) == len(members) ** 2  # every member, every qualified dealer
        trigger = chain.store.at_height(win.trigger).hash
        result = rs.finish(number, members, deals, reveals, running.seed, trigger)
        record = rot.claim_of(chain.store.at_height(height)).record
        assert not result.fallback and not record.seed_fallback
        assert record.seed == result.seed == state.known[number].seed
        # every RandShare transaction lies in a block of its phase's slots
        for block in rot.chain_below(chain.store, parent.hash, 1):
            for tx in block.transactions:
                if tx.kind in (rs.DEAL_TX, rs.REVEAL_TX) and tx.payload.dynasty == number:
                    phase = win.phase(rot.claim_of(block).slot)
                    assert phase == (rot.DEAL if tx.kind == rs.DEAL_TX else rot.REVEAL)


def test_credits_are_recomputed_from_the_chain_once_per_dynasty(run):
    exp, _, _, _ = run
    chain = exp.nodes["admin"].chain
    node_of = chain.ctx.services.node_of
    records = _records(chain)
    previous = {c: 1000 for c in chain.ctx.clients}
    low = 1
    faults_seen = 0
    for number in sorted(records):
        honest = dict.fromkeys(previous, 0)
        faults = dict.fromkeys(previous, 0)
        for h in range(low, records[number]):
            block = chain.store.at_height(h)
            honest[node_of(block.header.proposer)] += 1
            for tx in block.transactions:
                if tx.kind == MODEL_TX:
                    honest[node_of(tx.sender)] += 1
                if tx.kind == FAULT_TX and isinstance(tx.payload, Fault):
                    faults[node_of(tx.payload.offender)] += 1
        expected = {
            c: max(0, min(5000, previous[c] + 100 * honest[c]) - 1000 * faults[c]) for c in previous
        }
        record = rot.claim_of(chain.store.at_height(records[number])).record
        assert dict(record.credits) == expected
        faults_seen += sum(faults.values())
        previous, low = expected, records[number] + 1
    assert faults_seen >= 1  # c004's tampered model cost it credit
    assert previous["c004"] < max(previous.values())


def test_each_dynasty_record_settles_the_dynasty_that_ends(run):
    """Deposits, fee pool and worker rewards of dynasties 0 and 1, recomputed here from
    the blocks (and the aggregator's score transactions) of each dynasty."""
    exp, _, _, _ = run
    chain = exp.nodes["admin"].chain
    ctx = chain.ctx
    node_of = ctx.services.node_of
    agg = ctx.services.address_of(ctx.aggregator)
    p = ctx.params
    low = 1
    paid = 0.0
    for number, height in sorted(_records(chain).items()):
        running = ctx.state.known[number - 1]
        blocks = [chain.store.at_height(h) for h in range(low, height)]
        got = rot.claim_of(chain.store.at_height(height)).record.settlement
        scored = {}
        for b in blocks:
            for tx in b.transactions:
                if tx.kind == "mudfl.score" and tx.sender == agg:
                    scored.setdefault(tx.payload.round, dict(tx.payload.scores))
        assert got.dynasty == number - 1
        assert got.deposits == tuple((m, p.deposit, 0.0) for m in sorted(running.committee))
        assert got.fee_pool == p.tx_fee * sum(len(b.transactions) for b in blocks) > 0
        assert dict(got.fees) == {m: got.fee_pool / p.committee for m in running.committee}
        rewards = {}
        for rnd in sorted(scored):
            total = sum(scored[rnd].values())
            for worker, s in scored[rnd].items():
                rewards[node_of(worker)] = rewards.get(node_of(worker), 0.0) + (
                    s / total * p.round_fee
                )
        assert dict(got.rewards) == pytest.approx(rewards)
        assert sum(r for _, r in got.rewards) == pytest.approx(p.round_fee * len(scored))
        paid += sum(r for _, r in got.rewards)
        low = height + 1
    assert paid > 0  # rounds were scored on chain
    # c004's tampered models score 0: it earns nothing, the honest workers do
    every = st.balances(
        rot.claim_of(chain.store.at_height(h)).record.settlement for h in _records(chain).values()
    )
    assert every.get("c004", 0.0) == 0.0 and every.get("c000", 0.0) > 0


def test_takeover_waits_for_the_dynasty_block_to_be_finalized(run):
    _, calls, _, _ = run
    took = [c for c in calls if c[4]]
    waited = [c for c in calls if not c[4]]
    assert {(c[0], c[3]) for c in took} == {(n, h) for n in {c[0] for c in calls} for h in (10, 20)}
    assert all(fin >= height for _, _, fin, height, _ in took)
    assert waited and all(fin < height for _, _, fin, height, _ in waited)


def _forge(exp, chain, height, change):
    """The stored block at ``height`` with its dynasty record changed, re-signed."""
    block = chain.store.at_height(height)
    claim = rot.claim_of(block)
    extra = dataclasses.replace(claim, record=change(claim.record))
    proposer = chain.ctx.services.node_of(block.header.proposer)
    forged = Block.create(
        block.parent,
        block.height,
        block.header.proposer,
        block.header.timestamp,
        block.transactions,
        extra,
    )
    return sign(forged, exp.services[proposer].keys), proposer


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda r: dataclasses.replace(r, seed=b"\x07" * 32), "seed"),
        (lambda r: dataclasses.replace(r, seed_fallback=True), "differs"),
        (lambda r: dataclasses.replace(r, committee=tuple(reversed(r.committee))), "drawn"),
        (lambda r: dataclasses.replace(r, credits=((r.credits[0][0], 9), *r.credits[1:])), "cred"),
        (lambda r: None, "carries no record"),
        (
            lambda r: dataclasses.replace(
                r, settlement=dataclasses.replace(r.settlement, fee_pool=1.0)
            ),
            "settlement",
        ),
    ],
)
def test_verify_block_refuses_a_bad_dynasty_record(run, change, match):
    """Feed node c000 (set back to dynasty 1, in the slot of block 20) a re-signed block 20
    whose record was changed."""
    exp, _, _, _ = run
    node = exp.nodes["c000"]
    chain, state = node.chain, node.ctx.state
    saved = (state.current, chain.slot, chain.parent, chain.slot_blocks, node.now)
    genuine = chain.store.at_height(20)
    claim = rot.claim_of(genuine)
    try:
        state.current = state.known[1]
        chain.slot, chain.parent, chain.slot_blocks = claim.slot, chain.store.at_height(19), {}
        node.now = claim.slot * chain.slot_length + 1.5 * chain.params.slot
        forged, proposer = _forge(exp, chain, 20, change)
        with pytest.raises(Reject, match=match) as err:
            chain.on_block(BlockMsg(claim.slot, forged), proposer)
        assert err.value.reason == "bad_dynasty_record"
        # the genuine block passes the same checks (it is stored already)
        chain.slot_blocks = {}
        chain.on_block(BlockMsg(claim.slot, genuine), proposer)
    finally:
        state.current, chain.slot, chain.parent, chain.slot_blocks, node.now = saved


def test_a_randshare_transaction_outside_its_window_is_refused():
    params = MuDflParams(epoch_size=2, dynasty_epochs=5)
    win = rot.Window(1, 10, 2, 4, 3, 3)
    assert [win.phase(s) for s in (4, 5, 7, 8, 10, 11)] == [
        None,
        rot.DEAL,
        rot.DEAL,
        rot.REVEAL,
        rot.REVEAL,
        None,
    ]
    assert rot.trigger_height(1, params) == 2 and rot.record_number(20, params) == 2
    assert rot.record_number(19, params) is None
    deal = rs.RandShareDeal(1, b"a" * 32, (), (), ())
    tx = Transaction(b"a" * 32, 0.0, rs.DEAL_TX, deal, 1)
    assert rot.window_problem(tx, 5, 5, win) is None
    assert "outside its window" in rot.window_problem(tx, 8, 8, win)
    assert "outside any RandShare run" in rot.window_problem(tx, 10, 6, win)
    assert "outside any RandShare run" in rot.window_problem(tx, 5, 5, None)
    with pytest.raises(ValueError, match="cannot hold RandShare"):
        MuDflParams(epoch_size=1, dynasty_epochs=8)


def test_a_restarted_node_restores_its_dynasties(run, tmp_path):
    exp, _, config, run_dir = run
    before = {
        n: (node.ctx.dynasty, node.chain.vcf.rule.committee, node.chain.vcf.finalized)
        for n, node in exp.nodes.items()
    }
    again = build_experiment(config, run_dir)
    try:
        for n, node in again.nodes.items():
            node.handle(Start(CUT))
            got = (node.ctx.dynasty, node.chain.vcf.rule.committee, node.chain.vcf.finalized)
            assert got == before[n], n
            assert node.ctx.state.heights == {1: 10, 2: 20}
    finally:
        again.close()


# ---------------------------------------------------------------- slashing evidence


@pytest.fixture
def short_run(tmp_path):
    config = parse_config({"name": "mudfl-slash", **kit.BASE, **kit.CONFORMANCE_CONFIGS["mudfl"]})
    exp = kit.simulate(config, tmp_path / "run", 10.0)
    yield exp
    exp.close()


def _problem(node, ev):
    return contents.evidence_problem(node.gate.verifier, ev, node.chain.credit_table, 64)


def _fallback_pair(exp, observer):
    """Two different fallback blocks of the rule-iii proposer for the observer's next
    slot (an equivocation), with the observer moved into that slot's fallback window."""
    node = exp.nodes[observer]
    chain = node.chain
    slot = chain.slot + 1
    chain.slot, chain.parent, chain.slot_blocks = slot, chain.store.head(), {}
    node.now = slot * chain.slot_length + 1.5 * chain.params.slot
    height = chain.parent.height + 1
    address = poc.fallback_proposer(node.ctx.committee_addresses(), height)
    proposer = node.ctx.services.node_of(address)
    claim = PocClaim(slot, 0, node.ctx.dynasty.credit_of(proposer), True)
    keys = exp.services[proposer].keys
    pair = [
        sign(Block.create(chain.parent.hash, height, address, node.now + d, (), claim), keys)
        for d in (0.0, 0.1)
    ]
    return node, proposer, pair


def test_an_equivocation_becomes_a_slashing_evidence_transaction(short_run):
    exp = short_run
    committee = exp.nodes["admin"].ctx.dynasty.committee
    observer = committee[0]
    node, proposer, (first, second) = _fallback_pair(exp, observer)
    if proposer == observer:
        observer = committee[1]
        node, proposer, (first, second) = _fallback_pair(exp, observer)
    chain = node.chain
    chain.on_block(BlockMsg(chain.slot, first), proposer)
    with pytest.raises(Reject, match="two blocks"):
        chain.on_block(BlockMsg(chain.slot, second), proposer)
    evidence = [tx for tx in chain.pool.values() if tx.kind == SLASH_TX]
    assert len(evidence) == 1 and chain.outbox == evidence
    ev = evidence[0].payload
    assert ev.kind == EQUIVOCATION and ev.offender == first.header.proposer
    assert _problem(node, ev) is None
    # the evidence goes to the committee at the next slot's start
    effects = chain.begin_slot(chain.slot + 1)
    sent = [e for e in effects if isinstance(e, Broadcast) and isinstance(e.message, TxMsg)]
    assert any(e.message.tx == evidence[0] for e in sent) and chain.outbox == []
    # forged evidence is refused: one header twice, or a header of another signer
    same = dataclasses.replace(ev, headers=(ev.headers[0], ev.headers[0]))
    assert "not two different blocks" in _problem(node, same)
    other = dataclasses.replace(ev, offender=b"\x01" * 32)
    assert "not both signed" in _problem(node, other)
    # verify_block refuses a block that carries forged evidence
    keys = exp.services[observer].keys
    bad = sign(Transaction(keys.address, 0.0, SLASH_TX, same, 0), keys)
    head = chain.store.head()
    claim = PocClaim(chain.slot, 0, 1000, True)
    block = Block.create(head.hash, head.height + 1, keys.address, node.now, (bad,), claim)
    with pytest.raises(Reject, match="not two different blocks") as err:
        contents.check(chain, block, claim, observer)
    assert err.value.reason == "bad_evidence"


def test_slashing_evidence_costs_credit_once_per_offence(short_run):
    exp = short_run
    """Two reporters of one equivocation (evidence is checked in verify_block; here
    only the count): the offender loses credit_penalty once."""
    node = exp.nodes["admin"]
    rotation = node.ctx.rotation
    chain = node.chain
    offender = node.ctx.dynasty.committee[0]
    addr = node.ctx.services.address_of(offender)
    ev = SlashEvidence(EQUIVOCATION, addr, (chain.store.head().header,) * 2)
    reporters = [n for n in node.ctx.dynasty.committee if n != offender][:2]
    txs = tuple(
        sign(Transaction(exp.services[r].keys.address, 0.0, SLASH_TX, ev, 0), exp.services[r].keys)
        for r in reporters
    )
    head = chain.store.head()
    block = Block.create(head.hash, head.height + 1, head.header.proposer, 99.0, txs, None)
    chain.store.append(
        sign(block, exp.services[node.ctx.services.node_of(head.header.proposer)].keys)
    )
    table = rotation.next_credits(block.hash, node.ctx.dynasty, 1)
    base = rotation.next_credits(head.hash, node.ctx.dynasty, 1)
    assert table[offender] == max(0, base[offender] - node.ctx.params.credit_penalty)
    assert all(table[c] == base[c] for c in table if c not in (offender, head_proposer(node, head)))


def test_slashing_evidence_slashes_the_deposit_in_the_settlement(short_run):
    exp = short_run
    node = exp.nodes["admin"]
    chain, rotation = node.chain, node.ctx.rotation
    offender = node.ctx.dynasty.committee[0]
    addr = node.ctx.services.address_of(offender)
    head = chain.store.head()
    ev = SlashEvidence(EQUIVOCATION, addr, (head.header,) * 2)
    reporter = node.ctx.dynasty.committee[1]
    keys = exp.services[reporter].keys
    tx = sign(Transaction(keys.address, 0.0, SLASH_TX, ev, 0), keys)
    block = Block.create(head.hash, head.height + 1, head.header.proposer, 99.0, (tx,), None)
    chain.store.append(sign(block, exp.services[head_proposer(node, head)].keys))
    got = rotation.settlement(block.hash, node.ctx.dynasty, 1)
    base = rotation.settlement(head.hash, node.ctx.dynasty, 1)
    p = node.ctx.params
    assert base.slashed == () and got.slashed == (offender,)
    assert dict((m, (r, c)) for m, r, c in got.deposits)[offender] == (0.0, p.deposit)
    assert offender not in dict(got.fees)
    # evidence of another dynasty's offence does not slash this dynasty's deposit
    late = dataclasses.replace(ev, headers=(dataclasses.replace(head.header, extra=None),) * 2)
    assert (
        st.offenders(
            [Block(block.header, (dataclasses.replace(tx, payload=late),))],
            0,
            node.ctx.dynasty.committee,
            {addr: offender},
        )
        == set()
    )


def _poc_block(exp, node, proposer, credit):
    """A signed PoC (non-fallback) block of ``proposer`` for ``node``'s next slot, with
    the node moved to that slot's proposal window."""
    chain = node.chain
    slot = chain.slot + 1
    chain.slot, chain.parent, chain.slot_blocks = slot, chain.store.head(), {}
    node.now = slot * chain.slot_length + 0.2 * chain.params.slot
    keys = exp.services[proposer].keys
    claim = PocClaim(slot, 0, credit, False)
    block = Block.create(
        chain.parent.hash, chain.parent.height + 1, keys.address, node.now, (), claim
    )
    return sign(block, keys)


@pytest.mark.parametrize("kind", ["forged_credit", "invalid_proof"])
def test_a_forged_credit_or_invalid_proof_becomes_slashing_evidence(short_run, kind):
    exp = short_run
    committee = exp.nodes["admin"].ctx.dynasty.committee
    observer = committee[0]
    node = exp.nodes[observer]
    table = node.ctx.dynasty
    chosen = None
    for proposer in committee[1:]:
        credit = table.credit_of(proposer) * (4 if kind == "forged_credit" else 1)
        block = _poc_block(exp, node, proposer, credit)
        total = table.total_credit
        if kind == "forged_credit" or not poc.wins(poc.block_proof(block, 64), credit, total, 64):
            chosen = proposer
            break
        node.chain.slot -= 1
    assert chosen is not None, "every member's proof won; pick another slot"
    with pytest.raises(Reject) as err:
        node.chain.on_block(BlockMsg(node.chain.slot, block), chosen)
    assert err.value.reason == ("forged_credit" if kind == "forged_credit" else "bad_proof")
    evidence = [tx.payload for tx in node.chain.pool.values() if tx.kind == SLASH_TX]
    assert len(evidence) == 1 and evidence[0].kind == kind
    assert evidence[0].offender == block.header.proposer and evidence[0].dynasty == 0
    assert _problem(node, evidence[0]) is None
    # the same claim about an honest header is refused
    honest = _poc_block(exp, node, chosen, table.credit_of(chosen))
    fake = dataclasses.replace(evidence[0], headers=(honest.header,))
    if kind == "forged_credit":
        assert "is the table's" in _problem(node, fake)
    elif poc.wins(poc.block_proof(honest, 64), table.credit_of(chosen), table.total_credit, 64):
        assert "under its threshold" in _problem(node, fake)
    wrong_ids = dataclasses.replace(evidence[0], tx_ids=(b"\x01" * 32,))
    if kind == "invalid_proof":
        assert "tx_root" in _problem(node, wrong_ids)


def head_proposer(node, block):
    return node.ctx.services.node_of(block.header.proposer)


def test_a_double_vote_becomes_a_slashing_evidence_transaction(short_run):
    """At the cut (slot 3, R = 2) the head at height 4 awaits its votes: feed a member
    two votes of one voter for the head and for a sibling block of the same height."""
    exp = short_run
    committee = exp.nodes["admin"].ctx.dynasty.committee
    observer, voter = committee[0], committee[1]
    node = exp.nodes[observer]
    chain = node.chain
    head = chain.store.head()
    source = chain.vcf.highest_committed
    assert head.height == source.height + chain.params.epoch_size == 4  # the setting
    keys = exp.services[voter].keys
    claim = PocClaim(chain.slot, 0, node.ctx.dynasty.credit_of(voter), True)
    sibling = sign(Block.create(head.parent, 4, keys.address, 9.5, (), claim), keys)
    chain.store.append(sibling)
    node.now = chain.slot * chain.slot_length + 2.2 * chain.params.slot

    def vote(target: Block):
        fields = (keys.address, source.hash, 2, target.hash, 4, 0, chain.slot)
        return sign(LinkVote(*fields), keys)

    chain.on_vote(vote(head), voter)
    with pytest.raises(Reject):
        chain.on_vote(vote(sibling), voter)
    evidence = [tx.payload for tx in chain.pool.values() if tx.kind == SLASH_TX]
    assert len(evidence) == 1 and evidence[0].kind == DOUBLE_VOTE
    assert evidence[0].offender == keys.address
    assert _problem(node, evidence[0]) is None
    assert keys.address in chain.slashed
