"""PoC grinding (the ``grind_poc`` fault) measured: how often a grinding proposer wins a
slot against its credit share, under the paper's PoC input ("txs") and the hardened
one ("vrf").

Under "txs", hc hashes the block's transaction ids, so a proposer that tries ``tries``
different lists from its pool (:func:`poc.tx_variants`) wins a slot with probability
about ``1 - (1 - p)^tries`` instead of ``p``: a rational proposer takes that for free,
and no node can tell (every block it sends is valid). Under "vrf", hc is the VRF output
over the parent and the slot: one value per slot, whatever the pool holds.

:func:`measure` replays the same functions the proposer uses (``poc_hash``,
``tx_variants``, ``wins``, the ECVRF) over ``slots`` synthetic slots, seeded, with an
honest member of the same credit beside the grinder; the test and the paper benchmark
call it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from fedledger.crypto.vrf import derive_vrf_key, proof_to_hash
from fedledger.protocols.mudfl import poc


@dataclass(frozen=True)
class GrindStats:
    """Slots won by the grinder and by an honest member of equal credit."""

    mode: str
    tries: int
    slots: int
    share: float  # each one's credit share p_i
    grinder_wins: int
    honest_wins: int

    @property
    def grinder_rate(self) -> float:
        return self.grinder_wins / self.slots

    @property
    def honest_rate(self) -> float:
        return self.honest_wins / self.slots

    @property
    def advantage(self) -> float:
        """The grinder's win rate over its share (1: no advantage)."""
        return self.grinder_rate / self.share


def _h(*parts: bytes) -> bytes:
    return hashlib.sha256(b"mudfl/grind-measure".join(parts)).digest()


def measure(
    mode: str,
    tries: int = 16,
    committee: int = 4,
    pool: int = 8,
    slots: int = 1000,
    seed: int = 0,
    xi: int = 64,
) -> GrindStats:
    """Win counts over ``slots`` slots of a grinder trying ``tries`` transaction lists
    and an honest member, both at share 1/``committee`` of equal credits, with
    ``pool`` transactions pooled each slot."""
    if mode not in (poc.TXS, poc.VRF):
        raise ValueError(f"mode {mode!r}: allowed {poc.TXS!r}, {poc.VRF!r}")
    if committee < 1 or pool < 0 or slots < 1:
        raise ValueError(f"committee {committee} >= 1, pool {pool} >= 0, slots {slots} >= 1")
    credit, total = 1000, 1000 * committee
    tag = seed.to_bytes(8, "little", signed=True)
    who = {"grinder": _h(tag, b"grinder"), "honest": _h(tag, b"honest")}
    keys = {n: derive_vrf_key(seed, f"grind-{n}") for n in who}
    wins = dict.fromkeys(who, 0)
    for slot in range(slots):
        s = slot.to_bytes(8, "little")
        parent = _h(tag, b"parent", s)
        txs = [_h(tag, b"tx", s, j.to_bytes(4, "little")) for j in range(pool)]
        for name, address in who.items():
            n_tries = tries if name == "grinder" else 1
            if mode == poc.VRF:  # no input the proposer picks: one draw per slot
                beta = proof_to_hash(keys[name].prove(poc.vrf_alpha(parent, slot)))
                won = poc.wins(poc.low_bits(beta, xi), credit, total, xi)
            else:
                won = any(
                    poc.wins(
                        poc.low_bits(poc.poc_hash(parent, ids, address, credit, slot, slot), xi),
                        credit,
                        total,
                        xi,
                    )
                    for ids in poc.tx_variants(txs, n_tries)
                )
            wins[name] += won
    return GrindStats(mode, tries, slots, 1 / committee, wins["grinder"], wins["honest"])
