"""Boundary verification: check a record once, where it enters a node; count what fails.

A node hands every record that arrives from a peer (or from a file, in an audit) to its
:class:`Verifier` before acting on it. A record that fails is dropped: the verifier
counts the reason in its :class:`RejectCounter`, logs it (logger
``fedledger.ledger.verify``, level INFO) and raises :class:`Rejected`, which the caller
catches; a peer's bad message never crashes a node. Each rejected record is counted
once, under the first reason found. Cheap structural checks run before signatures.

What is checked:

- :meth:`Verifier.decode`: bytes decode (canonically) to the expected type, else
  MALFORMED;
- :meth:`Verifier.check` (signed records): the signer field is a known address
  (UNKNOWN_SENDER), the record id is the one announced (WRONG_ID, when ``expected_id``
  is given), the signature is valid under the signer's key (BAD_SIGNATURE);
- :meth:`Verifier.check_block`: with the parent header, ``parent`` is its hash
  (WRONG_PARENT) and the height is one more (WRONG_HEIGHT); the transactions are distinct
  (DUPLICATE_TX) and ``tx_root`` is their Merkle root (BAD_MERKLE_ROOT); then the header
  and every transaction as by ``check``. Without a parent header (the parent is not at
  hand), the link checks are skipped, except for a height-0 block, which must be a
  well-formed genesis block (BAD_GENESIS) and is trusted by its hash, not a signature.

A verifier remembers the signatures it has found valid (signer key, record id, signature;
at most ``cache_size`` of them, oldest forgotten first), so a record that reaches a node
again, e.g. the same vote inside each of several candidate blocks, is not verified twice.
Only valid signatures are remembered: a record that failed is checked in full again.
Likewise it keeps the transactions of the last block whose transactions all passed: a
block holding the very same transaction objects (several candidate blocks built from
one pool, as the simulator delivers them) skips the duplicate, Merkle-root recomputation
and signature walk over them; the header and its link checks are always made.
The verifier counts its work: ``signatures_checked`` (signature checks it computed) and
``cache_hits`` (valid signatures it recognised instead), which tests read to see how a
node's verification work grows with the size of a network (``tests/test_scale_counts.py``).
A signature it does compute goes through its directory (``KeyDirectory.verify``); in the
simulator that directory may answer from a run-wide memo while still charging this node
one verification (``fedledger.ledger.sigmemo``), so ``signatures_checked`` is the same
with or without the memo.

Protocol rules (who may propose, credit, quorums, timestamps) are the protocols' own.
"""

from __future__ import annotations

import enum
import logging
import operator
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn, TypeVar

from fedledger.codec import CodecError, decode_as
from fedledger.crypto.keys import KeyDirectory
from fedledger.errors import FedledgerError
from fedledger.ledger.merkle import merkle_root
from fedledger.ledger.records import (
    SIGNING_CONTEXT,
    ZERO_HASH,
    Block,
    BlockHeader,
    Genesis,
    RecordError,
    record_id,
    short,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_CACHE_SIZE = 4096


class RejectReason(enum.StrEnum):
    """Why a record was refused at a node's boundary."""

    MALFORMED = "malformed"
    UNKNOWN_SENDER = "unknown_sender"
    WRONG_ID = "wrong_id"
    BAD_SIGNATURE = "bad_signature"
    WRONG_PARENT = "wrong_parent"
    WRONG_HEIGHT = "wrong_height"
    DUPLICATE_TX = "duplicate_tx"
    BAD_MERKLE_ROOT = "bad_merkle_root"
    BAD_GENESIS = "bad_genesis"


class Rejected(FedledgerError):
    """A record failed verification; ``reason`` says why, the message names the record."""

    def __init__(self, reason: RejectReason, record: str, detail: str) -> None:
        self.reason = reason
        self.record = record
        self.detail = detail
        super().__init__(f"rejected {record}: {reason.value}: {detail}")


class RejectCounter:
    """Rejections counted by reason; ``as_dict()`` lists every reason, zeros included."""

    def __init__(self) -> None:
        self._counts = dict.fromkeys(RejectReason, 0)

    def add(self, reason: RejectReason, n: int = 1) -> None:
        self._counts[RejectReason(reason)] += n

    def __getitem__(self, reason: RejectReason | str) -> int:
        return self._counts[RejectReason(reason)]

    def __iter__(self) -> Iterator[RejectReason]:
        return iter(self._counts)

    @property
    def total(self) -> int:
        return sum(self._counts.values())

    def as_dict(self) -> dict[str, int]:
        return {reason.value: n for reason, n in self._counts.items()}

    def __repr__(self) -> str:
        nonzero = {k: v for k, v in self.as_dict().items() if v}
        return f"RejectCounter({nonzero})"


def describe(rec: Any) -> str:
    """A short name for a record in messages: type, id prefix and signer prefix."""
    kind = type(rec).__name__
    try:
        rid = short(record_id(rec))
    except (CodecError, RecordError, TypeError, ValueError):
        return f"{kind} (not encodable)"
    if isinstance(rec, Block):
        return f"Block {rid} (height {rec.header.height})"
    signer_field = getattr(type(rec), "SIGNER", None)
    if isinstance(signer_field, str):
        return f"{kind} {rid} from {short(getattr(rec, signer_field, b''))}"
    return f"{kind} {rid}"


class _Fail(Exception):
    """Internal: a reason found, not yet counted."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class Verifier:
    """Checks records entering one node against its directory of known identities."""

    def __init__(
        self,
        directory: KeyDirectory,
        counter: RejectCounter | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        if cache_size < 0:
            raise ValueError(f"cache_size is {cache_size}; allowed: 0 (no cache) or more")
        self.directory = directory
        self.counter = counter if counter is not None else RejectCounter()
        self.cache_size = cache_size
        # (public key bytes, record id, signature) of valid signatures, oldest first
        self._valid: dict[tuple[bytes, bytes, bytes], None] = {}
        # the transactions of the last block whose transactions all passed, their ids
        # and Merkle root: a block holding the very same transaction objects (a vote or
        # transaction set shared by several candidate blocks) is not walked again
        self._passed_txs: tuple[tuple[Any, ...], list[bytes], bytes] | None = None
        self.signatures_checked = 0  # signature checks computed (valid or not)
        self.cache_hits = 0  # valid signatures recognised from the cache instead

    def _reject(self, reason: RejectReason, record: str, detail: str) -> NoReturn:
        self.counter.add(reason)
        log.info("rejected %s: %s: %s", record, reason.value, detail)
        raise Rejected(reason, record, detail)

    # ------------------------------------------------------------ entry points

    def decode(self, data: bytes, cls: type[T]) -> T:
        """Decode bytes from a peer as a ``cls``; MALFORMED if they are not one."""
        try:
            return decode_as(data, cls)
        except CodecError as err:
            size = len(data) if isinstance(data, bytes | bytearray) else "?"
            self._reject(RejectReason.MALFORMED, f"{cls.__name__} ({size} bytes)", str(err))

    def check(self, rec: Any, expected_id: bytes | None = None) -> bytes:
        """Verify a signed record (not a Block: use :meth:`check_block`); return its id."""
        try:
            if isinstance(rec, Block):
                raise _Fail(RejectReason.MALFORMED, "a Block is checked with check_block")
            return self._signed(rec, expected_id)
        except _Fail as fail:
            self._reject(fail.reason, describe(rec), fail.detail)

    def check_block(
        self,
        block: Any,
        parent_header: BlockHeader | None = None,
        expected_hash: bytes | None = None,
    ) -> bytes:
        """Verify a block (see the module doc for the rules); return its hash."""
        try:
            if not isinstance(block, Block):
                raise _Fail(RejectReason.MALFORMED, f"expected a Block, got {type(block)}")
            return self._block(block, parent_header, expected_hash)
        except _Fail as fail:
            self._reject(fail.reason, describe(block), fail.detail)
        except (CodecError, RecordError) as err:  # only for blocks built locally with bad values
            self._reject(RejectReason.MALFORMED, describe(block), str(err))

    # ------------------------------------------------------------ rules

    def _signed(self, rec: Any, expected_id: bytes | None) -> bytes:
        signer_field = getattr(type(rec), "SIGNER", None)
        if not isinstance(signer_field, str):
            raise _Fail(RejectReason.MALFORMED, f"{type(rec).__name__} is not a signed record")
        signer = getattr(rec, signer_field)
        key = self.directory.get(signer) if isinstance(signer, bytes) else None
        if key is None:
            raise _Fail(RejectReason.UNKNOWN_SENDER, f"{signer_field} {short(signer)} is unknown")
        try:
            rid = record_id(rec)
        except (CodecError, RecordError) as err:
            raise _Fail(RejectReason.MALFORMED, str(err)) from None
        if expected_id is not None and rid != expected_id:
            raise _Fail(
                RejectReason.WRONG_ID,
                f"announced as {short(expected_id)} but its id is {short(rid)}",
            )
        sig = getattr(rec, "signature", None)
        if not isinstance(sig, bytes):
            raise _Fail(RejectReason.MALFORMED, f"signature is {type(sig).__name__}, not bytes")
        seen = (key.data, rid, sig)
        if seen in self._valid:
            self.cache_hits += 1
            return rid
        self.signatures_checked += 1
        if not self.directory.verify(key, SIGNING_CONTEXT + rid, sig):
            raise _Fail(
                RejectReason.BAD_SIGNATURE,
                f"signature ({len(sig)} bytes) is not {short(signer)}'s "
                f"{key.scheme} signature of this record",
            )
        if self.cache_size:
            if len(self._valid) >= self.cache_size:
                del self._valid[next(iter(self._valid))]
            self._valid[seen] = None
        return rid

    def _block(
        self, block: Block, parent: BlockHeader | None, expected_hash: bytes | None
    ) -> bytes:
        header = block.header
        if parent is not None:
            parent_hash = record_id(parent)
            if header.parent != parent_hash:
                raise _Fail(
                    RejectReason.WRONG_PARENT,
                    f"parent is {short(header.parent)}, expected {short(parent_hash)}",
                )
            if header.height != parent.height + 1:
                raise _Fail(
                    RejectReason.WRONG_HEIGHT,
                    f"height {header.height} on a parent of height {parent.height}, "
                    f"expected {parent.height + 1}",
                )
        passed = self._passed_txs
        txs = block.transactions
        again = passed is not None and _same(txs, passed[0])
        if passed is not None and again:
            _, tx_ids, root = passed
        else:
            tx_ids = [record_id(tx) for tx in txs]
            seen: dict[bytes, int] = {}
            for i, tx_id in enumerate(tx_ids):
                if tx_id in seen:
                    raise _Fail(
                        RejectReason.DUPLICATE_TX,
                        f"transaction {i} repeats transaction {seen[tx_id]} ({short(tx_id)})",
                    )
                seen[tx_id] = i
            root = merkle_root(tx_ids)
        if header.tx_root != root:
            raise _Fail(
                RejectReason.BAD_MERKLE_ROOT,
                f"tx_root is {short(header.tx_root)} but the {len(tx_ids)} transactions' root "
                f"is {short(root)}",
            )
        if parent is None and header.height == 0:
            block_hash = self._genesis(block)
        else:
            block_hash = self._signed(header, None)
        if expected_hash is not None and block_hash != expected_hash:
            raise _Fail(
                RejectReason.WRONG_ID,
                f"announced as {short(expected_hash)} but its hash is {short(block_hash)}",
            )
        if again:  # the same objects passed every check below before
            return block_hash
        for i, (tx, tx_id) in enumerate(zip(txs, tx_ids, strict=True)):
            try:
                self._signed(tx, tx_id)
            except _Fail as fail:
                detail = f"transaction {i} ({describe(tx)}): {fail.detail}"
                raise _Fail(fail.reason, detail) from None
        if txs:
            self._passed_txs = (tuple(txs), tx_ids, root)
        return block_hash

    def _genesis(self, block: Block) -> bytes:
        header = block.header
        problems = []
        if header.parent != ZERO_HASH:
            problems.append(f"parent is {short(header.parent)}, not zero")
        if header.proposer != ZERO_HASH:
            problems.append(f"proposer is {short(header.proposer)}, not zero")
        if block.transactions:
            problems.append(f"it holds {len(block.transactions)} transactions, not 0")
        if not isinstance(header.extra, Genesis):
            problems.append(f"extra is {type(header.extra).__name__}, not Genesis")
        if header.signature:
            problems.append("it carries a signature (genesis is trusted by hash)")
        if problems:
            raise _Fail(RejectReason.BAD_GENESIS, "; ".join(problems))
        return record_id(header)


def _same(records: Sequence[Any], kept: tuple[Any, ...]) -> bool:
    """The very same record objects, in order. Identity, not ``==``: two records can be
    equal as values (0.0 and -0.0) yet encode, hash and sign differently."""
    return len(records) == len(kept) and all(map(operator.is_, records, kept))
