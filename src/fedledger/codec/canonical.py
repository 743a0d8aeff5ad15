"""Deterministic CBOR: one value, exactly one byte string.

Why CBOR: it is a compact binary standard (RFC 8949) with byte strings, integers and
floats as distinct types, a specified deterministic form, and tags that name the few
extra types we need. JSON has no bytes and no canonical float form; pickle is neither
safe to decode nor stable across versions; protobuf's determinism is not specified.

Encoding follows RFC 8949 §4.2.1 "core deterministic encoding": the bytes of cbor2's
``canonical=True`` mode, written by our own encoder (``encoder.py``, which keeps each
immutable record's bytes on it for reuse; tests/test_codec.py compares it with cbor2 on
random values). Checked behaviour of cbor2 6.x (tests/test_codec.py pins it): integers
and lengths take the shortest head; map keys are sorted bytewise by their encoded form
(for text keys, the only keys allowed here: shorter UTF-8 first, then by UTF-8 bytes,
which is also RFC 7049's "length-first" order); floats take the shortest of
half/single/double precision that keeps the value exactly (1.0 -> f93c00, 0.1 ->
fb...), every NaN is written as f97e00; no indefinite lengths; integers beyond 64 bits
are tag 2/3 bignums without leading zero bytes.

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
  same bytes every honest node would write for it. The re-encoding keeps each
  immutable record's bytes on it (see ``encoder.py``), so a received record is never
  encoded again: not for its id (``ledger.records.record_id``), not when it is put into
  a block or sent on.

The record registry (:func:`record`) is in ``registry.py``.
"""

from __future__ import annotations

from typing import Any, TypeVar

import cbor2
import numpy as np

from fedledger.codec.encoder import encode, encode_replacing, share_encoding
from fedledger.codec.registry import (
    MAX_DEPTH,
    TAG_FLOAT32_LE,
    TAG_RECORD,
    CodecError,
    by_name,
    hints_of,
    record,
    record_name,
)
from fedledger.codec.schema import Mismatch, conform

__all__ = [
    "MAX_DEPTH",
    "TAG_FLOAT32_LE",
    "TAG_RECORD",
    "CodecError",
    "decode",
    "decode_as",
    "encode",
    "encode_replacing",
    "record",
    "record_name",
    "share_encoding",
]

# Tags cbor2 would interpret itself; refused before it does (see module doc).
_REFUSED_BUILTIN_TAGS = (
    *(0, 1, 100, 1004),  # dates and times
    *(4, 5, 30),  # decimal fraction, bigfloat (2**exponent work), rational
    *(25, 256, 28, 29),  # string references and value sharing (expansion)
    *(35, 36, 37, 38),  # regex, MIME, UUID, language-tagged string
    *(52, 54, 260, 261),  # IP addresses and networks
    *(258, 55799),  # sets, self-describe prefix
)

T = TypeVar("T")


# ---------------------------------------------------------------- decoding


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
        again = encode(value)  # keeps the bytes of the (immutable) records decoded
        if again != data:
            shown = f": {data.hex()} given, {again.hex()} expected" if len(data) <= 24 else ""
            raise CodecError(
                f"bytes are not the canonical encoding of the value they hold "
                f"({len(data)} bytes given, canonical form is {len(again)} bytes){shown}"
            )
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
    entry = by_name(name)
    if entry is None:
        raise CodecError(f"{where}: unknown record type {name[:80]!r}")
    here = f"{where}<{name}>"
    hints = hints_of(entry)
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
