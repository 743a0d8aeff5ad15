"""Model transactions and receipts: creating them, eq. 1, and the checks a node applies
to a transaction arriving with its receipts (after the signature checks of the
boundary verifier)."""

from __future__ import annotations

from collections.abc import Sequence

from fedledger.crypto import KeyPair
from fedledger.ledger.records import ModelRef, Transaction, record_id, sign
from fedledger.ledger.verify import Verifier
from fedledger.protocols.dfl.messages import TX_KIND, Gossip, ModelTx
from fedledger.protocols.dfl.records import Receipt
from fedledger.protocols.kit.gate import Reject


def make_transaction(
    keys: KeyPair,
    genesis: bytes,
    now: float,
    expire_after: float,
    model: ModelRef,
    ttl: int,
    nonce: int,
) -> Transaction:
    payload = ModelTx(expire_time=now + expire_after, model=model, ttl=ttl, genesis=genesis)
    return sign(Transaction(keys.address, now, TX_KIND, payload, nonce), keys)


def received_at_ttl(tx: Transaction, receipts: Sequence[Receipt]) -> int:
    """Eq. 1: min(tx.ttl, receipts' received_at_ttl) - 1."""
    payload = tx.payload
    assert isinstance(payload, ModelTx)
    return min([payload.ttl, *(r.received_at_ttl for r in receipts)]) - 1


def make_receipt(
    keys: KeyPair, tx: Transaction, receipts: Sequence[Receipt], accuracy: float, now: float
) -> Receipt:
    ttl = max(0, received_at_ttl(tx, receipts))
    accuracy = min(1.0, max(0.0, float(accuracy)))
    return sign(Receipt(keys.address, record_id(tx), ttl, accuracy, now), keys)


def check_signed(verifier: Verifier, rec: Transaction | Receipt, known: set[bytes]) -> bytes:
    """``verifier.check(rec)``, skipped for a (record id, signature) pair verified
    before: a node sees the same transaction and receipts again as they travel."""
    rid = record_id(rec)
    key = rid + rec.signature
    if key not in known:
        verifier.check(rec)
        known.add(key)
    return rid


def check_gossip(
    verifier: Verifier,
    gossip: Gossip,
    genesis: bytes,
    now: float,
    known: set[bytes] | None = None,
) -> bytes:
    """Verify a gossiped transaction and its receipts; return the transaction id.

    Raises ``Rejected`` (counted by the verifier: malformed, unknown signer, bad
    signature) or an uncounted kit ``Reject`` (a DFL rule: wrong kind or genesis,
    expired, receipts that do not belong to it or break eq. 1)."""
    tx = gossip.tx
    known = set() if known is None else known
    tx_id = check_signed(verifier, tx, known)
    payload = tx.payload
    if tx.kind != TX_KIND or not isinstance(payload, ModelTx):
        raise Reject("wrong_kind", f"kind {tx.kind!r}, payload {type(payload).__name__}")
    if payload.genesis != genesis:
        raise Reject("wrong_genesis", "the transaction belongs to another network")
    if payload.expire_time < now:
        raise Reject("expired", f"expired at {payload.expire_time:g}, now {now:g}")
    creators = {tx.sender}
    for receipt in gossip.receipts:
        check_signed(verifier, receipt, known)
        if receipt.tx_digest != tx_id:
            raise Reject("receipt_wrong_tx", "a receipt names another transaction")
        if receipt.received_at_ttl >= payload.ttl:
            raise Reject(
                "receipt_bad_ttl", f"received_at_ttl {receipt.received_at_ttl} >= ttl {payload.ttl}"
            )
        if receipt.creator in creators:
            raise Reject("receipt_duplicate", "two receipts by one node (or by the generator)")
        creators.add(receipt.creator)
    return tx_id
