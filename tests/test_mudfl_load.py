"""μDFL's load generator (mudfl/load.py) in the simulator: its rate and determinism, data
transactions committed with their latencies reported, malformed and replayed data
transactions refused and counted, the pool emptied of final transactions, chain-only
runs (``fl: false``) and the parameters' validation messages."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from pydantic import ValidationError

import conformance as kit
from fedledger.assembly.build import build_experiment
from fedledger.assembly.config import parse_config
from fedledger.experiment.runner import simulator_for
from fedledger.ledger.records import Transaction, record_id
from fedledger.protocols.base import Send
from fedledger.protocols.kit.gate import Reject
from fedledger.protocols.kit.ids import TimerKey
from fedledger.protocols.mudfl import relay
from fedledger.protocols.mudfl.load import LOAD, LoadGen
from fedledger.protocols.mudfl.messages import LOAD_TX, LoadData
from fedledger.protocols.mudfl.params import MuDflParams

SLOT = 0.5  # T_delta; a slot is 1.5 s
SLOTS = 10
TPS = 200.0


class Collector:
    """The simulator's metric sink, kept in memory: (node, name, step) -> value."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, int, float, float]] = []

    def on_report(self, node_id: str, t: float, step: int, weights: Any) -> None:
        pass

    def on_metric(self, node_id: str, t: float, metric: Any) -> None:
        self.rows.append((node_id, metric.name, metric.step, round(t, 9), metric.value))

    def total(self, name: str) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for node, n, _, _, value in self.rows:
            if n == name:
                out[node] += value
        return dict(out)


def _config(**protocol: Any) -> dict[str, Any]:
    return {
        **kit.BASE,
        "name": "mudfl-load",
        "rounds": 1,
        "protocol": {
            "name": "mudfl",
            "committee": 4,
            "epoch_size": 1,
            "dynasty_epochs": 1000,
            "slot": SLOT,
            "score_samples": 0,
            "fl": False,
            "max_slots": SLOTS,
            "load_tps": TPS,
            **protocol,
        },
        "nodes": {"count": 9},  # 6 clients: 4 validators, 2 emitters outside
    }


def _run(tmp_path, cfg: dict[str, Any]):
    exp = build_experiment(parse_config(cfg), tmp_path)
    sink = Collector()
    sim = simulator_for(exp, sink, max_time=SLOTS * 3 * SLOT + 5)
    sim.run()
    return exp, sink


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    exp, sink = _run(tmp_path_factory.mktemp("load") / "run", _config())
    yield exp, sink
    exp.close()


def test_emitters_send_the_offered_rate_and_only_non_validators_emit(loaded):
    exp, sink = loaded
    sent = sink.total("load_sent")
    committee = set(exp.nodes["admin"].ctx.dynasty.committee)
    assert sent and not set(sent) & committee, "only clients outside the committee emit"
    assert len(sent) == 2
    # the slot metric of the last slot is not emitted: count up to the last slot start
    seconds = (SLOTS - 1) * 3 * SLOT
    assert 0.9 * TPS * seconds <= sum(sent.values()) <= TPS * seconds + 2
    assert abs(sent["c004"] - sent["c005"]) <= 0.05 * max(sent.values())


def test_load_is_deterministic_under_the_seed(loaded, tmp_path):
    _, sink = loaded
    exp, again = _run(tmp_path / "again", _config())
    exp.close()
    assert again.rows == sink.rows


def test_data_transactions_are_committed_and_their_latencies_reported(loaded):
    exp, sink = loaded
    committed = sink.total("load_committed")
    committee = set(exp.nodes["admin"].ctx.dynasty.committee)
    assert set(committed) == committee, "validators, and only they, report commits"
    sent = sum(sink.total("load_sent").values())
    for node, count in committed.items():
        assert 0.7 * sent <= count <= sent, node
    slot_length = 3 * SLOT
    for node, name, _, _, value in sink.rows:
        if name == "load_latency_p50":
            # a transaction waits for the next slot's block: under a slot and T_delta
            assert 0.0 < value < slot_length + SLOT, (node, value)
    lat_sum = sink.total("load_latency_sum")
    for node in committee:
        mean = lat_sum[node] / committed[node]
        assert slot_length / 4 < mean < slot_length, (node, mean)
    # every data transaction on chain is one of a LoadData kind, and the fee count sees them
    chain = exp.nodes["c000"].chain
    data = [t for b in chain.store.canonical_chain() for t in b.transactions if t.kind == LOAD_TX]
    assert data and all(isinstance(t.payload, LoadData) for t in data)
    assert len({record_id(t) for t in data}) == len(data)


def test_the_pool_keeps_no_finalized_transaction(loaded):
    exp, _ = loaded
    for node_id in exp.nodes["admin"].ctx.dynasty.committee:
        chain = exp.nodes[node_id].chain
        # pruned at each slot's proposal, up to the finalized checkpoint of then
        assert chain.vcf.finalized.height - 1 <= chain.pruned > SLOTS // 2
        chain.prune_pool()
        assert chain.pruned == chain.vcf.finalized.height
        final = {
            record_id(t)
            for b in chain.store.canonical_chain()
            if b.height <= chain.pruned
            for t in b.transactions
        }
        assert final and not final & set(chain.pool)


def test_malformed_and_replayed_data_transactions_are_refused_and_counted(loaded):
    exp, _ = loaded
    validator = exp.nodes[exp.nodes["admin"].ctx.dynasty.committee[0]]
    emitter = exp.nodes["c004"]
    chain, gate = validator.chain, validator.gate
    now = chain.now()
    before = dict(gate.rejections())

    def tx(payload: Any, nonce: int = 0) -> Transaction:
        return emitter.ctx.sign(Transaction(emitter.ctx.address, now, LOAD_TX, payload, nonce))

    pad = exp.nodes["admin"].ctx.params.load_payload_bytes
    bad = [
        tx(LoadData(now, 1, b"\x00" * (pad + 1))),  # padding over the limit
        tx(LoadData(now + 60.0, 2)),  # created in the future
        tx(LoadData(-1.0, 3)),  # negative creation time
        tx(LoadData(float("nan"), 4)),
    ]
    for t in bad:
        with pytest.raises(Reject) as err:
            chain.add_tx(t)
        assert err.value.reason == "bad_load"
    committed = next(
        t for b in chain.store.canonical_chain() for t in b.transactions if t.kind == LOAD_TX
    )
    with pytest.raises(Reject) as err:
        chain.add_tx(committed)  # replayed: already on chain
    assert err.value.reason == "duplicate_tx"
    fresh = tx(LoadData(now, 99_999), 99_999)
    chain.add_tx(fresh)
    with pytest.raises(Reject) as err:
        chain.add_tx(fresh)  # replayed: already pooled
    assert err.value.reason == "duplicate_tx"
    after = gate.rejections()
    assert after["bad_load"] - before.get("bad_load", 0) == 4
    assert after["duplicate_tx"] - before.get("duplicate_tx", 0) == 2


def test_without_load_no_load_timer_or_metric(tmp_path):
    exp, sink = _run(tmp_path, _config(load_tps=0.0, max_slots=4))
    try:
        names = {name for _, name, _, _, _ in sink.rows}
        assert not {n for n in names if n.startswith("load_") or n == "block_delay"}
        node = exp.nodes["c004"]
        assert node.load.start(0.0) == [] and node.load.tick(0, 1.0) == []
        # chain only: no FL round began, the chain ran its slots
        assert exp.nodes["server"].server.round == 0
        assert exp.nodes["c000"].chain.store.head().height >= 2
    finally:
        exp.close()


def test_every_client_emits_when_all_clients_are_validators(tmp_path):
    cfg = _config(max_slots=4)
    cfg["nodes"] = {"count": 7}
    exp = build_experiment(parse_config(cfg), tmp_path)
    try:
        node = exp.nodes["c000"]
        assert isinstance(node.load, LoadGen)
        assert node.load.emitters() == node.ctx.clients
        effects = node.load.start(0.0)
        assert [e.key for e in effects] == [str(TimerKey(LOAD, 0))]
        out = node.load.tick(0, 0.05)
        sent = [e for e in out if hasattr(e, "message")]
        # 200 tx/s over 4 emitters, 50 ms: 2.5 transactions, 2 now and 0.5 carried
        assert len(sent) == 1 and len(sent[0].message.txs) == 2
        assert len(node.chain.pool) == 2  # a validator pools its own
        assert len(node.load.tick(1, 0.10)[1].message.txs) == 3
    finally:
        exp.close()


def test_load_params_validation_messages():
    with pytest.raises(ValidationError, match=r"load_interval 1\.0 s is longer than the slot"):
        MuDflParams(slot=0.5, load_tps=10.0, load_interval=1.0)
    with pytest.raises(ValidationError, match="load_tps"):
        MuDflParams(load_tps=-1.0)
    with pytest.raises(ValidationError, match="load_payload_bytes"):
        MuDflParams(load_payload_bytes=-5)
    assert MuDflParams(slot=0.5, load_interval=1.0).load_tps == 0.0  # off: no check


def test_compact_blocks_commit_the_same_and_a_missing_transaction_fetches_the_block(
    loaded, tmp_path
):
    exp, sink = _run(tmp_path, _config(compact_blocks=True))
    try:
        # as many committed as with whole blocks, give or take a slot's worth (the
        # committee differs: the genesis holds the params, dynasty 0 is drawn from it)
        whole = sorted(loaded[1].total("load_committed").values())
        compact = sorted(sink.total("load_committed").values())
        assert len(compact) == len(whole) == 4
        assert all(abs(a - b) <= TPS * 3 * SLOT for a, b in zip(compact, whole, strict=True))
        committee = exp.nodes["admin"].ctx.dynasty.committee
        heads = {exp.nodes[n].chain.store.head_hash() for n in committee}
        assert len(heads) == 1
        # a member without one of the block's transactions asks the proposer for it whole
        proposer, member = exp.nodes[committee[0]], exp.nodes[committee[1]]
        block = next(
            b
            for b in proposer.chain.store.canonical_chain()
            if b.transactions and b.header.proposer == proposer.ctx.address
        )
        msg = relay.CompactBlockMsg(
            block.header.extra.slot, block.header, tuple(record_id(t) for t in block.transactions)
        )
        member.chain.pool.clear()
        got, asks = relay.on_compact(member.chain, msg, committee[0])
        assert got is None and member.gate.rejections()["missing_txs"] >= 1
        assert asks == [Send(committee[0], relay.FullBlockWanted(block.hash))]
        (reply,) = relay.on_wanted(proposer.chain, asks[0].message, committee[1])
        assert reply.message.block == block
        # with the transactions pooled it rebuilds the very block (same hash)
        for t in block.transactions:
            member.chain.pool[record_id(t)] = t
        got, asks = relay.on_compact(member.chain, msg, committee[0])
        assert got is not None and got.hash == block.hash and asks == []
    finally:
        exp.close()


def test_the_shipped_load_config_runs_chain_only_in_the_simulator(tmp_path):
    from pathlib import Path

    from fedledger.assembly.config import load_config

    path = Path(__file__).resolve().parents[1] / "configs" / "mudfl-load.yaml"
    config = load_config(path, ("protocol.max_slots=4",))
    exp = build_experiment(config, tmp_path)
    sink = Collector()
    try:
        simulator_for(exp, sink, max_time=4 * 3 * config.protocol.slot + 5).run()
        assert sum(sink.total("load_committed").values()) > 0
        assert exp.nodes["server"].server.round == 0  # no FL round
    finally:
        exp.close()
