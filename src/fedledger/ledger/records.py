"""The records a ledger holds and nodes sign: transactions, blocks, votes, ...

Every record is a frozen dataclass registered with the canonical codec under a stable
type name ("ledger.<Class>"). Addresses and hashes are 32-byte ``bytes``; times are float
seconds of the host clock (virtual in the simulator, wall clock on a real node).

Identity and signatures:

- ``record_id(rec)`` is SHA-256 of the canonical encoding of ``rec`` with its signature
  field emptied, so the id exists before signing and does not depend on signature bytes.
  The type name is part of the encoding, so records of two types never share an id.
  Protocols define their own signed records the same way (DFL's receipts and
  confirmations: ``fedledger.protocols.dfl.records``).
- a signed record type names its signer field in the ClassVar ``SIGNER`` (``sender``,
  ``proposer``, ``voter``, ``creator``); the signer signs
  ``SIGNING_CONTEXT + record_id(rec)`` (a fixed prefix, so a record signature can never be
  replayed as a signature over some other 32-byte value the same key signs).
- a Block is not signed itself: its header is, by the proposer, and the header commits
  to the transactions through ``tx_root`` (Merkle root of the transaction ids).
  ``Block.hash`` is ``record_id(block.header)``, and ``record_id``, ``signer_of``,
  ``sign`` and ``signature_ok`` accept a Block and act on its header.

Fields are validated on construction (hash lengths, non-negative heights), so a record
decoded from a peer with a 31-byte address is refused by the codec (``CodecError``), and
a local bug fails where it is made. Records are values: payloads and ``extra`` should be
records, tuples or dicts that are not mutated after construction.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from fedledger.codec import CodecError, encode, record
from fedledger.codec.encoder import encode_replacing, share_encoding
from fedledger.crypto.keys import SCHEMES, CryptoError, KeyDirectory, KeyPair, PublicKey
from fedledger.errors import FedledgerError
from fedledger.ledger.merkle import merkle_root

HASH_SIZE = 32
ZERO_HASH = bytes(HASH_SIZE)
SIGNING_CONTEXT = b"fedledger/record/v1\x00"
_ID_ATTR = "_fedledger_record_id"

R = TypeVar("R")


class RecordError(FedledgerError, ValueError):
    """A record has an invalid field, or a signing operation does not fit the record."""


def short(value: bytes) -> str:
    """First 8 hex digits of a hash or address, for messages and logs."""
    return value[:4].hex() if isinstance(value, bytes) else repr(value)[:16]


def _need_hash(rec: object, *names: str) -> None:
    for name in names:
        value = getattr(rec, name)
        if not isinstance(value, bytes) or len(value) != HASH_SIZE:
            got = f"{len(value)} bytes" if isinstance(value, bytes) else type(value).__name__
            raise RecordError(
                f"{type(rec).__name__}.{name} must be {HASH_SIZE} bytes (an address or a "
                f"SHA-256 hash), got {got}"
            )


def _need_signature(rec: object) -> None:
    sig = getattr(rec, "signature")  # noqa: B009 - every signed record has it
    if not isinstance(sig, bytes):
        raise RecordError(f"{type(rec).__name__}.signature must be bytes, got {type(sig).__name__}")


def _need_non_negative(rec: object, *names: str) -> None:
    for name in names:
        value = getattr(rec, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise RecordError(f"{type(rec).__name__}.{name} must be an int >= 0, got {value!r}")


# ---------------------------------------------------------------- records


@record("ledger.ModelRef")
@dataclass(frozen=True)
class ModelRef:
    """A model kept off chain: its content id (CIDv1 text) and SHA-256 of its bytes."""

    cid: str
    sha256: bytes
    num_samples: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.cid, str) or not self.cid:
            raise RecordError(f"ModelRef.cid must be a non-empty CID string, got {self.cid!r}")
        _need_hash(self, "sha256")
        _need_non_negative(self, "num_samples")


@record("ledger.Transaction")
@dataclass(frozen=True)
class Transaction:
    """A signed statement by ``sender``; ``payload`` is any codec-encodable value."""

    SIGNER: ClassVar[str] = "sender"

    sender: bytes
    timestamp: float
    kind: str
    payload: Any
    nonce: int = 0
    signature: bytes = b""

    def __post_init__(self) -> None:
        _need_hash(self, "sender")
        _need_signature(self)
        if not isinstance(self.kind, str) or not self.kind:
            raise RecordError(f"Transaction.kind must be a non-empty str, got {self.kind!r}")
        _need_non_negative(self, "nonce")


@record("ledger.BlockHeader")
@dataclass(frozen=True)
class BlockHeader:
    """A block's header, signed by its proposer; ``extra`` holds protocol records."""

    SIGNER: ClassVar[str] = "proposer"

    parent: bytes
    height: int
    tx_root: bytes
    proposer: bytes
    timestamp: float
    extra: Any = None
    signature: bytes = b""

    def __post_init__(self) -> None:
        _need_hash(self, "parent", "tx_root", "proposer")
        _need_non_negative(self, "height")
        _need_signature(self)


@record("ledger.Block")
@dataclass(frozen=True)
class Block:
    """A header and the transactions it commits to (by ``header.tx_root``)."""

    header: BlockHeader
    transactions: tuple[Transaction, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.header, BlockHeader):
            raise RecordError(f"Block.header must be a BlockHeader, got {type(self.header)}")
        if not isinstance(self.transactions, tuple) or not all(
            isinstance(tx, Transaction) for tx in self.transactions
        ):
            raise RecordError("Block.transactions must be a tuple of Transaction records")

    @classmethod
    def create(
        cls,
        parent: bytes,
        height: int,
        proposer: bytes,
        timestamp: float,
        transactions: tuple[Transaction, ...] = (),
        extra: Any = None,
    ) -> Block:
        """An unsigned block whose ``tx_root`` is computed from the transactions' ids."""
        txs = tuple(transactions)
        header = BlockHeader(
            parent=parent,
            height=height,
            tx_root=tx_root(txs),
            proposer=proposer,
            timestamp=timestamp,
            extra=extra,
        )
        return cls(header, txs)

    @property
    def hash(self) -> bytes:
        return record_id(self.header)

    @property
    def height(self) -> int:
        return self.header.height

    @property
    def parent(self) -> bytes:
        return self.header.parent


@record("ledger.Vote")
@dataclass(frozen=True)
class Vote:
    """``voter`` gives ``value`` to ``target`` (a block hash, record id or address)."""

    SIGNER: ClassVar[str] = "voter"

    voter: bytes
    target: bytes
    value: int
    epoch: int
    timestamp: float
    signature: bytes = b""

    def __post_init__(self) -> None:
        _need_hash(self, "voter", "target")
        _need_non_negative(self, "epoch")
        _need_signature(self)


@record("ledger.Member")
@dataclass(frozen=True)
class Member:
    """A founding identity: address, signature scheme and public key bytes."""

    address: bytes
    scheme: str
    public_key: bytes

    def __post_init__(self) -> None:
        _need_hash(self, "address")
        if self.scheme not in SCHEMES:
            raise RecordError(
                f"Member.scheme must be one of {', '.join(SCHEMES)}, got {self.scheme!r}"
            )
        if not isinstance(self.public_key, bytes):
            raise RecordError(f"Member.public_key must be bytes, got {type(self.public_key)}")

    @classmethod
    def of(cls, key: PublicKey | KeyPair) -> Member:
        public = key.public if isinstance(key, KeyPair) else key
        return cls(public.address, public.scheme, public.to_bytes())

    def public(self) -> PublicKey:
        """The parsed key; RecordError if it is malformed or does not match the address."""
        try:
            key = PublicKey.from_bytes(self.scheme, self.public_key)
        except CryptoError as err:
            raise RecordError(f"member {short(self.address)}: {err}") from None
        if key.address != self.address:
            raise RecordError(
                f"member {short(self.address)}: address is not SHA-256 of its public key "
                f"(that would be {short(key.address)})"
            )
        return key


@record("ledger.Genesis")
@dataclass(frozen=True)
class Genesis:
    """What the height-0 block fixes: founding members and the digest of the config."""

    members: tuple[Member, ...]
    config_digest: bytes
    extra: Any = None

    def __post_init__(self) -> None:
        _need_hash(self, "config_digest")
        seen: set[bytes] = set()
        for m in self.members:
            if not isinstance(m, Member):
                raise RecordError(f"Genesis.members holds Member records, got {type(m)}")
            if m.address in seen:
                raise RecordError(f"Genesis lists member {short(m.address)} twice")
            seen.add(m.address)

    def directory(self) -> KeyDirectory:
        """A KeyDirectory of the members (each key parsed and checked against its address)."""
        return KeyDirectory(m.public() for m in self.members)


def genesis_block(genesis: Genesis, timestamp: float = 0.0) -> Block:
    """The unsigned height-0 block: parent and proposer are 32 zero bytes, no transactions,
    ``header.extra`` is ``genesis``. Nodes trust it by configuration, not by signature."""
    if not isinstance(genesis, Genesis):
        raise RecordError(f"genesis_block needs a Genesis record, got {type(genesis).__name__}")
    return Block.create(ZERO_HASH, 0, ZERO_HASH, timestamp, (), genesis)


# ---------------------------------------------------------------- ids and signatures


def tx_root(transactions: tuple[Transaction, ...]) -> bytes:
    """Merkle root of the transactions' ids (in block order)."""
    return merkle_root([record_id(tx) for tx in transactions])


def _signed(rec: Any) -> Any:
    """The record that carries the signature (a Block's header), or RecordError."""
    if isinstance(rec, Block):
        return rec.header
    kind = type(rec)
    if not hasattr(kind, "__dataclass_fields__") or not isinstance(
        getattr(kind, "SIGNER", None), str
    ):
        raise RecordError(
            f"{type(rec).__name__} is not a signed record type (signed types declare a SIGNER "
            "field: Transaction, BlockHeader, Block, Vote, and protocols' own signed records)"
        )
    return rec


def record_id(rec: Any) -> bytes:
    """SHA-256 of the canonical bytes of ``rec`` with its signature emptied (if it has one).

    For a Block this is its header's id (``Block.hash``). The id is computed once per
    record object and kept on it (records are immutable values; see the module doc);
    ``sign`` gives it to the signed copy. The bytes come from the codec's kept pieces of
    the record where it has them (a record decoded strictly, or encoded before), so a
    received record is hashed, not encoded again (``codec.encoder``).
    """
    if isinstance(rec, Block):
        rec = rec.header
    slots = getattr(rec, "__dict__", None)
    if slots is not None and _ID_ATTR in slots:
        return slots[_ID_ATTR]
    if getattr(rec, "signature", b"") != b"" and dataclasses.is_dataclass(rec):
        data = encode_replacing(rec, "signature", b"")
    else:
        data = encode(rec)
    rid = hashlib.sha256(data).digest()
    if slots is not None:
        slots[_ID_ATTR] = rid  # bypasses the frozen __setattr__; not a dataclass field
    return rid


def signer_of(rec: Any) -> bytes:
    """The address that must have signed ``rec`` (its SIGNER field)."""
    inner = _signed(rec)
    return getattr(inner, type(inner).SIGNER)


def signing_message(rec: Any) -> bytes:
    """The bytes a signer signs: ``SIGNING_CONTEXT + record_id(rec)``."""
    return SIGNING_CONTEXT + record_id(_signed(rec))


def sign(rec: R, keypair: KeyPair) -> R:
    """A copy of ``rec`` signed by ``keypair``, whose address must be the record's signer.

    The copy keeps the record's id and its canonical bytes with the signature put in
    (see ``codec.encoder.share_encoding``), so neither is computed again."""
    inner = _signed(rec)
    signer_field = type(inner).SIGNER
    signer = getattr(inner, signer_field)
    address = keypair.address
    if address != signer:
        raise RecordError(
            f"cannot sign {type(inner).__name__}: its {signer_field} is "
            f"{short(signer)} but the key pair's address is {short(address)}"
        )
    rid = record_id(inner)
    signed = _with_signature(inner, keypair.sign(SIGNING_CONTEXT + rid))
    slots = getattr(signed, "__dict__", None)
    if slots is not None:
        slots[_ID_ATTR] = rid  # the id leaves the signature out, so the copy shares it
        share_encoding(signed, inner, "signature")  # and its bytes, but the signature
    if isinstance(rec, Block):
        return Block(signed, rec.transactions)  # type: ignore[return-value]
    return signed


def _with_signature(inner: Any, signature: bytes) -> Any:
    """``dataclasses.replace(inner, signature=signature)``; for records that keep their
    fields in ``__dict__``, a copy of it without running the constructor's checks
    again (every other field was checked when ``inner`` was built, and a signature
    from ``KeyPair.sign`` is bytes)."""
    slots = getattr(inner, "__dict__", None)
    if slots is None or "signature" not in slots or not isinstance(signature, bytes):
        return dataclasses.replace(inner, signature=signature)
    signed = object.__new__(type(inner))
    fields = signed.__dict__
    for name in _field_names(type(inner)):  # the fields only: nothing kept about ``inner``
        fields[name] = slots[name]
    fields["signature"] = signature
    return signed


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls))
        _FIELD_NAMES[cls] = names
    return names


def signature_ok(rec: Any, public_key: PublicKey) -> bool:
    """True if ``rec``'s signature is valid under ``public_key``; never raises.

    The caller chooses the key (normally ``directory[signer_of(rec)]``).
    """
    try:
        inner = _signed(rec)
        msg = signing_message(inner)
    except (RecordError, CodecError):
        return False
    return public_key.verify(msg, inner.signature)
