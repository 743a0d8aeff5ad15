"""``KitNode``: a protocol node whose ``handle`` dispatches each event to a typed hook.

Subclasses override what they use: ``on_start(event)``, ``on_message(event)`` (or mark
methods ``@handles(MsgType, ...)`` to route messages by type), ``on_timer(key, event)``,
``on_job(job_id, result, event)`` (``job_id`` parsed to a :class:`JobId`, None for an id
no JobId renders), ``on_job_failed(job_id, event)`` and ``on_blob(event)``; each returns
the effects to execute.

The kit guards the hooks. Every refusal is counted by the node's :class:`Gate` and never
raised to the host:

- a message whose fields do not match its declared types (:mod:`.shape`) is counted as
  ``malformed_message``; one no handler takes as ``unexpected_message``;
- a timer the node never armed, a job it never started and a blob it never fetched
  (:class:`~fedledger.protocols.kit.asked.Asked` notes what it asked for in the effects
  it returns) are counted as ``unexpected_timer``, ``unexpected_job`` and
  ``unexpected_blob`` and never reach ``on_timer``, ``on_job`` or ``on_blob``;
- a result of the wrong kind or shape for the node's own job is counted as
  ``bad_result`` and goes to ``on_job_failed`` instead of ``on_job``;
- any refusal a hook raises (:data:`~fedledger.protocols.kit.gate.REFUSED`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel

from fedledger.learning.jobs import JobResult
from fedledger.ledger.verify import Verifier
from fedledger.protocols.base import (
    BlobReceived,
    ChainSynced,
    Effect,
    Event,
    JobFinished,
    Message,
    MessageReceived,
    NodeSetup,
    ProtocolNode,
    Start,
    TimerFired,
)
from fedledger.protocols.kit.asked import Asked, result_problem
from fedledger.protocols.kit.gate import REFUSED, Gate, Reject
from fedledger.protocols.kit.ids import JobId
from fedledger.protocols.kit.shape import mismatch

P = TypeVar("P", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])

_HANDLES = "_kit_handles"

#: The reasons the kit itself counts (besides the ``unexpected_message`` of each class).
MALFORMED_MESSAGE = "malformed_message"
UNEXPECTED_TIMER = "unexpected_timer"
UNEXPECTED_JOB = "unexpected_job"
UNEXPECTED_BLOB = "unexpected_blob"
BAD_RESULT = "bad_result"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def handles(*types: type[Message]) -> Callable[[F], F]:
    """Mark a ``KitNode`` method ``(self, event) -> list[Effect]`` as the handler of
    messages of ``types`` (and their subclasses)."""
    if not types or not all(isinstance(t, type) and issubclass(t, Message) for t in types):
        raise TypeError(f"@handles needs Message subclasses, got {types!r}")

    def mark(method: F) -> F:
        setattr(method, _HANDLES, (*getattr(method, _HANDLES, ()), *types))
        return method

    return mark


class KitNode(ProtocolNode[P]):
    """A node with typed hooks, a message table and a boundary gate (``self.gate``)."""

    #: The reason an unexpected message is counted under.
    unexpected_message: ClassVar[str] = "unexpected_message"
    _table: ClassVar[dict[type, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table: dict[type, str] = {}
        for klass in reversed(cls.__mro__):
            for name, member in vars(klass).items():
                for msg_type in getattr(member, _HANDLES, ()):
                    table[msg_type] = name
        cls._table = table

    def __init__(self, setup: NodeSetup[P], gate: Gate | None = None) -> None:
        super().__init__(setup)
        self.gate = gate if gate is not None else Gate(Verifier(setup.services.directory))
        self.now = 0.0  # the time of the event being handled
        self.asked = Asked()  # its outstanding timers, jobs and blob fetches

    def handle(self, event: Event) -> list[Effect]:
        self.now = event.time
        try:
            effects = self._dispatch(event)
        except REFUSED as refused:
            if isinstance(refused, Reject):
                self.gate.count(refused)  # a no-op for one the gate made (counted already)
            return []
        self.asked.note(effects)
        return effects

    def _dispatch(self, event: Event) -> list[Effect]:
        if isinstance(event, MessageReceived):
            problem = mismatch(event.message)
            if problem is not None:
                name = type(event.message).__name__
                raise self.gate.fail(MALFORMED_MESSAGE, f"{name} from {event.sender}: {problem}")
            return self.on_message(event)
        if isinstance(event, TimerFired):
            if not self.asked.fired(event.key):
                raise self.gate.fail(UNEXPECTED_TIMER, f"timer {_short(event.key)} was never set")
            return self.on_timer(event.key, event)
        if isinstance(event, JobFinished):
            job = self.asked.finished(event.job_id)
            if job is None:
                raise self.gate.fail(UNEXPECTED_JOB, f"job {_short(event.job_id)} was never run")
            job_id = JobId.parse(event.job_id)
            problem = result_problem(job, event.result)
            if problem is not None:
                self.gate.fail(BAD_RESULT, f"job {event.job_id}: {problem}")
                return self.on_job_failed(job_id, event)
            return self.on_job(job_id, event.result, event)
        if isinstance(event, BlobReceived):
            if not self.asked.received(event.cid):
                raise self.gate.fail(UNEXPECTED_BLOB, f"blob {_short(event.cid)} was never fetched")
            return self.on_blob(event)
        if isinstance(event, Start):
            return self.on_start(event)
        if isinstance(event, ChainSynced):
            return self.on_chain_synced(event)
        return []

    def handler_of(self, message: Message) -> Callable[[MessageReceived], list[Effect]] | None:
        """The ``@handles`` method for ``message``'s type (nearest base class), or None."""
        for klass in type(message).__mro__:
            name = self._table.get(klass)
            if name is not None:
                return getattr(self, name)  # type: ignore[no-any-return]
        return None

    # ------------------------------------------------------------ hooks

    def on_start(self, event: Start) -> list[Effect]:
        return []

    def on_message(self, event: MessageReceived) -> list[Effect]:
        """Route to the ``@handles`` method; count a message nobody handles."""
        handler = self.handler_of(event.message)
        if handler is None:
            return self.on_unexpected(event)
        return handler(event)

    def on_unexpected(self, event: MessageReceived) -> list[Effect]:
        self.gate.fail(self.unexpected_message, f"{type(event.message).__name__}")
        return []

    def on_timer(self, key: str, event: TimerFired) -> list[Effect]:
        return []

    def on_job(self, job_id: JobId | None, result: JobResult, event: JobFinished) -> list[Effect]:
        return []

    def on_job_failed(self, job_id: JobId | None, event: JobFinished) -> list[Effect]:
        """The node's own job came back with a result of the wrong kind or shape (counted
        as ``bad_result`` already); a node that waits for the job recovers here."""
        return []

    def on_blob(self, event: BlobReceived) -> list[Effect]:
        return []

    def on_chain_synced(self, event: ChainSynced) -> list[Effect]:
        """The host appended blocks fetched from peers to one of this node's chains while
        it ran (it had fallen behind); a node whose state follows that chain rebuilds."""
        return []
