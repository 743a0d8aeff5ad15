"""The canonical encoder: values to their one CBOR byte string, written directly.

It produces exactly the bytes of cbor2's ``canonical=True`` mode (RFC 8949 §4.2.1 core
deterministic encoding; tests/test_codec.py compares the two on random values and pins
RFC examples), without building an intermediate tree of CBOR items: each record type's
field order, key bytes and header bytes are computed once (:class:`_Layout`), and
fields whose value already has the declared type skip the schema check.

A record's bytes are kept on the record object (like its id in ``ledger.records``) when
everything inside it is immutable (records, tuples, scalars, str, bytes: no list, dict
or numpy array, which could change after encoding, and whose bytes may be large). Kept
bytes are reused wherever the record is encoded again, alone or inside another value:
a receipt received in a message and later put in a block is encoded once. Records are
values (see ``ledger.records``); their fields are never reassigned.

:func:`encode_replacing` gives a record's bytes with one field replaced (a signed
record's bytes without its signature, for its id) from the kept per-field pieces, and
:func:`share_encoding` gives a copy that differs in one leaf field (a record and its
signed copy) the original's pieces.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from fedledger.codec.registry import (
    _BY_CLASS,
    MAX_DEPTH,
    TAG_FLOAT32_LE,
    TAG_RECORD,
    CodecError,
    RecordType,
    hints_of,
    path_of,
)
from fedledger.codec.schema import Mismatch, conform

_KEPT_ATTR = "_fedledger_cbor"
_DEEP = f"nesting deeper than {MAX_DEPTH} containers"


class _Fail(Exception):
    """Internal: an encoding error; ``path`` grows (innermost first) as it propagates."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str] = []

    def error(self) -> CodecError:
        return CodecError(f"value{''.join(reversed(self.path))}: {self.message}")


class _State:
    """Per encode call: whether the current record holds something mutable, and the
    depth of the deepest container met in it (for the nesting limit of kept bytes)."""

    __slots__ = ("deepest", "mutable")

    def __init__(self) -> None:
        self.mutable = False
        self.deepest = -1


# ---------------------------------------------------------------- heads and leaves

_BYTE = tuple(bytes((i,)) for i in range(256))
_PACK_BB = struct.Struct(">BB").pack
_PACK_BH = struct.Struct(">BH").pack
_PACK_BI = struct.Struct(">BI").pack
_PACK_BQ = struct.Struct(">BQ").pack
_HALF = struct.Struct(">e")
_SINGLE = struct.Struct(">f")
_DOUBLE = struct.Struct(">d")


def _head(major: int, n: int) -> bytes:
    """The shortest head of major type ``major`` (already shifted) and argument ``n``."""
    if n < 24:
        return _BYTE[major | n]
    if n < 0x100:
        return _PACK_BB(major | 24, n)
    if n < 0x10000:
        return _PACK_BH(major | 25, n)
    if n < 0x100000000:
        return _PACK_BI(major | 26, n)
    return _PACK_BQ(major | 27, n)


def _none(value: Any, depth: int, st: _State) -> bytes:
    return b"\xf6"


def _bool(value: bool, depth: int, st: _State) -> bytes:
    return b"\xf5" if value else b"\xf4"


def _int(value: int, depth: int, st: _State) -> bytes:
    if value >= 0:
        if value < 1 << 64:
            return _head(0x00, value)
        return b"\xc2" + _bytes(value.to_bytes((value.bit_length() + 7) // 8, "big"), 0, st)
    n = -1 - value
    if n < 1 << 64:
        return _head(0x20, n)
    return b"\xc3" + _bytes(n.to_bytes((n.bit_length() + 7) // 8, "big"), 0, st)


def _float(value: float, depth: int, st: _State) -> bytes:
    """The shortest of half, single and double precision that keeps the value; every
    NaN is f97e00."""
    if value != value:
        return b"\xf9\x7e\x00"
    try:
        half = _HALF.pack(value)
        if _HALF.unpack(half)[0] == value:
            return b"\xf9" + half
    except OverflowError:
        pass
    try:
        single = _SINGLE.pack(value)
        if _SINGLE.unpack(single)[0] == value:
            return b"\xfa" + single
    except OverflowError:
        pass
    return b"\xfb" + _DOUBLE.pack(value)


def _str(value: str, depth: int, st: _State) -> bytes:
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise _Fail(f"cannot encode str as UTF-8: {err}") from None
    return _head(0x60, len(data)) + data


def _bytes(value: bytes, depth: int, st: _State) -> bytes:
    return _head(0x40, len(value)) + value


# ---------------------------------------------------------------- containers


def _array(value: tuple[Any, ...] | list[Any], depth: int, st: _State) -> bytes:
    if depth >= MAX_DEPTH:
        raise _Fail(_DEEP)
    if depth > st.deepest:
        st.deepest = depth
    if type(value) is not tuple:
        st.mutable = True
    parts = [_head(0x80, len(value))]
    inner = depth + 1
    try:
        for item in value:
            parts.append(_enc(item, inner, st))
    except _Fail as fail:
        fail.path.append(f"[{len(parts) - 1}]")
        raise
    return b"".join(parts)


def _map(value: Mapping[Any, Any], depth: int, st: _State) -> bytes:
    if depth >= MAX_DEPTH:
        raise _Fail(_DEEP)
    if depth > st.deepest:
        st.deepest = depth
    st.mutable = True
    entries = []
    inner = depth + 1
    for k, item in value.items():
        if type(k) is str:
            key = k
        elif isinstance(k, str):
            key = str(k)
        else:
            raise _Fail(f"map keys must be str, got {type(k).__name__} {k!r}")
        try:
            entries.append((_str(key, inner, st), _enc(item, inner, st)))
        except _Fail as fail:
            fail.path.append(f"[{k!r}]")
            raise
    entries.sort()  # by the encoded key (keys are distinct, values never compared)
    return _head(0xA0, len(entries)) + b"".join(k + v for k, v in entries)


def _vector(arr: np.ndarray, depth: int, st: _State) -> bytes:
    if depth >= MAX_DEPTH:
        raise _Fail(_DEEP)
    if depth > st.deepest:
        st.deepest = depth
    st.mutable = True
    if arr.dtype.kind != "f" or arr.dtype.itemsize != 4 or arr.ndim != 1:
        raise _Fail(
            f"numpy arrays must be 1-D float32, got dtype {arr.dtype} with shape "
            f"{arr.shape}; flatten it and convert with .astype(np.float32)"
        )
    raw = arr.astype("<f4", copy=False).tobytes()
    return b"\xd8" + _BYTE[TAG_FLOAT32_LE] + _head(0x40, len(raw)) + raw


# ---------------------------------------------------------------- records

_ANY = object()  # a field annotation that takes any value unchecked


@dataclasses.dataclass(frozen=True)
class _Layout:
    """A record type's encoding: ``prefix`` (tag 27, array of 2, type name, map head)
    and its fields in canonical key order as (name, key bytes, annotation, fast type):
    a value whose type is exactly the fast type needs no schema check."""

    name: str
    prefix: bytes
    fields: tuple[tuple[str, bytes, Any, Any], ...]
    index: dict[str, int]


_LAYOUTS: dict[type, _Layout] = {}


def _fast_type(hint: Any) -> Any:
    if hint is Any or hint is object:
        return _ANY
    if hint is None:
        return type(None)
    if isinstance(hint, type):
        return hint  # conform() returns a value of exactly this type unchanged (or a copy)
    return None  # unions, generics: always conform()


def _layout_of(entry: RecordType) -> _Layout:
    layout = _LAYOUTS.get(entry.cls)
    if layout is None:
        st = _State()
        fields = sorted(
            ((name, _str(name, 0, st), hint, _fast_type(hint)) for name, hint in hints_of(entry)),
            key=lambda f: f[1],
        )
        prefix = (
            b"\xd8"
            + _BYTE[TAG_RECORD]
            + b"\x82"
            + _str(entry.name, 0, st)
            + _head(0xA0, len(fields))
        )
        index = {f[0]: i for i, f in enumerate(fields)}
        layout = _Layout(entry.name, prefix, tuple(fields), index)
        _LAYOUTS[entry.cls] = layout
    return layout


def _field(layout: _Layout, i: int, value: Any, depth: int, st: _State) -> bytes:
    """Key and value bytes of field ``i`` holding ``value`` (schema-checked)."""
    _, key, hint, fast = layout.fields[i]
    if fast is not _ANY and type(value) is not fast:
        try:
            value = conform(value, hint)
        except Mismatch as err:
            raise _Fail(str(err)) from None
    return key + _enc(value, depth + 1, st)


def _kept(value: Any, entry: RecordType, depth: int, st: _State) -> tuple[bytes, tuple, int]:
    """(bytes, per-field pieces, height) of a record: kept ones, or encoded now (and
    kept when nothing inside is mutable)."""
    slots = getattr(value, "__dict__", None)
    if slots is not None:
        kept = slots.get(_KEPT_ATTR)
        if kept is not None:
            height = kept[2]
            if depth + height > MAX_DEPTH:
                raise _Fail(_DEEP)
            if depth + height - 1 > st.deepest:
                st.deepest = depth + height - 1
            return kept
    if depth >= MAX_DEPTH:
        raise _Fail(_DEEP)
    layout = _LAYOUTS.get(entry.cls) or _layout_of(entry)
    outer_mutable, outer_deepest = st.mutable, st.deepest
    st.mutable, st.deepest = False, depth
    pieces = []
    inner = depth + 1
    name = ""
    try:
        for name, key, hint, fast in layout.fields:  # _field(), inlined: the hot loop
            item = getattr(value, name)
            if fast is not _ANY and type(item) is not fast:
                try:
                    item = conform(item, hint)
                except Mismatch as err:
                    raise _Fail(str(err)) from None
            fn = _DISPATCH.get(type(item))
            pieces.append(key + (fn(item, inner, st) if fn is not None else _enc(item, inner, st)))
    except _Fail as fail:
        fail.path.append(f".{name}")
        fail.path.append(f"<{layout.name}>")
        raise
    kept = (layout.prefix + b"".join(pieces), tuple(pieces), st.deepest - depth + 1)
    if slots is not None and not st.mutable:
        slots[_KEPT_ATTR] = kept
    st.mutable = st.mutable or outer_mutable
    if outer_deepest > st.deepest:
        st.deepest = outer_deepest
    return kept


# ---------------------------------------------------------------- dispatch


def _plain(value: Any) -> Any:
    """Plain Python value of a bool/int/float/str/bytes subclass (e.g. an Enum member)."""
    if isinstance(value, enum.Enum):
        value = value.value
    for kind in (bool, int, float, str, bytes):
        if isinstance(value, kind):
            return kind(value)
    raise _Fail(f"cannot encode {type(value).__name__} {value!r}")  # pragma: no cover


def _other(value: Any, depth: int, st: _State) -> bytes:
    """Everything not dispatched on its exact type (subclasses, numpy, errors)."""
    if isinstance(value, bool | int | float | str | bytes):
        return _enc(_plain(value), depth, st)
    if depth >= MAX_DEPTH:
        raise _Fail(_DEEP)
    if isinstance(value, np.ndarray):
        return _vector(value, depth, st)
    if isinstance(value, list | tuple):
        st.mutable = True
        return _array(value, depth, st)
    if isinstance(value, Mapping):
        return _map(value, depth, st)
    if isinstance(value, bytearray | memoryview):
        st.mutable = True
        return _bytes(bytes(value), depth, st)
    if isinstance(value, np.generic):
        return _enc(value.item(), depth, st)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        raise _Fail(
            f"dataclass {path_of(type(value))} is not registered; "
            "decorate it with @fedledger.codec.record(name)"
        )
    raise _Fail(
        f"cannot encode {type(value).__name__}; supported: None, bool, int, float, "
        "str, bytes, list, tuple, dict with str keys, 1-D float32 numpy arrays, @record "
        "dataclasses"
    )


_DISPATCH: dict[type, Callable[[Any, int, _State], bytes]] = {
    type(None): _none,
    bool: _bool,
    int: _int,
    float: _float,
    str: _str,
    bytes: _bytes,
    tuple: _array,
    list: _array,
    dict: _map,
    np.ndarray: _vector,
}


def _enc(value: Any, depth: int, st: _State) -> bytes:
    kind = type(value)
    fn = _DISPATCH.get(kind)
    if fn is not None:
        return fn(value, depth, st)
    entry = _BY_CLASS.get(kind)
    if entry is not None:
        return _kept(value, entry, depth, st)[0]
    return _other(value, depth, st)


# ---------------------------------------------------------------- entry points


def encode(value: Any) -> bytes:
    """The canonical CBOR bytes of ``value``; CodecError says what is not encodable."""
    try:
        return _enc(value, 0, _State())
    except _Fail as fail:
        raise fail.error() from None


def _entry_of(rec: Any) -> RecordType:
    entry = _BY_CLASS.get(type(rec))
    if entry is None:
        if dataclasses.is_dataclass(rec) and not isinstance(rec, type):
            raise CodecError(
                f"value: dataclass {path_of(type(rec))} is not registered; "
                "decorate it with @fedledger.codec.record(name)"
            )
        raise CodecError(f"value: {type(rec).__name__} is not a registered record")
    return entry


def encode_replacing(rec: Any, field: str, value: Any) -> bytes:
    """The canonical bytes of record ``rec`` as if its field ``field`` held ``value``
    (schema-checked like any field), from the record's kept pieces when it has them.
    ``ledger.records`` uses it for a signed record's bytes without the signature."""
    entry = _BY_CLASS.get(type(rec)) or _entry_of(rec)
    layout = _LAYOUTS.get(entry.cls) or _layout_of(entry)
    i = layout.index.get(field)
    if i is None:
        raise CodecError(f"value<{entry.name}>: no field {field!r} to replace")
    slots = getattr(rec, "__dict__", None)
    kept = slots.get(_KEPT_ATTR) if slots is not None else None
    if kept is not None and type(value) is bytes and layout.fields[i][3] is bytes:
        pieces = kept[1]  # the common case: a kept record without its signature
        key = layout.fields[i][1]
        return b"".join(
            (layout.prefix, *pieces[:i], key, _head(0x40, len(value)), value, *pieces[i + 1 :])
        )
    st = _State()
    try:
        _, pieces, _ = _kept(rec, entry, 0, st)
        piece = _field(layout, i, value, 0, st)
    except _Fail as fail:
        if not fail.path:
            fail.path += [f".{field}", f"<{entry.name}>"]
        raise fail.error() from None
    return b"".join((layout.prefix, *pieces[:i], piece, *pieces[i + 1 :]))


def share_encoding(new: Any, old: Any, field: str) -> None:
    """Keep on ``new``, a copy of record ``old`` that differs from it in ``field`` only,
    ``old``'s kept bytes with that field re-encoded (``ledger.records.sign`` gives a
    signed copy the bytes of the unsigned record). Bytes that ``new`` kept before are
    dropped; nothing is kept unless ``old`` has kept bytes and the new value is a leaf
    (not a container)."""
    slots = getattr(new, "__dict__", None)
    if slots is None:
        return
    slots.pop(_KEPT_ATTR, None)
    kept = getattr(old, "__dict__", {}).get(_KEPT_ATTR)
    entry = _BY_CLASS.get(type(old))
    if kept is None or entry is None or type(new) is not type(old):
        return
    layout = _LAYOUTS.get(entry.cls) or _layout_of(entry)
    i = layout.index.get(field)
    if i is None:
        return
    value = getattr(new, field)
    _, key, _, fast = layout.fields[i]
    if type(value) is bytes and fast is bytes:  # a signature: the common case
        piece = key + _head(0x40, len(value)) + value
    else:
        st = _State()
        try:
            piece = _field(layout, i, value, 0, st)
        except _Fail:
            return
        if st.mutable or st.deepest >= 0:
            return
    pieces = (*kept[1][:i], piece, *kept[1][i + 1 :])
    # height: at most the old one (the old field's value may have been deeper)
    slots[_KEPT_ATTR] = (layout.prefix + b"".join(pieces), pieces, kept[2])
