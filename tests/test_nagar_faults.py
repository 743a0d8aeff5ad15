"""Nagar under faults: wrong plan or step, implausible sample counts and duplicate
submissions are refused by the miners with counted reasons; a miner, or a committee
member with t < m, killed halfway through the run does not stop it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from fedledger.assembly.config import parse_config
from fedledger.experiment.runner import run_experiment
from fedledger.protocols.kit.gate import REFUSED
from fedledger.protocols.nagar.faults import (
    DUPLICATE_SUBMISSION,
    INFLATE_SAMPLES,
    INFLATION,
    WRONG_PLAN,
    WRONG_ROUND,
    tamper,
)
from fedledger.protocols.nagar.messages import GRAD, STATS
from fedledger.protocols.nagar.params import NagarParams
from fedledger.protocols.nagar.rules import (
    plan_problems,
    pos_leader,
    pos_ranking,
    selected,
    steps_of,
)
from test_nagar_rules import _sub, _world


def _submission_of(tx):
    return tx.payload


def test_sample_counts_must_be_plausible_against_local_time() -> None:
    _, keys, plan, _, gate, checks, state = _world(max_sample_rate=100.0)
    assert plan.max_sample_rate == 100.0
    steps = steps_of(NagarParams(), 3)
    grad, stats = steps[2], steps[1]
    assert grad.phase == GRAD and stats.phase == STATS
    node = next(p for p in keys if keys[p].address == selected(plan, state.rnd_seed, grad)[0])
    # _sub claims t_local = 1 s: 100 samples are plausible at 100 per second, 101 are not
    assert checks.submission(_sub(keys, node, state, grad, n=100), state, grad)
    with pytest.raises(REFUSED):
        checks.submission(_sub(keys, node, state, grad, n=101), state, grad)
    # statistics (feature counts) carry no work to be rewarded: no timing check
    assert checks.submission(_sub(keys, node, state, stats, n=500, eps=0.0), state, stats)
    assert gate.protocol_counts() == {"implausible_samples": 1}
    assert plan_problems(dataclasses.replace(plan, max_sample_rate=0.0))


def test_tamper_changes_only_what_the_fault_names() -> None:
    _, keys, _, _, _, _, state = _world()
    sub = _submission_of(_sub(keys, "d000", state, steps_of(NagarParams(), 3)[2], n=7))
    assert tamper(sub, ()) == sub
    assert tamper(sub, (DUPLICATE_SUBMISSION,)) == sub  # the node sends it twice
    assert tamper(sub, (WRONG_PLAN,)).plan_id != sub.plan_id
    assert tamper(sub, (WRONG_ROUND,)).step == sub.step + 1
    assert tamper(sub, (INFLATE_SAMPLES,)).model.num_samples == 7 * INFLATION


def _cfg(optimizer: str, miners: int, devices: int, rounds: int, **extra: Any) -> dict:
    protocol = {
        "name": "nagar",
        "miners": miners,
        "devices_per_round": 0,
        "optimizer": optimizer,
        "step_size": 1.0,
        "l2": 0.001,
        "consensus": "pow",
        "pow_difficulty": 4,
        **extra.pop("protocol", {}),
    }
    return {
        "name": "faults",
        "seed": 4,
        "rounds": rounds,
        "data": {"dataset": "digits", "partition": "iid"},
        "model": {"name": "mlp", "hidden": []},
        "train": {"epochs": 1, "lr": 0.05, "batch_size": 16},
        "protocol": protocol,
        "nodes": {"count": 1 + miners + devices, "malicious": extra.pop("malicious", [])},
        "output": {"plots": False},
    }


def _run(tmp_path: Path, name: str, cfg: dict) -> tuple[dict, list, list[dict]]:
    result = run_experiment(parse_config(cfg), tmp_path / name)
    lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
    return result.summary, list(result.rows), [json.loads(line) for line in lines]


def _completed(rows: list, rounds: int, devices: int) -> bool:
    """Every device reported a model for the last round."""
    last = {r.node for r in rows if r.role == "device" and r.step == rounds}
    return len(last) == devices


def test_bad_submissions_are_refused_with_counted_reasons(tmp_path: Path) -> None:
    rounds = 2
    bad = [
        {"ids": ["d000"], "faults": [WRONG_PLAN]},
        {"ids": ["d001"], "faults": [WRONG_ROUND]},
        {"ids": ["d002"], "faults": [INFLATE_SAMPLES]},
        {"ids": ["d003"], "faults": [DUPLICATE_SUBMISSION]},
    ]
    summary, rows, _ = _run(tmp_path, "bad", _cfg("fedavg", 2, 5, rounds, malicious=bad))
    rejected = summary["nagar"]["rejected"]
    # one refusal per faulty device and round, at its associated miner (never forwarded)
    for reason in ("unknown_plan", "wrong_step", "implausible_samples", "duplicate"):
        assert rejected.get(reason) == rounds, (reason, rejected)
    assert _completed(rows, rounds, 5)
    assert summary["nagar"]["device_accuracy"] > 0.5  # d003 and d004 still train
    rewards = summary["nagar"]["rewards"]
    assert rewards.get("d000", 0.0) == rewards.get("d001", 0.0) == 0.0
    assert rewards.get("d002", 0.0) == 0.0 and rewards["d003"] > 0 and rewards["d004"] > 0


def test_a_miner_killed_midway_does_not_stop_the_run(tmp_path: Path) -> None:
    rounds = 3
    dead = [{"ids": ["m001"], "faults": ["killed_midway"]}]
    summary, rows, metrics = _run(tmp_path, "miner", _cfg("fedavg", 2, 4, rounds, malicious=dead))
    assert _completed(rows, rounds, 4)
    assert not [m for m in metrics if m["name"] == "nagar.no_block"]
    late = [m for m in metrics if m["name"] == "nagar.block" and m["step"] >= 2]
    assert late and {m["tags"]["miner"] for m in late} == {"m000"}
    assert summary["nagar"]["device_accuracy"] > 0.5


ENC = {"scheme": "paillier", "key_bits": 512, "threshold": 2, "committee": 3}


def test_a_committee_member_killed_midway_does_not_stop_decryption(tmp_path: Path) -> None:
    rounds = 3  # steps: plan, 3 updates; m000 dies from the second update on
    dead = [{"ids": ["m000"], "faults": ["killed_midway"]}]
    cfg = _cfg("fedavg", 3, 6, rounds, malicious=dead, protocol={"encryption": ENC})
    summary, rows, metrics = _run(tmp_path, "committee", cfg)
    assert _completed(rows, rounds, 6)
    # the t = 2 live members decrypt every decryptable aggregate; the dead member's
    # associated devices lose their submissions of those steps (a step left with a single
    # update is refused by the committee and counted, never decrypted)
    assert not [m for m in metrics if m["name"] == "nagar.decryption_failed"]
    late = [m for m in metrics if m["name"] == "nagar.block" and m["step"] >= 2]
    assert late and {m["tags"]["miner"] for m in late} <= {"m001", "m002"}
    assert set(summary["nagar"]["rejected"]) <= {"single_update", "under_min_updates"}
    assert summary["nagar"]["device_accuracy"] > 0.5


def test_with_fewer_than_t_members_alive_decryption_stalls_by_design(tmp_path: Path) -> None:
    rounds = 2
    dead = [{"ids": ["m000", "m001"], "faults": ["killed_midway"]}]
    cfg = _cfg("fedavg", 3, 6, rounds, malicious=dead, protocol={"encryption": ENC})
    _, rows, metrics = _run(tmp_path, "stall", cfg)
    assert _completed(rows, rounds, 6)  # the devices go on with the last decrypted model
    failed = [m for m in metrics if m["name"] == "nagar.decryption_failed"]
    assert {m["node"] for m in failed} == {f"d{i:03d}" for i in range(6)}


CONSORTIUM = {"consensus": "pos", "consortium": {"threshold": 2}, "local_batch_size": 1}


@pytest.mark.parametrize("dead", ["m000", "m001", "m002"])
def test_a_consortium_member_killed_midway_leaves_no_step_without_a_block(
    tmp_path: Path, dead: str
) -> None:
    """PoS: when the elected miner is silent, its first backup (pos_ranking) proposes, so
    no step is lost; each sealed blob still opens from the other members' chunks and
    t = 2 of the 3 key shares."""
    rounds = 4
    bad = [{"ids": [dead], "faults": ["killed_midway"]}]
    cfg = _cfg("fedavg", 3, 3, rounds, malicious=bad, protocol=CONSORTIUM)
    summary, rows, metrics = _run(tmp_path, dead, cfg)
    assert _completed(rows, rounds, 3)
    assert not [m for m in metrics if m["name"] in ("nagar.no_block", "nagar.too_few_updates")]
    blocks = {m["step"]: m["tags"]["miner"] for m in metrics if m["name"] == "nagar.block"}
    assert sorted(blocks) == list(range(rounds + 1))
    assert dead not in {blocks[s] for s in range(rounds // 2 + 1, rounds + 1)}
    assert summary["nagar"]["rejected"] == {}
    assert summary["nagar"]["device_accuracy"] > 0.8


def test_pos_ranking_starts_with_the_elected_miner_and_orders_every_miner() -> None:
    _, _, plan, _, _, _, _ = _world(miners=4, consensus="pos")
    stakes = {plan.miners[1]: 3.0}
    seen_first, seen_second = set(), set()
    for height in range(1, 40):
        parent = bytes([height]) * 32
        ranking = pos_ranking(plan, stakes, parent, height)
        assert sorted(ranking) == sorted(plan.miners)
        assert ranking[0] == pos_leader(plan, stakes, parent, height)
        assert ranking == pos_ranking(plan, stakes, parent, height)  # a pure function
        seen_first.add(ranking[0])
        seen_second.add(ranking[1])
    assert len(seen_first) > 1 and len(seen_second) > 1
