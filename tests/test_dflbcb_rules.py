"""DFLBCB's rules as pure functions against worked examples (Alg. 1, 2, 4, 5, 6, [EXP])."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedledger.errors import ConfigError
from fedledger.protocols.dflbcb import rewards
from fedledger.protocols.dflbcb.election import Candidate, elect, eth_bar, need, weight
from fedledger.protocols.dflbcb.timer import StageTimer, TimerParams

A, B, C, D, E = ("0x" + c * 40 for c in "abcde")


def _cands() -> list[Candidate]:
    return [
        Candidate(A, 10_000, 900),  # high pledge, high accuracy
        Candidate(B, 10_000, 100),  # high pledge, low accuracy
        Candidate(C, 2_000, 950),   # low pledge, high accuracy
        Candidate(D, 2_000, 100),   # low pledge, low accuracy
        Candidate(E, 5_000, 600),
    ]


def test_need_is_n_times_p_at_least_four() -> None:
    assert need(50, 2000) == 10 and need(10, 2000) == 4 and need(0, 0) == 4
    with pytest.raises(ConfigError, match="ratio_bps=10001"):
        need(10, 10_001)


def test_election_worked_example() -> None:
    cands = _cands()
    # eth_bar over the 4 largest pledges: (10000 + 10000 + 5000 + 2000) / 4
    assert eth_bar(cands, 4) == 6750
    # w = 3000 * pledge + 7000 * acc/1000 * 6750
    assert [weight(c, 6750, 3000) for c in cands] == [
        72_525_000, 34_725_000, 50_887_500, 10_725_000, 43_350_000]
    # the paper's four claims: high/high first, low/high above high/low, low/low last
    assert elect(cands, 4, 3000) == (A, C, E, B)
    assert elect(cands, 5, 3000)[-1] == D


def test_election_too_few_candidates_and_ties() -> None:
    assert elect(_cands()[:3], 4, 3000) == ()
    same = [Candidate(a, 1000, 500) for a in (E, B, D, A, C)]
    assert elect(same, 4, 3000) == (A, B, C, D)  # ties to the lower address
    with pytest.raises(ConfigError, match="applied twice"):
        elect([Candidate(A, 1, 1), Candidate(A, 2, 2)], 1, 3000)
    with pytest.raises(ConfigError, match="p_bps"):
        weight(Candidate(A, 1, 1), 1, 10_001)


def test_with_p_one_the_richest_win() -> None:
    assert elect(_cands(), 2, 10_000) == (A, B)


def test_timer_worked_example() -> None:
    t = StageTimer(TimerParams(mt_ms=60_000, expected=5, floor_ms=500), start_ms=0)
    for now in (1000, 2000, 3000):
        t = t.on_request(now)
    assert t.quiet_at is None and t.deadline() == 60_000  # 3 of 5 < 80 %
    t = t.on_request(6000)  # 4 of 5: quiet timer = mean(1000, 2000, 3000, 6000) = 3000
    assert (t.quiet_ms, t.deadline()) == (3000, 9000)
    t = t.on_request(7000)  # a new request restarts it
    assert t.deadline() == 10_000
    assert t.on_time(9000) == t  # not due yet
    t = t.on_time(10_000)
    assert (t.quiet_ms, t.deadline()) == (1500, 11_500)
    t = t.on_time(11_500)
    assert (t.quiet_ms, t.deadline()) == (750, 12_250)
    t = t.on_time(12_250)  # 375 < floor: the stage ends
    assert t.closed and t.closed_at == 12_250
    assert t.on_request(13_000) == t


def test_timer_hard_cap_closes_a_quiet_stage() -> None:
    t = StageTimer(TimerParams(mt_ms=5000, expected=10), start_ms=100).on_request(200)
    assert t.deadline() == 5100
    assert t.on_time(5100).closed
    with pytest.raises(ConfigError, match="mt_ms=0"):
        TimerParams(mt_ms=0, expected=1)


def test_alg4_worked_example_and_bound() -> None:
    assert rewards.alg4_submit_reward(ts_wei=1, sum_points=10, tm_wei=11) == 1
    assert rewards.alg4_submit_reward(ts_wei=5, sum_points=10, tm_wei=5) == 0
    assert rewards.alg4_submit_reward(ts_wei=5, sum_points=0, tm_wei=50) == rewards.POINT


@given(ts=st.integers(1, 10**15), extra=st.integers(1, 10**18), total=st.integers(1, 10**24))
def test_alg4_share_covers_the_gas(ts: int, extra: int, total: int) -> None:
    tm = ts + extra
    s = rewards.alg4_submit_reward(ts, total, tm)
    # tm * s / (sum + s) >= ts, up to one unit of integer rounding in s
    assert tm * (s + 1) >= ts * (total + s + 1)


def test_alg5_examples_from_the_paper() -> None:
    assert rewards.alg5_master(10, 100) == 110  # x = 10 gives 1.1
    assert rewards.alg5_master(100, 100) == 200  # x = 100 gives 2
    assert rewards.alg5_master(500, 100) == 200  # capped


def test_alg6_worked_example() -> None:
    r = rewards.alg6({A: 900, B: 880, C: 860, D: 100}, malicious_permille=500)
    assert r.median == 870
    assert r.malicious == (D,) and r.kept == (A, B, C)
    assert r.rewards == ((A, rewards.POINT * 3 // 4), (B, rewards.POINT * 2 // 4))
    odd = rewards.alg6({A: 900, B: 700, C: 300}, malicious_permille=500)
    assert odd.median == 700 and odd.malicious == (C,)
    assert odd.rewards == ((A, rewards.POINT * 2 // 3),)


def test_deductions_and_price_curve() -> None:
    assert [rewards.exp_deduction(k, 10) for k in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert rewards.linear_deduction(1000) == 80
    xs, ys = [0, 500, 800, 900, 950], [0, 100, 500, 1000, 2000]
    assert [rewards.price_of(a, xs, ys) for a in (500, 600, 920, 999)] == [100, 300, 1500, 2000]
    assert rewards.price_of(-1, xs, ys) == 0
    with pytest.raises(ConfigError, match="offence 0"):
        rewards.exp_deduction(0, 1)


def test_the_report_worked_example() -> None:
    from fedledger.protocols.dflbcb.report import dflbcb_headline, dflbcb_report
    from fedledger.protocols.results import MetricRow

    def row(name, value, step=1, node="init", **tags):
        return MetricRow(node, f"dflbcb.{name}", step, 0.0, value, tags)

    metrics = [
        row("stage_seconds", 1.0, stage="elect"), row("stage_seconds", 1.0, stage="pledge"),
        row("stage_seconds", 3.0, stage="commit"), row("stage_seconds", 5.0, stage="work"),
        row("accepted", 1.0, stage="work", submitter="0x1"),
        row("gas", 500_000.0, node="m00", call="submit_work", ok="True"),
        row("gas", 300_000.0, node="m01", call="submit_work", ok="False"),
        row("slashed", 8e15, kind="no_model"), row("rewarded", 2.0, kind="work"),
        row("global_acc_permille", 870.0, node="m00"), row("price", 5e17),
        *[row("latency", v, node="m00", kind="end") for v in (0.1, 4.0, 12.0, 20.0)],
    ]
    rep = dflbcb_report(metrics)
    assert rep["iterations"] == 1 and rep["seconds_per_iteration"] == 10.0
    assert rep["stage_share"] == {"elect": 0.1, "pledge": 0.1, "commit": 0.3, "work": 0.5}
    assert rep["gas_per_call"] == {"submit_work": {"mean": 500_000.0, "max": 500_000.0,
                                                   "calls": 1}}
    assert rep["reverted_calls"] == 1
    assert rep["accuracy_permille"] == {1: 870.0} and rep["price_wei"] == {1: 5e17}
    assert rep["latency_within_5s"] == 0.5 and rep["latency_within_15s"] == 0.75
    assert rep["requests_by_node"] == {"m00": 4}
    lines = dict(dflbcb_headline(rep))
    assert lines["what the ledger caught"] == "slashed: no_model 0.0080 ETH"
    assert lines["on-chain accuracy"] == "0.870 (it 1)"
    assert dict(dflbcb_headline(dflbcb_report([])))["what the ledger caught"] == \
        "nothing slashed"
