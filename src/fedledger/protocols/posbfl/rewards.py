"""Votes to outcomes, and the rewards of eq. 1-3 (survey section 5.3.2).

- eq. 1, worker: r_j^w = le_j^w * |train_w| * r if N+(L_j^w) >= N-(L_j^w), else 0;
- eq. 2, validator: r_j^v = |{tx_j^w verified}| * r + |{votes cast}| * r;
- eq. 3, miner: r_j^m = |{validator votes verified}| * r.

All functions are pure and deterministic (inputs sorted by id), so a miner and every
device that checks its block compute the same outcomes and rewards.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from fedledger.ledger.records import Transaction, Vote, record_id
from fedledger.protocols.posbfl.messages import (
    POSITIVE,
    REWARD_MINER,
    REWARD_VALIDATE,
    REWARD_VERIFY,
    REWARD_WORKER,
    Outcome,
    Reward,
    ValidatorReport,
    WorkerUpdate,
)


def expected_worker_reward(epochs: int, num_samples: int, unit: float) -> float:
    """Eq. 1 for an accepted update: le * |train_w| * r."""
    return float(epochs * num_samples) * unit


def tally(worker_txs: Sequence[Transaction], votes: Iterable[Vote]) -> tuple[Outcome, ...]:
    """The aggregated votes per update, in the order of ``worker_txs``."""
    positive: Counter[bytes] = Counter()
    negative: Counter[bytes] = Counter()
    for vote in votes:
        (positive if vote.value == POSITIVE else negative)[vote.target] += 1
    out = []
    for tx in worker_txs:
        tid = record_id(tx)
        out.append(Outcome(tid, tx.sender, positive[tid], negative[tid]))
    return tuple(out)


#: rewards by (address, kind) before they are sorted into ``Reward`` records
Credit = dict[tuple[bytes, str], float]


def round_rewards(
    worker_txs: Sequence[Transaction],
    reports: Sequence[Transaction],
    votes: Sequence[Vote],
    outcomes: Sequence[Outcome],
    miner: bytes,
    unit: float,
) -> tuple[Reward, ...]:
    """Every reward of one block (eq. 1-3), sorted by (address, kind); zeros left out."""
    credit = shared_credit(worker_txs, reports, votes, outcomes, unit)
    return with_miner(credit, miner, len(votes), unit)


def shared_credit(
    worker_txs: Sequence[Transaction],
    reports: Sequence[Transaction],
    votes: Sequence[Vote],
    outcomes: Sequence[Outcome],
    unit: float,
) -> Credit:
    """Eq. 1-2: what the workers and validators earn from one block's records, the same
    for every candidate block holding those records (the miner's eq. 3 comes on top in
    :func:`with_miner`)."""
    credit: Credit = {}
    accepted = {o.update for o in outcomes if o.accepted}
    in_block = set()
    for tx in worker_txs:
        tid = record_id(tx)
        in_block.add(tid)
        if tid in accepted and isinstance(tx.payload, WorkerUpdate):
            update = tx.payload
            _add(credit, tx.sender, REWARD_WORKER, update.expected_reward)
    for report in reports:
        if isinstance(report.payload, ValidatorReport):
            verified = len(set(report.payload.checked) & in_block)
            _add(credit, report.sender, REWARD_VERIFY, verified * unit)
    for voter, count in sorted(Counter(v.voter for v in votes).items()):
        _add(credit, voter, REWARD_VALIDATE, count * unit)
    return credit


def with_miner(credit: Credit, miner: bytes, num_votes: int, unit: float) -> tuple[Reward, ...]:
    """Eq. 3 added to ``credit`` (left unchanged): the block's rewards, sorted by
    (address, kind), zeros left out."""
    total = dict(credit)
    _add(total, miner, REWARD_MINER, num_votes * unit)
    return tuple(Reward(a, k, amount) for (a, k), amount in sorted(total.items()))


def _add(credit: Credit, address: bytes, kind: str, amount: float) -> None:
    if amount > 0:
        credit[(address, kind)] = credit.get((address, kind), 0.0) + amount


def credit_stakes(stakes: dict[bytes, float], rewards: Iterable[Reward]) -> None:
    """Accumulate a legal block's rewards into ``stakes`` (in place)."""
    for reward in rewards:
        stakes[reward.address] = stakes.get(reward.address, 0.0) + reward.amount
