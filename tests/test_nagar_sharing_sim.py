"""``nagar-vertical`` sharing mode as nodes: equals sharing.py's library, gateways learn
nothing, budgets hold, bad shares and ciphertexts are refused and counted."""

from __future__ import annotations

import heapq
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

from fedledger.errors import ConfigError
from fedledger.learning.jobs import TrainSettings
from fedledger.protocols.base import (
    EmitMetric,
    Halt,
    MessageReceived,
    Send,
    SetTimer,
    Start,
    TimerFired,
)
from fedledger.protocols.nagar_vertical import NagarSharing, NagarVertical, NagarVerticalParams
from fedledger.protocols.nagar_vertical.mode_messages import ReadingShare, SealedReadingMsg
from fedledger.protocols.nagar_vertical.sharing import (
    PRIME,
    SharingPlan,
    _encode,
    run_sharing,
    seal,
    share_reading,
    trainer_key,
)
from fedledger.protocols.nagar_vertical.sharing_node import TRAINER_ID
from setupkit import make_setup

SHAMIR = NagarVerticalParams(mode="sharing", devices=3, epsilon_reading=2.0, epsilon_total=30.0)
SEALED = NagarVerticalParams(mode="sharing", devices=3, transport="sealed", epsilon_reading=2.0)
SEED, HOURS, LATENCY = 7, 20, 0.01


def build(params: NagarVerticalParams):  # type: ignore[no-untyped-def]
    proto = NagarVertical(params)
    count = params.devices + 1 + (params.gateways if params.transport == "shamir" else 0)
    plans = tuple(proto.plan(count, SEED))
    nodes = {
        p.node_id: proto.create_node(
            make_setup(plan=p, all_nodes=plans, seed=SEED, params=params, rounds=HOURS,
                       train=TrainSettings(epochs=1, lr=0.1, batch_size=8),
                       initial_weights=np.zeros(1, np.float32), num_train_samples=0,
                       faults=())
        )
        for p in plans
    }  # fmt: skip
    return nodes


def drive(nodes, until: float = float("inf")):  # type: ignore[no-untyped-def]
    """A virtual clock: Sends arrive after LATENCY, timers after their delay (up to
    ``until``)."""
    queue: list = []
    seq = 0
    log, metrics, halted = [], [], set()

    def push(time, node_id, event):  # type: ignore[no-untyped-def]
        nonlocal seq
        heapq.heappush(queue, (time, seq, node_id, event))
        seq += 1

    for node_id in nodes:
        push(0.0, node_id, Start(0.0))
    while queue:
        now, _, node_id, event = heapq.heappop(queue)
        if now > until:
            break
        if node_id in halted:
            continue
        for effect in nodes[node_id].handle(event):
            if isinstance(effect, Send):
                log.append((node_id, effect.to, effect.message))
                push(now + LATENCY, effect.to,
                     MessageReceived(now + LATENCY, node_id, effect.message))  # fmt: skip
            elif isinstance(effect, SetTimer):
                push(now + effect.delay, node_id, TimerFired(now + effect.delay, effect.key))
            elif isinstance(effect, EmitMetric):
                metrics.append((node_id, effect))
            elif isinstance(effect, Halt):
                halted.add(node_id)
    return log, metrics, halted


def deliver(nodes, sender: str, effects) -> None:  # type: ignore[no-untyped-def]
    for effect in effects:
        if isinstance(effect, Send):
            nodes[effect.to].handle(MessageReceived(0.0, sender, effect.message))


@pytest.fixture(scope="module")
def shamir_run():  # type: ignore[no-untyped-def]
    nodes = build(SHAMIR)
    return (nodes, *drive(nodes))


def final(metrics, name: str, node: str = TRAINER_ID):  # type: ignore[no-untyped-def]
    rows = [m for who, m in metrics if m.name == name and who == node]
    return rows[-1] if rows else None


@pytest.mark.parametrize("params", [SHAMIR, SEALED], ids=["shamir", "sealed"])
def test_the_trainer_error_equals_the_library(params, shamir_run) -> None:  # type: ignore[no-untyped-def]
    if params is SHAMIR:
        nodes, _, metrics, halted = shamir_run
    else:
        nodes = build(params)
        _, metrics, halted = drive(nodes)
    assert halted == set(nodes)
    plan = SharingPlan(params.epsilon_reading, params.epsilon_total, params.transport,
                       params.gateways, params.gateway_threshold, params.per_work)  # fmt: skip
    lib = run_sharing(plan, params.devices, HOURS, SEED)
    rmse = {m.tags[0][1]: m.value for who, m in metrics if m.name == "rmse" and m.step == HOURS - 1}
    assert rmse == {"temperature": lib.rmse[0], "humidity": lib.rmse[1]}  # the same readings
    steps = sorted({m.step for who, m in metrics if m.name == "rmse"})
    assert steps == list(range(HOURS))  # one fit per hour of readings
    assert final(metrics, "readings").value == lib.shared
    assert final(metrics, "reward").value == pytest.approx(lib.reward)
    refused = sum(m.value for _, m in metrics if m.name == "refused_budget")
    assert refused == lib.refused_budget
    spent = [m.value for _, m in metrics if m.name == "epsilon_spent"]
    assert spent == list(lib.epsilon_spent) and max(spent) <= params.epsilon_total
    assert all(not n.gate.counts for n in nodes.values())


def test_the_plan_and_every_hour_are_on_every_chain(shamir_run) -> None:  # type: ignore[no-untyped-def]
    nodes, _, metrics, _ = shamir_run
    heads = {node.ledger.store.head().hash for node in nodes.values()}
    assert len(heads) == 1  # one chain on every party
    ledger = nodes[TRAINER_ID].ledger
    plan = ledger.plan
    assert plan is not None and plan.mode == "sharing" and ledger.round == HOURS
    assert plan.term("epsilon_total") == SHAMIR.epsilon_total  # the public budget
    readings = {m.step: m.value for who, m in metrics if m.name == "readings"}
    for hour in range(HOURS):  # the reward is per_work times the readings on chain
        assert ledger.result(hour + 1, "trainer").openings == readings[hour]


def test_budget_refusals_are_counted_and_nothing_over_budget_is_sent(shamir_run) -> None:  # type: ignore[no-untyped-def]
    _, log, metrics, _ = shamir_run
    per_device = int(SHAMIR.epsilon_total / SHAMIR.epsilon_reading)  # 15 of 20 hours
    refused = {who: m.value for who, m in metrics if m.name == "refused_budget"}
    assert refused == {f"iot-{d}": HOURS - per_device for d in range(SHAMIR.devices)}
    hours = {(m.device, m.hour) for s, _, m in log if isinstance(m, ReadingShare)}
    assert max(h for _, h in hours) == per_device - 1


def test_a_restarted_device_keeps_its_spent_budget() -> None:
    nodes = build(SHAMIR)
    drive(nodes, until=9.5)  # hours 0..9 sent: 10 of the 15 readings the budget allows
    before = nodes["iot-0"]
    assert before.next_hour == 10 and before.device.epsilon_spent == pytest.approx(20.0)
    again = build(SHAMIR)["iot-0"]
    again.ledger.store = before.ledger.store  # the node rebuilt from its chain store
    effects = again.handle(Start(9.6))
    assert again.next_hour == 10 and again.device.epsilon_spent == pytest.approx(20.0)
    assert any(isinstance(e, SetTimer) and e.key == "hour:10" for e in effects)
    sent = [again.device.reading(h) is not None for h in range(10, HOURS)]
    assert sum(sent) == 5  # what is left of the budget, not a fresh one


def test_no_gateway_sees_a_reading(shamir_run) -> None:  # type: ignore[no-untyped-def]
    nodes, log, _, _ = shamir_run
    trainer = nodes[TRAINER_ID]
    for gateway in ("gateway-1", "gateway-2", "gateway-3"):
        views = nodes[gateway].views
        assert views and all(v.x == int(gateway[-1]) for v in views)
        for v in views:  # a single share is never the (noised) reading's encoding
            reading = trainer.readings[(v.device, v.hour)]
            assert all(y != _encode(float(r)) for y, r in zip(v.ys, reading, strict=True))
        values = np.array([y for v in views for y in v.ys], dtype=float) / PRIME
        assert stats.kstest(values, "uniform").pvalue > 0.001  # uniform in the field
    assert all(t != TRAINER_ID or s.startswith("gateway-")
               for s, t, m in log if isinstance(m, ReadingShare))  # fmt: skip


def test_a_single_share_has_the_same_distribution_whatever_the_reading() -> None:
    plan = SharingPlan(gateways=3, threshold=2)
    cold, hot = np.array([-10.0, 0.0]), np.array([40.0, 100.0])
    views = {}
    for name, reading in (("cold", cold), ("hot", hot)):
        rng = np.random.default_rng([SEED, 3, 0])  # the same seed: only the reading differs
        shares = [share_reading(0, h, reading, plan, rng)[0] for h in range(2000)]
        views[name] = np.array([s.ys[0] for s in shares], dtype=float) / PRIME
    assert stats.ks_2samp(views["cold"], views["hot"]).pvalue > 0.01
    assert stats.kstest(views["hot"], "uniform").pvalue > 0.01


def test_sealed_readings_are_opaque_to_relays() -> None:
    nodes = build(SEALED)
    log, _, _ = drive(nodes)
    sealed = [m for s, t, m in log if isinstance(m, SealedReadingMsg)]
    assert sealed and all(t == TRAINER_ID for _, t, m in log if isinstance(m, SealedReadingMsg))
    trainer = nodes[TRAINER_ID]
    for msg in sealed[:20]:
        plain = [np.float64(v).astype(">f8").tobytes() for r in trainer.readings.values()
                 for v in r]  # fmt: skip
        assert not any(p in msg.ciphertext for p in plain[:40])


def test_bad_shares_and_ciphertexts_are_refused_and_counted(shamir_run) -> None:  # type: ignore[no-untyped-def]
    _, log, _, _ = shamir_run
    nodes = build(SHAMIR)
    gw, trainer = nodes["gateway-1"], nodes[TRAINER_ID]
    gw.handle(Start(0.0))
    early = next(m for s, t, m in log if t == "gateway-1" and s == "iot-1")
    gw.handle(MessageReceived(0.0, "iot-1", early))  # before the plan is on its chain
    assert dict(gw.gate.counts) == {"unknown_plan": 1}
    gw.gate.counts.clear()
    deliver(nodes, TRAINER_ID, trainer.handle(Start(0.0)))  # the plan block, to every party
    assert gw.ledger.plan is not None
    good = next(m for s, t, m in log if t == "gateway-1" and s == "iot-0")

    def feed(node, sender, msg):  # type: ignore[no-untyped-def]
        return node.handle(MessageReceived(0.0, sender, msg))

    assert feed(gw, "iot-0", good)  # forwarded
    feed(gw, "iot-0", good)  # twice
    feed(gw, "iot-1", good)  # names another device
    feed(gw, TRAINER_ID, good)
    feed(gw, "iot-0", replace(good, x=2))  # another gateway's share
    feed(gw, "iot-0", replace(good, hour=1, ys=good.ys[:1]))
    feed(gw, "iot-0", replace(good, hour=2, ys=(PRIME, 0)))
    feed(gw, "iot-0", replace(good, hour=HOURS))
    assert dict(gw.gate.counts) == {"repeated_reading": 1, "not_the_sender": 1,
                                    "not_a_device": 1, "bad_share": 2, "bad_shape": 1,
                                    "wrong_hour": 1}  # fmt: skip
    shares = [m for s, t, m in log if t == TRAINER_ID and (m.device, m.hour) == (0, 0)]
    by_x = {m.x: m for m in shares}
    feed(trainer, "gateway-1", by_x[1])
    feed(trainer, "gateway-2", by_x[2])
    assert (0, 0) in trainer.readings  # reconstructed from t = 2
    feed(trainer, "gateway-3", replace(by_x[3], ys=(by_x[3].ys[0] ^ 1, by_x[3].ys[1])))
    feed(trainer, "gateway-3", by_x[3])  # the honest one still fits
    feed(trainer, "gateway-3", by_x[3])
    feed(trainer, "iot-0", by_x[1])  # a device is no gateway
    feed(trainer, "gateway-2", by_x[1])  # x of another gateway
    feed(trainer, "iot-0", SealedReadingMsg(b"garbage"))  # shamir transport: no sealed
    assert dict(trainer.gate.counts) == {"inconsistent_share": 1, "repeated_share": 1,
                                         "not_a_gateway": 1, "bad_share": 1,
                                         "not_a_device": 1}  # fmt: skip
    sealed = build(SEALED)
    tr = sealed[TRAINER_ID]
    tr.handle(Start(0.0))
    key = trainer_key(SEED).public_key
    reading = np.array([20.0, 50.0])
    feed(tr, "iot-0", SealedReadingMsg(b"\x00" * 80))
    feed(tr, "iot-0", SealedReadingMsg(seal(key, 1, 0, reading).ciphertext))  # device 1's
    feed(tr, "iot-0", SealedReadingMsg(seal(key, 0, 0, np.array([np.nan, 1.0])).ciphertext))
    feed(tr, "iot-0", SealedReadingMsg(seal(key, 0, 0, np.zeros(3)).ciphertext))
    feed(tr, "iot-0", SealedReadingMsg(seal(key, 0, 0, reading).ciphertext))
    feed(tr, "iot-0", SealedReadingMsg(seal(key, 0, 0, reading).ciphertext))
    feed(tr, "gateway-1", SealedReadingMsg(seal(key, 0, 1, reading).ciphertext))
    assert dict(tr.gate.counts) == {"bad_cipher": 1, "not_the_sender": 1, "bad_reading": 1,
                                    "bad_shape": 1, "repeated_reading": 1,
                                    "not_a_device": 1}  # fmt: skip


def test_mode_keys_and_node_count_are_checked() -> None:
    with pytest.raises(ValueError, match="gateway_threshold=4 > gateways=3"):
        NagarVerticalParams(mode="sharing", gateway_threshold=4)
    with pytest.raises(ValueError, match="gamma is set but mode is 'sharing'"):
        NagarVerticalParams(mode="sharing", gamma=0.1)
    with pytest.raises(ValueError, match=r"epsilon_reading=5\.0 > epsilon_total=1\.0"):
        NagarVerticalParams(mode="sharing", epsilon_reading=5.0, epsilon_total=1.0)
    with pytest.raises(ConfigError, match="3 IoT devices, 1 trainer and 3 gateways"):
        NagarVertical(SHAMIR).plan(4, 0)
    assert len(NagarVertical(SEALED).plan(4, 0)) == 4
    with pytest.raises(ConfigError, match="runs mode 'sharing' only"):
        NagarSharing(NagarVerticalParams(mode="transfer"))
