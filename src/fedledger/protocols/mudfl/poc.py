"""Proof of Credit (Section V, Def. 1-2, Eq. 1-2, Alg. 1) and chain extension rules i-iii.

Pure functions. Credits are integers (thousandths of a point), so the threshold test
``TB(hc, xi) < (2^xi - 1) * c_j / sum(c)`` is compared exactly as
``TB * sum(c) < (2^xi - 1) * c_j`` (strict, as Alg. 1 line 9).

Two inputs for hc (``poc_input``): "txs", the paper's hash over the block's transaction
ids, which a proposer can grind by trying other subsets or orders of its pool
(:func:`tx_variants`, the ``grind_poc`` fault), and "vrf", the hardened mode of the spec
(Section 5 item 5): hc is the output beta of the proposer's RFC 9381 ECVRF proof over
``"mudfl/poc" || pre_hash || slot`` under its registered VRF key, carried in the header
as a :class:`VrfPocClaim`; nothing the proposer chooses changes it.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from fedledger.codec import encode, record
from fedledger.crypto.keys import CryptoError
from fedledger.crypto.vrf import VrfError, VrfPublicKey, proof_to_hash
from fedledger.ledger.forkchoice import BlockTreeView
from fedledger.ledger.merkle import merkle_root
from fedledger.ledger.records import Block, BlockHeader, record_id
from fedledger.protocols.mudfl.messages import PocClaim

T = TypeVar("T")

_DOMAIN = b"mudfl/poc/v1"
_VRF_DOMAIN = b"mudfl/poc"
TXS, VRF = "txs", "vrf"


@record("mudfl.VrfPocClaim")
@dataclass(frozen=True)
class VrfPocClaim(PocClaim):
    """A PocClaim of the "vrf" mode: ``vrf_proof`` is the proposer's 80-byte ECVRF proof
    over :func:`vrf_alpha` of the block's parent and slot."""

    vrf_proof: bytes = b""


def vrf_alpha(parent: bytes, slot: int) -> bytes:
    """alpha = "mudfl/poc" || pre_hash || slot (8 bytes, big-endian)."""
    if slot < 0:
        raise ValueError(f"slot must be >= 0, got {slot}")
    return _VRF_DOMAIN + bytes(parent) + slot.to_bytes(8, "big")


def vrf_problem(
    claim: PocClaim, parent: bytes, mode: str, key: VrfPublicKey | None
) -> str | None:
    """Why a PoC (not fallback) block's claim does not fit ``mode``, or its VRF proof does
    not verify under the proposer's registered ``key``; None if it does."""
    is_vrf = isinstance(claim, VrfPocClaim)
    if mode == TXS:
        return "a VRF claim on a chain whose PoC input is the transactions" if is_vrf else None
    if not is_vrf:
        return "a PoC block without a VRF proof on a chain whose PoC input is the VRF"
    if key is None:
        return "the proposer has no registered VRF key"
    try:
        key.verify(claim.vrf_proof, vrf_alpha(parent, claim.slot))
    except (VrfError, CryptoError, ValueError) as err:
        return f"VRF proof refused: {err}"
    return None


def tx_variants(txs: Sequence[T], tries: int) -> Iterator[tuple[T, ...]]:
    """Up to ``tries`` distinct candidate transaction lists from a pool's selection, the
    ``grind_poc`` proposer's search: the selection itself, its rotations (other orders,
    all fees kept), then the selection without one transaction each."""
    if tries < 1:
        raise ValueError(f"tries must be >= 1, got {tries}")
    items = tuple(txs)
    n = len(items)
    yield items
    made = 1
    # made lazily: an honest proposer (tries = 1) must not pay O(n^2) per slot
    rotations = (items[k:] + items[:k] for k in range(1, n))
    drops = (items[:k] + items[k + 1 :] for k in range(n))
    for cand in itertools.chain(rotations, drops):
        if made >= tries:
            return
        made += 1
        yield cand


def poc_hash(
    parent: bytes,
    tx_ids: Sequence[bytes],
    proposer: bytes,
    credit: int,
    height: int,
    slot: int,
) -> bytes:
    """hc = H(pre_hash || mt_root || TX || a_j || c_j || height || slot), canonical CBOR.

    The slot is ours: without it a slot with no winner would repeat (same parent, pool
    and height) and PoC alone could stall; rule iii covers it too."""
    ids = tuple(bytes(t) for t in tx_ids)
    body = (_DOMAIN, parent, merkle_root(list(ids)), ids, proposer, credit, height, slot)
    return hashlib.sha256(encode(body)).digest()


def low_bits(hc: bytes, xi: int) -> int:
    """TB(hc, xi): the lower ``xi`` bits of hc (read big-endian)."""
    if not 1 <= xi <= 8 * len(hc):
        raise ValueError(f"xi must be in [1, {8 * len(hc)}], got {xi}")
    return int.from_bytes(hc, "big") & ((1 << xi) - 1)


def wins(proof: int, credit: int, total: int, xi: int) -> bool:
    """Eq. 1-2 with Alg. 1's strict compare: TB < (2^xi - 1) * c / total, exactly."""
    if total <= 0 or credit < 0 or credit > total:
        raise ValueError(f"credit {credit} and total {total}: need 0 <= credit <= total > 0")
    return proof * total < ((1 << xi) - 1) * credit


def block_proof(block: Block, xi: int) -> int:
    """TB(hc, xi) of a PoC block, recomputed from its header and transactions."""
    return header_proof(block.header, [record_id(tx) for tx in block.transactions], xi)


def header_proof(header: BlockHeader, tx_ids: Sequence[bytes], xi: int) -> int:
    """TB(hc, xi) from a header and its transaction ids: hc over them ("txs"), or the
    beta of a :class:`VrfPocClaim`'s proof (2^xi, over every threshold, if the proof is
    malformed; whether it verifies is :func:`vrf_problem`'s question)."""
    claim = header.extra
    if not isinstance(claim, PocClaim):
        raise ValueError(f"block at height {header.height} carries no PocClaim")
    if isinstance(claim, VrfPocClaim):
        try:
            return low_bits(proof_to_hash(claim.vrf_proof), xi)
        except (VrfError, CryptoError, ValueError):
            return 1 << xi
    hc = poc_hash(header.parent, tx_ids, header.proposer, claim.credit, header.height, claim.slot)
    return low_bits(hc, xi)


def credit_shares(credits: Mapping[bytes, int]) -> dict[bytes, float]:
    """Definition 1: p_i = c_i / sum_j c_j over the dynasty's committee."""
    total = sum(credits.values())
    if total <= 0:
        raise ValueError(f"the committee's credits sum to {total}; need > 0")
    return {a: c / total for a, c in credits.items()}


def fallback_proposer(committee: Sequence[bytes], height: int, order: str = "asc") -> bytes:
    """Rule iii: the validator at rank ``height mod K`` of the address-sorted committee
    (``height`` is the new block's height)."""
    if not committee:
        raise ValueError("the committee is empty")
    if order not in ("asc", "desc"):
        raise ValueError(f"fallback order {order!r}: allowed asc, desc")
    ranked = sorted(committee, reverse=order == "desc")
    return ranked[height % len(ranked)]


@dataclass(frozen=True)
class HeadKey:
    """What orders candidate heads of one height (smaller is better)."""

    fallback: bool
    neg_credit: int
    proof: int
    hash: bytes


def head_key(block: Block, xi: int) -> HeadKey:
    """Rule ii: highest credit, then smallest TB(hc), then smaller hash; a rule-iii
    fallback block ranks after every PoC block of its height."""
    claim = block.header.extra
    if not isinstance(claim, PocClaim):
        return HeadKey(True, 0, 1 << 256, block.hash)
    proof = 0 if claim.fallback else block_proof(block, xi)
    return HeadKey(claim.fallback, -claim.credit, proof, block.hash)


def choose_head(candidates: Sequence[Block], xi: int) -> Block | None:
    """Rules i and ii over one slot's valid blocks (None for b = 0)."""
    if not candidates:
        return None
    return min(candidates, key=lambda b: _order(head_key(b, xi)))


def _order(k: HeadKey) -> tuple[bool, int, int, bytes]:
    return (k.fallback, k.neg_credit, k.proof, k.hash)


def poc_fork_choice(xi: int):  # type: ignore[no-untyped-def]
    """A ledger fork choice: the highest tip; among tips of that height, rule ii."""

    # a block's rule-ii key never changes: kept by hash, so a tip is not decoded and its
    # proof (a hash over all its transaction ids) not recomputed at every append
    keys: dict[bytes, HeadKey] = {}

    def key_of(tree: BlockTreeView, block_hash: bytes) -> HeadKey | None:
        key = keys.get(block_hash)
        if key is None:
            block = tree.get(block_hash)
            if block is None:
                return None
            if len(keys) >= 4096:
                keys.clear()
            key = keys[block_hash] = head_key(block, xi)
        return key

    def choose(tree: BlockTreeView) -> bytes:
        tips = tree.tips()
        if not tips:
            return tree.root.hash
        top = max(t.height for t in tips)
        found = [k for t in tips if t.height == top and (k := key_of(tree, t.hash)) is not None]
        return min(found, key=_order).hash if found else tree.root.hash

    return choose
