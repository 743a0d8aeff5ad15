"""KitNode: typed hooks, the @handles table, the gate catching refusals, and the kit's
own refusals (malformed messages, host events nobody asked for, bad job results)."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest

from fedledger.crypto import KeyDirectory
from fedledger.ledger.verify import Verifier
from fedledger.protocols.base import (
    BlobReceived,
    EmitMetric,
    EvalJob,
    EvalResult,
    FetchBlob,
    JobFinished,
    Message,
    MessageReceived,
    RunJob,
    SetTimer,
    Start,
    TimerFired,
    TrainJob,
    TrainResult,
    TrainSettings,
)
from fedledger.protocols.kit import Gate, JobId, KitNode, handles


@dataclass(frozen=True)
class Ping(Message):
    n: int


@dataclass(frozen=True)
class LoudPing(Ping):
    pass


@dataclass(frozen=True)
class Other(Message):
    pass


WEIGHTS = np.zeros(3, np.float32)
ASKED = [
    SetTimer("vote", 1.0),
    RunJob("eval:2:ab", EvalJob(WEIGHTS)),
    RunJob("odd id", EvalJob(WEIGHTS)),
    RunJob("train:1", TrainJob(WEIGHTS, TrainSettings(epochs=1, lr=0.1, batch_size=4), seed=1)),
    FetchBlob("cid", "b"),
]


class Node(KitNode):
    unexpected_message = "bad_payload"

    def __init__(self) -> None:
        super().__init__(
            SimpleNamespace(plan=SimpleNamespace(node_id="a")), Gate(Verifier(KeyDirectory()))
        )
        self.seen: list[object] = []

    def on_start(self, event):
        return [EmitMetric("started", 1.0, 0), *ASKED]

    @handles(Ping)
    def on_ping(self, event):
        if event.message.n < 0:
            raise self.gate.fail("negative", str(event.message.n))
        self.seen.append(("ping", event.message.n, self.now))
        return []

    def on_timer(self, key, event):
        self.seen.append(("timer", key))
        return []

    def on_job(self, job_id, result, event):
        self.seen.append(("job", job_id))
        return []

    def on_job_failed(self, job_id, event):
        self.seen.append(("failed", job_id))
        return []

    def on_blob(self, event):
        self.seen.append(("blob", event.cid))
        return []


def test_hooks_get_typed_events():
    node = Node()
    assert node.handle(Start(0.0)) == [EmitMetric("started", 1.0, 0), *ASKED]
    node.handle(MessageReceived(1.5, "b", Ping(3)))
    node.handle(MessageReceived(2.0, "b", LoudPing(4)))  # a subclass goes to Ping's handler
    node.handle(TimerFired(3.0, "vote"))
    node.handle(JobFinished(4.0, "eval:2:ab", EvalResult(0.5, 0.1, 10)))
    node.handle(JobFinished(4.0, "odd id", EvalResult(0.5, 0.1, 10)))
    node.handle(BlobReceived(5.0, "cid", "b", None))
    assert node.seen == [
        ("ping", 3, 1.5),
        ("ping", 4, 2.0),
        ("timer", "vote"),
        ("job", JobId("eval", 2, "ab")),
        ("job", None),
        ("blob", "cid"),
    ]
    assert node.gate.rejections() == {}


def test_host_events_nobody_asked_for_are_counted_and_never_reach_the_hooks():
    node = Node()
    node.handle(Start(0.0))
    stray = [
        TimerFired(1.0, "no-such-timer"),
        JobFinished(1.0, "eval:9", EvalResult(0.5, 0.1, 10)),
        BlobReceived(1.0, "other-cid", "b", b"x"),
    ]
    for event in stray:
        assert node.handle(event) == []
    # each answer is taken once: a second firing or answer is unexpected too
    node.handle(TimerFired(3.0, "vote"))
    node.handle(JobFinished(4.0, "eval:2:ab", EvalResult(0.5, 0.1, 10)))
    node.handle(BlobReceived(5.0, "cid", "b", None))
    for event in (
        TimerFired(3.0, "vote"),
        JobFinished(4.0, "eval:2:ab", EvalResult(0.5, 0.1, 10)),
        BlobReceived(5.0, "cid", "b", None),
    ):
        assert node.handle(event) == []
    assert node.seen == [("timer", "vote"), ("job", JobId("eval", 2, "ab")), ("blob", "cid")]
    assert node.gate.rejections() == {
        "unexpected_timer": 2,
        "unexpected_job": 2,
        "unexpected_blob": 2,
    }


@pytest.mark.parametrize(
    ("job_id", "result"),
    [
        ("odd id", TrainResult(WEIGHTS, 3, 0.1)),  # a train result for an eval job
        ("train:1", EvalResult(0.5, 0.1, 10)),
        ("train:1", None),
        ("train:1", TrainResult(np.zeros(4, np.float32), 3, 0.1)),  # the wrong shape
        ("train:1", TrainResult(np.zeros((1, 3), np.float32), 3, 0.1)),
        ("train:1", TrainResult(np.full(3, np.nan, np.float32), 3, 0.1)),
        ("train:1", TrainResult([0.0, 0.0, 0.0], 3, 0.1)),  # not an array
    ],
)
def test_a_bad_result_of_its_own_job_is_counted_and_goes_to_on_job_failed(job_id, result):
    node = Node()
    node.handle(Start(0.0))
    assert node.handle(JobFinished(1.0, job_id, result)) == []
    assert node.seen == [("failed", JobId.parse(job_id))]
    assert node.gate.rejections() == {"bad_result": 1}


def test_a_good_train_result_reaches_on_job():
    node = Node()
    node.handle(Start(0.0))
    node.handle(JobFinished(1.0, "train:1", TrainResult(np.ones(3, np.float32), 3, 0.1)))
    assert node.seen == [("job", JobId("train", 1))]
    assert node.gate.rejections() == {}


@pytest.mark.parametrize("n", ["3", 3.0, True, None, (3,), np.int64(3)])
def test_a_message_with_wrongly_typed_fields_is_counted_as_malformed(n):
    node = Node()
    assert node.handle(MessageReceived(1.0, "b", Ping(n))) == []
    assert node.seen == []
    assert node.gate.rejections() == {"malformed_message": 1}


def test_unexpected_messages_and_refusals_are_counted_never_raised():
    node = Node()
    assert node.handle(MessageReceived(1.0, "b", Other())) == []
    assert node.handle(MessageReceived(1.0, "b", Ping(-1))) == []
    assert node.gate.rejections() == {"bad_payload": 1, "negative": 1}


def test_handles_needs_message_types():
    with pytest.raises(TypeError, match="Message subclasses"):
        handles(int)
