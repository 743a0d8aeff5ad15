"""The kit's structural check of received messages (protocols/kit/shape.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedledger.codec import decode, encode, record
from fedledger.ledger.records import Block, ModelRef, Transaction, Vote
from fedledger.protocols.base import Message
from fedledger.protocols.dfl.messages import ConfirmRequest, Gossip
from fedledger.protocols.kit.shape import mismatch
from fedledger.protocols.posbfl.messages import CandidateBlock, VoteBatch, WorkerTxMsg


@record("test.kit_shape.Inner")
@dataclass(frozen=True)
class Inner:
    n: int
    v: np.ndarray


@record("test.kit_shape.Msg")
@dataclass(frozen=True)
class Msg(Message):
    count: int
    share: float
    flag: bool
    name: str
    blob: bytes
    vector: np.ndarray
    inner: Inner
    maybe: Inner | None = None
    many: tuple[Inner, ...] = ()
    pair: tuple[int, str] = (0, "")
    table: Mapping[str, int] = dataclasses.field(default_factory=dict)
    kind: Literal["a", "b"] = "a"
    anything: Any = None


@dataclass(frozen=True)
class Unregistered:
    x: int = 0


def good(**changes: Any) -> Msg:
    inner = Inner(1, np.zeros(3, np.float32))
    base = Msg(2, 0.5, True, "x", b"\x01", np.zeros(4, np.float32), inner)
    return _force(base, changes)


def _force(message: Any, changes: dict[str, Any]) -> Any:
    """A copy with fields set as given, past any constructor check (as a faulty peer in
    the simulator can hand over)."""
    copy = dataclasses.replace(message)
    for name, value in changes.items():
        object.__setattr__(copy, name, value)
    return copy


def test_a_well_formed_message_passes_and_an_int_is_a_float():
    assert mismatch(good()) is None
    assert mismatch(good(share=3)) is None  # the codec coerces an int in a float field
    inner = Inner(5, np.ones(2, np.float32))
    assert mismatch(good(maybe=inner, many=(inner, inner), pair=(1, "y"))) is None
    assert mismatch(good(table={"k": 3}, kind="b")) is None
    assert mismatch(good(anything=(1, "s", b"b", None, {"k": [inner]}))) is None


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("count", True, "count: expected int"),
        ("count", 1.0, "count: expected int"),
        ("count", "1", "count: expected int"),
        ("count", np.int64(1), "count: expected int"),
        ("share", None, "share: expected float"),
        ("flag", 1, "flag: expected bool"),
        ("name", b"x", "name: expected str"),
        ("blob", "x", "blob: expected bytes"),
        ("blob", bytearray(b"x"), "blob: expected bytes"),
        ("vector", np.zeros(4, np.float64), "vector: expected a 1-D float32 vector"),
        ("vector", np.zeros((2, 2), np.float32), "vector: expected a 1-D float32 vector"),
        ("vector", [0.0, 1.0], "vector: expected a 1-D float32 vector"),
        ("inner", None, "inner: expected Inner"),
        ("maybe", "x", "maybe: expected Inner | None"),
        ("many", [], "many: expected a tuple"),
        ("pair", (1,), "pair: expected a tuple of 2 items"),
        ("pair", (1, 2), "pair: item 1: expected str"),
        ("table", {1: 1}, "table: expected str keys"),
        ("table", {"k": "v"}, "table: ['k']: expected int"),
        ("kind", "c", "kind: expected one of"),
        ("kind", ["a"], "kind: expected one of"),
        ("anything", Unregistered(), "anything: Unregistered is not a registered record"),
        ("anything", object(), "anything: cannot cross a wire"),
        ("anything", (1, {"k": object()}), "anything: item 1: ['k']: cannot cross a wire"),
    ],
)
def test_a_wrongly_typed_field_is_named(field, value, says):
    problem = mismatch(good(**{field: value}))
    assert problem is not None and problem.startswith(says), problem


def test_nested_records_are_checked_field_by_field():
    bad = _force(Inner(1, np.zeros(3, np.float32)), {"n": "one"})
    assert mismatch(good(inner=bad)) == "inner: n: expected int, got str 'one'"
    assert mismatch(good(many=(Inner(1, np.zeros(1, np.float32)), bad))).startswith(
        "many: item 1: n: expected int"
    )
    missing = object.__new__(Inner)
    assert mismatch(good(inner=missing)) == "inner: n: missing"


def test_vector_contents_are_never_looked_at():
    assert mismatch(good(vector=np.full(4, np.nan, np.float32))) is None  # values: not its job


def test_a_cycle_does_not_recurse_forever():
    looped = Inner(1, np.zeros(1, np.float32))
    outer = good(anything=looped)
    object.__setattr__(looped, "v", None)
    assert mismatch(outer) is not None  # v is no vector
    deep: Any = ()
    for _ in range(100):
        deep = (deep,)
    assert "nested deeper" in (mismatch(good(anything=deep)) or "")


def test_anything_but_a_record_is_no_message():
    assert mismatch("text") == "expected a message record, got str 'text'"
    assert mismatch(Msg) is not None  # the class, not an instance


def test_real_protocol_messages_pass():
    ref = ModelRef("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", bytes(32), 3)
    tx = Transaction(bytes(32), 1.0, "posbfl.worker", ref, 1)
    vote = Vote(bytes(32), bytes(32), 1, 1, 1.0)
    block = Block.create(bytes(32), 1, bytes(32), 1.0, (tx,), None)
    for message in (
        WorkerTxMsg(1, tx),
        VoteBatch(1, tx, (vote,), (tx,)),
        CandidateBlock(1, block),
        Gossip(tx),
        ConfirmRequest(block),
    ):
        assert mismatch(message) is None, message


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.binary(max_size=5),
)


@given(
    count=st.one_of(st.integers(), scalars),
    name=st.one_of(st.text(max_size=5), scalars),
    anything=st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.tuples(inner, inner), st.dictionaries(st.text(max_size=3), inner, max_size=3)
        ),
        max_leaves=8,
    ),
)
def test_what_the_check_passes_the_codec_encodes_and_decodes(count, name, anything):
    message = good(count=count, name=name, anything=anything)
    if mismatch(message) is None:
        data = encode(message)
        assert encode(decode(data)) == data
    else:
        with pytest.raises(Exception):  # noqa: B017 (the codec's refusal, any kind)
            encode(message)
