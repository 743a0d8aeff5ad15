"""PoS-BFL rules, fed events directly: single devices, no simulator."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from fedledger.assembly.plugins import registries
from fedledger.assembly.services import make_genesis, node_keys, open_node_services
from fedledger.ledger.records import Block, Transaction, Vote, record_id, sign
from fedledger.protocols.base import (
    BlobReceived,
    Broadcast,
    EvalJob,
    EvalResult,
    FetchBlob,
    JobFinished,
    MessageReceived,
    RunJob,
    Start,
    TimerFired,
    TrainJob,
    TrainResult,
    TrainSettings,
)
from fedledger.protocols.posbfl.chainstate import LedgerState, rebuild
from fedledger.protocols.posbfl.messages import (
    NEGATIVE,
    POSITIVE,
    REWARD_MINER,
    REWARD_VALIDATE,
    REWARD_VERIFY,
    REWARD_WORKER,
    WORKER_TX,
    CandidateBlock,
    Outcome,
    RoundRecord,
    VoteBatch,
    WorkerTxMsg,
    WorkerUpdate,
)
from fedledger.protocols.posbfl.params import PosBflParams
from fedledger.protocols.posbfl.rewards import round_rewards, tally
from fedledger.protocols.posbfl.roles import assign_roles, associated_validator, role_counts
from fedledger.protocols.posbfl.selection import find_nonce, pick_pos, pick_pow, seal_ok
from fedledger.protocols.posbfl.validator import vote_value
from setupkit import make_setup

DIM = 6
SAMPLES = 40


class Net:
    """Ten devices with keys, one genesis and their own stores under ``root``."""

    def __init__(self, root: Path, faults: dict[str, tuple[str, ...]] | None = None, **params):
        reg = registries()["protocol"]
        values = {"workers": 5, "validators": 3, "miners": 2, "local_epochs": 2, **params}
        self.params = reg.params("posbfl", values)
        proto = reg.get("posbfl").factory(self.params)
        self.plans = list(proto.plan(10, 0))
        self.keys = node_keys(self.plans, 0)
        genesis = make_genesis(self.keys, "posbfl unit test")
        self.services = {
            p.node_id: open_node_services(p.node_id, root / p.node_id, self.keys, genesis)
            for p in self.plans
        }
        self.devices = {}
        for p in self.plans:
            setup = make_setup(
                plan=p,
                all_nodes=tuple(self.plans),
                seed=0,
                train=TrainSettings(epochs=2, lr=0.05, batch_size=10),
                initial_weights=np.zeros(DIM, np.float32),
                num_train_samples=SAMPLES,
                params=self.params,
                rounds=5,
                faults=(faults or {}).get(p.node_id, ()),
                services=self.services[p.node_id],
            )
            self.devices[p.node_id] = proto.create_node(setup)
        self.roles = assign_roles(tuple(sorted(self.devices)), role_counts(self.params, 10), 0, 1)

    def close(self):
        for svc in self.services.values():
            svc.ledger.close()

    def addr(self, node: str) -> bytes:
        return self.keys[node].address

    def worker_tx(self, worker: str, weights: np.ndarray, rnd: int = 1) -> Transaction:
        """The worker stores ``weights`` and signs its worker-transaction."""
        ctx = self.devices[worker].ctx
        ref = ctx.blobs.store(weights.astype(np.float32), SAMPLES)
        update = WorkerUpdate(rnd, ref, 2, float(2 * SAMPLES))
        return sign(Transaction(self.addr(worker), 1.0, WORKER_TX, update, rnd), self.keys[worker])

    def vote(self, voter: str, tx: Transaction, value: int, rnd: int = 1) -> Vote:
        return sign(Vote(self.addr(voter), record_id(tx), value, rnd, 2.0), self.keys[voter])


@pytest.fixture
def net(tmp_path):
    n = Net(tmp_path)
    yield n
    n.close()


def effects_of(effects, kind):
    return [e for e in effects if isinstance(e, kind)]


# ---------------------------------------------------------------- roles


def test_roles_rotate_and_every_device_computes_the_same():
    params = PosBflParams(workers=12, validators=5, miners=3)
    devices = tuple(f"d{i:03d}" for i in range(20))
    counts = role_counts(params, 20)
    rounds = [assign_roles(devices, counts, 7, r) for r in range(1, 11)]
    assert rounds[0] == assign_roles(devices, counts, 7, 1)
    for roles in rounds:
        assert (len(roles.workers), len(roles.validators), len(roles.miners)) == (12, 5, 3)
        assert set(roles.workers) | set(roles.validators) | set(roles.miners) == set(devices)
    assert len({r.miners for r in rounds}) > 1
    assert associated_validator(rounds[0], rounds[0].workers[0], 7) in rounds[0].validators


def test_role_counts_that_do_not_fit_the_devices_are_refused():
    from fedledger.errors import ConfigError

    with pytest.raises(ConfigError, match=r"must equal nodes\.count = 19"):
        role_counts(PosBflParams(workers=12, validators=5, miners=3), 19)
    fractions = role_counts(PosBflParams(workers=0, validators=0, miners=0), 20)
    assert (fractions.workers, fractions.validators, fractions.miners) == (12, 5, 3)


# ---------------------------------------------------------------- validator


@pytest.mark.parametrize("rule", ["paper", "reference"])
def test_validator_votes_negative_on_a_noisy_update_and_positive_on_an_honest_one(tmp_path, rule):
    net = Net(tmp_path, validation=rule)
    try:
        roles = net.roles
        validator = roles.validators[0]
        device = net.devices[validator]
        start = device.handle(Start(0.0))
        (global_eval,) = [e for e in effects_of(start, RunJob) if isinstance(e.job, EvalJob)]
        # paper: a good global model; reference: a poor one, and a good reference model
        global_acc = 0.80 if rule == "paper" else 0.10
        device.handle(JobFinished(1.0, global_eval.job_id, EvalResult(global_acc, 0.5, 20)))
        trains = [e for e in effects_of(start, RunJob) if isinstance(e.job, TrainJob)]
        assert len(trains) == (rule == "reference")
        for train in trains:
            out = device.handle(
                JobFinished(1.0, train.job_id, TrainResult(np.ones(DIM, np.float32), 30, 0.1))
            )
            (ref_eval,) = effects_of(out, RunJob)
            device.handle(JobFinished(1.5, ref_eval.job_id, EvalResult(0.85, 0.4, 20)))
        honest, noisy = roles.workers[0], roles.workers[1]
        rng = np.random.default_rng(0)
        accuracy = {}
        for worker, acc in ((honest, 0.85), (noisy, 0.10)):
            tx = net.worker_tx(worker, rng.normal(size=DIM))
            out = device.handle(MessageReceived(2.0, worker, WorkerTxMsg(1, tx)))
            (fetch,) = effects_of(out, FetchBlob)
            assert fetch.source == worker
            forwards = effects_of(out, Broadcast)
            assert forwards and set(forwards[0].to) == set(roles.validators) - {validator}
            data = net.services[worker].blobs.get(fetch.cid)
            (job,) = effects_of(device.handle(BlobReceived(3.0, fetch.cid, worker, data)), RunJob)
            device.handle(JobFinished(4.0, job.job_id, EvalResult(acc, 1.0, 20)))
            accuracy[record_id(tx)] = acc
        out = device.handle(TimerFired(net.params.vote_at, "vote"))
        (send,) = effects_of(out, Broadcast)
        assert set(send.to) == set(roles.miners)
        batch = send.message
        assert isinstance(batch, VoteBatch)
        votes = {v.target: v.value for v in batch.votes}
        assert votes == {t: POSITIVE if a > 0.5 else NEGATIVE for t, a in accuracy.items()}
        assert set(batch.report.payload.checked) == set(accuracy)
    finally:
        net.close()


def test_vote_rules_paper_and_reference():
    # Algorithm 1: only the drop from the previous global model counts.
    assert vote_value(0.10, 0.09, 0.9, 0.08, "paper") == POSITIVE
    assert vote_value(0.90, 0.81, None, 0.08, "paper") == NEGATIVE
    assert vote_value(0.90, 0.83, None, 0.08, "paper") == POSITIVE
    # reference: a poor global model does not excuse a noisy update.
    assert vote_value(0.10, 0.09, 0.9, 0.08, "reference") == NEGATIVE
    assert vote_value(0.10, 0.85, 0.9, 0.08, "reference") == POSITIVE
    assert vote_value(0.95, 0.86, 0.5, 0.08, "reference") == NEGATIVE
    assert vote_value(0.50, 0.45, None, 0.08, "reference") == POSITIVE


def test_a_forwarded_transaction_from_a_non_validator_and_a_bad_blob_are_refused(net):
    roles = net.roles
    validator = roles.validators[0]
    device = net.devices[validator]
    device.handle(Start(0.0))
    worker = roles.workers[0]
    tx = net.worker_tx(worker, np.ones(DIM))
    out = device.handle(MessageReceived(1.0, roles.miners[0], WorkerTxMsg(1, tx, True)))
    assert out == [] and device.ctx.gate.counts["wrong_role"] == 1
    (fetch,) = effects_of(
        device.handle(MessageReceived(1.0, worker, WorkerTxMsg(1, tx))), FetchBlob
    )
    other = net.devices[worker].ctx.blobs.store(np.zeros(DIM, np.float32), SAMPLES)
    wrong = net.services[worker].blobs.get(other.cid)
    assert device.handle(BlobReceived(2.0, fetch.cid, worker, wrong)) == []
    assert device.ctx.gate.counts["bad_blob"] == 1


# ---------------------------------------------------------------- miner


def test_miner_block_holds_exactly_the_verified_votes(net):
    roles = net.roles
    miner = roles.miners[0]
    device = net.devices[miner]
    device.handle(Start(0.0))
    w1, w2 = roles.workers[:2]
    t1, t2 = net.worker_tx(w1, np.ones(DIM)), net.worker_tx(w2, np.zeros(DIM))
    v1, v2 = roles.validators[:2]
    good = [net.vote(v1, t1, POSITIVE), net.vote(v1, t2, NEGATIVE)]
    forged = dataclasses.replace(net.vote(v1, t2, POSITIVE), timestamp=9.0)  # signature broken
    report1 = net.devices[v1].ctx.sign(
        Transaction(
            net.addr(v1), 2.0, "posbfl.validator", _report(1, (record_id(t1), record_id(t2))), 1
        )
    )
    batch = VoteBatch(1, report1, (*good, forged), (t1, t2))
    device.handle(MessageReceived(3.0, v1, batch))
    # a worker pretending to validate: its report and votes are refused
    intruder = roles.workers[2]
    fake_report = net.devices[intruder].ctx.sign(
        Transaction(net.addr(intruder), 2.0, "posbfl.validator", _report(1, ()), 1)
    )
    fake = VoteBatch(1, fake_report, (net.vote(intruder, t1, NEGATIVE),), (t1,))
    device.handle(MessageReceived(3.0, intruder, fake))
    # a real validator whose batch carries a vote signed by a non-validator
    report2 = net.devices[v2].ctx.sign(
        Transaction(net.addr(v2), 2.0, "posbfl.validator", _report(1, (record_id(t1),)), 1)
    )
    mixed = VoteBatch(
        1, report2, (net.vote(v2, t1, POSITIVE), net.vote(intruder, t2, NEGATIVE)), (t1,)
    )
    device.handle(MessageReceived(3.0, v2, mixed))
    out = device.handle(TimerFired(net.params.mine_at, "mine"))
    (bcast,) = effects_of(out, Broadcast)
    block = bcast.message.block
    assert isinstance(bcast.message, CandidateBlock)
    record = block.header.extra
    expected = sorted([*good, net.vote(v2, t1, POSITIVE)], key=lambda v: (v.target, v.voter))
    assert [record_id(v) for v in record.votes] == [record_id(v) for v in expected]
    rejections = device.ctx.gate.rejections()
    assert rejections["bad_signature"] == 1
    assert rejections["wrong_role"] >= 2  # the intruder's report, and its vote in v2's batch
    assert {o.update: (o.positive, o.negative) for o in record.outcomes} == {
        record_id(t1): (2, 0),
        record_id(t2): (0, 1),
    }
    # every honest device accepts the block, a forged copy is refused
    other = net.devices[roles.validators[2]]
    other.handle(Start(0.0))
    other.handle(MessageReceived(4.0, miner, bcast.message))
    assert list(other.candidates.values()) == [block]
    forged_record = dataclasses.replace(
        record, outcomes=tuple(Outcome(o.update, o.worker, 3, 0) for o in record.outcomes)
    )
    head = net.services[miner].ledger.head()
    bad = sign(
        Block.create(head.hash, 1, net.addr(miner), 5.0, block.transactions, forged_record),
        net.keys[miner],
    )
    third = net.devices[roles.validators[1]]
    third.handle(Start(0.0))
    third.handle(MessageReceived(4.0, miner, CandidateBlock(1, bad)))
    assert third.candidates == {} and third.ctx.gate.counts["bad_outcome"] == 1


def _report(rnd, checked):
    from fedledger.protocols.posbfl.messages import ValidatorReport

    return ValidatorReport(rnd, tuple(sorted(checked)))


# ---------------------------------------------------------------- selection


def test_the_legal_block_is_the_highest_stake_miners(net):
    roles = net.roles
    m1, m2 = roles.miners
    observer = net.devices[roles.workers[0]]
    observer.handle(Start(0.0))
    blocks = {}
    for m in (m1, m2):
        net.devices[m].handle(Start(0.0))
        out = net.devices[m].handle(TimerFired(net.params.mine_at, "mine"))
        (bcast,) = effects_of(out, Broadcast)
        blocks[m] = bcast.message.block
        observer.handle(MessageReceived(130.0, m, bcast.message))
    assert set(observer.candidates) == {net.addr(m1), net.addr(m2)}
    observer.state.stakes = {net.addr(m1): 10.0, net.addr(m2): 25.0}
    observer.handle(TimerFired(net.params.select_at, "select"))
    assert net.services[observer.node_id].ledger.head().hash == blocks[m2].hash
    stakes = {net.addr(m1): 30.0, net.addr(m2): 25.0}
    assert pick_pos(list(blocks.values()), stakes, 1) is blocks[m1]
    tied = pick_pos(list(blocks.values()), {}, 1)
    assert tied is pick_pos(list(reversed(blocks.values())), {}, 1)


def test_pow_seal_and_selection():
    from fedledger.crypto import KeyPair
    from fedledger.ledger.records import ZERO_HASH

    key = KeyPair.generate("ed25519", b"\x05" * 32)
    blocks = []
    for t in (1.0, 2.0, 3.0):
        record = RoundRecord(1, (), (), ())
        block = Block.create(ZERO_HASH, 1, key.address, t, (), record)
        nonce = find_nonce(block.header, 6)
        sealed = Block.create(
            ZERO_HASH, 1, key.address, t, (), dataclasses.replace(record, nonce=nonce)
        )
        assert seal_ok(sealed, 6)
        blocks.append(sealed)
    assert not seal_ok(blocks[0], 30)
    fewest = min(blocks, key=lambda b: (b.header.extra.nonce, b.hash))
    assert pick_pow(blocks) is fewest


# ---------------------------------------------------------------- rewards and stakes


def test_rewards_follow_eq_1_to_3_and_stakes_add_them_up(net):
    roles = net.roles
    w1, w2 = roles.workers[:2]
    v1, v2 = roles.validators[:2]
    miner = roles.miners[0]
    t1, t2 = net.worker_tx(w1, np.ones(DIM)), net.worker_tx(w2, np.zeros(DIM))
    txs = sorted([t1, t2], key=record_id)
    votes = sorted(
        [
            net.vote(v1, t1, POSITIVE),
            net.vote(v2, t1, POSITIVE),
            net.vote(v1, t2, NEGATIVE),
            net.vote(v2, t2, NEGATIVE),
        ],
        key=lambda v: (v.target, v.voter),
    )
    reports = [
        sign(
            Transaction(
                net.addr(v), 2.0, "posbfl.validator", _report(1, [record_id(t1), record_id(t2)]), 1
            ),
            net.keys[v],
        )
        for v in (v1, v2)
    ]
    outcomes = tally(txs, votes)
    rewards = round_rewards(txs, reports, votes, outcomes, net.addr(miner), 1.0)
    got = {(r.address, r.kind): r.amount for r in rewards}
    le, n = 2, SAMPLES
    assert got == {
        (net.addr(w1), REWARD_WORKER): le * n * 1.0,  # eq. 1, accepted
        (net.addr(v1), REWARD_VERIFY): 2.0,  # eq. 2: two verified transactions
        (net.addr(v1), REWARD_VALIDATE): 2.0,  # ... and two votes
        (net.addr(v2), REWARD_VERIFY): 2.0,
        (net.addr(v2), REWARD_VALIDATE): 2.0,
        (net.addr(miner), REWARD_MINER): 4.0,  # eq. 3: four verified votes
    }
    head = net.services[miner].ledger.head()
    all_txs = tuple(sorted([*txs, *reports], key=record_id))
    block = sign(
        Block.create(
            head.hash,
            1,
            net.addr(miner),
            3.0,
            all_txs,
            RoundRecord(1, tuple(votes), outcomes, rewards),
        ),
        net.keys[miner],
    )
    observer = net.devices[roles.workers[3]]
    observer.handle(Start(0.0))
    observer.handle(MessageReceived(130.0, miner, CandidateBlock(1, block)))
    observer.handle(TimerFired(net.params.select_at, "select"))
    stakes = observer.state.stakes
    assert stakes == {
        net.addr(w1): 80.0,
        net.addr(v1): 4.0,
        net.addr(v2): 4.0,
        net.addr(miner): 4.0,
    }
    assert rebuild(net.services[observer.node_id].ledger, 3).stakes == stakes


def test_blacklisting_after_k_consecutive_negative_rounds(net):
    state = LedgerState(blacklist_rounds=3)
    bad, good = net.addr("d001"), net.addr("d002")

    def block(rnd, accepted_bad):
        outcomes = (
            Outcome(bytes([rnd]) * 32, bad, int(accepted_bad), int(not accepted_bad)),
            Outcome(bytes([rnd + 100]) * 32, good, 1, 0),
        )
        from fedledger.ledger.records import ZERO_HASH

        return Block.create(ZERO_HASH, rnd, ZERO_HASH, 0.0, (), RoundRecord(rnd, (), outcomes, ()))

    assert state.apply(block(1, False)) == ()
    assert state.apply(block(2, False)) == ()
    assert state.apply(block(3, True)) == ()  # an accepted update resets the streak
    assert state.apply(block(4, False)) == ()
    assert state.apply(block(5, False)) == ()
    assert state.apply(block(6, False)) == (bad,)
    assert state.blacklist == {bad}
    # a validator refuses a blacklisted worker's transaction
    roles = net.roles
    device = net.devices[roles.validators[0]]
    device.handle(Start(0.0))
    worker = roles.workers[0]
    device.state.blacklist.add(net.addr(worker))
    tx = net.worker_tx(worker, np.ones(DIM))
    assert device.handle(MessageReceived(1.0, worker, WorkerTxMsg(1, tx))) == []
    assert device.ctx.gate.counts["blacklisted"] == 1


def test_forged_worker_signature_and_reward_claims_are_refused(net):
    roles = net.roles
    device = net.devices[roles.validators[0]]
    device.handle(Start(0.0))
    worker = roles.workers[0]
    tx = net.worker_tx(worker, np.ones(DIM))
    forged = dataclasses.replace(tx, timestamp=7.0)  # signature no longer matches
    assert device.handle(MessageReceived(1.0, worker, WorkerTxMsg(1, forged))) == []
    greedy_update = dataclasses.replace(tx.payload, expected_reward=1e9)
    greedy = sign(dataclasses.replace(tx, payload=greedy_update, signature=b""), net.keys[worker])
    assert device.handle(MessageReceived(1.0, worker, WorkerTxMsg(1, greedy))) == []
    impostor = roles.miners[0]
    theirs = net.worker_tx(impostor, np.ones(DIM))
    assert device.handle(MessageReceived(1.0, impostor, WorkerTxMsg(1, theirs))) == []
    rejections = device.ctx.gate.rejections()
    assert rejections["bad_signature"] == 1
    assert rejections["bad_reward"] == 1
    assert rejections["wrong_role"] == 1


def test_malformed_messages_are_counted_never_raised(net):
    roles = net.roles
    worker = roles.workers[0]
    tx = net.worker_tx(worker, np.ones(DIM))
    vote = net.vote(roles.validators[1], tx, POSITIVE)
    junk = [
        WorkerTxMsg(1, vote),  # a vote where a transaction belongs
        VoteBatch(1, tx, (tx,), (vote,)),  # everything in the wrong place
        CandidateBlock(1, tx),  # not a block
        CandidateBlock(1, net.services[worker].ledger.head()),  # the genesis, again
        WorkerTxMsg(99, tx),  # far future round: dropped
    ]
    for node in (roles.validators[0], roles.miners[0], roles.workers[1]):
        device = net.devices[node]
        device.handle(Start(0.0))
        for message in junk:
            device.handle(MessageReceived(1.0, worker, message))
        device.handle(TimerFired(net.params.vote_at, "vote"))
        device.handle(TimerFired(net.params.mine_at, "mine"))
        device.handle(TimerFired(net.params.select_at, "select"))
        assert sum(device.ctx.gate.rejections().values()) >= 1, node
