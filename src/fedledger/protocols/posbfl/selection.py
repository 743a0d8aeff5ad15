"""Choosing the legal block of a round among the valid candidate blocks.

The rules are :mod:`fedledger.consensus.selection`'s; this module binds them to
PoS-BFL's blocks and its hashing contexts (unchanged, so seals and tie-breaks are the
same bits as before the consensus layer existed).

PoS (the paper): the block of the miner with the highest accumulated stake, stakes read
from the device's own ledger; ties go to the smaller SHA-256 of (round, miner address),
which no miner can grind because it does not depend on the block's content.

PoW (for comparison): a miner searches a nonce such that
SHA-256("posbfl/pow" || id of the block with nonce 0 || nonce) has ``difficulty``
leading zero bits, and broadcasts after (nonce + 1) hash attempts of virtual time. The
legal block is the valid one found with the fewest attempts (the first miner to finish,
as all start together with equal hash rate); ties go to the smaller block hash. The
difficulty is fixed (``pow_difficulty``): PoS-BFL does not retarget.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from fedledger.consensus import selection as rules
from fedledger.consensus.selection import MAX_NONCE
from fedledger.ledger.records import Block, BlockHeader, record_id
from fedledger.protocols.posbfl.messages import RoundRecord

POW_CONTEXT = b"posbfl/pow"
TIE_CONTEXT = b"posbfl/tie"

__all__ = ["MAX_NONCE", "find_nonce", "pick_pos", "pick_pow", "seal_ok", "tie_break"]


def tie_break(rnd: int, proposer: bytes) -> bytes:
    return rules.tie_break(TIE_CONTEXT, rnd, proposer)


def _proposer(block: Block) -> bytes:
    return block.header.proposer


def pick_pos(candidates: Sequence[Block], stakes: Mapping[bytes, float], rnd: int) -> Block | None:
    """The highest-stake proposer's block (deterministic tie-break), or None."""
    return rules.highest_stake(candidates, _proposer, stakes, rnd, TIE_CONTEXT)


def _nonce_of(block: Block) -> int:
    extra = block.header.extra
    return extra.nonce if isinstance(extra, RoundRecord) else MAX_NONCE


def _hash_of(block: Block) -> bytes:
    return block.hash


def pick_pow(candidates: Sequence[Block]) -> Block | None:
    """The block sealed with the fewest attempts (smaller hash on ties), or None."""
    return rules.first_sealed(candidates, _nonce_of, _hash_of)


def _base_id(header: BlockHeader) -> bytes:
    extra = header.extra
    assert isinstance(extra, RoundRecord)
    unsealed = dataclasses.replace(header, extra=dataclasses.replace(extra, nonce=0), signature=b"")
    return record_id(unsealed)


def find_nonce(header: BlockHeader, difficulty: int) -> int:
    """The smallest nonce that seals ``header`` at ``difficulty`` (whose extra is a
    RoundRecord); the miner puts it into the record before signing."""
    target = rules.target_of_bits(difficulty)
    return rules.find_nonce(POW_CONTEXT, _base_id(header), target)


def seal_ok(block: Block, difficulty: int) -> bool:
    """Whether the block's nonce meets ``difficulty``."""
    extra = block.header.extra
    if not isinstance(extra, RoundRecord):
        return False
    target = rules.target_of_bits(difficulty)
    return rules.seal_ok(POW_CONTEXT, _base_id(block.header), extra.nonce, target)
