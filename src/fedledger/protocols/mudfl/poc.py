"""Proof of Credit (Section V, Def. 1-2, Eq. 1-2, Alg. 1) and chain extension rules i-iii.

Pure functions. Credits are integers (thousandths of a point), so the threshold test
``TB(hc, xi) < (2^xi - 1) * c_j / sum(c)`` is compared exactly as
``TB * sum(c) < (2^xi - 1) * c_j`` (strict, as Alg. 1 line 9).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fedledger.codec import encode
from fedledger.ledger.forkchoice import BlockTreeView
from fedledger.ledger.merkle import merkle_root
from fedledger.ledger.records import Block, record_id
from fedledger.protocols.mudfl.messages import PocClaim

_DOMAIN = b"mudfl/poc/v1"


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
    claim = block.header.extra
    if not isinstance(claim, PocClaim):
        raise ValueError(f"block at height {block.height} carries no PocClaim")
    ids = [record_id(tx) for tx in block.transactions]
    hc = poc_hash(block.parent, ids, block.header.proposer, claim.credit, block.height, claim.slot)
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

    def choose(tree: BlockTreeView) -> bytes:
        tips = tree.tips()
        if not tips:
            return tree.root.hash
        top = max(t.height for t in tips)
        blocks = [tree.get(t.hash) for t in tips if t.height == top]
        found = [b for b in blocks if b is not None]
        best = choose_head(found, xi)
        return best.hash if best is not None else tree.root.hash

    return choose
