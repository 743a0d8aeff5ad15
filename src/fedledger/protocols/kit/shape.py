"""A cheap structural check of a received message against its declared field types.

On a real network the strict codec refuses a message whose fields do not match the
record's annotations; the simulator (without ``network.encode``) hands over the sender's
Python objects as they are. :func:`mismatch` closes that gap at the kit's boundary: a
message is checked against its dataclass annotations (resolved once per class with the
codec's :func:`~fedledger.codec.schema.field_hints`, compiled into small checkers and
cached), recursing into nested records, tuples and mappings; a numpy vector is checked
by dtype and rank only, never by its contents. So the check costs O(fields), not
O(model size).

Accepted forms follow the codec (``codec/schema.py``): ``int`` (not ``bool``), ``float``
(an ``int`` too: the codec coerces it), ``bool``, ``str``, ``bytes``, 1-D float32 numpy
vectors, ``X | None`` and other unions, ``tuple[X, ...]``, ``tuple[X, Y]``, ``list[X]``,
str-keyed mappings, ``Literal``, Enum classes, frozen dataclasses (recursively), and for
``Any`` any value the codec encodes (a nested dataclass must be a registered record).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from fedledger.codec.registry import MAX_DEPTH, by_class
from fedledger.codec.schema import field_hints

#: ``check(value, depth)``: None if ``value`` conforms, else what is wrong with it.
Check = Callable[[Any, int], "str | None"]

_MISSING = object()
_PLAIN = (type(None), bool, int, float, str, bytes)


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"ndarray {value.dtype} {value.shape}"
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"


def mismatch(message: Any) -> str | None:
    """None if ``message`` (a frozen dataclass) matches its field annotations, else a
    description of the first field that does not, e.g. ``"round: expected int, got
    str 'x'"``."""
    if not dataclasses.is_dataclass(message) or isinstance(message, type):
        return f"expected a message record, got {_describe(message)}"
    slots = getattr(message, "__dict__", None)
    if slots is not None and slots.get(_OK_ATTR):
        return None  # a frozen message already checked (delivered to many nodes)
    problem = record_check(type(message))(message, 0)
    if problem is None and slots is not None and type(message).__dataclass_params__.frozen:
        slots[_OK_ATTR] = True
    return problem


#: Kept on a frozen message that matched: its fields cannot change, so neither can the
#: verdict (the simulator hands one message object to every receiver).
_OK_ATTR = "_fedledger_shape_ok"


@functools.cache
def record_check(cls: type) -> Check:
    """The checker of instances of the dataclass ``cls`` (built once per class)."""
    fields = tuple((name, _compile(hint)) for name, hint in field_hints(cls))

    def check(value: Any, depth: int) -> str | None:
        if depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH}"
        for name, field_check in fields:
            item = getattr(value, name, _MISSING)
            if item is _MISSING:
                return f"{name}: missing"
            problem = field_check(item, depth + 1)
            if problem is not None:
                return f"{name}: {problem}"
        return None

    return check


def _record(value: Any, depth: int) -> str | None:
    return record_check(type(value))(value, depth)


def _compile(hint: Any) -> Check:
    if hint is Any or hint is object:
        return _any
    if hint is None or hint is type(None):
        return _exact(type(None), "None")
    if hint is bool:
        return _exact(bool, "bool")
    if hint is int:
        return _int_check
    if hint is float:
        return _float_check
    if hint is np.ndarray:
        return _vector
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return _union(tuple(_compile(a) for a in args), " | ".join(map(_name, args)))
    if origin is tuple or hint is tuple:
        return _tuple(args)
    if origin is list or hint is list:
        item = _compile(args[0]) if args else _any
        return _items((list, tuple), item, "a list")
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        value_check = _compile(args[1]) if len(args) == 2 else _any
        return _mapping(value_check)
    if origin is typing.Literal:
        allowed = frozenset(args)
        return lambda v, d: None if _hashable_in(v, allowed) else f"expected one of {args!r}"
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _enum(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _dataclass(hint)
    if isinstance(hint, type):
        return _exact(hint, hint.__name__)
    return lambda v, d: None  # a form the codec does not check either


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_check(value: Any, depth: int) -> str | None:
    return None if _int(value) else f"expected int, got {_describe(value)}"


def _float_check(value: Any, depth: int) -> str | None:
    # an int too: the codec coerces it (0 and 0.0 encode alike)
    if isinstance(value, float) or _int(value):
        return None
    return f"expected float, got {_describe(value)}"


def _hashable_in(value: Any, allowed: frozenset[Any]) -> bool:
    try:
        return value in allowed
    except TypeError:  # unhashable
        return False


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _exact(cls: type, name: str) -> Check:
    def check(value: Any, depth: int) -> str | None:
        if isinstance(value, cls) and (cls is not int or not isinstance(value, bool)):
            return None
        return f"expected {name}, got {_describe(value)}"

    return check


def _vector(value: Any, depth: int) -> str | None:
    if isinstance(value, np.ndarray) and value.dtype == np.float32 and value.ndim == 1:
        return None
    return f"expected a 1-D float32 vector, got {_describe(value)}"


def _union(checks: tuple[Check, ...], name: str) -> Check:
    def check(value: Any, depth: int) -> str | None:
        for arm in checks:
            if arm(value, depth) is None:
                return None
        return f"expected {name}, got {_describe(value)}"

    return check


def _tuple(args: tuple[Any, ...]) -> Check:
    if not args or (len(args) == 2 and args[1] is Ellipsis):
        return _items((tuple,), _compile(args[0]) if args else _any, "a tuple")
    shape = () if args == ((),) else tuple(_compile(a) for a in args)

    def check(value: Any, depth: int) -> str | None:
        if not isinstance(value, tuple) or len(value) != len(shape):
            return f"expected a tuple of {len(shape)} items, got {_describe(value)}"
        for i, (item, item_check) in enumerate(zip(value, shape, strict=True)):
            problem = item_check(item, depth + 1)
            if problem is not None:
                return f"item {i}: {problem}"
        return None

    return check


def _items(kinds: tuple[type, ...], item_check: Check, name: str) -> Check:
    def check(value: Any, depth: int) -> str | None:
        if not isinstance(value, kinds):
            return f"expected {name}, got {_describe(value)}"
        for i, item in enumerate(value):
            problem = item_check(item, depth + 1)
            if problem is not None:
                return f"item {i}: {problem}"
        return None

    return check


def _mapping(value_check: Check) -> Check:
    def check(value: Any, depth: int) -> str | None:
        if not isinstance(value, Mapping):
            return f"expected a mapping, got {_describe(value)}"
        for key, item in value.items():
            if not isinstance(key, str):
                return f"expected str keys, got {_describe(key)}"
            problem = value_check(item, depth + 1)
            if problem is not None:
                return f"[{key[:20]!r}]: {problem}"
        return None

    return check


def _enum(cls: type[enum.Enum]) -> Check:
    def check(value: Any, depth: int) -> str | None:
        if isinstance(value, cls):
            return None
        try:
            cls(value)
        except (ValueError, TypeError):
            return f"expected a {cls.__name__} value, got {_describe(value)}"
        return None

    return check


def _dataclass(cls: type) -> Check:
    def check(value: Any, depth: int) -> str | None:
        if not isinstance(value, cls):
            return f"expected {cls.__name__}, got {_describe(value)}"
        return _record(value, depth)

    return check


def _any(value: Any, depth: int) -> str | None:
    """Any value the codec encodes: plain values, vectors, containers of them, records."""
    if isinstance(value, _PLAIN):
        return None
    if depth > MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH}"
    if isinstance(value, np.ndarray):
        return _vector(value, depth)
    if isinstance(value, tuple | list):
        return _items((tuple, list), _any, "a tuple")(value, depth)
    if isinstance(value, Mapping):
        return _mapping(_any)(value, depth)
    if isinstance(value, enum.Enum):
        return None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if by_class(type(value)) is None:
            return f"{type(value).__name__} is not a registered record"
        return _record(value, depth)
    return f"cannot cross a wire: {_describe(value)}"
