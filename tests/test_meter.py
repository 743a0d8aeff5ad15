"""CPU-time attribution: sections, nesting, and the simulator's split."""

from __future__ import annotations

import time
from dataclasses import replace

from fedledger.protocols.meter import NULL_METER, CpuMeter


def burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_sections_add_up_and_nested_time_goes_to_the_inner_one():
    meter = CpuMeter()
    with meter.section("blockchain"):
        burn(0.02)
        with meter.section("crypto"):
            burn(0.03)
    assert meter.seconds["crypto"] >= 0.03
    assert 0.02 <= meter.seconds["blockchain"] < 0.03 + 0.02
    assert meter.measured >= 0.05
    meter.add("ml", 1.5)
    assert meter.seconds["ml"] == 1.5


def test_null_meter_measures_nothing():
    with NULL_METER.section("anything"):
        pass
    assert not hasattr(NULL_METER, "seconds")


def test_simulator_attributes_handle_time_minus_sections_to_protocol():
    from test_sim import FakeJobs, Recorder, setup  # noqa: I001
    from fedledger.protocols.base import Halt, ProtocolNode, Start
    from fedledger.runtime.sim import ComputeModel, LinkSpec, NetworkModel, Simulator

    meter = CpuMeter()

    class Busy(ProtocolNode):
        def handle(self, event):
            if isinstance(event, Start):
                burn(0.01)
                with self.setup.meter.section("blockchain"):
                    burn(0.03)
                return [Halt()]
            return []

    sim = Simulator(
        {"a": Busy(replace(setup("a", ()), meter=meter))},
        {},
        FakeJobs(),
        NetworkModel(LinkSpec()),
        ComputeModel(),
        Recorder(),
        meters={"a": meter},
    )
    stats = sim.run()
    assert stats.cpu["a"]["blockchain"] >= 0.03
    assert 0.01 <= stats.cpu["a"]["protocol"] < 0.03


def test_encoded_messages_arrive_as_decoded_copies_with_exact_sizes():
    import numpy as np

    from fedledger.codec import encode
    from fedledger.protocols.base import MessageReceived, ProtocolNode, Send, Start
    from fedledger.protocols.vanilla.messages import ClientUpdate
    from fedledger.runtime.sim import ComputeModel, LinkSpec, NetworkModel, Simulator
    from test_sim import FakeJobs, Recorder, setup

    sent = ClientUpdate(1, np.arange(5, dtype=np.float32), 3, 0.5)
    got = []

    class Node(ProtocolNode):
        def handle(self, event):
            if isinstance(event, Start) and self.node_id == "a":
                return [Send("b", sent)]
            if isinstance(event, MessageReceived):
                got.append(event.message)
            return []

    nodes = {n: Node(setup(n, ())) for n in "ab"}
    sim = Simulator(
        nodes,
        {"a": ("b",), "b": ("a",)},
        FakeJobs(),
        NetworkModel(LinkSpec()),
        ComputeModel(),
        Recorder(),
        encode_messages=True,
    )
    stats = sim.run()
    assert stats.bytes_sent["a"] == len(encode(sent))
    (msg,) = got
    assert msg is not sent and msg.weights is not sent.weights
    np.testing.assert_array_equal(msg.weights, sent.weights)
    assert stats.cpu["a"]["network"] > 0
