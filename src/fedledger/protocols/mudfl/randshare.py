"""RandShare (Syta et al. 2017) on Schoenmakers PVSS: the next dynasty's seed.

The committee of dynasty ``d`` (``n = K`` members, ``f = floor((K - 1) / 3)``,
threshold ``t = f + 1``) runs four phases whose records all go on chain as transaction
payloads, so that any node can redo :func:`finish` from the chain alone:

1. deal: every member posts a :class:`RandShareDeal` (a PVSS dealing to the committee,
   in committee order, index ``j + 1`` for the j-th member);
2. verify: :func:`qualify` checks every dealing publicly; invalid ones, second dealings
   of a dealer and dealings of non-members are excluded with an :class:`Exclusion`
   naming the dealer and the reason. The qualified set Q is the valid dealings in order;
3. reveal: every member posts one :class:`RandShareReveal` per dealer in Q (its decrypted
   share with a DLEQ proof);
4. recover: for every dealer in Q, any ``t`` valid reveals give ``s_i * B`` (invalid
   reveals are excluded with evidence). The output is
   ``SHA-512/256("mudfl/randshare" || d || sum_{i in Q} s_i * B)``.

When fewer than ``2f + 1`` dealings qualify, or a qualified secret cannot be recovered,
the result is the flagged fallback seed of :func:`fedledger.protocols.mudfl.dynasty.fallback_seed`.
Windows (deal and reveal deadlines in slots) are the caller's: this module takes the
records that made it on chain before the deadlines.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from fedledger.codec import record
from fedledger.crypto import edpoints as ed
from fedledger.crypto import pvss
from fedledger.protocols.mudfl.dynasty import fallback_seed

DEAL_TX = "mudfl.randshare.deal"
REVEAL_TX = "mudfl.randshare.reveal"
_OUTPUT_DOMAIN = b"mudfl/randshare"
_CONTEXT_DOMAIN = b"mudfl/randshare/v1"


@record("mudfl.RandShareDeal")
@dataclass(frozen=True)
class RandShareDeal:
    """Dealer ``dealer``'s PVSS transcript for dynasty ``dynasty``'s RandShare."""

    dynasty: int
    dealer: bytes
    commitments: tuple[bytes, ...]
    encrypted: tuple[bytes, ...]
    proofs: tuple[bytes, ...]

    @property
    def dealing(self) -> pvss.Dealing:
        return pvss.Dealing(self.commitments, self.encrypted, self.proofs)


@record("mudfl.RandShareReveal")
@dataclass(frozen=True)
class RandShareReveal:
    """Member ``member`` (index ``index``) reveals its share of ``dealer``'s secret."""

    dynasty: int
    member: bytes
    dealer: bytes
    index: int
    share: bytes
    proof: bytes


@dataclass(frozen=True)
class Member:
    """A committee member: its address and registered PVSS public key."""

    address: bytes
    public_key: bytes


@dataclass(frozen=True)
class Exclusion:
    """Evidence: ``offender``'s record (a deal, or a reveal for ``dealer``) was refused."""

    offender: bytes
    dealer: bytes
    phase: str  # "deal" or "reveal"
    reason: str


@dataclass(frozen=True)
class RandShareResult:
    dynasty: int
    seed: bytes
    fallback: bool
    qualified: tuple[bytes, ...]
    excluded: tuple[Exclusion, ...]


def fault_bound(n: int) -> int:
    """f = floor((n - 1) / 3)."""
    if n < 1:
        raise ValueError(f"a RandShare committee needs at least one member, got {n}")
    return (n - 1) // 3


def threshold(n: int) -> int:
    """t = f + 1 (Syta et al.)."""
    return fault_bound(n) + 1


def context(dynasty: int, dealer: bytes) -> bytes:
    """What every proof of ``dealer``'s dealing in ``dynasty`` is bound to."""
    size = len(dealer).to_bytes(2, "little")
    return _CONTEXT_DOMAIN + dynasty.to_bytes(8, "little") + size + dealer


def member_key(run_seed: int, node_id: str) -> pvss.PvssKey:
    """A simulated member's PVSS key, derived like its VRF key from the run seed."""
    return pvss.PvssKey.derive("mudfl/pvss", run_seed, node_id)


def deal(
    dynasty: int, dealer: bytes, secret_seed: bytes, members: Sequence[Member]
) -> RandShareDeal:
    """Phase 1: ``dealer``'s dealing to ``members`` (its secret derived from ``secret_seed``)."""
    t = threshold(len(members))
    dealing, _ = pvss.deal(
        secret_seed, [m.public_key for m in members], t, context(dynasty, dealer)
    )
    return RandShareDeal(dynasty, dealer, dealing.commitments, dealing.encrypted, dealing.proofs)


def qualify(
    dynasty: int, members: Sequence[Member], deals: Sequence[RandShareDeal]
) -> tuple[dict[bytes, RandShareDeal], list[Exclusion]]:
    """Phase 2: the qualified dealings (dealer -> deal, in chain order) and the exclusions."""
    addresses = {m.address for m in members}
    keys = [m.public_key for m in members]
    t = threshold(len(members))
    qualified: dict[bytes, RandShareDeal] = {}
    seen: dict[bytes, RandShareDeal] = {}
    excluded: list[Exclusion] = []
    for d in deals:
        if d.dynasty != dynasty:
            excluded.append(Exclusion(d.dealer, d.dealer, "deal", f"dynasty {d.dynasty}"))
            continue
        if d.dealer not in addresses:
            excluded.append(Exclusion(d.dealer, d.dealer, "deal", "dealer not in committee"))
            continue
        if d.dealer in seen:
            if seen[d.dealer] != d:
                excluded.append(Exclusion(d.dealer, d.dealer, "deal", "second dealing"))
                qualified.pop(d.dealer, None)
            continue
        seen[d.dealer] = d
        try:
            pvss.verify_dealing(d.dealing, keys, t, context(dynasty, d.dealer))
        except pvss.PvssError as err:
            excluded.append(Exclusion(d.dealer, d.dealer, "deal", str(err)))
            continue
        qualified[d.dealer] = d
    return qualified, excluded


def reveal(
    dynasty: int,
    key: pvss.PvssKey,
    member: bytes,
    index: int,
    qualified: Sequence[RandShareDeal],
) -> list[RandShareReveal]:
    """Phase 3: member ``member`` (index ``index``) reveals its shares of every dealing."""
    out = []
    for d in qualified:
        s = pvss.reveal(key, index, d.encrypted[index - 1], context(dynasty, d.dealer))
        out.append(RandShareReveal(dynasty, member, d.dealer, index, s.share, s.proof))
    return out


def finish(
    dynasty: int,
    members: Sequence[Member],
    deals: Sequence[RandShareDeal],
    reveals: Sequence[RandShareReveal],
    prev_seed: bytes,
    checkpoint: bytes,
) -> RandShareResult:
    """Phases 2 and 4 from the on-chain records: the seed of dynasty ``dynasty + 1``."""
    n = len(members)
    f, t = fault_bound(n), threshold(n)
    qualified, excluded = qualify(dynasty, members, deals)
    q = tuple(qualified)
    if len(q) < 2 * f + 1:
        return RandShareResult(
            dynasty, fallback_seed(prev_seed, checkpoint), True, q, tuple(excluded)
        )
    index_of = {m.address: j for j, m in enumerate(members, start=1)}
    shares: dict[bytes, dict[int, bytes]] = {dealer: {} for dealer in q}
    for r in reveals:
        deal_ = qualified.get(r.dealer)
        j = index_of.get(r.member)
        if deal_ is None or j is None or r.dynasty != dynasty or j != r.index:
            excluded.append(Exclusion(r.member, r.dealer, "reveal", "not a qualified share"))
            continue
        if j in shares[r.dealer]:
            continue
        try:
            pvss.verify_share(
                pvss.DecryptedShare(j, r.share, r.proof),
                members[j - 1].public_key,
                deal_.encrypted[j - 1],
                context(dynasty, r.dealer),
            )
        except pvss.PvssError as err:
            excluded.append(Exclusion(r.member, r.dealer, "reveal", str(err)))
            continue
        shares[r.dealer][j] = r.share
    if any(len(s) < t for s in shares.values()):
        return RandShareResult(
            dynasty, fallback_seed(prev_seed, checkpoint), True, q, tuple(excluded)
        )
    total = ed.IDENTITY
    for dealer in q:
        total = ed.add(total, pvss.recover(shares[dealer], t))
    digest = hashlib.new(
        "sha512_256", _OUTPUT_DOMAIN + dynasty.to_bytes(8, "little") + total
    ).digest()
    return RandShareResult(dynasty, digest, False, q, tuple(excluded))
