"""Canonical CBOR: pinned encodings, round trips, determinism, strict decoding of garbage."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.codec import MAX_DEPTH, CodecError, decode, decode_as, encode, record
from fedledger.protocols.base import Message, Vector


@record("test.codec.Point")
@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str = ""


@record("test.codec.Bag")
@dataclass(frozen=True)
class Bag:
    owner: bytes
    items: tuple[int, ...]
    extra: Any = None
    where: Point | None = None
    weights: np.ndarray | None = None


class Color(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


@record("test.codec.Paint")
@dataclass(frozen=True)
class Paint:
    color: Color
    ratio: float


# ---------------------------------------------------------------- pinned bytes


@pytest.mark.parametrize(
    ("value", "hex_bytes"),
    [  # RFC 8949 Appendix A examples, in their deterministic (preferred) form
        (0, "00"),
        (23, "17"),
        (24, "1818"),
        (1000000, "1a000f4240"),
        (-1, "20"),
        (-1000, "3903e7"),
        (2**64, "c249010000000000000000"),
        (1.0, "f93c00"),
        (1.5, "f93e00"),
        (-0.0, "f98000"),
        (100000.0, "fa47c35000"),
        (1.1, "fb3ff199999999999a"),
        (math.inf, "f97c00"),
        (math.nan, "f97e00"),
        (False, "f4"),
        (None, "f6"),
        ("", "60"),
        ("ü", "62c3bc"),
        (b"\x01\x02", "420102"),
        ([], "80"),
        ((1, (2, 3)), "8201820203"),
        ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
        ({"b": 1, "a": 2, "aa": 3}, "a3616102616201626161" + "03"),  # shorter key first
        ({"éa": 1, "abc": 2}, "a2" + "63616263" + "02" + "63c3a961" + "01"),  # UTF-8 bytes
    ],
)
def test_pinned_encodings(value: Any, hex_bytes: str) -> None:
    assert encode(value).hex() == hex_bytes


def test_float32_vector_is_rfc8746_tag_85() -> None:
    vec = np.array([1.0, -2.5], dtype=np.float32)
    assert encode(vec).hex() == "d85548" + "0000803f" + "000020c0"
    big_endian = vec.astype(">f4")
    assert encode(big_endian) == encode(vec)


def test_record_is_tag_27_with_name_and_fields() -> None:
    data = encode(Point(1.0, 2.0, "p"))
    assert data[:2] == bytes.fromhex("d81b")
    assert decode(data[2:]) == ("test.codec.Point", {"label": "p", "x": 1.0, "y": 2.0})


# ---------------------------------------------------------------- round trips

leaf_values = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=40)
)
values = st.recursive(
    leaf_values,
    lambda inner: (
        st.lists(inner, max_size=5).map(tuple)
        | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=150, deadline=None)
@given(values)
def test_round_trip(value: Any) -> None:
    data = encode(value)
    assert decode(data) == value
    assert encode(decode(data)) == data


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.text(max_size=8), values, max_size=8), st.randoms())
def test_dict_order_does_not_matter(mapping: dict[str, Any], rnd: Any) -> None:
    items = list(mapping.items())
    rnd.shuffle(items)
    assert encode(dict(items)) == encode(mapping)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(width=32), max_size=50))
def test_float32_vector_round_trip(items: list[float]) -> None:
    vec = np.array(items, dtype=np.float32)
    out = decode(encode(vec))
    assert out.dtype == np.float32 and out.shape == vec.shape
    assert out.tobytes() == vec.tobytes()
    out[:0] = 0  # decoded vectors are writeable copies


records = st.builds(
    Bag,
    owner=st.binary(max_size=32),
    items=st.lists(st.integers(), max_size=5).map(tuple),
    extra=values,
    where=st.none() | st.builds(Point, st.floats(allow_nan=False), st.floats(allow_nan=False)),
)


@settings(max_examples=100, deadline=None)
@given(records)
def test_record_round_trip(bag: Bag) -> None:
    assert decode_as(encode(bag), Bag) == bag


def test_lists_decode_as_tuples_and_record_with_vector() -> None:
    assert decode(encode([1, [2]])) == (1, (2,))
    bag = Bag(b"o", (1,), weights=np.arange(4, dtype=np.float32))
    out = decode_as(encode(bag), Bag)
    assert out.weights is not None and out.weights.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_int_in_float_field_encodes_as_float() -> None:
    assert encode(Point(1, 2)) == encode(Point(1.0, 2.0))
    assert decode(encode(Point(1, 2))).x.is_integer()
    assert type(decode(encode(Point(1, 2))).x) is float


def test_enum_values_encode_plain_and_decode_to_members() -> None:
    assert encode(Color.RED) == encode("red")
    paint = decode_as(encode(Paint(Color.BLUE, 0.5)), Paint)
    assert paint.color is Color.BLUE


def test_numpy_scalars_encode_as_python_numbers() -> None:
    assert encode(np.float32(0.5)) == encode(0.5)
    assert encode(np.int64(7)) == encode(7)
    assert encode(np.bool_(True)) == encode(True)


# ---------------------------------------------------------------- refusing to encode


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ({1: "a"}, "map keys must be str"),
        ({"a", "b"}, "cannot encode set"),
        (np.zeros(3, dtype=np.float64), "dtype float64"),
        (np.zeros((2, 2), dtype=np.float32), "shape (2, 2)"),
        (object(), "cannot encode object"),
        (Bag(b"o", ("x",)), "items: item 0: expected int, got str"),  # type: ignore[arg-type]
    ],
)
def test_encode_refuses_with_a_clear_message(value: Any, needle: str) -> None:
    with pytest.raises(CodecError, match=None) as info:
        encode(value)
    assert needle in str(info.value)


def test_unregistered_dataclass_is_refused() -> None:
    @dataclass(frozen=True)
    class Loose:
        a: int

    with pytest.raises(CodecError, match="not registered"):
        encode(Loose(1))


def test_register_needs_frozen_dataclass_and_unique_name() -> None:
    with pytest.raises(CodecError, match="frozen dataclass"):

        @record("test.codec.Mutable")
        @dataclass
        class Mutable:
            a: int

    with pytest.raises(CodecError, match="already registered"):

        @record("test.codec.Point")
        @dataclass(frozen=True)
        class Other:
            a: int

    with pytest.raises(CodecError, match=r"already registered as 'test\.codec\.Point'"):
        record("test.codec.Point2")(Point)
    with pytest.raises(CodecError, match="non-empty str"):
        record("")
    assert record("test.codec.Point")(Point) is Point  # re-registering is a no-op
    assert decode(encode(Point(1.0, 2.0))) == Point(1.0, 2.0)


def test_depth_limit_on_encode_and_decode() -> None:
    deep: Any = 0
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(CodecError, match="nesting deeper"):
        encode(deep)
    with pytest.raises(CodecError):
        decode(b"\x81" * (MAX_DEPTH + 1) + b"\x00")
    with pytest.raises(CodecError):
        decode(b"\x81" * 100_000 + b"\x00")
    ok: Any = 0
    for _ in range(MAX_DEPTH):
        ok = (ok,)
    assert decode(encode(ok)) == ok


# ---------------------------------------------------------------- strict decoding


@pytest.mark.parametrize(
    ("hex_bytes", "why"),
    [
        ("1801", "integer not in shortest form"),
        ("fb3ff0000000000000", "1.0 as a double"),
        ("f97e01", "NaN with a payload"),
        ("a2616201616102", "map keys out of order"),
        ("a2616101616102", "duplicate map key"),
        ("9f01ff", "indefinite-length array"),
        ("0000", "trailing bytes"),
        ("", "empty input"),
        ("1c", "reserved additional information"),
        ("a10102", "non-str map key"),
        ("c11a00000000", "epoch date tag"),
        ("d9010283010203", "set tag"),
        ("d81c81d81d00", "value-sharing tags"),
        ("c5821b7fffffffffffffff01", "bigfloat with a huge exponent"),
        ("d8558401020304", "tag 85 without bytes"),
        ("d85543000000", "tag 85 with 3 bytes"),
        ("d81b826178a0", "unknown record type"),
        ("d81b83617801a0", "record content with 3 items"),
        ("f7", "undefined"),
        ("e0", "simple value"),
        ("5b7fffffffffffffff", "huge byte-string length"),
        ("9b7fffffffffffffff", "huge array length"),
    ],
)
def test_decode_refuses(hex_bytes: str, why: str) -> None:
    with pytest.raises(CodecError):
        decode(bytes.fromhex(hex_bytes))


def test_non_strict_decode_accepts_non_canonical_forms() -> None:
    assert decode(bytes.fromhex("1801"), strict=False) == 1


def test_decode_rebuilds_records_through_type_checks() -> None:
    good = encode(Point(1.0, 2.0))
    assert decode(good) == Point(1.0, 2.0)
    missing = encode(("test.codec.Point", {"x": 1.0}))
    bad_type = encode(Bag(b"o", ()))  # then swap the owner for an int
    bad_type = bad_type.replace(encode("owner") + encode(b"o"), encode("owner") + encode(5))
    for data, needle in [
        (b"\xd8\x1b" + missing, "fields differ"),
        (bad_type, "owner: expected bytes, got int 5"),
    ]:
        with pytest.raises(CodecError) as info:
            decode(data)
        assert needle in str(info.value)


def test_decode_as_checks_type() -> None:
    with pytest.raises(CodecError, match="expected a Point, got int"):
        decode_as(encode(1), Point)
    with pytest.raises(CodecError, match="decode needs bytes"):
        decode("text")  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_garbage_raises_codec_error_only(data: bytes) -> None:
    try:
        value = decode(data)
    except CodecError:
        return
    assert encode(value) == data  # whatever decodes is canonical


@settings(max_examples=200, deadline=None)
@given(records, st.data())
def test_corrupted_records_raise_codec_error_only(bag: Bag, data: st.DataObject) -> None:
    raw = bytearray(encode(bag))
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] = data.draw(st.integers(0, 255))
    try:
        out = decode(bytes(raw))
    except CodecError:
        return
    assert encode(out) == bytes(raw)  # whatever decodes is canonical


def test_value_sharing_bomb_is_refused_fast() -> None:
    # 40 levels of [a, a] sharing one object would be 2**40 visits if expanded
    data = b"".join(b"\xd8\x1c\x82" for _ in range(40)) + b"\x00"
    with pytest.raises(CodecError):
        decode(data)


@record("test.codec.ModelUpdate")
@dataclass(frozen=True)
class ModelUpdate(Message):
    round: int
    weights: Vector
    peers: tuple[str, ...] = ()


def test_protocol_message_subclass_round_trips() -> None:
    msg = ModelUpdate(3, np.linspace(0, 1, 5, dtype=np.float32), ("n1", "n2"))
    out = decode_as(encode(msg), ModelUpdate)
    assert out.round == 3 and out.peers == ("n1", "n2")
    assert out.weights.dtype == np.float32 and out.weights.tobytes() == msg.weights.tobytes()
    bad = encode(ModelUpdate(3, np.zeros(2, dtype=np.float32))).replace(
        encode("weights") + encode(np.zeros(2, dtype=np.float32)), encode("weights") + encode(1)
    )
    with pytest.raises(CodecError, match="weights: expected a float32 vector, got int 1"):
        decode(bad)


def test_unresolvable_annotations_fall_back_per_field() -> None:
    class Local:
        pass

    @record("test.codec.LocalRef")
    @dataclass(frozen=True)
    class LocalRef:
        count: int
        thing: Local | None = None  # names a function-local class: left unchecked

    assert decode(encode(LocalRef(2))) == LocalRef(2)
    with pytest.raises(CodecError, match="count: expected int, got str"):
        encode(LocalRef("2"))  # type: ignore[arg-type]


# ---------------------------------------------------------------- the encoder against cbor2


def _reference(value: Any, depth: int = 0) -> Any:
    """The CBOR item tree cbor2 encodes (the codec's encoding before it wrote bytes
    itself): ``cbor2.dumps(_reference(v), canonical=True)`` must equal ``encode(v)``."""
    import dataclasses

    import cbor2

    from fedledger.codec.registry import by_class, hints_of
    from fedledger.codec.schema import conform

    if value is None or type(value) in (bool, int, float, str, bytes):
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, np.ndarray):
        return cbor2.CBORTag(85, value.astype("<f4").tobytes())
    entry = by_class(type(value))
    if entry is not None:
        fields = {
            name: _reference(conform(getattr(value, name), hint), depth + 1)
            for name, hint in hints_of(entry)
        }
        return cbor2.CBORTag(27, [entry.name, fields])
    if isinstance(value, list | tuple):
        return [_reference(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {k: _reference(v, depth + 1) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    raise AssertionError(f"no reference for {value!r} ({dataclasses.is_dataclass(value)})")


def _cbor2_canonical(value: Any) -> bytes:
    import cbor2

    return cbor2.dumps(_reference(value), canonical=True)


wide_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.integers(min_value=-(2**66), max_value=2**66).map(lambda i: i * 2**3)
    | st.floats()
    | st.floats(width=32)
    | st.floats(width=16)
    | st.text(max_size=30)
    | st.binary(max_size=300)
)
wide_values = st.recursive(
    wide_leaves,
    lambda inner: (
        st.lists(inner, max_size=5).map(tuple)
        | st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=30), inner, max_size=6)
    ),
    max_leaves=40,
)
wide_records = st.builds(
    Bag,
    owner=st.binary(max_size=300),
    items=st.lists(st.integers(min_value=-(2**70), max_value=2**70), max_size=30).map(tuple),
    extra=wide_values | st.builds(Point, st.floats(), st.integers(-5, 5), st.text(max_size=3)),
    where=st.none() | st.builds(Point, st.floats(), st.floats(width=16)),
    weights=st.none()
    | st.lists(st.floats(width=32), max_size=5).map(lambda xs: np.array(xs, dtype=np.float32)),
)


@settings(max_examples=400, deadline=None)
@given(wide_values | wide_records)
def test_encoder_writes_the_bytes_of_cbor2_canonical(value: Any) -> None:
    assert encode(value) == _cbor2_canonical(value)


def test_encoder_matches_cbor2_on_edge_values() -> None:
    ints = [23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1, 2**64, 2**200]
    negative = [-24, -25, -256, -257, -(2**64), -(2**64) - 1, -(2**200)]
    floats = [0.0, -0.0, 5.960464477539063e-08, 2.0**-25, 65504.0, 65520.0, 2.0**-149]
    floats += [3.4028234663852886e38, 3.4028235677973366e38, 1e300, -math.inf, 1e-310]
    sized = ["x" * 23, "x" * 24, "x" * 255, "x" * 256, "é" * 40000, b"\x00" * 65536]
    other = [{"a" * 23: 1, "b" * 24: 2, "": 3, "é": 4, "z": 5}, tuple(range(30)), Color.RED]
    other += [np.float32(0.5), np.int64(-3), np.bool_(False)]
    edges: list[Any] = [*ints, *negative, *floats, *sized, *other]
    for value in edges:
        assert encode(value) == _cbor2_canonical(value), value


def test_kept_record_bytes_are_reused_and_respect_mutability() -> None:
    from fedledger.codec.encoder import _KEPT_ATTR

    point = Point(1.0, 2.0, "p")
    data = encode(point)
    assert point.__dict__[_KEPT_ATTR][0] == data  # immutable: kept
    outer = Bag(b"o", (1, 2), extra=(point, point), where=point)
    assert encode(outer) == _cbor2_canonical(outer)
    assert _KEPT_ATTR in outer.__dict__
    mutable = Bag(b"o", (), extra={"k": [1, 2]})
    first = encode(mutable)
    assert _KEPT_ATTR not in mutable.__dict__  # a dict inside: never kept
    mutable.extra["k"].append(3)
    assert encode(mutable) != first and encode(mutable) == _cbor2_canonical(mutable)
    with_vector = Bag(b"o", (), weights=np.zeros(3, dtype=np.float32))
    encode(with_vector)
    assert _KEPT_ATTR not in with_vector.__dict__  # arrays are neither kept nor copied


def test_kept_records_obey_the_depth_limit() -> None:
    inner: Any = Point(0.0, 0.0)
    assert len(encode(inner)) > 0
    nested: Any = inner
    for _ in range(MAX_DEPTH - 1):
        nested = (nested,)
    assert decode(encode(nested)) == nested  # 47 tuples + the record: 48 containers
    with pytest.raises(CodecError, match="nesting deeper"):
        encode((nested,))
    deep_bag = Bag(b"o", (), extra=nested)  # the record's kept height is 49
    with pytest.raises(CodecError, match="nesting deeper"):
        encode(deep_bag)
    for fresh in (False, True):
        bag = Bag(b"o", (), extra=((((0,),),),))  # 5 containers: the bag and 4 tuples
        if not fresh:
            encode(bag)  # kept, with its height
        fits: Any = bag
        for _ in range(MAX_DEPTH - 5):
            fits = (fits,)
        assert decode(encode(fits)) == fits
        with pytest.raises(CodecError, match="nesting deeper"):
            encode((fits,))


def test_encode_replacing_and_share_encoding() -> None:
    from fedledger.codec.encoder import _KEPT_ATTR, encode_replacing, share_encoding

    point = Point(1.0, 2.0, "p")
    assert encode_replacing(point, "label", "q") == encode(Point(1.0, 2.0, "q"))
    assert encode_replacing(point, "x", 3) == encode(Point(3.0, 2.0, "p"))  # conformed
    with pytest.raises(CodecError, match="x: expected float"):
        encode_replacing(point, "x", "3")
    with pytest.raises(CodecError, match="no field 'z'"):
        encode_replacing(point, "z", 1)
    relabelled = Point(1.0, 2.0, "other label")
    share_encoding(relabelled, point, "label")
    assert relabelled.__dict__[_KEPT_ATTR][0] == encode(Point(1.0, 2.0, "other label"))
    assert encode(relabelled) == _cbor2_canonical(relabelled)
