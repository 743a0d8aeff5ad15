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

Late evidence: evidence that lands in dynasty ``n - 1``'s blocks but names an offence of
an earlier dynasty ``d`` (whose settlement is already on chain, in the record of dynasty
``d + 1``) is charged in this settlement: the offender owes ``slash_fraction * deposit``,
the amount it would have lost on time, listed in the settlement's ``late`` table as
(d, offender, amount). It is charged once per offender and dynasty: not if the
offender's deposit of ``d`` was slashed on time, nor if an earlier settlement already
charged it late (every earlier settlement on the chain is read back). The charge is
taken from the offender's balance whether or not it still sits on a committee (its
refunded deposit of ``d`` is clawed back); a balance may go negative, a debt. A
settlement without late charges is a plain :class:`Settlement` (the same bytes as before
the rule, so earlier chains still verify); one with late charges is a
:class:`LateSettlement`.

``verify_block`` recomputes the settlement from the block's ancestors (it is part of the
dynasty record, :meth:`rotation.Rotation.expected_record`) and refuses any other.
Balances are the sum over every settlement on a chain (:func:`balances`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields

from fedledger.codec import record
from fedledger.ledger.records import Block, Transaction
from fedledger.protocols.mudfl import credits as cr
from fedledger.protocols.mudfl.faults_pvss import PVSS_TX, PvssEvidence
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


@record("mudfl.LateSettlement")
@dataclass(frozen=True)
class LateSettlement(Settlement):
    """A settlement that also charges late evidence: ``late`` lists (dynasty of the
    offence, offender, amount charged), sorted."""

    late: tuple[tuple[int, str, float], ...]


def late_charges(s: Settlement) -> tuple[tuple[int, str, float], ...]:
    """The late table of ``s`` (empty for a plain settlement)."""
    return s.late if isinstance(s, LateSettlement) else ()


def evidence(tx: Transaction) -> SlashEvidence | PvssEvidence | None:
    """The slashing evidence ``tx`` carries (``mudfl.slash`` or ``mudfl.slash.pvss``)."""
    ev = tx.payload
    if tx.kind == SLASH_TX and isinstance(ev, SlashEvidence):
        return ev
    if tx.kind == PVSS_TX and isinstance(ev, PvssEvidence):
        return ev
    return None


def evidence_in(blocks: Iterable[Block], node_of: Mapping[bytes, str]) -> list[tuple[int, str]]:
    """(dynasty of the offence, offender) of every piece of slashing evidence in
    ``blocks``, in chain order (offenders with an unknown address are left out)."""
    out: list[tuple[int, str]] = []
    for block in blocks:
        for tx in block.transactions:
            ev = evidence(tx)
            node = node_of.get(ev.offender) if ev is not None else None
            if ev is not None and node is not None:
                out.append((ev.dynasty, node))
    return out


def late_offenders(
    blocks: Iterable[Block],
    dynasty: int,
    prior: Sequence[Settlement],
    node_of: Mapping[bytes, str],
) -> list[tuple[int, str]]:
    """(d, offender) for evidence in ``blocks`` of an offence in an earlier, settled
    dynasty ``d < dynasty`` by a member of ``d``, not charged yet by ``prior`` (every
    settlement before this one on the chain): once each, sorted."""
    members = {s.dynasty: {m for m, _, _ in s.deposits} for s in prior}
    charged = {(s.dynasty, m) for s in prior for m, _, cut in s.deposits if cut > 0}
    charged |= {(d, m) for s in prior for d, m, _ in late_charges(s)}
    out: set[tuple[int, str]] = set()
    for d, node in evidence_in(blocks, node_of):
        if 0 <= d < dynasty and node in members.get(d, ()) and (d, node) not in charged:
            out.add((d, node))
    return sorted(out)


def offenders(
    blocks: Iterable[Block], dynasty: int, members: Iterable[str], node_of: Mapping[bytes, str]
) -> set[str]:
    """Members of ``dynasty`` that slashing evidence in ``blocks`` proves misbehaved in it."""
    committee = set(members)
    return {n for d, n in evidence_in(blocks, node_of) if n in committee and d == dynasty}


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
    prior: Sequence[Settlement] = (),
) -> Settlement:
    """The settlement of ``dynasty`` (committee ``members``) from its ``blocks``;
    ``prior`` are the earlier settlements on the chain (for late evidence)."""
    bad = offenders(blocks, dynasty, members, node_of)
    deposits = cr.settle_deposits(members, deposit, bad, slash_fraction)
    pool = tx_fee * sum(len(b.transactions) for b in blocks)
    fees = cr.fee_shares(pool, members, bad)
    rewards: dict[str, float] = {}
    for _, scores in sorted(round_scores(blocks, aggregator, node_of).items()):
        for worker, gamma in cr.worker_rewards(scores, round_fee).items():
            rewards[worker] = rewards.get(worker, 0.0) + gamma
    plain = Settlement(
        dynasty,
        pool,
        tuple((m, s.refund, s.slashed) for m, s in sorted(deposits.items())),
        tuple(sorted(fees.items())),
        tuple(sorted(rewards.items())),
    )
    cut = deposit * slash_fraction
    late = tuple((d, n, cut) for d, n in late_offenders(blocks, dynasty, prior, node_of))
    if not late or cut <= 0:
        return plain
    return LateSettlement(*(getattr(plain, f.name) for f in fields(Settlement)), late=late)


def balances(settlements: Iterable[Settlement]) -> dict[str, float]:
    """Net token change per node over ``settlements``: fee shares and rewards earned,
    slashed deposits and late charges lost (a refunded deposit nets to zero)."""
    out: dict[str, float] = {}
    for s in settlements:
        for m, _, cut in s.deposits:
            out[m] = out.get(m, 0.0) - cut
        for m, share in (*s.fees, *s.rewards):
            out[m] = out.get(m, 0.0) + share
        for _, m, charged in late_charges(s):
            out[m] = out.get(m, 0.0) - charged
    return dict(sorted(out.items()))
