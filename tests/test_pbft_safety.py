"""PBFT safety and liveness under random schedules and Byzantine replicas (harness).

Hypothesis draws the schedule (seed of delays and reordering, message loss, a partition
that heals), which f of the 3f+1 replicas are faulty and how. Properties: no two honest
replicas execute different batches at one sequence number, no request runs twice, and
after the network heals every honest client's requests get results. With f+1 faulty
replicas a constructed schedule breaks safety: the bound is tight.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedledger.consensus.pbft import (
    Byzantine,
    Commit,
    Execute,
    PbftConfig,
    Prepare,
    PrePrepare,
    Proposal,
    Replica,
    batch_digest,
)
from fedledger.consensus.pbft.config import SWITCHES
from fedledger.consensus.pbft.harness import NetConfig, Network, Partition, build
from fedledger.crypto.keys import KeyPair, derive_seed
from fedledger.ledger.records import Transaction, record_id, sign

SETTINGS = settings(max_examples=8, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def config(byz: Byzantine | None = None) -> PbftConfig:
    return PbftConfig(batch_window=0.02, max_batch=2, checkpoint_interval=2,
                      watermark_window=4, view_timeout=0.5, resend_interval=0.2,
                      byzantine=byz or Byzantine())


@st.composite
def schedules(draw: st.DrawFn, n: int, switch: str) -> dict:
    f = (n - 1) // 3
    faulty = draw(st.one_of(st.just(list(range(f))),  # the first primaries
                            st.lists(st.integers(0, n - 1), min_size=f, max_size=f,
                                     unique=True)))
    heal = draw(st.sampled_from([0.0, 2.0, 4.0]))
    parts: tuple[Partition, ...] = ()
    loss = 0.0
    if heal:
        loss = draw(st.sampled_from([0.0, 0.1, 0.3]))
        group = draw(st.frozensets(st.integers(0, n - 1), min_size=1, max_size=n // 2))
        start = draw(st.floats(0.0, heal))
        parts = (Partition(start, heal, group),)
    return {"n": n, "switch": switch, "faulty": faulty, "seed": draw(st.integers(0, 2**16)),
            "net": NetConfig(0.001, draw(st.sampled_from([0.005, 0.05])), loss, parts, heal)}


def simulate(s: dict, clients: int = 2, requests: int = 3) -> tuple[Network, list[int]]:
    probe = build(s["n"], clients=clients, seed=s["seed"])
    byz = Byzantine.switch(s["switch"], frozenset({probe.clients[0].address}))
    net = build(s["n"], clients=clients, seed=s["seed"], config=config(),
                byzantine={i: config(byz) for i in s["faulty"]}, net=s["net"])
    for c in range(clients):
        for k in range(requests):
            net.submit(c, "op", {"client": c, "k": k})
    assert net.run_until_done(s["net"].heal_at + 60.0), "liveness: a request never finished"
    honest = [i for i in range(s["n"]) if i not in s["faulty"]]
    return net, honest


def check_safety(net: Network, honest: list[int]) -> None:
    by_seq: dict[int, set[bytes]] = {}
    for i in honest:
        log = net.executed[i]
        assert list(log) == list(range(1, len(log) + 1))  # in order, no gaps, once each
        ran = [record_id(tx) for ex in log.values() for tx in ex.fresh]
        assert len(ran) == len(set(ran)), f"replica {i} ran a request twice"
        for seq, ex in log.items():
            by_seq.setdefault(seq, set()).add(ex.certificate.digest)
    diverged = {seq: ds for seq, ds in by_seq.items() if len(ds) > 1}
    assert not diverged, f"honest replicas executed different batches at {sorted(diverged)}"
    for i in honest:
        assert net.replicas[i].drops["diverged"] == 0
        assert net.replicas[i].drops["state_mismatch"] == 0


def check_liveness(net: Network, requests: int = 3) -> None:
    for c in net.clients:
        assert sorted(c.results) == list(range(1, requests + 1))
    # every result is the sequence number at which an honest replica executed it
    executed = {(tx.sender, tx.nonce): seq for log in net.executed.values()
                for seq, ex in log.items() for tx in ex.fresh}
    for c in net.clients:
        for nonce, result in c.results.items():
            assert executed[(c.address, nonce)] == result


@pytest.mark.parametrize("switch", ["none", *SWITCHES])
@SETTINGS
@given(data=st.data())
def test_n4_f1_safe_and_live_under_each_switch(switch: str, data: st.DataObject) -> None:
    net, honest = simulate(data.draw(schedules(4, switch)))
    check_safety(net, honest)
    check_liveness(net)


@pytest.mark.parametrize("switch", ["none", *SWITCHES])
@settings(SETTINGS, max_examples=5)
@given(data=st.data())
def test_n7_f2_safe_and_live_under_each_switch(switch: str, data: st.DataObject) -> None:
    net, honest = simulate(data.draw(schedules(7, switch)))
    check_safety(net, honest)
    check_liveness(net)


def test_faulty_replicas_are_seen_in_the_drop_counters() -> None:
    base = {"n": 4, "faulty": [0], "seed": 3, "net": NetConfig()}
    for switch, reason in (("forge", "bad_signature"), ("wrong_digest", "bad_digest")):
        net, honest = simulate({**base, "switch": switch})
        assert all(net.replicas[i].drops[reason] > 0 for i in honest)
        assert all(net.replicas[i].view >= 1 for i in honest)  # the faulty primary replaced


def test_same_seed_same_schedule() -> None:
    s = {"n": 4, "switch": "equivocate", "faulty": [0], "seed": 11,
         "net": NetConfig(0.001, 0.05, 0.2, (Partition(0.1, 2.0, frozenset({1})),), 2.0)}
    a, _ = simulate(s)
    b, _ = simulate(s)
    digests = [[ex.certificate.digest for ex in net.executed[1].values()] for net in (a, b)]
    assert digests[0] == digests[1] and a.delivered == b.delivered


# ---------------------------------------------------------------- f+1 faulty


def _two_faced(n: int = 4) -> tuple[list[KeyPair], list[Replica], Transaction, Transaction]:
    keys = [KeyPair.generate(seed=derive_seed("tight", i)) for i in range(n)]
    client = KeyPair.generate(seed=derive_seed("tight", "client"))
    members = [k.public for k in keys]
    replicas = [Replica(i, members, keys[i], {client.address: client.public}, config())
                for i in range(n)]
    a = sign(Transaction(client.address, 0.0, "pay", "alice", 1), client)
    b = sign(Transaction(client.address, 0.0, "pay", "bob", 1), client)
    return keys, replicas, a, b


def _feed(keys: list[KeyPair], target: Replica, batch: tuple, voters: list[int]) -> list:
    """The equivocating primary (0) shows ``target`` its own batch for seq 1; ``voters``
    prepare (if not the primary) and commit that batch to it."""
    d = batch_digest(batch)
    pp = sign(PrePrepare(0, 1, d, 1.0, keys[0].address), keys[0])
    out = target.on_message(0.0, 0, Proposal(pp, batch))
    for v in voters:
        if v != 0:
            out += target.on_message(0.0, v, sign(Prepare(0, 1, d, keys[v].address), keys[v]))
    for v in voters:
        out += target.on_message(0.0, v, sign(Commit(0, 1, d, keys[v].address), keys[v]))
    return [a for a in out if isinstance(a, Execute)]


def test_f_plus_1_faulty_replicas_break_safety() -> None:
    """n = 4 tolerates f = 1. Replicas 0 (primary) and 1 both lie: each honest replica is
    shown a different batch for seq 1 with a full quorum of votes, and executes it."""
    keys, replicas, a, b = _two_faced()
    (ex2,) = _feed(keys, replicas[2], (a,), voters=[0, 1])
    (ex3,) = _feed(keys, replicas[3], (b,), voters=[0, 1])
    assert ex2.seq == ex3.seq == 1
    assert ex2.batch != ex3.batch  # two honest replicas disagree: safety is violated


def test_f_faulty_replicas_cannot_do_the_same() -> None:
    """With only the primary lying, the honest replica 1 votes for one batch only, so
    the other batch never gathers a quorum."""
    keys, replicas, a, b = _two_faced()
    assert len(_feed(keys, replicas[2], (a,), voters=[0, 1])) == 1
    assert _feed(keys, replicas[3], (b,), voters=[0]) == []
    assert not replicas[3].slots[1].prepared


def test_a_cut_off_replica_catches_up_past_collected_checkpoints() -> None:
    net = build(4, clients=1, seed=5, config=config(),
                net=NetConfig(partitions=(Partition(0.0, 3.0, frozenset({3})),), heal_at=3.0))
    for k in range(8):
        net.submit(0, "op", k)
    assert net.run_until_done(3.0)
    lagger = net.replicas[3]
    assert lagger.last_executed == 0 and net.replicas[0].low >= 4  # the log was collected
    for k in range(2):
        net.submit(0, "op", 100 + k, at=3.5)
    assert net.run_until_done(20.0)
    net.run(net.now + 2.0)
    logs = [[ex.certificate.digest for ex in net.executed[i].values()] for i in range(4)]
    assert logs[3] == logs[0] and len(logs[0]) == net.replicas[0].last_executed
    assert lagger.state == net.replicas[0].state
