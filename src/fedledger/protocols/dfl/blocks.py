"""DFL blocks: a draft of the generator's own transactions and their receipts, the
confirmations of the receipt creators, and the final block chained by its digest.

The draft digest is the record id of the header whose ``extra`` holds no
confirmations; confirmations sign it, and it can be recomputed from the final block, so
anyone holding a final block can check every confirmation in it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence

from fedledger.crypto import KeyPair
from fedledger.ledger.records import Block, Transaction, record_id, sign
from fedledger.ledger.verify import Verifier
from fedledger.protocols.dfl.messages import BlockBody
from fedledger.protocols.dfl.records import Confirmation, Receipt
from fedledger.protocols.kit.gate import Reject


def draft_block(
    keys: KeyPair,
    parent: Block,
    now: float,
    transactions: Sequence[Transaction],
    receipts: Iterable[Receipt],
    genesis: bytes,
) -> Block:
    """The signed draft: own transactions with their receipts, no confirmations."""
    tx_ids = {record_id(tx) for tx in transactions}
    kept = sorted((r for r in receipts if r.tx_digest in tx_ids), key=record_id)
    body = BlockBody(genesis=genesis, receipts=tuple(kept))
    block = Block.create(
        parent.hash, parent.height + 1, keys.address, now, tuple(transactions), body
    )
    return sign(block, keys)


def body_of(block: Block) -> BlockBody:
    body = block.header.extra
    if not isinstance(body, BlockBody):
        raise Reject("malformed_block", f"header extra is {type(body).__name__}, not BlockBody")
    return body


def draft_digest(block: Block) -> bytes:
    """The digest confirmations sign: the header without confirmations or signature."""
    body = body_of(block)
    if body.confirmations == ():
        return record_id(block.header)  # a draft: the header is that header already
    header = dataclasses.replace(
        block.header, extra=dataclasses.replace(body, confirmations=()), signature=b""
    )
    return record_id(header)


def confirmable(
    draft: Block, me: bytes, mine: set[bytes], confirmed: set[bytes]
) -> tuple[bytes, ...]:
    """Ids of the draft's receipts that ``me`` created (``mine``) and never confirmed."""
    out = []
    for receipt in body_of(draft).receipts:
        if receipt.creator != me:
            continue
        rid = record_id(receipt)
        if rid in mine and rid not in confirmed:
            out.append(rid)
    return tuple(sorted(out))


def make_confirmation(
    keys: KeyPair, draft: Block, receipt_ids: tuple[bytes, ...], now: float
) -> Confirmation:
    return sign(Confirmation(keys.address, draft_digest(draft), receipt_ids, now), keys)


def check_confirmation(
    verifier: Verifier, draft: Block, confirmation: Confirmation, digest: bytes | None = None
) -> None:
    """A confirmation fits a draft: valid signature, the draft's digest (``digest``, or
    computed), and only receipts of the draft that its creator made (at least one)."""
    verifier.check(confirmation)
    if confirmation.block_digest != (digest or draft_digest(draft)):
        raise Reject("confirmation_wrong_block", "it confirms another block")
    own = {record_id(r) for r in body_of(draft).receipts if r.creator == confirmation.creator}
    ids = set(confirmation.receipt_ids)
    if not ids or not ids <= own or len(ids) != len(confirmation.receipt_ids):
        raise Reject("confirmation_wrong_receipts", "it names receipts its creator did not make")


def confirmed_ids(confirmations: Iterable[Confirmation]) -> set[bytes]:
    return {rid for c in confirmations for rid in c.receipt_ids}


def finalize_ok(
    draft: Block, confirmations: Sequence[Confirmation], rule: str, fraction: float
) -> bool:
    """Whether enough receipts are confirmed: of all receipts ("fraction_all") or of
    each transaction's receipts ("fraction_each")."""
    receipts = body_of(draft).receipts
    done = confirmed_ids(confirmations)
    if rule == "fraction_all":
        got = sum(1 for r in receipts if record_id(r) in done)
        return got >= math.ceil(fraction * len(receipts) - 1e-9)
    if rule == "fraction_each":
        for tx in draft.transactions:
            tx_id = record_id(tx)
            own = [r for r in receipts if r.tx_digest == tx_id]
            got = sum(1 for r in own if record_id(r) in done)
            if got < math.ceil(fraction * len(own) - 1e-9):
                return False
        return True
    raise ValueError(f"finalize rule {rule!r}; allowed: fraction_all, fraction_each")


def final_block(keys: KeyPair, draft: Block, confirmations: Sequence[Confirmation]) -> Block:
    """The signed final block: the draft with its confirmations (sorted by creator)."""
    body = dataclasses.replace(
        body_of(draft), confirmations=tuple(sorted(confirmations, key=lambda c: c.creator))
    )
    header = dataclasses.replace(draft.header, extra=body, signature=b"")
    return sign(Block(header, draft.transactions), keys)


def check_final_block(verifier: Verifier, block: Block, parent: Block | None) -> None:
    """Everything in a final block: header and transactions (signatures, Merkle root,
    link to ``parent``), each receipt's signature and transaction, and each
    confirmation against the draft digest."""
    verifier.check_block(block, parent.header if parent is not None else None)
    body = body_of(block)
    tx_ids = {record_id(tx) for tx in block.transactions}
    for receipt in body.receipts:
        verifier.check(receipt)
        if receipt.tx_digest not in tx_ids:
            raise Reject("receipt_wrong_tx", "a receipt names a transaction not in the block")
    creators = set()
    digest = draft_digest(block)
    for confirmation in body.confirmations:
        check_confirmation(verifier, block, confirmation, digest)
        if confirmation.creator in creators:
            raise Reject("confirmation_duplicate", "two confirmations by one node")
        creators.add(confirmation.creator)
