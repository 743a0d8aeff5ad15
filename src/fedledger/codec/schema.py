"""Check (and minimally coerce) a record field's value against its type annotation.

A peer's bytes decode to plain CBOR values; before a registered dataclass is rebuilt from
them, every field is checked against the dataclass's annotations, so a record whose
``sender`` arrives as an int is rejected at the boundary (``CodecError``) instead of
crashing a node three calls later. The same check runs when encoding, so a local bug
(a ``str`` where ``bytes`` is declared) fails where it is made.

Supported annotation forms: ``Any``/``object`` (anything), ``None``, ``bool``, ``int``,
``float``, ``str``, ``bytes``, ``numpy.ndarray``, Enum classes, other classes (including
registered dataclasses; checked with ``isinstance``), unions (``X | None``),
``tuple[X, ...]``, ``tuple[X, Y]``, bare ``tuple``, ``list[X]``, ``Mapping``/``dict[str, X]``
and ``Literal[...]``. Other forms (callables, type variables, unresolvable forward
references) are accepted unchecked.

Coercions, each value-preserving and needed for determinism:

- an ``int`` in a ``float`` field becomes a ``float``: ``Transaction(timestamp=0)`` and
  ``Transaction(timestamp=0.0)`` compare equal in Python, so they must encode (and hash)
  to the same bytes;
- a decoded array (always a tuple) in a ``list[...]`` field becomes a list;
- a ``str``/``int`` in an Enum field becomes that Enum member (and an Enum member
  encodes as its plain value).
"""

from __future__ import annotations

import dataclasses
import enum
import sys
import types
import typing
from collections.abc import Mapping
from typing import Any

import numpy as np


class Mismatch(Exception):
    """A value does not conform to an annotation; ``str(err)`` says how."""


def field_hints(cls: type) -> tuple[tuple[str, Any], ...]:
    """``(name, annotation)`` of the dataclass's init fields, in declaration order.

    Annotations are resolved with ``typing.get_type_hints``; if that fails, field by
    field in the class's module, and a field whose annotation still cannot be resolved
    (a name local to a function, say) is left unchecked (``Any``).
    """
    module = sys.modules.get(cls.__module__)
    globalns = vars(module) if module else {}
    try:
        hints = typing.get_type_hints(cls, globalns=globalns)
    except Exception:
        hints = {}
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        hint = hints.get(f.name, f.type)
        if isinstance(hint, str):
            try:  # the same evaluation get_type_hints does, one field at a time
                hint = eval(hint, globalns, dict(vars(cls)))
            except Exception:
                hint = Any
        out.append((f.name, hint))
    return tuple(out)


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def conform(value: Any, hint: Any) -> Any:
    """Return ``value`` (possibly coerced, see module doc) or raise :class:`Mismatch`."""
    if hint is Any or hint is object:
        return value
    if hint is None or hint is type(None):
        if value is None:
            return None
        raise Mismatch(f"expected None, got {_describe(value)}")
    if hint is float:
        if isinstance(value, float):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        raise Mismatch(f"expected float, got {_describe(value)}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise Mismatch(f"expected int, got {_describe(value)}")
    if isinstance(hint, type):
        return _conform_class(value, hint)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return _conform_union(value, args)
    if origin is tuple:
        return _conform_tuple(value, args)
    if origin is list:
        if not isinstance(value, list | tuple):
            raise Mismatch(f"expected a list, got {_describe(value)}")
        item = args[0] if args else Any
        return [conform(v, item) for v in value]
    if origin in (dict, Mapping) or origin is typing.Mapping:
        if not isinstance(value, Mapping):
            raise Mismatch(f"expected a mapping, got {_describe(value)}")
        item = args[1] if len(args) == 2 else Any
        return {k: conform(v, item) for k, v in value.items()}
    if origin is typing.Literal:
        if value in args:
            return value
        raise Mismatch(f"expected one of {args!r}, got {_describe(value)}")
    return value  # unsupported annotation form: accepted unchecked (see module doc)


def _conform_class(value: Any, hint: type) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise Mismatch(f"expected bool, got {_describe(value)}")
    if issubclass(hint, enum.Enum):
        if isinstance(value, hint):
            return value
        try:
            return hint(value)
        except (ValueError, TypeError):
            allowed = ", ".join(repr(m.value) for m in hint)
            raise Mismatch(
                f"expected a {hint.__name__} value ({allowed}), got {_describe(value)}"
            ) from None
    if hint is tuple:
        if isinstance(value, tuple):
            return value
        raise Mismatch(f"expected a tuple, got {_describe(value)}")
    if hint is dict or hint is Mapping:
        if isinstance(value, Mapping):
            return value
        raise Mismatch(f"expected a mapping, got {_describe(value)}")
    if hint is list:
        if isinstance(value, list | tuple):
            return list(value)
        raise Mismatch(f"expected a list, got {_describe(value)}")
    if isinstance(value, hint):
        return value
    if hint is np.ndarray:
        raise Mismatch(f"expected a float32 vector, got {_describe(value)}")
    raise Mismatch(f"expected {hint.__name__}, got {_describe(value)}")


def _conform_union(value: Any, args: tuple[Any, ...]) -> Any:
    for arg in args:
        try:
            return conform(value, arg)
        except Mismatch:
            continue
    allowed = " | ".join(_name(a) for a in args)
    raise Mismatch(f"expected {allowed}, got {_describe(value)}")


def _conform_tuple(value: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    if not isinstance(value, tuple | list):
        raise Mismatch(f"expected a tuple, got {_describe(value)}")
    if len(args) == 2 and args[1] is Ellipsis:
        item = args[0]
        return tuple(_item(v, item, i) for i, v in enumerate(value))
    if args == ((),):  # tuple[()]
        args = ()
    if len(value) != len(args):
        raise Mismatch(f"expected a tuple of {len(args)} items, got {len(value)} items")
    return tuple(_item(v, a, i) for i, (v, a) in enumerate(zip(value, args, strict=True)))


def _item(value: Any, hint: Any, index: int) -> Any:
    try:
        return conform(value, hint)
    except Mismatch as err:
        raise Mismatch(f"item {index}: {err}") from None
