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
from dataclasses import dataclass

from fedledger.consensus.committee import committee_alpha, draw_committee, make_ticket
from fedledger.crypto.vrf import derive_vrf_key

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
