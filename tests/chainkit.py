"""Helpers for the ledger substrate tests: keys, genesis, signed transactions and blocks."""

from __future__ import annotations

import hashlib
from typing import Any

from fedledger.crypto import KeyPair
from fedledger.ledger.records import (
    Block,
    Genesis,
    Member,
    ModelRef,
    Transaction,
    genesis_block,
    sign,
)


def keys(n: int) -> list[KeyPair]:
    """``n`` deterministic Ed25519 key pairs."""
    return [KeyPair.generate("ed25519", seed=bytes([i + 1]) * 32) for i in range(n)]


def genesis(members: list[KeyPair], extra: Any = None) -> Block:
    g = Genesis(tuple(Member.of(k) for k in members), hashlib.sha256(b"config").digest(), extra)
    return genesis_block(g)


def tx(key: KeyPair, nonce: int, payload: Any = None, kind: str = "note") -> Transaction:
    body = payload if payload is not None else {"text": f"tx {nonce}"}
    return sign(Transaction(key.address, float(nonce), kind, body, nonce), key)


def model_tx(key: KeyPair, nonce: int, data: bytes) -> Transaction:
    from fedledger.storage import cid_of

    ref = ModelRef(cid_of(data), hashlib.sha256(data).digest(), 10)
    return sign(Transaction(key.address, float(nonce), "model", ref, nonce), key)


def block(
    parent: Block,
    proposer: KeyPair,
    txs: tuple[Transaction, ...] = (),
    salt: int = 0,
) -> Block:
    """A signed child of ``parent``; ``salt`` (in the timestamp) makes sibling forks differ."""
    b = Block.create(
        parent.hash,
        parent.height + 1,
        proposer.address,
        float(parent.height + 1) + salt / 1000,
        txs,
    )
    return sign(b, proposer)


def chain(parent: Block, proposer: KeyPair, n: int, salt: int = 0) -> list[Block]:
    """``n`` blocks on top of ``parent``, each with one transaction."""
    out: list[Block] = []
    for _ in range(n):
        prev = out[-1] if out else parent
        out.append(block(prev, proposer, (tx(proposer, prev.height + 1 + 1000 * salt),), salt))
    return out
