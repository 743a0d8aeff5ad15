"""The vanilla FedAvg state machines, fed events directly."""

from __future__ import annotations

import numpy as np

from fedledger.assembly.plugins import registries
from fedledger.protocols.base import (
    Broadcast,
    CancelTimer,
    Halt,
    JobFinished,
    MessageReceived,
    ReportModel,
    RunJob,
    Send,
    SetTimer,
    Start,
    TimerFired,
    TrainJob,
    TrainResult,
    TrainSettings,
)
from fedledger.protocols.vanilla.messages import ClientUpdate, Finish, GlobalModel
from setupkit import make_setup


def build(num_clients=4, rounds=2, **params):
    reg = registries()["protocol"]
    proto = reg.get("vanilla").factory(reg.params("vanilla", params))
    plans = list(proto.plan(num_clients, 0))
    nodes = {}
    for p in plans:
        setup = make_setup(
            plan=p,
            all_nodes=tuple(plans),
            seed=0,
            train=TrainSettings(),
            initial_weights=np.zeros(2, np.float32),
            num_train_samples=10,
            params=proto.params,
            rounds=rounds,
        )
        nodes[p.node_id] = proto.create_node(setup)
    return nodes


def test_server_samples_sends_and_aggregates_weighted():
    nodes = build(num_clients=4, rounds=2, fraction=0.5)
    server = nodes["server"]
    effects = server.handle(Start(0.0))
    sent = next(e for e in effects if isinstance(e, Broadcast))
    assert isinstance(sent.message, GlobalModel) and sent.message.round == 1
    assert len(sent.to) == 2 and set(sent.to) <= {"c000", "c001", "c002", "c003"}
    a, b = sent.to
    assert (
        server.handle(
            MessageReceived(1.0, a, ClientUpdate(1, np.array([1, 1], np.float32), 1, 0.1))
        )
        == []
    )
    effects = server.handle(
        MessageReceived(1.0, b, ClientUpdate(1, np.array([4, 7], np.float32), 3, 0.1))
    )
    assert isinstance(effects[0], CancelTimer)
    report = next(e for e in effects if isinstance(e, ReportModel))
    np.testing.assert_allclose(report.weights, [(1 + 12) / 4, (1 + 21) / 4])
    assert any(isinstance(e, Broadcast) and e.message.round == 2 for e in effects)


def test_server_ignores_late_unsolicited_and_malformed_updates():
    server = build(num_clients=2, rounds=1)["server"]
    server.handle(Start(0.0))
    assert (
        server.handle(MessageReceived(0.1, "c000", ClientUpdate(7, np.zeros(2, np.float32), 1, 0)))
        == []
    )
    assert (
        server.handle(MessageReceived(0.1, "ghost", ClientUpdate(1, np.zeros(2, np.float32), 1, 0)))
        == []
    )
    bad = server.handle(
        MessageReceived(0.1, "c000", ClientUpdate(1, np.zeros(5, np.float32), 1, 0))
    )
    assert bad[0].name == "rejected_updates"


def test_timeout_closes_the_round_with_what_arrived_and_the_last_round_halts():
    server = build(num_clients=2, rounds=1)["server"]
    server.handle(Start(0.0))
    server.handle(MessageReceived(1.0, "c000", ClientUpdate(1, np.ones(2, np.float32), 5, 0)))
    effects = server.handle(TimerFired(600.0, "round-timeout"))
    report = next(e for e in effects if isinstance(e, ReportModel))
    np.testing.assert_allclose(report.weights, [1, 1])
    assert isinstance(effects[-1], Halt)
    assert any(isinstance(e, Broadcast) and isinstance(e.message, Finish) for e in effects)


def test_client_trains_what_the_server_sends_and_answers():
    client = build()["c001"]
    w = np.array([3, 4], np.float32)
    (run,) = client.handle(MessageReceived(0.5, "server", GlobalModel(1, w)))
    assert isinstance(run, RunJob) and isinstance(run.job, TrainJob)
    assert run.job.tag == "round-1" and run.job.weights is w
    result = TrainResult(np.array([5, 6], np.float32), 10, 0.25)
    effects = client.handle(JobFinished(1.0, run.job_id, result))
    send = effects[0]
    assert isinstance(send, Send) and send.to == "server" and send.message.num_samples == 10
    assert client.handle(MessageReceived(0.5, "c000", GlobalModel(2, w))) == []  # not the server
    assert client.handle(MessageReceived(2.0, "server", Finish(1))) == [Halt()]


def test_sampling_is_seeded():
    first = build(num_clients=10, fraction=0.3)["server"].handle(Start(0.0))
    again = build(num_clients=10, fraction=0.3)["server"].handle(Start(0.0))
    assert first[0].to == again[0].to
    assert isinstance(first[1], SetTimer)
