"""Rewards and penalties (Section 5), the Python mirror of ``dflbcb_state.vy``.

Points are fixed-point with POINT = 1e18; money in wei; accuracy in permille. The
contract is the authority; these functions let the committee predict its result and the
tests check the contract against worked examples.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedledger.errors import ConfigError

POINT = 10**18


def alg4_submit_reward(ts_wei: int, sum_points: int, tm_wei: int) -> int:
    """[A4] s = ts * sum(p) / (tm - ts): the least reward whose share of the pool covers
    the gas the submitter paid (ts = gas_before - gas_after, times the gas price). No
    reward when the pool cannot cover the cost; one POINT when nobody holds points yet."""
    if tm_wei <= ts_wei:
        return 0
    if sum_points == 0:
        return POINT
    return ts_wei * sum_points // (tm_wei - ts_wei)


def alg5_master(requests: int, stage_points: int) -> int:
    """[A5] (1 + RS/100) * PS with RS the stage's unique requests, capped at 100."""
    return (100 + min(max(requests, 0), 100)) * stage_points // 100


def median_permille(scores: list[int]) -> int:
    """The median of scores sorted descending (mean of the middle two, floored)."""
    m = len(scores)
    if m == 0:
        raise ConfigError("alg6", "median of no scores")
    s = sorted(scores, reverse=True)
    return s[m // 2] if m % 2 else (s[m // 2 - 1] + s[m // 2]) // 2


@dataclass(frozen=True)
class Alg6Result:
    ranked: tuple[tuple[str, int], ...]   # (address, score), descending, ties by address
    median: int
    malicious: tuple[str, ...]            # dropped from aggregation and punished
    rewards: tuple[tuple[str, int], ...]  # (address, points) for scores above the median

    @property
    def kept(self) -> tuple[str, ...]:
        bad = set(self.malicious)
        return tuple(a for a, _ in self.ranked if a not in bad)


def alg6(scores: dict[str, int], malicious_permille: int, base: int = POINT) -> Alg6Result:
    """Alg. 6: s_i < n * median is malicious; s_i > median earns base * (m - i - 1) / m
    at 0-indexed rank i; the rest ("regular quality") get nothing, as the algorithm says."""
    ranked = tuple(sorted(scores.items(), key=lambda kv: (-kv[1], int(kv[0], 16))))
    if not ranked:
        return Alg6Result((), 0, (), ())
    m = len(ranked)
    mids = median_permille([s for _, s in ranked])
    malicious = tuple(a for a, s in ranked if s * 1000 < mids * malicious_permille)
    rewards = tuple(
        (a, base * (m - i - 1) // m) for i, (a, s) in enumerate(ranked) if s > mids
    )
    return Alg6Result(ranked, mids, malicious, rewards)


def exp_deduction(offence: int, unit: int) -> int:
    """[EXP] the k-th offence (k >= 1) deducts unit * 2^(k-1); k is capped at 64."""
    if offence < 1:
        raise ConfigError("exp_deduction", f"offence {offence}: counts start at 1")
    return unit * 2 ** (min(offence, 64) - 1)


def linear_deduction(pledge: int, bps: int = 800) -> int:
    """Pledged without submitting: 8 % of the pledge (the request's maximum cost)."""
    return pledge * bps // 10_000


def price_of(acc: int, xs: list[int], ys: list[int]) -> int:
    """The accuracy-price curve's "average principle": a point's price on a point, the
    mean of the two neighbours between points, 0 below the first, the last price above."""
    if len(xs) != len(ys):
        raise ConfigError("curve", f"{len(xs)} x values but {len(ys)} y values")
    if not xs or acc < xs[0]:
        return 0
    for i, x in enumerate(xs):
        if acc == x:
            return ys[i]
        if i + 1 < len(xs) and acc < xs[i + 1]:
            return (ys[i] + ys[i + 1]) // 2
    return ys[-1]
