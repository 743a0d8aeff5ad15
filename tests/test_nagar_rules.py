"""Nagar's rules as pure functions, and the miners' checks fed records directly: the plan
(consistent, refused when inconsistent or foreign), submissions (unknown plan, wrong step,
unselected device, sample claims, epsilon per phase, the per-device budget), rewards and
the PoW / PoS leader rules."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from fedledger.assembly.services import keys_only_services, node_keys
from fedledger.ledger.records import Block, ModelRef, Transaction, record_id, sign
from fedledger.ledger.verify import Verifier
from fedledger.protocols.kit.gate import REFUSED, Gate
from fedledger.protocols.nagar import Nagar
from fedledger.protocols.nagar.chainstate import ChainState
from fedledger.protocols.nagar.checks import Checks
from fedledger.protocols.nagar.messages import (
    GRAD,
    PLAN,
    PLAN_TX,
    STATS,
    SUBMIT_TX,
    UPDATE,
    StepRecord,
    Submission,
)
from fedledger.protocols.nagar.params import NagarParams
from fedledger.protocols.nagar.rules import (
    make_plan,
    phase_epsilon,
    plan_problems,
    pos_leader,
    rewards_of,
    selected,
    steps_of,
)

SEED = 3


def _world(**overrides):
    params = NagarParams(dp="laplace", epsilon_round=1.0, epsilon_total=1.5, **overrides)
    plans = list(Nagar(params).plan(7, SEED))
    keys = node_keys(plans, SEED)
    svc = keys_only_services("m000", plans, SEED)
    devices = tuple(sorted(keys[p.node_id].address for p in plans if p.role == "device"))
    miners = tuple(sorted(keys[p.node_id].address for p in plans if p.role == "miner"))
    plan = make_plan(
        params, keys["r000"].address, "config", np.zeros(5, np.float32), 3, devices, miners
    )
    gate = Gate(Verifier(svc.directory))
    checks = Checks(gate, svc.node_of, plan)
    plan_tx = sign(Transaction(keys["r000"].address, 0.0, PLAN_TX, plan), keys["r000"])
    state = ChainState(SEED, plan=plan, plan_id=record_id(plan_tx), rnd_seed=99)
    return params, keys, plan, plan_tx, gate, checks, state


def _sub(keys, node, state, step, n=10, eps=0.5):
    sub = Submission(
        state.plan_id,
        step.index,
        step.phase,
        ModelRef("bafyfake", hashlib.sha256(b"x").digest(), n),
        1.0,
        eps,
    )
    return sign(Transaction(keys[node].address, 1.0, SUBMIT_TX, sub), keys[node])


def test_steps_follow_the_optimizer_and_switches() -> None:
    fs = [s.phase for s in steps_of(NagarParams(), 2)]
    assert fs == [PLAN, STATS, GRAD, UPDATE, GRAD, UPDATE]
    fa = [s.phase for s in steps_of(NagarParams(optimizer="fedavg"), 2)]
    assert fa == [PLAN, UPDATE, UPDATE]
    off = NagarParams(s_scaling=False, a_scaling=False)
    assert [s.phase for s in steps_of(off, 1)] == [PLAN, GRAD, UPDATE]


def test_inconsistent_plans_are_named_and_refused() -> None:
    _, keys, plan, plan_tx, gate, checks, _ = _world()
    assert plan_problems(plan) == []
    import dataclasses

    bad = dataclasses.replace(plan, min_updates=99, devices_per_round=50)
    problems = plan_problems(bad)
    assert any("devices_per_round" in p for p in problems)
    assert any("min_updates" in p for p in problems)
    assert checks.plan_tx(plan_tx) == plan
    for wrong in (bad, dataclasses.replace(plan, step_size=9.0)):
        tx = sign(Transaction(keys["r000"].address, 0.0, PLAN_TX, wrong), keys["r000"])
        with pytest.raises(REFUSED):
            checks.plan_tx(tx)
    # a plan signed by someone else than the requester
    forged = sign(Transaction(keys["d000"].address, 0.0, PLAN_TX, plan), keys["d000"])
    with pytest.raises(REFUSED):
        checks.plan_tx(forged)
    assert gate.protocol_counts() == {"bad_plan": 2, "wrong_role": 1}


def test_submissions_are_checked_against_the_plan_and_budget() -> None:
    _, keys, plan, _, gate, checks, state = _world()
    step = steps_of(NagarParams(), 3)[2]  # grad of round 1
    assert step.phase == GRAD and phase_epsilon(plan, GRAD) == 0.5
    chosen = selected(plan, state.rnd_seed, step)
    node = next(p for p in keys if keys[p].address == chosen[0])
    assert checks.submission(_sub(keys, node, state, step), state, step).epsilon == 0.5
    with pytest.raises(REFUSED):
        checks.submission(_sub(keys, node, state, step, eps=0.1), state, step)
    state.epsilon[keys[node].address] = 1.25  # 1.25 + 0.5 > epsilon_total 1.5
    with pytest.raises(REFUSED):
        checks.submission(_sub(keys, node, state, step), state, step)
    state.epsilon.clear()
    state.samples[keys[node].address] = 12  # its stats claim differs from n_k = 10
    with pytest.raises(REFUSED):
        checks.submission(_sub(keys, node, state, step), state, step)
    state.samples.clear()
    wrong_plan = ChainState(SEED, plan=plan, plan_id=b"\x01" * 32, rnd_seed=99)
    with pytest.raises(REFUSED):
        checks.submission(_sub(keys, node, wrong_plan, step), state, step)
    with pytest.raises(REFUSED):
        checks.submission(_sub(keys, node, state, step), state, steps_of(NagarParams(), 3)[3])
    counts = gate.protocol_counts()
    assert counts == {
        "bad_epsilon": 1,
        "over_budget": 1,
        "bad_samples": 1,
        "unknown_plan": 1,
        "wrong_step": 1,
    }


def test_unselected_devices_are_refused() -> None:
    params, keys, plan, _, gate, checks, state = _world(devices_per_round=2)
    step = steps_of(params, 3)[2]
    chosen = selected(plan, state.rnd_seed, step)
    assert len(chosen) == 2 and selected(plan, state.rnd_seed, step) == chosen
    other = next(p for p in keys if p.startswith("d") and keys[p].address not in chosen)
    with pytest.raises(REFUSED):
        checks.submission(_sub(keys, other, state, step), state, step)
    assert gate.protocol_counts() == {"wrong_role": 1}
    stats = steps_of(params, 3)[1]
    assert stats.phase == STATS and len(selected(plan, state.rnd_seed, stats)) == 4


def test_rewards_are_by_samples_and_block() -> None:
    _, keys, plan, _, _, _, state = _world()
    step = steps_of(NagarParams(), 3)[3]
    txs = [_sub(keys, "d000", state, step, n=30), _sub(keys, "d001", state, step, n=10)]
    rewards = rewards_of(plan, txs, keys["m000"].address)
    amounts = {(r.address, r.kind): r.amount for r in rewards}
    assert amounts[(keys["d000"].address, "data")] == pytest.approx(
        3 * amounts[(keys["d001"].address, "data")]
    )
    assert amounts[(keys["m000"].address, "block")] == plan.reward_block


def test_pos_leader_follows_stake() -> None:
    _, _keys, plan, _, _, _, _ = _world(consensus="pos")
    m0, m1 = sorted(plan.miners)
    wins = {m0: 0, m1: 0}
    for h in range(200):
        wins[pos_leader(plan, {m0: 9.0}, bytes([h % 256]) * 32, h + 1)] += 1
    assert wins[m0] > 3 * wins[m1] > 0  # stakes 10 : 1


def test_a_block_with_forged_rewards_is_refused() -> None:
    _, keys, plan, plan_tx, gate, checks, _state = _world(consensus="pos")
    genesis = keys_only_services("m000", list(Nagar(NagarParams()).plan(7, SEED)), SEED).genesis
    empty = ChainState(SEED)
    empty.times.append(genesis.header.timestamp)
    step = steps_of(NagarParams(), 3)[0]
    leader = pos_leader(plan, {}, genesis.hash, 1)
    name = next(p for p in keys if keys[p].address == leader)
    rec = StepRecord(1, PLAN, record_id(plan_tx), rewards_of(plan, (plan_tx,), leader))
    good = sign(Block.create(genesis.hash, 1, leader, 1.0, (plan_tx,), rec), keys[name])
    checks.block(good, genesis.header, empty, step)
    import dataclasses

    forged = dataclasses.replace(rec, rewards=())
    bad = sign(Block.create(genesis.hash, 1, leader, 1.0, (plan_tx,), forged), keys[name])
    with pytest.raises(REFUSED):
        checks.block(bad, genesis.header, empty, step)
    assert gate.protocol_counts() == {"bad_reward": 1}
