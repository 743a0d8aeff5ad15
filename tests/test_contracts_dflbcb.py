"""The DFLBCB state contract on every chain backend: each check, with its gas recorded.

Backends: the in-process EVM (py-evm via titanoboa), the project's dev chain behind
JSON-RPC (``fedledger.contracts.rpcserver`` in its own process, through web3), and
ganache 7 (npm; skipped when not installed, marked slow).

Every stage call needs >= F+1 distinct signatures of the current committee over
(chain id, contract, iteration, stage, result hash); these tests feed it good and bad
proofs and requests and read the outcome from receipts, events and views.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from fedledger.contracts import eth
from fedledger.contracts.dflbcb import (
    POINT,
    ContractParams,
    DflbcbContract,
    Genesis,
    Kind,
    Skip,
    Stage,
)
from fedledger.contracts.localchain import EVM_VERSIONS, find_ganache, start_chain
from fedledger.contracts.pyevm import PyEvmBackend

ETH = 10**18
MODEL0 = b"\x11" * 32


GANACHE_MISSING = (
    "ganache not installed: `npm install --prefix .npm-tools ganache@7` in the checkout"
)


@pytest.fixture(
    scope="module",
    params=[
        "pyevm",
        "devchain",
        pytest.param("ganache", marks=[
            pytest.mark.slow,
            pytest.mark.skipif(find_ganache() is None, reason=GANACHE_MISSING),
        ]),
    ],
)
def make_chain(request: pytest.FixtureRequest) -> Iterator[Callable[[], Any]]:
    """A factory of chains (backends) of one kind; RPC kinds share one node process."""
    if request.param == "pyevm":
        yield lambda: PyEvmBackend(chain_id=1337)
        return
    from fedledger.contracts.rpc import RpcBackend

    with start_chain(request.param, chain_id=1337) as node:
        yield lambda: RpcBackend(node.url, evm_version=EVM_VERSIONS[node.kind])


@dataclass
class World:
    chain: Any
    c: DflbcbContract
    init: eth.EthKey
    members: list[eth.EthKey]
    nodes: list[eth.EthKey]

    @property
    def chain_id(self) -> int:
        return self.chain.chain_id

    def proof(self, keys: list[eth.EthKey], stage: Stage, h: bytes, it: int | None = None,
              chain_id: int | None = None, contract: str | None = None) -> list[eth.EcdsaSig]:
        return eth.make_proof(
            keys, self.chain_id if chain_id is None else chain_id, contract or self.c.address,
            self.c.iteration() if it is None else it, int(stage), h,
        )

    def req(self, key: eth.EthKey, stage: Stage, value: int) -> eth.SignedRequest:
        return eth.sign_request(key, self.chain_id, self.c.address, self.c.iteration(),
                                int(stage), value)

    def elect(self, elected: list[eth.EthKey], pledge: int = 2 * ETH) -> object:
        cands = [self.req(k, Stage.ELECT, pledge) for k in elected]
        members = [k.address for k in elected]
        h = eth.elect_result_hash(members, cands)
        return self.c.submit_elect(self.members[0].address, members, cands, h,
                                   self.proof(self.members[:2], Stage.ELECT, h))

    def pledge(self, who: list[eth.EthKey], amount: int = ETH // 2) -> object:
        reqs = [self.req(k, Stage.PLEDGE, amount) for k in who]
        h = eth.requests_result_hash(reqs)
        return self.c.submit_pledge(self.members[0].address, reqs, h,
                                    self.proof(self.members[:2], Stage.PLEDGE, h))

    def commit(self, who: list[eth.EthKey]) -> object:
        subs = [self.req(k, Stage.COMMIT, int.from_bytes(eth.keccak256(k.address.encode())))
                for k in who]
        h = eth.requests_result_hash(subs)
        return self.c.submit_commit(self.members[0].address, subs, h,
                                    self.proof(self.members[:2], Stage.COMMIT, h))

    def work(self, scores: list[tuple[eth.EthKey, int]], acc: int = 900,
             alive: list[eth.EthKey] | None = None, signers: int = 2) -> object:
        entries = [eth.ScoreEntry(k.address, s) for k, s in scores]
        alive_addrs = [k.address for k in (self.members if alive is None else alive)]
        h = eth.work_result_hash(entries, b"\x33" * 32, acc, alive_addrs)
        return self.c.submit_work(self.members[0].address, entries, b"\x33" * 32, acc,
                                  alive_addrs, h, self.proof(self.members[:signers],
                                                             Stage.WORK, h))


def _world(make_chain: Callable[[], Any], n_members: int = 4, n_nodes: int = 6,
           **params: int) -> World:
    chain = make_chain()
    init = eth.EthKey.from_seed(1, "initiator")
    members = [eth.EthKey.from_seed(1, f"member{i}") for i in range(n_members)]
    nodes = [eth.EthKey.from_seed(1, f"node{i}") for i in range(n_nodes)]
    for k in [init, *members, *nodes]:
        chain.fund(k.address, 100 * ETH)
    c = DflbcbContract.deploy(chain, init.address)
    g = Genesis(committee=tuple(k.address for k in members), model_hash=MODEL0,
                params=ContractParams(**params), prize_fund=10 * ETH)
    assert c.initialize(init.address, g).status
    for k in [*members, *nodes]:
        assert c.register(k.address, 5 * ETH).status
    return World(chain, c, init, members, nodes)


@pytest.fixture
def w(make_chain: Callable[[], Any]) -> World:
    return _world(make_chain)


def _events(receipt: object, name: str) -> list:
    return [log for log in receipt.logs if log.event == name]


# ------------------------------------------------------------------ initialize and funds


def test_initialize_once_by_the_initiator_and_broadcasts_params(w: World, record_property):
    assert w.c.stage() is Stage.ELECT and w.c.iteration() == 1
    assert w.c.committee() == [k.address for k in w.members]
    again = w.c.initialize(w.init.address, Genesis(committee=tuple(w.c.committee()),
                                                   model_hash=MODEL0))
    assert not again.status and again.error == "already initialized"
    fresh = DflbcbContract.deploy(w.chain, w.init.address)
    g = Genesis(committee=tuple(k.address for k in w.members), model_hash=MODEL0)
    assert fresh.initialize(w.nodes[0].address, g).error == "initiator only"
    small = Genesis(committee=tuple(k.address for k in w.members[:3]), model_hash=MODEL0)
    assert fresh.initialize(w.init.address, small).error == "committee needs at least 4 members"
    r = fresh.initialize(w.init.address, g)
    ev = _events(r, "Initialized")[0]
    assert dict(ev.arg("params"))["linear_bps"] == 800 and ev.arg("model_hash") == MODEL0
    record_property("gas_initialize", r.gas_used)


def test_withdraw_takes_only_the_free_pool(w: World):
    k = w.nodes[0]
    assert w.elect(w.nodes[:4]).status  # locks 2 ETH of node0's 5 ETH pool
    assert w.c.pool(k.address) == 3 * ETH
    assert w.c.withdraw(k.address, 4 * ETH).error == "amount above the free pool"
    before = w.chain.balance(k.address)
    assert w.c.withdraw(k.address, 3 * ETH).status
    after = w.chain.balance(k.address)  # less the gas fee where the chain charges one
    assert before + 3 * ETH - 10**16 < after <= before + 3 * ETH and w.c.pool(k.address) == 0


def test_price_curve_average_principle(w: World):
    # curve (0,0) (500,0.1) (800,0.5) (900,1) (950,2) ETH
    assert w.c.view("price_of", 500) == ETH // 10
    assert w.c.view("price_of", 600) == (ETH // 10 + ETH // 2) // 2
    assert w.c.view("price_of", 920) == (ETH + 2 * ETH) // 2
    assert w.c.view("price_of", 999) == 2 * ETH


# ------------------------------------------------------------------ the proof checks


def test_proof_needs_f_plus_one_distinct_current_members(make_chain, record_property):
    w = _world(make_chain, n_members=7)  # F = 2: three signatures
    cands = [w.req(k, Stage.ELECT, 2 * ETH) for k in w.nodes[:4]]
    members = [k.address for k in w.nodes[:4]]
    h = eth.elect_result_hash(members, cands)
    sender = w.members[0].address
    two = w.c.submit_elect(sender, members, cands, h, w.proof(w.members[:2], Stage.ELECT, h))
    assert two.error == "fewer than F+1 signatures"
    outsider = w.proof([*w.members[:2], w.nodes[5]], Stage.ELECT, h)
    assert w.c.submit_elect(sender, members, cands, h, outsider).error == (
        "signer not in the current committee"
    )
    dup = w.proof(w.members[:2], Stage.ELECT, h)
    dup = [dup[0], dup[0], dup[1]]
    assert w.c.submit_elect(sender, members, cands, h, dup).error == "signers not distinct"
    bad_v = [eth.EcdsaSig(v=30, r=s.r, s=s.s) for s in w.proof(w.members[:3], Stage.ELECT, h)]
    assert w.c.submit_elect(sender, members, cands, h, bad_v).error == "unrecoverable signature"
    wrong = w.c.submit_elect(sender, members, cands, b"\x01" * 32,
                             w.proof(w.members[:3], Stage.ELECT, b"\x01" * 32))
    assert wrong.error == "result hash mismatch"
    ok = w.c.submit_elect(sender, members, cands, h, w.proof(w.members[:3], Stage.ELECT, h))
    assert ok.status and w.c.stage() is Stage.PLEDGE
    changed = _events(ok, "StageChanged")[0]
    assert changed.arg("signers") == tuple(
        sorted((k.address for k in w.members[:3]), key=lambda a: int(a, 16)))
    assert w.c.view("proof_digest", 1, 0, h) == eth.proof_digest(w.chain_id, w.c.address, 1, 0, h)
    record_property("gas_submit_elect_7members_4cands", ok.gas_used)


def test_first_proof_wins_and_later_ones_revert(w: World):
    cands = [w.req(k, Stage.ELECT, 2 * ETH) for k in w.nodes[:4]]
    members = [k.address for k in w.nodes[:4]]
    h = eth.elect_result_hash(members, cands)
    first = w.c.submit_elect(w.members[1].address, members, cands, h,
                             w.proof(w.members[:2], Stage.ELECT, h))
    second = w.c.submit_elect(w.members[2].address, members, cands, h,
                              w.proof(w.members[2:4], Stage.ELECT, h))
    assert first.status and not second.status and second.error == "wrong stage"
    assert w.c.view("accepted_by", 1, 0) == w.members[1].address
    assert w.c.view("accepted", 1, 0) == h


@pytest.mark.parametrize("field", ["iteration", "stage", "chain", "contract"])
def test_a_proof_for_another_context_is_refused(w: World, field: str):
    assert w.elect(w.nodes[:4]).status  # now it=1, PLEDGE, committee = nodes[:4]
    committee = w.nodes[:4]
    reqs = [w.req(k, Stage.PLEDGE, ETH // 2) for k in w.nodes[4:]]
    h = eth.requests_result_hash(reqs)
    ctx = {
        "iteration": {"it": 2},
        "stage": {"stage": Stage.ELECT},
        "chain": {"chain_id": w.chain_id + 1},
        "contract": {"contract": "0x" + "ab" * 20},
    }[field]
    stage = ctx.pop("stage", Stage.PLEDGE)
    sigs = w.proof(committee[:2], stage, h, **ctx)
    r = w.c.submit_pledge(committee[0].address, reqs, h, sigs)
    assert not r.status and r.error == "signer not in the current committee"
    good = w.c.submit_pledge(committee[0].address, reqs, h, w.proof(committee[:2], Stage.PLEDGE, h))
    assert good.status


def test_old_committee_cannot_push_transitions_after_handover(w: World):
    assert w.elect(w.nodes[:4]).status
    reqs = [w.req(k, Stage.PLEDGE, ETH // 2) for k in w.nodes[4:]]
    h = eth.requests_result_hash(reqs)
    r = w.c.submit_pledge(w.members[0].address, reqs, h, w.proof(w.members[:4], Stage.PLEDGE, h))
    assert r.error == "signer not in the current committee"


def test_stage_order_is_enforced(w: World):
    reqs = [w.req(k, Stage.PLEDGE, ETH // 2) for k in w.nodes[:2]]
    h = eth.requests_result_hash(reqs)
    r = w.c.submit_pledge(w.members[0].address, reqs, h, w.proof(w.members[:2], Stage.PLEDGE, h))
    assert r.error == "wrong stage"
    r = w.c.submit_commit(w.members[0].address, reqs, h, w.proof(w.members[:2], Stage.COMMIT, h))
    assert r.error == "wrong stage"


def test_f_plus_one_colluders_can_forge_a_transition(w: World):
    """The documented bound (T2): F+1 = 2 of 4 members elect themselves plus two friends
    without any honest member's signature, and the contract cannot tell."""
    evil = [w.members[2], w.members[3], w.nodes[0], w.nodes[1]]
    cands = [w.req(k, Stage.ELECT, 2 * ETH) for k in evil]
    h = eth.elect_result_hash([k.address for k in evil], cands)
    r = w.c.submit_elect(w.members[2].address, [k.address for k in evil], cands, h,
                         w.proof(w.members[2:4], Stage.ELECT, h))
    assert r.status and w.c.committee() == [k.address for k in evil]


# ------------------------------------------------------------------ stage payloads


def test_election_skips_bad_candidates_and_keeps_the_committee_below_four(w: World, make_chain):
    short = _world(make_chain)
    cands = [short.req(k, Stage.ELECT, 2 * ETH) for k in short.nodes[:3]]
    cands.append(short.req(short.nodes[3], Stage.ELECT, 50 * ETH))  # pool holds 5 ETH
    members = [k.address for k in short.nodes[:4]]
    h = eth.elect_result_hash(members, cands)
    r = short.c.submit_elect(short.members[0].address, members, cands, h,
                             short.proof(short.members[:2], Stage.ELECT, h))
    assert r.status
    skipped = _events(r, "RequestSkipped")
    assert [(e.arg("node"), e.arg("reason")) for e in skipped] == [
        (short.nodes[3].address, Skip.SHORT_POOL)]
    assert short.c.committee() == [k.address for k in short.members]
    assert short.c.view("term") == 1 and short.c.pool(short.nodes[0].address) == 5 * ETH
    ok = w.elect(w.nodes[:4])
    assert w.c.committee() == [k.address for k in w.nodes[:4]]
    assert w.c.view("elect_escrow", w.nodes[0].address) == 2 * ETH
    assert _events(ok, "CommitteeElected")[0].arg("term") == 1


def test_batch_pledge_skips_bad_requests_with_events(w: World, record_property):
    assert w.elect(w.members).status
    good = [w.req(k, Stage.PLEDGE, ETH // 2) for k in w.nodes[:3]]
    short = w.req(w.nodes[3], Stage.PLEDGE, 40 * ETH)
    low = w.req(w.nodes[4], Stage.PLEDGE, 1)
    forged = eth.SignedRequest(w.nodes[5].address, ETH // 2, good[0].sig)
    stranger = eth.EthKey.from_seed(9, "stranger")
    unreg = w.req(stranger, Stage.PLEDGE, ETH // 2)
    reqs = [*good, short, low, forged, unreg, good[0]]
    h = eth.requests_result_hash(reqs)
    r = w.c.submit_pledge(w.members[0].address, reqs, h, w.proof(w.members[:2], Stage.PLEDGE, h))
    assert r.status and w.c.stage() is Stage.COMMIT
    reasons = [(e.arg("node"), e.arg("reason")) for e in _events(r, "RequestSkipped")]
    assert reasons == [
        (w.nodes[3].address, Skip.SHORT_POOL), (w.nodes[4].address, Skip.BELOW_MINIMUM),
        (w.nodes[5].address, Skip.BAD_SIGNATURE), (stranger.address, Skip.UNREGISTERED),
        (w.nodes[0].address, Skip.DUPLICATE),
    ]
    announced = _events(r, "ParticipantsAnnounced")[0].arg("nodes")
    assert announced == tuple(k.address for k in w.nodes[:3])
    assert w.c.pool(w.nodes[0].address) == 5 * ETH - ETH // 2
    assert w.c.view("escrow", w.nodes[0].address) == ETH // 2
    record_property("gas_submit_pledge_8reqs", r.gas_used)


def test_commit_records_participants_models_only(w: World, record_property):
    assert w.elect(w.members).status
    assert w.pledge(w.nodes[:3]).status
    r = w.commit([w.nodes[0], w.nodes[1], w.nodes[4]])
    assert r.status and w.c.stage() is Stage.WORK
    assert [(e.arg("node"), e.arg("reason")) for e in _events(r, "RequestSkipped")] == [
        (w.nodes[4].address, Skip.NOT_PARTICIPANT)]
    ann = _events(r, "SubmissionsAnnounced")[0]
    assert ann.arg("nodes") == (w.nodes[0].address, w.nodes[1].address)
    record_property("gas_submit_commit_3subs", r.gas_used)


def test_work_applies_alg6_penalties_rewards_and_advances(make_chain, record_property):
    w = _world(make_chain, elect_times=2)
    assert w.elect(w.members).status
    trainers = w.nodes[:5]
    assert w.pledge(trainers).status
    assert w.commit(trainers[:4]).status  # nodes[4] pledged but never submits
    scores = [(trainers[0], 900), (trainers[1], 880), (trainers[2], 860), (trainers[3], 100)]
    bad = w.work(scores, alive=w.members[:3])
    assert bad.error == "" and bad.status
    got = {(e.arg("node"), e.arg("kind")): e.arg("points") for e in _events(bad, "Rewarded")}
    # Alg 6: median 870; 100 < 0.5 * 870 is malicious; ranks 0 and 1 above the median
    assert got[(trainers[0].address, Kind.QUALITY)] == POINT * 3 // 4
    assert got[(trainers[1].address, Kind.QUALITY)] == POINT * 2 // 4
    assert (trainers[2].address, Kind.QUALITY) not in got
    slashed = {(e.arg("node"), e.arg("kind")): e.arg("amount") for e in _events(bad, "Slashed")}
    params = ContractParams()
    assert slashed[(trainers[3].address, Kind.LOW_QUALITY)] == params.exp_unit
    assert slashed[(trainers[4].address, Kind.NO_MODEL)] == (ETH // 2) * 800 // 10000
    assert slashed[(w.members[3].address, Kind.SILENT)] == params.exp_unit
    assert got[(w.members[0].address, Kind.MASTER)] == (100 + 9) * POINT // 100
    assert got[(w.members[0].address, Kind.WORK)] == 2 * POINT
    assert (w.members[0].address, Kind.SUBMIT) in got  # Alg 4 for the submitter
    assert w.c.iteration() == 2 and w.c.stage() is Stage.PLEDGE
    assert w.c.view("escrow", trainers[0].address) == 0
    assert w.c.view("global_acc", 1) == 900 and w.c.view("global_price", 1) == ETH
    assert w.c.view("avg_accuracy", trainers[3].address) == 100
    record_property("gas_submit_work_4scores", bad.gas_used)
    # second iteration: the repeat offender pays 2x; elect_times = 2 returns to ELECT
    assert w.pledge(trainers[:4]).status and w.commit(trainers[:4]).status
    again = w.work(scores)
    slashed = {(e.arg("node"), e.arg("kind")): e.arg("amount") for e in _events(again, "Slashed")}
    assert slashed[(trainers[3].address, Kind.LOW_QUALITY)] == 2 * params.exp_unit
    assert w.c.stage() is Stage.ELECT and w.c.iteration() == 3


def test_work_refuses_unsorted_or_unknown_scores(w: World):
    assert w.elect(w.members).status
    assert w.pledge(w.nodes[:3]).status and w.commit(w.nodes[:2]).status
    assert w.work([(w.nodes[1], 500), (w.nodes[0], 900)]).error == (
        "scores not in descending order")
    assert w.work([(w.nodes[2], 900)]).error == "score for a node without a model"
    assert w.work([(w.nodes[0], 900), (w.nodes[0], 900)]).error == "node scored twice"


def test_settlement_pays_the_round_pool_by_points(w: World):
    assert w.elect(w.members).status
    assert w.pledge(w.nodes[:2]).status and w.commit(w.nodes[:2]).status
    pools = {k.address: w.c.pool(k.address) for k in [*w.members, *w.nodes[:2]]}
    escrow_before = w.c.view("prize_escrow")
    r = w.work([(w.nodes[0], 950), (w.nodes[1], 900)], acc=950)
    settled = _events(r, "Settled")[0]
    assert settled.arg("pool") == 2 * ETH  # price(950) with nothing slashed
    gained = sum(w.c.pool(a) - pools[a] for a in pools) - 2 * (ETH // 2)  # escrow returned
    assert 0 < 2 * ETH - gained < len(pools)  # all paid out, up to rounding dust
    assert w.c.view("prize_escrow") == escrow_before - gained
    assert w.c.view("total_points") == settled.arg("total_points")


def test_contract_price_matches_the_python_mirror(w: World):
    from fedledger.protocols.dflbcb.rewards import price_of

    g = Genesis(committee=(), model_hash=MODEL0)
    for acc in range(0, 1001, 47):
        assert w.c.view("price_of", acc) == price_of(acc, list(g.curve_x), list(g.curve_y))
