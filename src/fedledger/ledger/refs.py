"""Finding the model references inside a transaction payload.

The chain audit checks every ``ModelRef`` a block names against the blob store, and a
node catching up from a peer fetches the blobs of the same references: both walk a
payload with :func:`model_refs`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from fedledger.codec import MAX_DEPTH
from fedledger.ledger.records import ModelRef


def model_refs(value: Any, depth: int = 0) -> Iterator[ModelRef]:
    """Every ModelRef inside a payload (records, tuples, lists and dict values), to the
    codec's nesting limit (a decoded payload is never deeper)."""
    if depth > MAX_DEPTH:
        return
    if isinstance(value, ModelRef):
        yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from model_refs(getattr(value, f.name), depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from model_refs(item, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            yield from model_refs(item, depth + 1)
