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
