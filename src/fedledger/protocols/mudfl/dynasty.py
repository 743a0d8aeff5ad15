"""Committees per dynasty: VRF sortition over credit weights (Section IV-B step 1).

Every eligible client's ticket is an RFC 9381 ECVRF proof over
``committee_alpha(seed_d, d, "mudfl/committee")``; the committee is the fixed-size
weighted sample of :func:`fedledger.consensus.committee.draw_committee` (Efraimidis-
Spirakis on the credits, exact arithmetic). Each client proves only its own ticket, with
the VRF key registered for it in the genesis (``NodeServices.extra``; derived from the
experiment seed and its id in the simulator and a localnet), and sends it to the running
committee; the proposer of the dynasty block draws the committee from the tickets it
received and every node checks each ticket against the registered key (``tickets.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from fedledger.codec import record
from fedledger.consensus.committee import Ticket, committee_alpha, draw_committee, make_ticket
from fedledger.crypto.vrf import VrfKey, VrfPublicKey, derive_vrf_key

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


def d_init(
    genesis: bytes, clients: Sequence[str], credits: Mapping[str, int], size: int
) -> Dynasty:
    """Dynasty 0 on a network with registered VRF keys, where no node can prove another's
    ticket: the administrator's initial committee D_init, fixed by the genesis block it
    convened: the ``size`` clients with the smallest ``H("mudfl/d_init" || genesis || id)``
    (every client starts with the same credit, so a uniform draw is the weighted one)."""

    def rank(c: str) -> bytes:
        return hashlib.sha256(b"mudfl/d_init" + genesis + c.encode()).digest()

    members = tuple(sorted(clients, key=rank)[:size])
    return Dynasty(0, genesis, members, dict(credits))


def propose_record(
    number: int,
    seed: bytes,
    seed_fallback: bool,
    credits: Mapping[str, int],
    size: int,
    tickets: Mapping[str, bytes],
    vrf_keys: Mapping[str, VrfPublicKey],
    settlement: Any = None,
) -> DynastyRecord:
    """The record of dynasty ``number`` drawn with ``seed`` (the previous RandShare output)
    from the ``tickets`` the proposer received (client -> its own VRF proof over
    ``committee_alpha(seed, number)``): tickets that do not verify under the client's
    registered key are left out, the committee is drawn from the others."""
    alpha = committee_alpha(seed, number, PURPOSE)
    candidates = [Ticket(c, p) for c, p in sorted(tickets.items())]
    drawn = draw_committee(candidates, vrf_keys, dict(credits), alpha, size=size)
    refused = {c for c, _ in drawn.refused}  # not drawn: left out of the record too
    valid = tuple((c, p) for c, p in sorted(tickets.items()) if c not in refused)
    return DynastyRecord(
        number,
        seed,
        seed_fallback,
        drawn.members,
        tuple(sorted(credits.items())),
        valid,
        settlement,
    )


def own_ticket(key: VrfKey, seed: bytes, number: int) -> bytes:
    """A client's VRF proof for dynasty ``number`` drawn with ``seed`` (only its key holder
    can make it)."""
    return key.prove(committee_alpha(seed, number, PURPOSE))


def derived_tickets(
    number: int, seed: bytes, clients: Sequence[str], run_seed: int
) -> dict[str, bytes]:
    """Every client's ticket from seed-derived keys (simulator tools and tests only)."""
    return {c: own_ticket(derive_vrf_key(run_seed, c), seed, number) for c in sorted(clients)}


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
    if not rec.tickets:
        raise ValueError(f"dynasty {rec.number} record carries no VRF ticket")
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
