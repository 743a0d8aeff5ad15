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
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import numpy as np
from pydantic import BaseModel

from fedledger.learning.jobs import (
    EvalJob,
    EvalResult,
    Job,
    JobResult,
    TrainJob,
    TrainResult,
    TrainSettings,
)
from fedledger.protocols.meter import NULL_METER, Meter
from fedledger.protocols.resources import NodeResources
from fedledger.protocols.results import MetricRow, ModelRow, StepMetrics
from fedledger.registry import Registry

if TYPE_CHECKING:
    from fedledger.protocols.resources import NodeServices

__all__ = [
    "BASE_EFFECTS",
    "EvalJob",
    "EvalResult",
    "Job",
    "JobResult",
    "TrainJob",
    "TrainResult",
    "TrainSettings",
]

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


_SIZE_ATTR = "_fedledger_wire_size"
_FIELD_COSTS: dict[type, tuple[tuple[str, int], ...]] = {}


def wire_size(value: Any) -> int:
    """Approximate encoded size in bytes, used by the simulator's bandwidth model.

    A frozen dataclass's size cannot change (its fields are fixed, an array's byte size
    too), so it is computed once per object and kept on it, as the codec keeps a record's
    bytes: a vote that travels inside every candidate block is sized once."""
    if is_dataclass(value) and not isinstance(value, type):
        slots = getattr(value, "__dict__", None)
        if slots is not None:
            known = slots.get(_SIZE_ATTR)
            if known is not None:
                return int(known)
        costs = _FIELD_COSTS.get(type(value))
        if costs is None:
            costs = tuple((f.name, 1 + len(f.name)) for f in fields(value))
            _FIELD_COSTS[type(value)] = costs
        size = 2 + sum(cost + wire_size(getattr(value, name)) for name, cost in costs)
        if slots is not None and type(value).__dataclass_params__.frozen:  # type: ignore[attr-defined]
            slots[_SIZE_ATTR] = size
        return size
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
    if isinstance(value, Mapping):
        return 2 + sum(wire_size(k) + wire_size(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return 2 + sum(wire_size(v) for v in value)
    raise TypeError(f"cannot size a value of type {type(value).__name__}")


# ---------------------------------------------------------------- jobs
# The job types belong to the learning layer; they are re-exported here because every
# protocol asks for jobs and reads their results.

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


@dataclass(frozen=True)
class ChainSynced:
    """A real node's host appended ``appended`` blocks to chain ``chain`` that it fetched
    from its peers while the node was running (it had fallen behind: paused, partitioned);
    the chain's head is now at ``height``. The node's state derived from that chain is
    stale: rebuild it from the store, as on ``Start``. The simulator never sends it."""

    time: float
    chain: str
    appended: int
    height: int


Event = Start | MessageReceived | TimerFired | JobFinished | BlobReceived | ChainSynced


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

#: The effects every host executes. A protocol that emits more declares them in
#: ``Protocol.effects``; a host without a handler for one refuses to start the run.
BASE_EFFECTS: tuple[type, ...] = (
    Send,
    Broadcast,
    SetTimer,
    CancelTimer,
    RunJob,
    FetchBlob,
    ReportModel,
    EmitMetric,
    Halt,
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


P = TypeVar("P", bound=BaseModel)


@dataclass(frozen=True)
class Horizon:
    """How long a run lasts, in the protocol's own unit: ``rounds`` (synchronous
    protocols), ``ticks`` (DFL's virtual seconds) or ``epochs``. It drives the progress
    bar and the summary; metrics' ``step`` counts in the same unit."""

    unit: str
    length: int

    def __post_init__(self) -> None:
        if self.unit not in ("rounds", "ticks", "epochs"):
            raise ValueError(f"horizon unit {self.unit!r}: allowed rounds, ticks, epochs")
        if self.length < 1:
            raise ValueError(f"horizon length must be >= 1, got {self.length}")


@dataclass(frozen=True)
class NodeSetup(Generic[P]):
    """Everything a node knows when it is created.

    params: the protocol's validated parameters (its own pydantic model).
    horizon: how long the run lasts (``horizon.length`` rounds, ticks or epochs).
    services: what the host opened for it, as ``Protocol.resources`` declared: its key
        pair, chains, blob store and the members' addresses. Local, persistent and
        deterministic, so still sans-IO.
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
    params: P
    horizon: Horizon
    services: NodeServices
    faults: tuple[str, ...] = ()
    meter: Meter = NULL_METER

    @property
    def node_id(self) -> NodeId:
        return self.plan.node_id

    @property
    def rounds(self) -> int:
        """The horizon's length (rounds for round-based protocols)."""
        return self.horizon.length


class ProtocolNode(ABC, Generic[P]):
    """A node's state machine."""

    def __init__(self, setup: NodeSetup[P]) -> None:
        self.setup = setup

    @property
    def node_id(self) -> NodeId:
        return self.setup.node_id

    @abstractmethod
    def handle(self, event: Event) -> list[Effect]:
        """React to one event; return the effects to execute, in order."""

    def may_serve(self, peer: NodeId, cid: str) -> bool:
        """Whether this node hands the blob ``cid`` from its store to ``peer``: a pure query
        the host asks before it answers a fetch (the simulator, and a real node's blob
        requests). Default: every stored blob to every member. A refusal looks to the
        asker like a blob the node does not have; the host counts it (``refused_blob``)."""
        return True


@dataclass(frozen=True)
class MetricSpec:
    """A metric a protocol emits: its name (namespaced ``<protocol>.<name>`` unless it is
    one of the common names every protocol may emit) and what it measures."""

    name: str
    summary: str


#: Names any protocol may emit without declaring them.
COMMON_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("train_loss", "mean training loss of a node's last local training"),
    MetricSpec("rejected", "messages or records refused at a node's boundary, by reason"),
    MetricSpec("epsilon_spent", "DP epsilon a node has spent so far (cumulative, at its delta)"),
)


class Protocol(ABC, Generic[P]):
    """A protocol: lays out nodes, declares what each needs, creates their state machines,
    and reports on a finished run.

    A new protocol subclasses this with its params model as ``P``, registers itself in
    :data:`PROTOCOLS` and overrides what differs from the defaults: ``resources`` (no
    chain, no blob store), ``horizon`` (``rounds`` from the config), ``effects`` (none
    beyond :data:`BASE_EFFECTS`), ``metrics``, ``step_metrics`` and ``report``.
    """

    name: ClassVar[str]
    faults: ClassVar[tuple[str, ...]] = ()  # protocol-level fault names it understands
    effects: ClassVar[tuple[type, ...]] = ()  # effects it emits beyond BASE_EFFECTS
    metrics: ClassVar[tuple[MetricSpec, ...]] = ()  # names it emits besides COMMON_METRICS

    def __init__(self, params: P) -> None:
        self.params = params

    @abstractmethod
    def plan(self, num_nodes: int, seed: int) -> Sequence[NodePlan]:
        """The experiment's nodes, given the configured count and seed."""

    @abstractmethod
    def create_node(self, setup: NodeSetup[P]) -> ProtocolNode[P]:
        """The state machine for one node."""

    def resources(self, plan: NodePlan, plans: Sequence[NodePlan]) -> NodeResources:
        """What ``plan``'s node needs opened for it. Default: a key pair only."""
        return NodeResources()

    def committees(self, plans: Sequence[NodePlan]) -> Mapping[str, tuple[str, ...]]:
        """Committees fixed at genesis, by name: node ids in the committee's own order
        (e.g. PBFT replicas by index). The genesis block records them (with the members'
        keys), and ``fedledger chain verify`` checks certificates against them (see
        ``ChainSpec.certified_by``). Default: none."""
        return {}

    def shared_split_samples(self) -> int:
        """Size of an evaluation split every node holds identically (drawn once per
        experiment from the data holders' clean data; ``EvalJob(split="shared")``), for
        protocols whose nodes must score models bit-identically (DFLBCB's pre-agreed test
        set). Default: 0, none."""
        return 0

    def horizon(self, rounds: int) -> Horizon:
        """How long a run lasts, given the config's ``rounds``. Default: that many rounds."""
        return Horizon("rounds", rounds)

    def metric_names(self) -> frozenset[str]:
        """Every metric name its nodes may emit (common and declared)."""
        return frozenset(m.name for m in (*COMMON_METRICS, *self.metrics))

    def step_metrics(self, layout: tuple[tuple[str, tuple[int, ...]], ...]) -> StepMetrics | None:
        """Metrics over all nodes' reported models of one step (e.g. DFL's model
        difference), given the model layout; None for none."""
        return None

    def report(
        self, run_dir: Path, rows: Sequence[ModelRow], metrics: Sequence[MetricRow]
    ) -> Mapping[str, Any]:
        """The protocol's section of the run summary, from what the run measured; it may
        write more plots under ``run_dir/plots``. Default: nothing."""
        return {}

    def headline(self, section: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
        """A few (label, text) lines from its report section that say what its ledger
        caught, for ``fedledger compare``. Default: none (no ledger)."""
        return (("what the ledger caught", "no ledger"),)


PROTOCOLS: Registry[Protocol[Any]] = Registry("protocol")
