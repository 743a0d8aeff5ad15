"""KitNode: typed hooks, the @handles table, and the gate catching refusals."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from fedledger.crypto import KeyDirectory
from fedledger.ledger.verify import Verifier
from fedledger.protocols.base import (
    BlobReceived,
    EmitMetric,
    EvalResult,
    JobFinished,
    Message,
    MessageReceived,
    Start,
    TimerFired,
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


class Node(KitNode):
    unexpected_message = "bad_payload"

    def __init__(self) -> None:
        super().__init__(
            SimpleNamespace(plan=SimpleNamespace(node_id="a")), Gate(Verifier(KeyDirectory()))
        )
        self.seen: list[object] = []

    def on_start(self, event):
        return [EmitMetric("started", 1.0, 0)]

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

    def on_blob(self, event):
        self.seen.append(("blob", event.cid))
        return []


def test_hooks_get_typed_events():
    node = Node()
    assert node.handle(Start(0.0)) == [EmitMetric("started", 1.0, 0)]
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


def test_unexpected_messages_and_refusals_are_counted_never_raised():
    node = Node()
    assert node.handle(MessageReceived(1.0, "b", Other())) == []
    assert node.handle(MessageReceived(1.0, "b", Ping(-1))) == []
    assert node.gate.rejections() == {"bad_payload": 1, "negative": 1}


def test_handles_needs_message_types():
    with pytest.raises(TypeError, match="Message subclasses"):
        handles(int)
