"""Committees per dynasty: VRF sortition over credit weights (Section IV-B step 1).

Every eligible client's ticket is an RFC 9381 ECVRF proof over
``committee_alpha(seed_d, d, "mudfl/committee")``; the committee is the fixed-size
weighted sample of :func:`fedledger.consensus.committee.draw_committee` (Efraimidis-
Spirakis on the credits, exact arithmetic). In a simulation each node's VRF key is
derived from the experiment seed and its id, so every node can compute every ticket.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from fedledger.codec import record
from fedledger.consensus.committee import Ticket, committee_alpha, draw_committee, make_ticket
from fedledger.crypto.vrf import VrfPublicKey, derive_vrf_key

PURPOSE = "mudfl/committee"


@dataclass(frozen=True)
class Dynasty:
    """Dynasty ``number``: its seed, committee (node ids, selection order) and frozen
    credit table (node id -> credit in thousandths)."""

    number: int
    seed: bytes
    committee: tuple[str, ...]
    credits: Mapping[str, int]

    def credit_of(self, node: str) -> int:
        return int(self.credits.get(node, 0))

    @property
    def total_credit(self) -> int:
        return sum(self.credit_of(n) for n in self.committee)


def draw(
    number: int,
    seed: bytes,
    clients: Sequence[str],
    credits: Mapping[str, int],
    size: int,
    run_seed: int,
) -> Dynasty:
    """The committee of dynasty ``number`` by VRF sortition over ``credits``."""
    alpha = committee_alpha(seed, number, PURPOSE)
    keys = {c: derive_vrf_key(run_seed, c) for c in clients}
    tickets = [make_ticket(c, keys[c], alpha) for c in sorted(clients)]
    public = {c: k.public for c, k in keys.items()}
    drawn = draw_committee(tickets, public, dict(credits), alpha, size=size)
    return Dynasty(number, seed, drawn.members, dict(credits))


def fallback_seed(seed: bytes, checkpoint: bytes) -> bytes:
    """The flagged seed of the next dynasty when RandShare does not complete:
    H("mudfl/seed-fallback" || seed_d || last finalized checkpoint hash)."""
    return hashlib.sha256(b"mudfl/seed-fallback" + seed + checkpoint).digest()


# ---------------------------------------------------------------- dynasty change


@record("mudfl.DynastyRecord")
@dataclass(frozen=True)
class DynastyRecord:
    """The dynasty block's payload: dynasty ``number``'s seed (``seed_fallback`` when
    RandShare did not complete), committee, frozen credit table, every VRF ticket and
    the settlement of the dynasty that ends (deposits, fees, worker rewards)."""

    number: int
    seed: bytes
    seed_fallback: bool
    committee: tuple[str, ...]
    credits: tuple[tuple[str, int], ...]
    tickets: tuple[tuple[str, bytes], ...]
    settlement: Any = None  # settlement.Settlement of dynasty number - 1

    def dynasty(self) -> Dynasty:
        return Dynasty(self.number, self.seed, self.committee, dict(self.credits))


def switch_height(number: int, epoch_size: int, dynasty_epochs: int) -> int:
    """Height of the block that carries dynasty ``number``'s record (number >= 1)."""
    if number < 1 or epoch_size < 1 or dynasty_epochs < 1:
        raise ValueError(
            f"dynasty {number}, epoch size {epoch_size}, dynasty_epochs {dynasty_epochs}: "
            "need >= 1 each"
        )
    return number * epoch_size * dynasty_epochs


def takes_over(record_height: int, finalized_height: int) -> bool:
    """The new committee takes over only once its dynasty block is finalized."""
    return finalized_height >= record_height


def propose_record(
    number: int,
    seed: bytes,
    seed_fallback: bool,
    clients: Sequence[str],
    credits: Mapping[str, int],
    size: int,
    run_seed: int,
    settlement: Any = None,
) -> DynastyRecord:
    """The record of dynasty ``number`` drawn with ``seed`` (the previous RandShare output)."""
    dyn = draw(number, seed, clients, credits, size, run_seed)
    alpha = committee_alpha(seed, number, PURPOSE)
    tickets = tuple((c, derive_vrf_key(run_seed, c).prove(alpha)) for c in sorted(clients))
    return DynastyRecord(
        number,
        seed,
        seed_fallback,
        dyn.committee,
        tuple(sorted(credits.items())),
        tickets,
        settlement,
    )


def with_settlement(rec: DynastyRecord, settlement: Any) -> DynastyRecord:
    return replace(rec, settlement=settlement)


def verify_record(
    rec: DynastyRecord,
    expected_number: int,
    expected_seed: bytes,
    credits: Mapping[str, int],
    size: int,
    vrf_keys: Mapping[str, VrfPublicKey],
) -> Dynasty:
    """Recompute the committee from the record's VRF tickets and the credit table this node
    derived from the chain; raises ValueError naming the first mismatch."""
    if rec.number != expected_number:
        raise ValueError(f"dynasty record {rec.number}, expected {expected_number}")
    if rec.seed != expected_seed:
        raise ValueError(f"dynasty {rec.number} seed {rec.seed.hex()[:16]} is not the expected one")
    if dict(rec.credits) != dict(credits):
        raise ValueError(f"dynasty {rec.number} credit table differs from the chain's")
    alpha = committee_alpha(rec.seed, rec.number, PURPOSE)
    tickets = [Ticket(c, proof) for c, proof in rec.tickets]
    drawn = draw_committee(tickets, vrf_keys, dict(credits), alpha, size=size)
    if drawn.refused:
        member, why = drawn.refused[0]
        raise ValueError(f"dynasty {rec.number}: VRF ticket of {member} refused: {why}")
    if drawn.members != rec.committee:
        raise ValueError(
            f"dynasty {rec.number} committee {list(rec.committee)} is not the drawn "
            f"{list(drawn.members)}"
        )
    return rec.dynasty()
