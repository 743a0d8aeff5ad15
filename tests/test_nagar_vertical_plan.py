"""``nagar-vertical``'s plan on chain: every party checks the requester's signed plan against
its own params and data before any work, refuses an unknown, forged or inconsistent one
with a counted reason (naming the field), and stores the sequencer's round blocks, whose
signed results match the run."""

from __future__ import annotations

import dataclasses
import shutil
from collections import deque
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import conformance as kit
from fedledger.assembly.build import build_experiment
from fedledger.cli import app
from fedledger.experiment.runner import run_experiment, simulator_for
from fedledger.learning.jobs import TrainSettings
from fedledger.ledger.records import Block, Transaction, sign
from fedledger.ledger.store import ChainStore
from fedledger.protocols.base import EmitMetric, Halt, MessageReceived, Send, Start
from fedledger.protocols.nagar_vertical import NagarVertical, NagarVerticalParams
from fedledger.protocols.nagar_vertical.ledger import (
    RESULT_TX,
    PartyResult,
    RoundRecord,
    weights_digest,
)
from fedledger.protocols.nagar_vertical.messages import (
    LedgerBlock,
    MaskedCipher,
    PsiBlinded,
    PsiReblinded,
    ResultTx,
)
from fedledger.protocols.nagar_vertical.node import A_ID, B_ID, C_ID
from fedledger.protocols.nagar_vertical.plan import (
    PLAN_TX,
    data_digest,
    make_plan,
    mismatches,
    plan_id,
    plan_problems,
)
from setupkit import make_setup

PARAMS = NagarVerticalParams(overlap=0.3, batch_size=128, key_bits=256)
SEED, EPOCHS = 4, 2


def build(params: NagarVerticalParams = PARAMS, epochs: int = EPOCHS):  # type: ignore[no-untyped-def]
    proto = NagarVertical(params)
    count = 3 if params.decryptor == "coordinator" else 2 + params.committee
    plans = tuple(proto.plan(count, SEED))
    return {
        p.node_id: proto.create_node(
            make_setup(plan=p, all_nodes=plans, seed=SEED, params=params, rounds=epochs,
                       train=TrainSettings(epochs=1, lr=0.1, batch_size=8),
                       initial_weights=np.zeros(1, np.float32), num_train_samples=0)
        )
        for p in plans
    }  # fmt: skip


def drive(nodes):  # type: ignore[no-untyped-def]
    """FIFO delivery of every Send; metrics and halts by node."""
    queue: deque = deque()
    metrics, halted = [], {}
    for node_id, node in nodes.items():
        queue.extend((node_id, e) for e in node.handle(Start(0.0)))
    while queue:
        sender, effect = queue.popleft()
        if isinstance(effect, EmitMetric):
            metrics.append((sender, effect))
        elif isinstance(effect, Halt):
            halted[sender] = effect.reason
        elif isinstance(effect, Send):
            out = nodes[effect.to].handle(MessageReceived(0.0, sender, effect.message))
            queue.extend((effect.to, e) for e in out)
    return metrics, halted


def plan_block(nodes) -> LedgerBlock:  # type: ignore[no-untyped-def]
    """The coordinator's plan block (it seals it on Start)."""
    effects = nodes[C_ID].handle(Start(0.0))
    return next(e.message for e in effects if isinstance(e, Send) and e.to == A_ID)


def reblock(nodes, plan_tx: Transaction, signer: str = C_ID) -> LedgerBlock:  # type: ignore[no-untyped-def]
    """A plan block around ``plan_tx``, properly signed by ``signer``."""
    keys = nodes[signer].setup.services.keys
    genesis = nodes[signer].setup.services.genesis
    rec = RoundRecord(plan_id(plan_tx), 0, 0, False)
    block = Block.create(genesis.hash, 1, keys.address, 0.0, (plan_tx,), rec)
    return LedgerBlock(sign(block, keys))


def offer(node, sender: str, msg) -> list:  # type: ignore[no-untyped-def]
    node.handle(Start(0.0))
    return node.handle(MessageReceived(0.0, sender, msg))


# ---------------------------------------------------------------- the plan's rules


def test_mismatches_name_every_field_and_term() -> None:
    a, b = bytes([1]) * 32, bytes([2]) * 32
    own = make_plan("vertical", a, a, {"x": a, "y": b}, 2, data_digest(d="c"), {"lr": 0.3})
    other = dataclasses.replace(own, rounds=3, terms=(("key_bits", 512), ("lr", 0.5)))
    assert [f for f, _ in mismatches(other, own)] == ["rounds", "terms.key_bits", "terms.lr"]
    assert mismatches(own, own) == []
    assert plan_problems(own) == []
    bad = dataclasses.replace(own, mode="horizontal", sequencer=bytes(32), rounds=0)
    problems = " | ".join(plan_problems(bad, lambda p: ["never reached"]))
    assert "mode 'horizontal'" in problems and "sequencer" in problems and "rounds 0" in problems
    assert plan_problems(own, lambda p: ["the mode's rule"]) == ["the mode's rule"]


# ---------------------------------------------------------------- refusing plans


def test_the_run_checks_the_plan_first_and_halts_with_everything_on_chain() -> None:
    nodes = build()
    metrics, halted = drive(nodes)
    assert set(halted) == {A_ID, B_ID, C_ID} and set(halted.values()) == {"done"}
    assert all(not n.gate.rejections() for n in nodes.values())
    heights = {who: m.value for who, m in metrics if m.name == "block"}
    assert heights == {A_ID: 1.0 + EPOCHS, B_ID: 1.0 + EPOCHS, C_ID: 1.0 + EPOCHS}
    plan = nodes[A_ID].ledger.plan
    assert plan is not None and plan.mode == "vertical" and plan.requester == plan.sequencer
    assert plan.term("key_bits") == 256 and plan.term("decryptor") == "coordinator"


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"lr": 0.5}, ("terms.lr",)),
        ({"key_bits": 512}, ("terms.key_bits",)),
        ({"features_a": 10}, ("terms.features.party_a", "terms.features.party_b")),
        ({"overlap": 0.5}, ("data",)),
    ],
)
def test_a_party_refuses_a_plan_whose_field_differs_from_its_params(change, fields) -> None:  # type: ignore[no-untyped-def]
    theirs = build(PARAMS.model_copy(update=change))
    ours = build()
    block = plan_block(theirs)
    a = ours[A_ID]
    out = offer(a, C_ID, block)
    assert out == [] and a.ledger.plan is None
    assert a.gate.counts == {"plan_mismatch": 1}
    assert a.ledger.plans.refusals[-1].fields == fields
    assert all(f in a.ledger.last_refusal() for f in fields)
    # no work without the plan: the peer's PSI is refused, counted as unknown_plan
    assert a.handle(MessageReceived(0.0, B_ID, PsiBlinded((b"\x01" * 32,)))) == []
    assert a.gate.counts["unknown_plan"] == 1
    # the watchdog halts it naming the refused field; the metric carries the field
    a.handle(Start(0.0))
    halt = a.on_timer("stall", None)  # type: ignore[arg-type]
    reasons = [e.reason for e in halt if isinstance(e, Halt)]
    assert reasons and fields[0] in reasons[0]
    tags = [dict(e.tags) for e in halt if isinstance(e, EmitMetric) and e.name == "plan_refused"]
    assert {t["field"] for t in tags} == set(fields)


def test_a_party_whose_own_data_differs_from_the_plan_refuses_it() -> None:
    nodes = build()
    block = plan_block(nodes)
    a = nodes[A_ID]
    narrow = dataclasses.replace(a.data, x=a.data.x[:, :14])
    b = type(a)(a.setup, dataclasses.replace(a.shared, split=dataclasses.replace(
        a.shared.split, a=narrow)))  # fmt: skip
    assert offer(b, C_ID, block) == []
    assert b.ledger.plans.refusals[-1].fields == ("terms.features.party_a",)


def test_unsigned_forged_and_foreign_plans_are_refused() -> None:
    nodes = build()
    good = plan_block(nodes).block.transactions[0]
    unsigned = dataclasses.replace(good, signature=b"")
    altered = dataclasses.replace(good, payload=dataclasses.replace(good.payload, rounds=9))
    a_keys = nodes[A_ID].setup.services.keys
    by_a = sign(Transaction(a_keys.address, 0.0, PLAN_TX, good.payload), a_keys)
    cases = [(unsigned, "bad_signature"), (altered, "bad_signature"), (by_a, "unknown_plan")]
    for tx, reason in cases:
        b = build()[B_ID]
        assert offer(b, C_ID, reblock(nodes, tx)) == []
        assert b.ledger.plan is None
        assert b.gate.rejections() == {reason: 1}, tx
    b = build()[B_ID]
    effects = offer(b, C_ID, reblock(nodes, good))  # the same plan, well signed: accepted
    assert any(isinstance(e, Send) and isinstance(e.message, PsiBlinded) for e in effects)


def test_blocks_from_a_non_sequencer_are_refused() -> None:
    nodes = build()
    good = plan_block(nodes)
    b = build()[B_ID]
    b.handle(Start(0.0))
    assert b.handle(MessageReceived(0.0, A_ID, good)) == []  # relayed by A
    by_a = reblock(nodes, good.block.transactions[0], signer=A_ID)
    assert b.handle(MessageReceived(0.0, C_ID, by_a)) == []  # proposed by A
    assert b.gate.counts == {"not_the_sequencer": 2}
    assert b.ledger.plan is None and b.ledger.store.head().height == 0
    b.handle(MessageReceived(0.0, C_ID, good))
    assert b.handle(MessageReceived(0.0, C_ID, good)) == []  # the same block again
    assert b.gate.counts["repeated_block"] == 1 and b.ledger.store.head().height == 1


def test_a_peer_set_sent_before_the_plan_is_refused_then_examined_with_the_plan() -> None:
    nodes = build()
    block = plan_block(nodes)
    a, b = nodes[A_ID], nodes[B_ID]
    early = next(e.message for e in offer(a, C_ID, block) if isinstance(e, Send))
    assert isinstance(early, PsiBlinded)
    b.handle(Start(0.0))
    assert b.handle(MessageReceived(0.0, A_ID, early)) == []  # B holds no plan yet
    assert b.gate.counts == {"unknown_plan": 1}
    sent = [type(e.message) for e in b.handle(MessageReceived(0.0, C_ID, block))
            if isinstance(e, Send)]  # fmt: skip
    assert sent == [PsiBlinded, PsiReblinded]  # its own set, and A's answered


def test_the_decryptor_decrypts_nothing_before_the_plan() -> None:
    nodes = build()
    c = nodes[C_ID]  # never started: no plan on its chain
    assert c.handle(MessageReceived(0.0, A_ID, MaskedCipher("train", 0, b"\x00"))) == []
    assert c.gate.counts == {"unknown_plan": 1}


def test_the_sequencer_refuses_results_from_the_wrong_party_or_twice() -> None:
    nodes = build()
    c, a = nodes[C_ID], nodes[A_ID]
    c.handle(Start(0.0))
    pid = c.ledger.plan_id
    res = PartyResult(pid, 1, "party_b", 3, bytes(32), -1.0, 3)
    keys = a.setup.services.keys
    claims_b = sign(Transaction(keys.address, 0.0, RESULT_TX, res), keys)
    assert c.handle(MessageReceived(0.0, A_ID, ResultTx(claims_b))) == []
    own = sign(Transaction(keys.address, 0.0, RESULT_TX, dataclasses.replace(
        res, role="party_a")), keys)  # fmt: skip
    assert c.handle(MessageReceived(0.0, A_ID, ResultTx(own))) == []
    assert c.handle(MessageReceived(0.0, A_ID, ResultTx(own))) == []
    other_plan = dataclasses.replace(res, role="party_a", plan_id=bytes(32), round=2)
    foreign = sign(Transaction(keys.address, 0.0, RESULT_TX, other_plan), keys)
    assert c.handle(MessageReceived(0.0, A_ID, ResultTx(foreign))) == []
    assert c.gate.counts == {"bad_result": 1, "repeated_result": 1, "unknown_plan": 1}
    assert c.ledger.round == 0  # B's result is missing: nothing sealed


# ---------------------------------------------------------------- results on chain


@pytest.mark.parametrize("decryptor", ["coordinator", "committee"])
def test_each_round_block_holds_the_signed_results_of_the_run(decryptor) -> None:  # type: ignore[no-untyped-def]
    params = PARAMS.model_copy(update={"decryptor": decryptor})
    nodes = build(params)
    metrics, halted = drive(nodes)
    assert set(halted) == set(nodes)
    store = nodes[A_ID].ledger.store
    assert store.head().height == 1 + EPOCHS
    for node in nodes.values():  # every party holds the same chain
        assert node.ledger.store.head_hash() == store.head_hash()
    final = store.head()
    rec = final.header.extra
    assert rec == RoundRecord(nodes[A_ID].ledger.plan_id, EPOCHS, rec.decryptions, True)
    results = {tx.payload.role: tx.payload for tx in final.transactions}
    assert weights_digest(nodes[A_ID].party.w) == results["party_a"].weights
    assert weights_digest(nodes[B_ID].party.w) == results["party_b"].weights
    acc = [m.value for who, m in metrics if m.name == "accuracy"]
    assert acc == [results["party_b"].accuracy] and results["party_a"].accuracy == -1.0
    decrypted = {who: m.value for who, m in metrics if m.name == "decryptions"}
    assert set(decrypted.values()) == {float(rec.decryptions)}
    assert rec.decryptions == 2 * results["party_a"].steps + 1  # each step twice, eval once
    first = store.at_height(2).header.extra
    assert first.round == 1 and not first.final and 0 < first.decryptions < rec.decryptions


# ---------------------------------------------------------------- the simulator, audit


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    config = kit.conformance_config("nagar-vertical", rounds=2)
    return run_experiment(config, out=tmp_path_factory.mktemp("nv") / "run").run_dir


def test_chain_verify_passes_and_a_tampered_block_fails(sim_run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(app, ["chain", "verify", str(sim_run)])
    assert result.exit_code == 0, result.output
    copy = tmp_path / "tampered"
    shutil.copytree(sim_run, copy)
    kit.tamper_one_block(copy / "nodes" / A_ID / "ledger.sqlite")
    result = CliRunner().invoke(app, ["chain", "verify", str(copy)])
    assert result.exit_code == 1 and A_ID in result.output, result.output


def test_the_stored_results_match_the_metrics_of_the_run(sim_run) -> None:  # type: ignore[no-untyped-def]
    rows = kit.metric_rows(sim_run)
    acc = [r["value"] for r in rows if r["name"] == "nagar-vertical.accuracy"]
    dec = [r["value"] for r in rows if r["name"] == "nagar-vertical.decryptions"]
    with ChainStore(sim_run / "nodes" / B_ID / "ledger.sqlite") as store:
        final = store.head()
        results = {tx.payload.role: tx.payload for tx in final.transactions}
    assert final.height == 3 and acc == [results["party_b"].accuracy]
    assert dec == [float(final.header.extra.decryptions)]


class _Metrics:
    def __init__(self) -> None:
        self.rows: list[tuple[str, EmitMetric]] = []

    def on_report(self, node_id, time, step, weights) -> None:  # type: ignore[no-untyped-def]
        pass

    def on_metric(self, node_id, time, metric) -> None:  # type: ignore[no-untyped-def]
        self.rows.append((node_id, metric))


def test_nodes_rebuilt_from_their_chains_resume_after_the_last_round(sim_run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = kit.conformance_config("nagar-vertical", rounds=2)
    first = kit.simulate(config, tmp_path / "run", max_time=0.15)  # round 1 sealed, not 2
    try:
        assert {n.ledger.round for n in first.nodes.values()} == {1}
    finally:
        first.close()
    again = build_experiment(config, tmp_path / "run")
    try:
        seen = _Metrics()
        simulator_for(again, seen).run()
        for party in (A_ID, B_ID):  # each went on from its kept round-1 weights
            assert again.nodes[party].resume_w is not None
        acc = [m.value for _, m in seen.rows if m.name == "accuracy"]
        with ChainStore(sim_run / "nodes" / B_ID / "ledger.sqlite") as store:
            expected = {tx.payload.role: tx.payload for tx in store.head().transactions}
        assert acc == [expected["party_b"].accuracy]  # the uninterrupted run's
        final = again.services[A_ID].ledger.head()
        assert final.height == 3
        got = {tx.payload.role: tx.payload.weights for tx in final.transactions}
        assert got == {r: p.weights for r, p in expected.items()}
    finally:
        again.close()
