"""Deterministic CBOR: one value, exactly one byte string.

Why CBOR: it is a compact binary standard (RFC 8949) with byte strings, integers and
floats as distinct types, a specified deterministic form, and tags that name the few
extra types we need. JSON has no bytes and no canonical float form; pickle is neither
safe to decode nor stable across versions; protobuf's determinism is not specified.

Encoding follows RFC 8949 §4.2.1 "core deterministic encoding", produced by cbor2 in
``canonical=True`` mode. Checked behaviour of cbor2 6.x (tests/test_codec.py pins it):
integers and lengths take the shortest head; map keys are sorted bytewise by their
encoded form (for text keys, the only keys allowed here: shorter UTF-8 first, then by
UTF-8 bytes, which is also RFC 7049's "length-first" order); floats take the
shortest of half/single/double precision that keeps the value exactly (1.0 -> f93c00,
0.1 -> fb...), every NaN is written as f97e00; no indefinite lengths; integers beyond
64 bits are tag 2/3 bignums without leading zero bytes.

Supported values: None, bool, int, float, str, bytes, list/tuple (both encode as arrays;
arrays decode to tuples), dict with str keys, 1-D ``numpy.float32`` arrays and
dataclasses registered with :func:`record`. Numpy scalars and Enum members encode as
their plain Python value. Extra types use registered CBOR tags:

- tag 85 (RFC 8746 typed array, float32 little-endian) for float32 vectors; the content
  is the raw bytes, so a 431,080-parameter model costs 1.7 MB plus 6 bytes, and decodes
  with one copy to a writeable native ``np.float32`` array;
- tag 27 ("serialised language-independent object with type name and constructor
  arguments", IANA CBOR tags registry) holding ``[type name, {field: value}]`` for
  records. The stable type name, not the Python path, goes on the wire, so modules can
  move without changing record ids. Only ``init`` fields are encoded.

Decoding is strict, because bytes from a peer are hostile until checked:

- any failure is a :class:`CodecError` (never another exception type); nesting is limited
  to :data:`MAX_DEPTH` containers; indefinite lengths, duplicate map keys, non-str map
  keys, trailing bytes and every tag other than 2, 3, 27 and 85 are refused (cbor2's
  value-sharing and string-reference tags would let a few bytes expand into exponential
  work, so they are refused before cbor2 acts on them);
- a record's fields are checked against its annotations (see ``schema.py``) and the
  dataclass is rebuilt through its constructor; an unknown type name is an error;
- with ``strict=True`` (the default) the input must be the canonical encoding of the
  value it decodes to (checked by re-encoding), so a received record's bytes are the
  same bytes every honest node would write for it. The re-encoding's field map of each
  record is handed to the :func:`on_strict_decode` hooks (the ledger keeps record ids
  from it instead of encoding each record once more).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import cbor2
import numpy as np

from fedledger.codec.schema import Mismatch, conform, field_hints
from fedledger.errors import FedledgerError

MAX_DEPTH = 48
"""Most nested containers (arrays, maps, records) a value may have."""

TAG_RECORD = 27
TAG_FLOAT32_LE = 85
# Tags cbor2 would interpret itself; refused before it does (see module doc).
_REFUSED_BUILTIN_TAGS = (
    *(0, 1, 100, 1004),  # dates and times
    *(4, 5, 30),  # decimal fraction, bigfloat (2**exponent work), rational
    *(25, 256, 28, 29),  # string references and value sharing (expansion)
    *(35, 36, 37, 38),  # regex, MIME, UUID, language-tagged string
    *(52, 54, 260, 261),  # IP addresses and networks
    *(258, 55799),  # sets, self-describe prefix
)

_PLAIN_TYPES = (bool, int, float, str, bytes)

T = TypeVar("T")


class CodecError(FedledgerError, ValueError):
    """A value cannot be encoded, or bytes do not decode to a supported value."""


# ---------------------------------------------------------------- record registry


@dataclasses.dataclass(frozen=True)
class _RecordType:
    name: str
    cls: type
    hints: tuple[tuple[str, Any], ...] | None  # resolved on first use


_BY_NAME: dict[str, _RecordType] = {}
_BY_CLASS: dict[type, _RecordType] = {}


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
        if old is not None and _path(old.cls) != _path(cls):
            raise CodecError(
                f"record name {name!r} is already registered for {_path(old.cls)}; "
                f"cannot register {_path(cls)} under it"
            )
        current = _BY_CLASS.get(cls)
        if current is not None and current.name != name:
            raise CodecError(
                f"{_path(cls)} is already registered as {current.name!r}; one name per type"
            )
        entry = _RecordType(name, cls, None)
        _BY_NAME[name] = entry
        _BY_CLASS[cls] = entry
        return cls

    return deco


def _path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def record_name(cls: type) -> str:
    """The registered type name of ``cls``; CodecError if it is not registered."""
    entry = _BY_CLASS.get(cls)
    if entry is None:
        raise CodecError(f"{_path(cls)} is not registered; decorate it with @record(name)")
    return entry.name


def _hints(entry: _RecordType) -> tuple[tuple[str, Any], ...]:
    if entry.hints is None:
        resolved = dataclasses.replace(entry, hints=field_hints(entry.cls))
        _BY_NAME[entry.name] = resolved
        _BY_CLASS[entry.cls] = resolved
        return resolved.hints  # type: ignore[return-value]
    return entry.hints


# ---------------------------------------------------------------- encoding


def encode(value: Any) -> bytes:
    """The canonical CBOR bytes of ``value``; CodecError says what is not encodable."""
    return _encode(value, None)


def _encode(value: Any, found: list[tuple[Any, cbor2.CBORTag]] | None) -> bytes:
    """``encode``; with ``found``, each record met is appended with its CBOR tag."""
    native = _to_native(value, 0, "value", found)
    try:
        return cbor2.dumps(native, canonical=True)
    except Exception as err:  # pragma: no cover - _to_native only builds encodable items
        raise CodecError(f"cbor2 could not encode the value: {err}") from None


def _to_native(
    value: Any, depth: int, where: str, found: list[tuple[Any, cbor2.CBORTag]] | None = None
) -> Any:
    if value is None or type(value) in _PLAIN_TYPES:
        return value
    if isinstance(value, bool | int | float | str | bytes):
        return _plain(value)
    if depth >= MAX_DEPTH:
        raise CodecError(f"{where}: nesting deeper than {MAX_DEPTH} containers")
    if isinstance(value, np.ndarray):
        return _vector(value, where)
    entry = _BY_CLASS.get(type(value))
    if entry is not None:
        return _record_to_native(value, entry, depth, where, found)
    if isinstance(value, list | tuple):
        return [_to_native(v, depth + 1, f"{where}[{i}]", found) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise CodecError(f"{where}: map keys must be str, got {type(k).__name__} {k!r}")
            out[str(k)] = _to_native(v, depth + 1, f"{where}[{k!r}]", found)
        return out
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, np.generic):
        return _to_native(value.item(), depth, where, found)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        raise CodecError(
            f"{where}: dataclass {_path(type(value))} is not registered; "
            "decorate it with @fedledger.codec.record(name)"
        )
    raise CodecError(
        f"{where}: cannot encode {type(value).__name__}; supported: None, bool, int, float, "
        "str, bytes, list, tuple, dict with str keys, 1-D float32 numpy arrays, @record "
        "dataclasses"
    )


def _plain(value: Any) -> Any:
    """Plain Python value of a bool/int/float/str/bytes subclass (e.g. an Enum member)."""
    if isinstance(value, enum.Enum):
        value = value.value
    for kind in (bool, int, float, str, bytes):
        if isinstance(value, kind):
            return kind(value)
    raise CodecError(f"cannot encode {type(value).__name__} {value!r}")  # pragma: no cover


def _vector(arr: np.ndarray, where: str) -> cbor2.CBORTag:
    if arr.dtype.kind != "f" or arr.dtype.itemsize != 4 or arr.ndim != 1:
        raise CodecError(
            f"{where}: numpy arrays must be 1-D float32, got dtype {arr.dtype} with shape "
            f"{arr.shape}; flatten it and convert with .astype(np.float32)"
        )
    return cbor2.CBORTag(TAG_FLOAT32_LE, arr.astype("<f4", copy=False).tobytes())


def _record_to_native(
    value: Any,
    entry: _RecordType,
    depth: int,
    where: str,
    found: list[tuple[Any, cbor2.CBORTag]] | None = None,
) -> cbor2.CBORTag:
    fields = {}
    here = f"{where}<{entry.name}>"
    for name, hint in _hints(entry):
        item = getattr(value, name)
        try:
            item = conform(item, hint)
        except Mismatch as err:
            raise CodecError(f"{here}.{name}: {err}") from None
        fields[name] = _to_native(item, depth + 1, f"{here}.{name}", found)
    tag = cbor2.CBORTag(TAG_RECORD, [entry.name, fields])
    if found is not None:
        found.append((value, tag))
    return tag


# ---------------------------------------------------------------- decoding

_DECODED_HOOKS: list[Callable[[Any, str, dict[str, Any]], None]] = []


def on_strict_decode(hook: Callable[[Any, str, dict[str, Any]], None]) -> None:
    """Call ``hook(rec, type name, fields)`` for each record a strict decode returns.

    ``fields`` is the record's CBOR-ready field map as the canonical check re-encoded
    it (``encode_fields(name, fields)`` gives the record's canonical bytes), so a caller
    can derive values from those bytes without encoding the record again. The hook must
    not change ``fields``. Registered once per hook (by the module that needs it).
    """
    if hook not in _DECODED_HOOKS:
        _DECODED_HOOKS.append(hook)


def encode_fields(name: str, fields: Mapping[str, Any]) -> bytes:
    """Canonical bytes of the record ``name`` whose CBOR-ready field map is ``fields``
    (as given to an :func:`on_strict_decode` hook, possibly with values replaced)."""
    return cbor2.dumps(cbor2.CBORTag(TAG_RECORD, [name, fields]), canonical=True)


def _refuse_tag(decoder: Any) -> Any:
    raise ValueError("tag not allowed in fedledger data")


_SEMANTIC = dict.fromkeys(_REFUSED_BUILTIN_TAGS, _refuse_tag)


def decode(data: bytes, *, strict: bool = True) -> Any:
    """Decode canonical CBOR bytes; any problem is a CodecError naming it.

    strict: also require ``data`` to be exactly ``encode(result)`` (canonical form, no
        trailing bytes). Only bytes this process wrote itself may skip the check.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CodecError(f"decode needs bytes, got {type(data).__name__}")
    data = bytes(data)
    try:
        native = cbor2.loads(
            data,
            max_depth=3 * MAX_DEPTH + 4,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            immutable=True,
            semantic_decoders=_SEMANTIC,
        )
    except Exception as err:
        text = _short(err)
        if "semantic tag" in text:
            text += " (fedledger data allows tags 2, 3, 27 and 85 only)"
        raise CodecError(f"not valid fedledger CBOR ({len(data)} bytes): {text}") from None
    value = _from_native(native, 0, "value")
    if strict:
        found: list[tuple[Any, cbor2.CBORTag]] | None = [] if _DECODED_HOOKS else None
        again = _encode(value, found)
        if again != data:
            shown = f": {data.hex()} given, {again.hex()} expected" if len(data) <= 24 else ""
            raise CodecError(
                f"bytes are not the canonical encoding of the value they hold "
                f"({len(data)} bytes given, canonical form is {len(again)} bytes){shown}"
            )
        for hook in _DECODED_HOOKS:
            for rec, tag in found or ():
                hook(rec, tag.value[0], tag.value[1])
    return value


def decode_as(data: bytes, cls: type[T], *, strict: bool = True) -> T:
    """Decode and check that the value is an instance of ``cls``."""
    value = decode(data, strict=strict)
    if not isinstance(value, cls):
        raise CodecError(f"expected a {cls.__name__}, got {type(value).__name__}")
    return value


def _short(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _from_native(item: Any, depth: int, where: str) -> Any:
    if item is None or type(item) in (bool, int, float, str, bytes):
        return item
    if depth >= MAX_DEPTH:
        raise CodecError(f"{where}: nesting deeper than {MAX_DEPTH} containers")
    if type(item) is tuple:
        return tuple(_from_native(v, depth + 1, f"{where}[{i}]") for i, v in enumerate(item))
    if isinstance(item, cbor2.frozendict | dict):
        out = {}
        for k, v in item.items():
            if type(k) is not str:
                raise CodecError(f"{where}: map keys must be str, got {type(k).__name__}")
            out[k] = _from_native(v, depth + 1, f"{where}[{k!r}]")
        return out
    if isinstance(item, cbor2.CBORTag):
        if item.tag == TAG_FLOAT32_LE:
            return _vector_from(item.value, where)
        if item.tag == TAG_RECORD:
            return _record_from(item.value, depth, where)
        raise CodecError(f"{where}: CBOR tag {item.tag} is not allowed (allowed: 2, 3, 27, 85)")
    raise CodecError(f"{where}: unsupported CBOR item of type {type(item).__name__}")


def _vector_from(content: Any, where: str) -> np.ndarray:
    if type(content) is not bytes or len(content) % 4:
        size = len(content) if isinstance(content, bytes) else type(content).__name__
        raise CodecError(
            f"{where}: a float32 array (tag 85) must hold bytes of a multiple of 4, got {size}"
        )
    return np.frombuffer(content, dtype="<f4").astype(np.float32)


def _record_from(content: Any, depth: int, where: str) -> Any:
    if (
        type(content) is not tuple
        or len(content) != 2
        or type(content[0]) is not str
        or not isinstance(content[1], cbor2.frozendict | dict)
    ):
        raise CodecError(f"{where}: a record (tag 27) must be [type name, {{field: value}}]")
    name, raw = content
    entry = _BY_NAME.get(name)
    if entry is None:
        raise CodecError(f"{where}: unknown record type {name[:80]!r}")
    here = f"{where}<{name}>"
    hints = _hints(entry)
    expected = {n for n, _ in hints}
    got = set(raw)
    if got != expected:
        missing = sorted(expected - got)
        extra = sorted(str(k)[:40] for k in got - expected)
        raise CodecError(f"{here}: fields differ from the type; missing {missing}, extra {extra}")
    kwargs = {}
    for field_name, hint in hints:
        value = _from_native(raw[field_name], depth + 1, f"{here}.{field_name}")
        try:
            kwargs[field_name] = conform(value, hint)
        except Mismatch as err:
            raise CodecError(f"{here}.{field_name}: {err}") from None
    try:
        return entry.cls(**kwargs)
    except Exception as err:
        raise CodecError(f"{here}: the type refused the fields: {_short(err)}") from None
