"""Committee election, the paper's Alg. 1 and weight [W] (Section 3.3.1), in integers.

    w = p * pledge + (1 - p) * acc * eth_bar

p in basis points (the paper wants p < 0.5 so that accuracy weighs more), pledge in wei,
acc the candidate's average past sub-model accuracy in permille (0 for a newcomer), and
eth_bar the mean pledge of the Need candidates with the largest pledges (by weight would
be circular). Ties go to the lower address. Fewer than Need candidates elect nobody: the
caller keeps the current committee for a new term.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedledger.errors import ConfigError

MIN_COMMITTEE = 4  # F >= 1


@dataclass(frozen=True)
class Candidate:
    address: str
    pledge: int
    acc_permille: int


def need(registered: int, ratio_bps: int) -> int:
    """Need = N * P, floored, and at least 4 so the committee tolerates one fault."""
    if registered < 0 or not 0 <= ratio_bps <= 10_000:
        raise ConfigError(
            "election", f"registered={registered}, ratio_bps={ratio_bps}: need >= 0, 0..10000"
        )
    return max(MIN_COMMITTEE, registered * ratio_bps // 10_000)


def eth_bar(cands: list[Candidate], need_n: int) -> int:
    """Mean pledge of the ``need_n`` largest pledges (floor)."""
    top = sorted((c.pledge for c in cands), reverse=True)[:need_n]
    return sum(top) // len(top) if top else 0


def weight(c: Candidate, bar: int, p_bps: int) -> int:
    """[W] scaled by 10,000: p_bps * pledge + (10000 - p_bps) * acc/1000 * eth_bar."""
    if not 0 <= p_bps <= 10_000:
        raise ConfigError("election.p_bps", f"{p_bps} is outside 0..10000")
    if not 0 <= c.acc_permille <= 1000:
        raise ConfigError("election.acc_permille", f"{c.acc_permille} is outside 0..1000")
    return p_bps * c.pledge + (10_000 - p_bps) * c.acc_permille * bar // 1000


def elect(cands: list[Candidate], need_n: int, p_bps: int) -> tuple[str, ...]:
    """Alg. 1: the first ``need_n`` candidates by weight, in weight order (index 0 is the
    master node of view 0); () when fewer than ``need_n`` applied."""
    if len({c.address for c in cands}) != len(cands):
        raise ConfigError("election", "a candidate applied twice")
    if len(cands) < need_n:
        return ()
    bar = eth_bar(cands, need_n)
    ranked = sorted(cands, key=lambda c: (-weight(c, bar, p_bps), int(c.address, 16)))
    return tuple(c.address for c in ranked[:need_n])
