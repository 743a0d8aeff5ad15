"""Credits and incentives (Section VII) as pure functions.

Credits are integers in thousandths of a point: +``reward`` per honest act, capped at
``c_max``; -``penalty`` per proven fault, floored at 0. Worker rewards are
gamma_i = s_i / sum(s) * R_fee; a dynasty's fee pool is split equally among its
unslashed members; each member's deposit is refunded if clean, else slashed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


def next_credit(
    credit: int, honest: int, faults: int, reward: int, penalty: int, c_max: int
) -> int:
    """c' = min(C_max, c + reward * honest) - penalty * faults, floored at 0."""
    if min(credit, honest, faults, reward, penalty) < 0 or c_max < 1:
        raise ValueError(
            f"credit {credit}, honest {honest}, faults {faults}, reward {reward}, penalty "
            f"{penalty}: all must be >= 0 and c_max {c_max} >= 1"
        )
    return max(0, min(c_max, credit + reward * honest) - penalty * faults)


def next_credits(
    credits: Mapping[str, int],
    honest: Mapping[str, int],
    faults: Mapping[str, int],
    reward: int,
    penalty: int,
    c_max: int,
) -> dict[str, int]:
    """:func:`next_credit` for every node of ``credits``."""
    return {
        n: next_credit(c, honest.get(n, 0), faults.get(n, 0), reward, penalty, c_max)
        for n, c in sorted(credits.items())
    }


def worker_rewards(scores: Mapping[str, float], pool: float) -> dict[str, float]:
    """gamma_i = s_i / sum_j s_j * R_fee; all zero when every score is zero."""
    bad = {n: s for n, s in scores.items() if not 0.0 <= s <= 1.0}
    if bad or pool < 0:
        raise ValueError(f"scores must be accuracies in [0, 1] and pool >= 0, got {bad}, {pool}")
    total = sum(scores.values())
    if total == 0:
        return {n: 0.0 for n in scores}
    return {n: s / total * pool for n, s in sorted(scores.items())}


def fee_shares(pool: float, members: Iterable[str], slashed: Iterable[str]) -> dict[str, float]:
    """A dynasty's fee pool split equally among its unslashed members."""
    bad = set(slashed)
    paid = sorted(m for m in set(members) if m not in bad)
    if pool < 0:
        raise ValueError(f"fee pool must be >= 0, got {pool}")
    return {m: pool / len(paid) for m in paid} if paid else {}


@dataclass(frozen=True)
class Settlement:
    """A member's deposit at the end of a dynasty: refunded and slashed amounts."""

    refund: float
    slashed: float


def settle_deposits(
    members: Iterable[str], deposit: float, offenders: Iterable[str], fraction: float
) -> dict[str, Settlement]:
    """Clean members get their deposit back; an offender loses ``fraction`` of it."""
    if deposit < 0 or not 0.0 <= fraction <= 1.0:
        raise ValueError(f"deposit {deposit} >= 0 and slash fraction {fraction} in [0, 1]")
    bad = set(offenders)
    out = {}
    for m in sorted(set(members)):
        cut = deposit * fraction if m in bad else 0.0
        out[m] = Settlement(deposit - cut, cut)
    return out


def adversary_control(k: int, share: float) -> float:
    """P_M of Section VIII-D.1: the chance that more than half of K seats are the
    adversary's, each independently with probability ``share``."""
    from math import comb

    if k < 1 or not 0.0 <= share <= 1.0:
        raise ValueError(f"K {k} >= 1 and share {share} in [0, 1]")
    return sum(comb(k, i) * share**i * (1 - share) ** (k - i) for i in range(k // 2 + 1, k + 1))
