"""The discrete-event simulator, driven by toy protocols (no learning involved)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from fedledger.protocols.base import (
    Broadcast,
    CancelTimer,
    EmitMetric,
    EvalJob,
    EvalResult,
    Halt,
    JobFinished,
    Message,
    MessageReceived,
    NodePlan,
    NodeSetup,
    ProtocolNode,
    ReportModel,
    RunJob,
    Send,
    SetTimer,
    Start,
    TimerFired,
    TrainSettings,
    wire_size,
)
from fedledger.runtime.sim import ComputeModel, LinkSpec, NetworkModel, Simulator
from fedledger.runtime.sim.network import Partition
from fedledger.runtime.sim.simulator import SimulationError
from setupkit import make_setup


@dataclass(frozen=True)
class Ping(Message):
    hop: int
    payload: bytes = b""


class Recorder:
    def __init__(self) -> None:
        self.reports: list[tuple[str, float, int]] = []
        self.metrics: list[tuple[str, float, str, float]] = []

    def on_report(self, node_id, time, step, weights):
        self.reports.append((node_id, time, step))

    def on_metric(self, node_id, time, metric):
        self.metrics.append((node_id, time, metric.name, metric.value))


class FakeJobs:
    """Stands in for JobRunner: evaluation returns a fixed result."""

    def num_samples(self, node_id):
        return 100

    def num_eval(self, node_id):
        return 10

    def is_honest(self, node_id):
        return True

    def is_omniscient(self, node_id):
        return False

    def needs_honest(self, node_id, job):
        return False

    def run(self, node_id, job, honest=None):
        return EvalResult(accuracy=0.5, loss=1.0, num_samples=10)


def setup(node_id: str, peers: tuple[str, ...]) -> NodeSetup:
    plan = NodePlan(node_id, "peer", True, peers)
    return make_setup(
        plan=plan,
        all_nodes=(plan,),
        seed=0,
        train=TrainSettings(),
        initial_weights=np.zeros(3, np.float32),
        num_train_samples=100,
        params=None,  # type: ignore[arg-type]
        rounds=1,
    )


class PingPong(ProtocolNode):
    """a sends Ping(0) to b; each side answers with hop+1 until hop reaches 5."""

    def handle(self, event):
        if isinstance(event, Start) and self.node_id == "a":
            return [Send("b", Ping(0, b"x" * 1000))]
        if isinstance(event, MessageReceived):
            hop = event.message.hop
            effects = [EmitMetric("hop", hop, hop)]
            if hop >= 5:
                return [*effects, Broadcast(Ping(99)), Halt()]
            return [*effects, Send(event.sender, Ping(hop + 1, event.message.payload))]
        return []


def make_sim(nodes, peers, *, latency=0.01, bandwidth=1e6, loss=0.0, partitions=(), seed=0):
    rec = Recorder()
    net = NetworkModel(LinkSpec(latency, bandwidth, loss), partitions=partitions, seed=seed)
    sim = Simulator(nodes, peers, FakeJobs(), net, ComputeModel(), rec, seed=seed)
    return sim, rec


def test_ping_pong_timing_follows_latency_and_bandwidth():
    nodes = {"a": PingPong(setup("a", ("b",))), "b": PingPong(setup("b", ("a",)))}
    sim, rec = make_sim(nodes, {"a": ("b",), "b": ("a",)}, latency=0.01, bandwidth=1e6)
    stats = sim.run()
    size = wire_size(Ping(0, b"x" * 1000))
    hop_time = 0.01 + size / 1e6
    times = [t for _, t, name, value in rec.metrics if name == "hop" and value < 99]
    assert times == pytest.approx([hop_time * (i + 1) for i in range(6)])
    assert [v for *_, v in rec.metrics][-1] == 99  # a got b's closing broadcast
    assert stats.messages_sent == 8  # six hops plus each side's closing broadcast
    assert stats.bytes_sent["a"] > 3000


def test_uplink_is_shared_so_broadcast_copies_queue():
    class Fan(ProtocolNode):
        def handle(self, event):
            if isinstance(event, Start) and self.node_id == "hub":
                return [Broadcast(Ping(0, b"y" * 10_000))]
            if isinstance(event, MessageReceived):
                return [EmitMetric("got", 1.0, 0), Halt()]
            return []

    leaves = tuple(f"n{i}" for i in range(4))
    nodes = {"hub": Fan(setup("hub", leaves))} | {n: Fan(setup(n, ("hub",))) for n in leaves}
    peers = {"hub": leaves} | {n: ("hub",) for n in leaves}
    sim, rec = make_sim(nodes, peers, latency=0.0, bandwidth=1e6)
    sim.run()
    size = wire_size(Ping(0, b"y" * 10_000))
    arrivals = sorted(t for _, t, _, _ in rec.metrics)
    assert arrivals == pytest.approx([size / 1e6 * (i + 1) for i in range(4)])


class TimerNode(ProtocolNode):
    def handle(self, event):
        if isinstance(event, Start):
            return [SetTimer("t", 5.0), SetTimer("t", 2.0), SetTimer("u", 1.0), CancelTimer("u")]
        if isinstance(event, TimerFired):
            return [EmitMetric(event.key, event.time, 0), Halt()]
        return []


def test_timer_is_replaced_and_cancelled():
    sim, rec = make_sim({"a": TimerNode(setup("a", ()))}, {"a": ()})
    sim.run()
    assert rec.metrics == [("a", 2.0, "t", 2.0)]


class JobNode(ProtocolNode):
    def handle(self, event):
        if isinstance(event, Start):
            return [RunJob("e1", EvalJob(np.zeros(3, np.float32)))]
        if isinstance(event, JobFinished):
            return [ReportModel(1, np.zeros(3, np.float32)), Halt()]
        return []


def test_jobs_take_modelled_time():
    sim, rec = make_sim({"a": JobNode(setup("a", ()))}, {"a": ()})
    sim.run()
    # 10 evaluation samples at the default 2e-5 s each
    assert rec.reports == [("a", pytest.approx(10 * 2e-5), 1)]


def test_loss_drops_messages_deterministically():
    def run_once(seed):
        nodes = {n: PingPong(setup(n, ())) for n in "ab"}
        sim, rec = make_sim(nodes, {"a": ("b",), "b": ("a",)}, loss=0.5, seed=seed)
        stats = sim.run()
        return stats.messages_lost, rec.metrics

    assert run_once(3) == run_once(3)
    lost = [run_once(s)[0] for s in range(10)]
    assert any(n > 0 for n in lost)


def test_partition_cuts_links_in_its_window():
    nodes = {n: PingPong(setup(n, ())) for n in "ab"}
    cut = (Partition(0.0, 10.0, frozenset({"a"})),)
    sim, rec = make_sim(nodes, {"a": ("b",), "b": ("a",)}, partitions=cut)
    stats = sim.run()
    assert stats.messages_lost == 1 and rec.metrics == []


def test_node_exception_is_reported_with_context():
    class Broken(ProtocolNode):
        def handle(self, event):
            raise KeyError("boom")

    sim, _ = make_sim({"x": Broken(setup("x", ()))}, {"x": ()})
    with pytest.raises(SimulationError, match="node x failed on Start"):
        sim.run()


def test_send_to_unknown_node_is_an_error():
    class Lost(ProtocolNode):
        def handle(self, event):
            return [Send("nobody", Ping(0))] if isinstance(event, Start) else []

    sim, _ = make_sim({"x": Lost(setup("x", ()))}, {"x": ()})
    with pytest.raises(SimulationError, match="unknown node 'nobody'"):
        sim.run()


def test_send_to_a_node_that_is_not_a_neighbour_is_an_error():
    """A real network connects only neighbours (either lists the other as a peer), so a
    message to anyone else would never arrive there: the simulator refuses to deliver it."""

    class Far(ProtocolNode):
        def handle(self, event):
            return [Send("z", Ping(0))] if isinstance(event, Start) and self.node_id == "x" else []

    nodes = {n: Far(setup(n, ())) for n in ("x", "y", "z")}
    sim, _ = make_sim(nodes, {"x": ("y",), "y": ("z",), "z": ()})
    with pytest.raises(SimulationError, match="'z', which is not its neighbour"):
        sim.run()
    # listed by the receiver only is enough: the receiver dials
    sim, _ = make_sim(nodes, {"x": (), "y": (), "z": ("x",)})
    sim.run()
    assert sim.stats.messages_sent == 1


def test_link_spec_validates():
    with pytest.raises(ValueError, match="bandwidth must be > 0"):
        LinkSpec(bandwidth=0)
    with pytest.raises(ValueError, match="loss must be in"):
        LinkSpec(loss=1.0)


def test_fetch_blob_pays_for_request_and_answer(tmp_path):
    from fedledger.protocols.base import BlobReceived, FetchBlob
    from fedledger.storage.blobs import BlobStore

    store = BlobStore(tmp_path / "b")
    cid = store.put(b"z" * 50_000)

    class Fetcher(ProtocolNode):
        def handle(self, event):
            if isinstance(event, Start) and self.node_id == "a":
                return [FetchBlob(cid, "b"), FetchBlob("bafkreimissing", "b")]
            if isinstance(event, BlobReceived):
                size = -1 if event.data is None else len(event.data)
                return [EmitMetric(event.cid, size, 0)]
            return []

    nodes = {n: Fetcher(setup(n, ())) for n in "ab"}
    rec = Recorder()
    net = NetworkModel(LinkSpec(latency=0.1, bandwidth=1e6))
    sim = Simulator(nodes, {}, FakeJobs(), net, ComputeModel(), rec, blobs={"b": store})
    sim.run()
    (got_at, got), (miss_at, miss) = [(t, v) for _, t, _, v in rec.metrics]
    assert got == 50_000 and miss == -1
    # request (64 B) out, then 50,064 B back over the same 1 MB/s links, 0.1 s each way
    assert got_at == pytest.approx(0.1 + 64 / 1e6 + 0.1 + 50_064 / 1e6, rel=1e-3)
    assert miss_at > got_at  # b's uplink sent the big answer first
