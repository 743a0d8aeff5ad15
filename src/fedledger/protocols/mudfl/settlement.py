"""Deposits, fees and rewards of a dynasty, settled on chain (Section VII).

Pure functions of the chain. The block that carries dynasty ``n``'s record also carries
the settlement of dynasty ``n - 1`` (the committee that ran it), computed from that
dynasty's blocks (heights ``(S_{n-1}, S_n)``, or ``[1, S_1)`` for dynasty 0):

- every member of the committee locked ``deposit`` when it was selected; a member
  proven to have misbehaved *in that dynasty* (slashing evidence on chain naming it and
  that dynasty: two blocks of one slot, a double vote, a forged credit claim or a proof
  over its threshold) loses ``slash_fraction`` of it, every other member gets it back;
- the dynasty's fee pool (``tx_fee`` per transaction committed in its blocks) is split
  equally among its unslashed members;
- each worker earns gamma_i = s_i / sum(s) * R_fee for every round whose scores the
  aggregator recorded in the dynasty's blocks (``mudfl.score`` transactions; s_i in
  thousandths).

``verify_block`` recomputes the settlement from the block's ancestors (it is part of the
dynasty record, :meth:`rotation.Rotation.expected_record`) and refuses any other.
Balances are the sum over every settlement on a chain (:func:`balances`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from fedledger.codec import record
from fedledger.ledger.records import Block
from fedledger.protocols.mudfl import credits as cr
from fedledger.protocols.mudfl.messages import SCORE_TX, SLASH_TX, Scores, SlashEvidence


@record("mudfl.Settlement")
@dataclass(frozen=True)
class Settlement:
    """Dynasty ``dynasty``'s accounts at its end (every table sorted by node id):
    ``deposits`` (member, refunded, slashed), ``fees`` (member, share of the pool),
    ``rewards`` (worker, sum of its gamma_i over the rounds scored in the dynasty)."""

    dynasty: int
    fee_pool: float
    deposits: tuple[tuple[str, float, float], ...]
    fees: tuple[tuple[str, float], ...]
    rewards: tuple[tuple[str, float], ...]

    @property
    def slashed(self) -> tuple[str, ...]:
        return tuple(m for m, _, cut in self.deposits if cut > 0)


def offenders(
    blocks: Iterable[Block], dynasty: int, members: Iterable[str], node_of: Mapping[bytes, str]
) -> set[str]:
    """Members of ``dynasty`` that slashing evidence in ``blocks`` proves misbehaved in it."""
    committee = set(members)
    out: set[str] = set()
    for block in blocks:
        for tx in block.transactions:
            ev = tx.payload
            if tx.kind != SLASH_TX or not isinstance(ev, SlashEvidence):
                continue
            node = node_of.get(ev.offender)
            if node in committee and ev.dynasty == dynasty:
                out.add(node)
    return out


def round_scores(
    blocks: Iterable[Block], aggregator: bytes, node_of: Mapping[bytes, str]
) -> dict[int, dict[str, float]]:
    """round -> worker -> accuracy, from the aggregator's score transactions (the first
    per round counts)."""
    out: dict[int, dict[str, float]] = {}
    for block in blocks:
        for tx in block.transactions:
            sc = tx.payload
            if tx.kind != SCORE_TX or not isinstance(sc, Scores) or tx.sender != aggregator:
                continue
            if sc.round in out:
                continue
            table = {}
            for worker, permille in sc.scores:
                node = node_of.get(worker)
                if node is not None:
                    table[node] = permille / 1000
            out[sc.round] = table
    return out


def settle(
    dynasty: int,
    members: Sequence[str],
    blocks: Sequence[Block],
    aggregator: bytes,
    node_of: Mapping[bytes, str],
    deposit: float,
    slash_fraction: float,
    tx_fee: float,
    round_fee: float,
) -> Settlement:
    """The settlement of ``dynasty`` (committee ``members``) from its ``blocks``."""
    bad = offenders(blocks, dynasty, members, node_of)
    deposits = cr.settle_deposits(members, deposit, bad, slash_fraction)
    pool = tx_fee * sum(len(b.transactions) for b in blocks)
    fees = cr.fee_shares(pool, members, bad)
    rewards: dict[str, float] = {}
    for _, scores in sorted(round_scores(blocks, aggregator, node_of).items()):
        for worker, gamma in cr.worker_rewards(scores, round_fee).items():
            rewards[worker] = rewards.get(worker, 0.0) + gamma
    return Settlement(
        dynasty,
        pool,
        tuple((m, s.refund, s.slashed) for m, s in sorted(deposits.items())),
        tuple(sorted(fees.items())),
        tuple(sorted(rewards.items())),
    )


def balances(settlements: Iterable[Settlement]) -> dict[str, float]:
    """Net token change per node over ``settlements``: fee shares and rewards earned,
    slashed deposits lost (a refunded deposit nets to zero)."""
    out: dict[str, float] = {}
    for s in settlements:
        for m, _, cut in s.deposits:
            out[m] = out.get(m, 0.0) - cut
        for m, share in (*s.fees, *s.rewards):
            out[m] = out.get(m, 0.0) + share
    return dict(sorted(out.items()))
