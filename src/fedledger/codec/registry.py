"""The record registry of the canonical codec: stable type names for frozen dataclasses.

A record type is registered once under a stable name (``@record("ledger.Block")``);
the name, not the Python path, goes on the wire and into record ids, so modules can move
without changing ids. The encoder and the decoder look types up here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from fedledger.codec.schema import field_hints
from fedledger.errors import FedledgerError

MAX_DEPTH = 48
"""Most nested containers (arrays, maps, records) a value may have."""

TAG_RECORD = 27
TAG_FLOAT32_LE = 85

T = TypeVar("T")


class CodecError(FedledgerError, ValueError):
    """A value cannot be encoded, or bytes do not decode to a supported value."""


@dataclasses.dataclass(frozen=True)
class RecordType:
    name: str
    cls: type
    hints: tuple[tuple[str, Any], ...] | None  # resolved on first use


_BY_NAME: dict[str, RecordType] = {}
_BY_CLASS: dict[type, RecordType] = {}


def record(name: str) -> Callable[[type[T]], type[T]]:
    """Register a frozen dataclass under a stable type name (decorator).

    The name is what goes on the wire and into record ids; never reuse or rename one.
    """
    if not isinstance(name, str) or not name or len(name) > 100:
        raise CodecError(f"record name must be a non-empty str of at most 100 chars, got {name!r}")

    def deco(cls: type[T]) -> type[T]:
        params = getattr(cls, "__dataclass_params__", None)
        if params is None or not params.frozen:
            raise CodecError(
                f"@record({name!r}) needs a frozen dataclass; {cls.__qualname__} is not one"
            )
        old = _BY_NAME.get(name)
        if old is not None and path_of(old.cls) != path_of(cls):
            raise CodecError(
                f"record name {name!r} is already registered for {path_of(old.cls)}; "
                f"cannot register {path_of(cls)} under it"
            )
        current = _BY_CLASS.get(cls)
        if current is not None and current.name != name:
            raise CodecError(
                f"{path_of(cls)} is already registered as {current.name!r}; one name per type"
            )
        entry = RecordType(name, cls, None)
        _BY_NAME[name] = entry
        _BY_CLASS[cls] = entry
        return cls

    return deco


def path_of(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def record_name(cls: type) -> str:
    """The registered type name of ``cls``; CodecError if it is not registered."""
    entry = _BY_CLASS.get(cls)
    if entry is None:
        raise CodecError(f"{path_of(cls)} is not registered; decorate it with @record(name)")
    return entry.name


def by_class(cls: type) -> RecordType | None:
    return _BY_CLASS.get(cls)


def by_name(name: str) -> RecordType | None:
    return _BY_NAME.get(name)


def hints_of(entry: RecordType) -> tuple[tuple[str, Any], ...]:
    """``(field, annotation)`` of the record's init fields, resolved on first use."""
    if entry.hints is None:
        resolved = dataclasses.replace(entry, hints=field_hints(entry.cls))
        _BY_NAME[entry.name] = resolved
        _BY_CLASS[entry.cls] = resolved
        return resolved.hints  # type: ignore[return-value]
    return entry.hints
