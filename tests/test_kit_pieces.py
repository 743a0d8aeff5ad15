"""The protocol kit's pieces: ids, gate, schedule, model blobs."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedledger.crypto import KeyDirectory
from fedledger.ledger.verify import RejectReason, Verifier
from fedledger.protocols.base import EmitMetric, SetTimer
from fedledger.protocols.kit import (
    Gate,
    JobId,
    JoinAction,
    ModelBlobs,
    Phase,
    Reject,
    RoundSchedule,
    Stage,
    TimerKey,
)
from fedledger.storage import BlobStore

names = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"), min_size=1
)


@given(names, st.integers(0, 10**9), st.one_of(st.just(""), names))
def test_job_ids_round_trip(kind, index, key):
    job = JobId(kind, index, key)
    assert JobId.parse(str(job)) == job


@given(names, st.one_of(st.none(), st.integers(0, 10**9)))
def test_timer_keys_round_trip(name, index):
    key = TimerKey(name, index)
    assert TimerKey.parse(str(key)) == key


def test_ids_render_and_refuse():
    assert str(JobId("train", 3)) == "train:3"
    assert str(JobId("eval", 2, "ab")) == "eval:2:ab"
    assert str(TimerKey("vote")) == "vote"
    for text in ("train", "train:x", "train:-1", ":1", "train:1:", "train:01"):
        assert JobId.parse(text) is None, text
    assert TimerKey.parse("a:b") is None
    with pytest.raises(ValueError, match="job kind"):
        JobId("a:b", 1)
    with pytest.raises(ValueError, match="job index"):
        JobId("a", -1)


def test_gate_counts_once_and_emits_deltas():
    gate = Gate(Verifier(KeyDirectory()))
    reject = gate.fail("wrong_round", "round 3")
    assert isinstance(reject, Reject) and reject.counted
    gate.count(reject)  # made by the gate: not counted again
    gate.count(Reject("bad_blob"))
    gate.verifier.counter.add(RejectReason.BAD_SIGNATURE)
    assert gate.rejections() == {"wrong_round": 1, "bad_blob": 1, "bad_signature": 1}
    assert gate.protocol_counts() == {"wrong_round": 1, "bad_blob": 1}
    first = gate.new_metrics(1)
    assert first == [
        EmitMetric("rejected", 1.0, 1, (("reason", "bad_blob"),)),
        EmitMetric("rejected", 1.0, 1, (("reason", "bad_signature"),)),
        EmitMetric("rejected", 1.0, 1, (("reason", "wrong_round"),)),
    ]
    assert gate.new_metrics(2) == []
    gate.fail("wrong_round")
    gate.fail("wrong_round")
    assert gate.new_metrics(3) == [EmitMetric("rejected", 2.0, 3, (("reason", "wrong_round"),))]


SCHEDULE = RoundSchedule(
    300.0,
    (
        Phase("tx", 60.0),
        Phase("vote", 90.0),
        Phase("select", 180.0, True),
        Phase("end", 300.0, True),
    ),
)


def test_schedule_timers_skip_passed_phases_but_keep_always_ones():
    assert SCHEDULE.timers(0.0) == [
        SetTimer("tx", 60.0),
        SetTimer("vote", 90.0),
        SetTimer("select", 180.0),
        SetTimer("end", 300.0),
    ]
    assert SCHEDULE.timers(100.0) == [SetTimer("select", 80.0), SetTimer("end", 200.0)]
    assert SCHEDULE.timers(250.0) == [SetTimer("select", 0.0), SetTimer("end", 50.0)]
    assert SCHEDULE.late(2, 350.0) == 50.0 and SCHEDULE.late(3, 350.0) == 0.0
    assert SCHEDULE.open("tx", 59.0) and not SCHEDULE.open("tx", 60.0)


def test_schedule_join_halts_waits_or_begins():
    assert SCHEDULE.join(0, 0.0, 3).action is JoinAction.BEGIN
    begin = SCHEDULE.join(0, 650.0, 3)
    assert (begin.action, begin.round) == (JoinAction.BEGIN, 3)
    wait = SCHEDULE.join(2, 350.0, 3)  # round 2 already on the ledger
    assert (wait.action, wait.round, wait.delay) == (JoinAction.WAIT, 3, 250.0)
    assert SCHEDULE.join(1, 900.0, 3).action is JoinAction.HALT


def test_schedule_refuses_unordered_phases():
    with pytest.raises(ValueError, match="increase"):
        RoundSchedule(300.0, (Phase("a", 90.0), Phase("b", 60.0)))
    with pytest.raises(ValueError, match="past round_length"):
        RoundSchedule(100.0, (Phase("a", 200.0),))


def test_stage_gathering():
    assert {s for s in Stage if s.gathering} == {
        Stage.APPLYING,
        Stage.APPLYING_LATE,
        Stage.RESTORING,
    }


class Xor:
    def encrypt(self, data: bytes) -> bytes:
        return bytes(b ^ 0x5A for b in data)

    decrypt = encrypt


@pytest.mark.parametrize("cipher", [None, Xor()], ids=["plain", "cipher"])
def test_model_blobs_store_load_and_refuse(tmp_path, cipher):
    blobs = ModelBlobs(BlobStore(tmp_path), (5,), cipher)
    weights = np.arange(5, dtype=np.float32)
    ref = blobs.store(weights, 7)
    data = blobs.store_.get(ref.cid)
    assert ref.num_samples == 7 and hashlib.sha256(data).digest() == ref.sha256
    assert np.array_equal(blobs.check(data, ref), weights)
    assert np.array_equal(blobs.own(ref), weights)
    with pytest.raises(Reject) as err:
        blobs.check(None, ref)
    assert err.value.reason == "model_unavailable" and not err.value.counted
    assert blobs.load(data + b"x", ref) is None
    wrong = ModelBlobs(BlobStore(tmp_path / "o"), (4,), cipher)
    with pytest.raises(Reject, match="wrong_model"):
        wrong.check(data, ref)
    nan = blobs.store(np.full(5, np.nan, np.float32), 1)
    with pytest.raises(Reject, match="wrong_model"):
        blobs.check(blobs.store_.get(nan.cid), nan)
    junk = blobs.put(b"not safetensors", 1)
    with pytest.raises(Reject, match="malformed_model"):
        blobs.check(b"not safetensors", junk)
