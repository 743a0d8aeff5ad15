"""Choosing the legal block of a round among the valid candidate blocks.

PoS (the paper): the block of the miner with the highest accumulated stake, stakes read
from the device's own ledger; ties go to the smaller SHA-256 of (round, miner address),
which no miner can grind because it does not depend on the block's content.

PoW (for comparison): a miner searches a nonce such that
SHA-256("posbfl/pow" || id of the block with nonce 0 || nonce) has ``difficulty``
leading zero bits, and broadcasts after (nonce + 1) hash attempts of virtual time. The
legal block is the valid one found with the fewest attempts (the first miner to finish,
as all start together with equal hash rate); ties go to the smaller block hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence

from fedledger.ledger.records import Block, BlockHeader, record_id
from fedledger.protocols.posbfl.messages import RoundRecord

POW_CONTEXT = b"posbfl/pow"
MAX_NONCE = 1 << 32


def tie_break(rnd: int, proposer: bytes) -> bytes:
    return hashlib.sha256(b"posbfl/tie" + rnd.to_bytes(8, "big") + proposer).digest()


def pick_pos(candidates: Sequence[Block], stakes: Mapping[bytes, float], rnd: int) -> Block | None:
    """The highest-stake proposer's block (deterministic tie-break), or None."""
    if not candidates:
        return None
    return min(
        candidates,
        key=lambda b: (-stakes.get(b.header.proposer, 0.0), tie_break(rnd, b.header.proposer)),
    )


def _nonce_of(block: Block) -> int:
    extra = block.header.extra
    return extra.nonce if isinstance(extra, RoundRecord) else MAX_NONCE


def pick_pow(candidates: Sequence[Block]) -> Block | None:
    """The block sealed with the fewest attempts (smaller hash on ties), or None."""
    if not candidates:
        return None
    return min(candidates, key=lambda b: (_nonce_of(b), b.hash))


def _base_id(header: BlockHeader) -> bytes:
    extra = header.extra
    assert isinstance(extra, RoundRecord)
    unsealed = dataclasses.replace(header, extra=dataclasses.replace(extra, nonce=0), signature=b"")
    return record_id(unsealed)


def _seal(base: bytes, nonce: int) -> bytes:
    return hashlib.sha256(POW_CONTEXT + base + nonce.to_bytes(8, "big")).digest()


def _leading_zero_bits(digest: bytes) -> int:
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


def find_nonce(header: BlockHeader, difficulty: int) -> int:
    """The smallest nonce that seals ``header`` at ``difficulty`` (whose extra is a
    RoundRecord); the miner puts it into the record before signing."""
    base = _base_id(header)
    for nonce in range(MAX_NONCE):
        if _leading_zero_bits(_seal(base, nonce)) >= difficulty:
            return nonce
    raise RuntimeError(f"no nonce below {MAX_NONCE} meets difficulty {difficulty}")


def seal_ok(block: Block, difficulty: int) -> bool:
    """Whether the block's nonce meets ``difficulty``."""
    extra = block.header.extra
    if not isinstance(extra, RoundRecord) or not 0 <= extra.nonce < MAX_NONCE:
        return False
    return _leading_zero_bits(_seal(_base_id(block.header), extra.nonce)) >= difficulty
