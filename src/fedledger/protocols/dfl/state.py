"""A DFL node's durable local state: its reputation table and its count of model updates.

Reputation is local (never on chain, never shared), so it is kept in the node's chain
store beside the ledger (``ChainStore.put_state``), written after every model update and
read back on ``Start``: a node that crashes or restarts resumes with the table it had.

The value is the canonical CBOR of a :class:`ReputationState` record, decoded strictly
(canonical bytes, typed fields, a non-negative count). A value that fails is corrupt:
the node counts it (reason ``state_corrupt`` of the ``rejected`` metric) and starts
from an empty table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from fedledger.codec import CodecError, decode_as, encode, record
from fedledger.ledger.store import ChainStore

STATE_KEY = "dfl.reputation"
CORRUPT = "state_corrupt"


@record("dfl.ReputationState")
@dataclass(frozen=True)
class ReputationState:
    """updates: model updates completed; reputation: generator node id -> score."""

    updates: int
    reputation: Mapping[str, float]


def encode_state(state: ReputationState) -> bytes:
    return encode(state)


def decode_state(data: bytes) -> ReputationState:
    """The state in ``data``; CodecError says why it is not a valid one."""
    state = decode_as(data, ReputationState)
    if state.updates < 0:
        raise CodecError(f"dfl reputation state: updates must be >= 0, got {state.updates}")
    return state


def save(ledger: ChainStore, updates: int, reputation: Mapping[str, float]) -> None:
    ledger.put_state(STATE_KEY, encode_state(ReputationState(updates, dict(reputation))))


def load(ledger: ChainStore, drop: Callable[[str], None]) -> ReputationState | None:
    """The stored state; None if there is none, or (counted with ``drop``) if corrupt."""
    data = ledger.get_state(STATE_KEY)
    if data is None:
        return None
    try:
        return decode_state(data)
    except CodecError:
        drop(CORRUPT)
        return None
