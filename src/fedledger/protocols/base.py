"""The sans-IO protocol interface.

A protocol node never opens a socket, sleeps, reads the wall clock or starts a thread.
It reacts to events (start, a message arrived, a timer fired, a job finished) and answers
with effects (send, broadcast, set or cancel a timer, run a training or evaluation job,
report a model, emit a metric, halt). A host executes the effects: the simulator with a
virtual clock, or a real node process with asyncio TCP and the wall clock. The time of
each event is given by the host in ``Event.time``; it is the only clock a node sees.

Learning work (training, evaluation on the node's *local* data) is asked for with
``RunJob``; the host owns the data and runs the job, applying the node's configured
attack wrappers, so honest protocol code is the same for malicious nodes. Measurement
(accuracy on the global held-out test set) is the host's job too: a node only says
``ReportModel`` and the host evaluates it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel

from fedledger.protocols.meter import NULL_METER, Meter
from fedledger.registry import Registry

if TYPE_CHECKING:
    from fedledger.ledger.finality import FinalityRule
    from fedledger.ledger.forkchoice import ForkChoice
    from fedledger.protocols.services import NodeServices

NodeId = str
Vector = np.ndarray


# ---------------------------------------------------------------- messages


@dataclass(frozen=True)
class Message:
    """Base class of protocol messages: frozen dataclasses of plain values.

    Fields may hold None, bool, int, float, str, bytes, float32 numpy vectors, tuples of
    these, str-keyed mappings of these, and nested frozen dataclasses. That is what the
    canonical codec encodes, so the same message crosses a simulated link and a TCP one.
    """


def wire_size(value: Any) -> int:
    """Approximate encoded size in bytes, used by the simulator's bandwidth model."""
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, int | float):
        return 9
    if isinstance(value, str):
        return 2 + len(value.encode())
    if isinstance(value, bytes | bytearray):
        return 3 + len(value)
    if isinstance(value, np.ndarray):
        return 8 + value.nbytes
    if is_dataclass(value) and not isinstance(value, type):
        return 2 + sum(1 + len(f.name) + wire_size(getattr(value, f.name)) for f in fields(value))
    if isinstance(value, Mapping):
        return 2 + sum(wire_size(k) + wire_size(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return 2 + sum(wire_size(v) for v in value)
    raise TypeError(f"cannot size a value of type {type(value).__name__}")


# ---------------------------------------------------------------- jobs


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of local training (the experiment's defaults)."""

    epochs: int = 1
    lr: float = 0.05
    batch_size: int = 32
    momentum: float = 0.0
    weight_decay: float = 0.0


@dataclass(frozen=True)
class TrainJob:
    """Train ``weights`` on the node's local training data.

    samples: (start, stop) slice of the node's training set, for protocols where data
        arrives over time; None means all of it.
    tag: groups the jobs of one round or tick for attacks that look at the honest
        updates of the same round (the simulator can give them those).
    momentum_buffer: the SGD momentum buffer to start from (flat, the weights' shape),
        for protocols whose node keeps one solver across jobs as Caffe does (DFL);
        None starts from zero. Used only when ``settings.momentum`` > 0.
    shared: whether the trained model leaves the node as its update (the default). A
        model attack (noise, sign flip, ...) wraps only shared models; a model the node
        keeps for itself (a PoS-BFL validator's reference model) is trained honestly, as
        a malicious device misbehaves when it is a worker.
    """

    weights: Vector
    settings: TrainSettings
    seed: int
    samples: tuple[int, int] | None = None
    tag: str = ""
    momentum_buffer: Vector | None = None
    shared: bool = True


@dataclass(frozen=True)
class EvalJob:
    """Evaluate ``weights`` on the node's local validation data."""

    weights: Vector
    split: str = "val"  # "val" or "train"


Job = TrainJob | EvalJob


@dataclass(frozen=True)
class TrainResult:
    """A trained model. ``momentum_buffer``: the SGD momentum buffer at the end (flat),
    when the settings have momentum > 0, so a protocol can carry it to its next job."""

    weights: Vector
    num_samples: int
    loss: float
    momentum_buffer: Vector | None = None


@dataclass(frozen=True)
class EvalResult:
    accuracy: float
    loss: float
    num_samples: int


JobResult = TrainResult | EvalResult


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class Start:
    time: float


@dataclass(frozen=True)
class MessageReceived:
    time: float
    sender: NodeId
    message: Message


@dataclass(frozen=True)
class TimerFired:
    time: float
    key: str


@dataclass(frozen=True)
class JobFinished:
    time: float
    job_id: str
    result: JobResult


@dataclass(frozen=True)
class BlobReceived:
    """Answer to ``FetchBlob``: the blob's bytes (verified against ``cid`` by the host),
    or None when ``source`` did not have it or the transfer failed."""

    time: float
    cid: str
    source: NodeId
    data: bytes | None


Event = Start | MessageReceived | TimerFired | JobFinished | BlobReceived


# ---------------------------------------------------------------- effects


@dataclass(frozen=True)
class Send:
    to: NodeId
    message: Message


@dataclass(frozen=True)
class Broadcast:
    """Send to every neighbour of the node (``NodeSetup.peers``), or to ``to`` if given."""

    message: Message
    to: tuple[NodeId, ...] = ()


@dataclass(frozen=True)
class SetTimer:
    """Fire ``TimerFired(key)`` after ``delay``; setting a key again replaces it."""

    key: str
    delay: float


@dataclass(frozen=True)
class CancelTimer:
    key: str


@dataclass(frozen=True)
class RunJob:
    """Run a job; the host answers with ``JobFinished(job_id, result)``."""

    job_id: str
    job: Job


@dataclass(frozen=True)
class FetchBlob:
    """Fetch the blob ``cid`` (e.g. a model announced by content id) from ``source``'s
    blob store; the host answers with ``BlobReceived``. Models travel off chain this way:
    on chain and in messages there is only the content id and hash."""

    cid: str
    source: NodeId


@dataclass(frozen=True)
class ReportModel:
    """Ask the host to measure this model on the global test set at ``step``."""

    step: int
    weights: Vector


@dataclass(frozen=True)
class EmitMetric:
    """A named figure at ``step`` (round or tick), written to the run's metrics stream."""

    name: str
    value: float
    step: int
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Halt:
    """The node has finished its part of the experiment."""

    reason: str = "done"


Effect = (
    Send | Broadcast | SetTimer | CancelTimer | RunJob | FetchBlob | ReportModel | EmitMetric | Halt
)


# ---------------------------------------------------------------- nodes


@dataclass(frozen=True)
class NodePlan:
    """One node of an experiment as the protocol lays it out.

    role: the node's (initial) role, e.g. "server", "client", "worker".
    holds_data: whether the runner gives it a partition of the training data.
    peers: its neighbours; Broadcast goes to them.
    """

    node_id: NodeId
    role: str
    holds_data: bool = True
    peers: tuple[NodeId, ...] = ()


@dataclass(frozen=True)
class NodeSetup:
    """Everything a node knows when it is created.

    services: host-provided key pair, ledger and blob store, for protocols that keep a
        chain (``Protocol.uses_ledger``); local, persistent and deterministic, so
        still sans-IO. None for protocols that keep no chain.
    faults: protocol-level misbehaviours switched on for this node (e.g. "flip_votes");
        learning attacks are applied by the host around jobs and are not seen here.
    meter: where to attribute CPU time (``with setup.meter.section("blockchain"):``);
        an observer only, never read by the protocol.
    """

    plan: NodePlan
    all_nodes: tuple[NodePlan, ...]
    seed: int
    train: TrainSettings
    initial_weights: Vector
    num_train_samples: int
    params: BaseModel
    rounds: int
    faults: tuple[str, ...] = ()
    services: NodeServices | None = None
    meter: Meter = NULL_METER

    @property
    def node_id(self) -> NodeId:
        return self.plan.node_id


class ProtocolNode(ABC):
    """A node's state machine."""

    def __init__(self, setup: NodeSetup) -> None:
        self.setup = setup

    @property
    def node_id(self) -> NodeId:
        return self.setup.node_id

    @abstractmethod
    def handle(self, event: Event) -> list[Effect]:
        """React to one event; return the effects to execute, in order."""


class Protocol(ABC):
    """A protocol: lays out nodes for an experiment and creates their state machines."""

    name: ClassVar[str]
    faults: ClassVar[tuple[str, ...]] = ()  # protocol-level fault names it understands
    uses_ledger: ClassVar[bool] = False  # the host then gives every node NodeServices
    # one chain for all nodes: a real host catches a (re)starting node up from its peers'
    # chains; False where every node keeps a chain of its own blocks (DFL)
    shared_chain: ClassVar[bool] = True

    def __init__(self, params: BaseModel) -> None:
        self.params = params

    @abstractmethod
    def plan(self, num_nodes: int, seed: int) -> Sequence[NodePlan]:
        """The experiment's nodes, given the configured count and seed."""

    @abstractmethod
    def create_node(self, setup: NodeSetup) -> ProtocolNode:
        """The state machine for one node."""

    def root_data(self) -> dict[NodeId, int]:
        """Trusted root datasets that aggregating nodes hold (FLTrust's server): node id
        -> number of samples, drawn by the host from the clients' clean training data.
        Default: none."""
        return {}

    def ledger_rules(self, members: tuple[bytes, ...]) -> tuple[ForkChoice, FinalityRule | None]:
        """Fork choice and finality rule of each node's chain store, given the members'
        addresses (for protocols with ``uses_ledger``). Default: longest chain, no
        finality gadget."""
        from fedledger.ledger.forkchoice import longest_chain

        return longest_chain, None


PROTOCOLS: Registry[Protocol] = Registry("protocol")
