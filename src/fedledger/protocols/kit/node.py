"""``KitNode``: a protocol node whose ``handle`` dispatches each event to a typed hook.

Subclasses override what they use: ``on_start(event)``, ``on_message(event)`` (or mark
methods ``@handles(MsgType, ...)`` to route messages by type), ``on_timer(key, event)``,
``on_job(job_id, result, event)`` (``job_id`` parsed to a :class:`JobId`, None for an id
no JobId renders) and ``on_blob(event)``; each returns the effects to execute. A message
no handler takes, and any refusal a hook raises (:data:`~fedledger.protocols.kit.gate.REFUSED`),
is counted by the node's :class:`Gate` and never raised to the host.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel

from fedledger.learning.jobs import JobResult
from fedledger.ledger.verify import Verifier
from fedledger.protocols.base import (
    BlobReceived,
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
from fedledger.protocols.kit.gate import REFUSED, Gate, Reject
from fedledger.protocols.kit.ids import JobId

P = TypeVar("P", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])

_HANDLES = "_kit_handles"


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

    def handle(self, event: Event) -> list[Effect]:
        self.now = event.time
        try:
            if isinstance(event, MessageReceived):
                return self.on_message(event)
            if isinstance(event, TimerFired):
                return self.on_timer(event.key, event)
            if isinstance(event, JobFinished):
                return self.on_job(JobId.parse(event.job_id), event.result, event)
            if isinstance(event, BlobReceived):
                return self.on_blob(event)
            if isinstance(event, Start):
                return self.on_start(event)
        except REFUSED as refused:
            if isinstance(refused, Reject):
                self.gate.count(refused)  # a no-op for one the gate made (counted already)
            return []
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

    def on_blob(self, event: BlobReceived) -> list[Effect]:
        return []
