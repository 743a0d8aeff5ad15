"""``nagar-vertical`` nodes: the message-driven run equals the library, and what they refuse."""

from __future__ import annotations

from collections import deque
from dataclasses import replace

import numpy as np
import pytest

from fedledger.errors import ConfigError
from fedledger.learning.jobs import TrainSettings
from fedledger.privacy.he.errors import HeError
from fedledger.privacy.he.threshold import PartialDecryption, combine
from fedledger.protocols.base import EmitMetric, Halt, MessageReceived, Send, Start
from fedledger.protocols.nagar_vertical import NagarVertical, NagarVerticalParams
from fedledger.protocols.nagar_vertical.hemat import PlainContext, PlainOpener
from fedledger.protocols.nagar_vertical.messages import (
    EncResidual,
    EncScores,
    LedgerBlock,
    MaskedCipher,
    Opening,
    PartialOpening,
    PsiBlinded,
    PsiReblinded,
    ResultTx,
)
from fedledger.protocols.nagar_vertical.node import A_ID, B_ID, C_ID
from fedledger.protocols.nagar_vertical.vfl import VflParams, train_vertical
from fedledger.protocols.nagar_vertical.wire import cipher_from
from setupkit import make_setup

PARAMS = NagarVerticalParams(overlap=0.3, batch_size=128, key_bits=256)
SEED, EPOCHS = 4, 2


def build(params: NagarVerticalParams = PARAMS, faults: dict | None = None):  # type: ignore[no-untyped-def,type-arg]
    proto = NagarVertical(params)
    count = 3 if params.decryptor == "coordinator" else 2 + params.committee
    plans = tuple(proto.plan(count, SEED))
    nodes = {
        p.node_id: proto.create_node(
            make_setup(plan=p, all_nodes=plans, seed=SEED, params=params, rounds=EPOCHS,
                       train=TrainSettings(epochs=1, lr=0.1, batch_size=8),
                       initial_weights=np.zeros(1, np.float32), num_train_samples=0,
                       faults=tuple((faults or {}).get(p.node_id, ())))
        )
        for p in plans
    }  # fmt: skip
    return proto, nodes


def drive(nodes):  # type: ignore[no-untyped-def]
    """FIFO delivery of every Send until nothing is left; the log of (from, to, message)."""
    queue: deque = deque()
    log, metrics, halted = [], [], set()
    for node_id, node in nodes.items():
        queue.extend((node_id, e) for e in node.handle(Start(0.0)))
    while queue:
        sender, effect = queue.popleft()
        if isinstance(effect, EmitMetric):
            metrics.append((sender, effect))
        elif isinstance(effect, Halt):
            halted.add(sender)
        elif isinstance(effect, Send):
            log.append((sender, effect.to, effect.message))
            out = nodes[effect.to].handle(MessageReceived(0.0, sender, effect.message))
            queue.extend((effect.to, e) for e in out)
    return log, metrics, halted


@pytest.fixture(scope="module")
def run():  # type: ignore[no-untyped-def]
    proto, nodes = build()
    log, metrics, halted = drive(nodes)
    return proto, nodes, log, metrics, halted


def test_the_run_finishes_and_equals_the_library(run) -> None:  # type: ignore[no-untyped-def]
    proto, nodes, _, metrics, halted = run
    assert halted == {A_ID, B_ID, C_ID}
    acc = [m.value for who, m in metrics if m.name == "accuracy" and who == B_ID]
    inter = {who: m.value for who, m in metrics if m.name == "psi_intersection"}
    split = proto.shared(SEED).split
    assert inter == {A_ID: len(split.common), B_ID: len(split.common)}
    vp = VflParams(
        EPOCHS, PARAMS.batch_size, PARAMS.lr, PARAMS.l2, PARAMS.test_fraction, SEED, True
    )
    assert PARAMS.intercept  # B's bias column, the protocol's default
    ctx = (PlainContext(16, np.random.default_rng(1)), PlainContext(16, np.random.default_rng(2)))
    lib = train_vertical(split, vp, *ctx, PlainOpener(), record=False)
    assert acc == [pytest.approx(lib.accuracy)]
    assert np.max(np.abs(nodes[A_ID].party.w - lib.w_a)) < 1e-4
    assert np.max(np.abs(nodes[B_ID].party.w - lib.w_b)) < 1e-4
    assert all(not n.gate.counts for n in nodes.values())


def test_parties_exchange_only_ciphertexts_and_ids_never_travel(run) -> None:  # type: ignore[no-untyped-def]
    proto, _, log, _, _ = run
    n = proto.shared(SEED).n
    split = proto.shared(SEED).split
    ids = [i.encode() for i in split.a.ids + split.b.ids]
    masked_by = set()
    for sender, to, msg in log:
        if isinstance(msg, PsiBlinded | PsiReblinded):
            assert {sender, to} == {A_ID, B_ID}
            assert not any(i in p for p in msg.points for i in ids[:50])
        elif isinstance(msg, EncScores | EncResidual | MaskedCipher):
            arr = cipher_from(msg.cipher, n)
            assert all(int(c) % n != 1 for c in arr.values.flat)  # no trivial encryption
            if isinstance(msg, MaskedCipher):
                assert to == C_ID
                masked_by.add((sender, msg.phase, msg.step))
        elif isinstance(msg, LedgerBlock | ResultTx):  # the chain: plan, digests, counts
            assert C_ID in (sender, to)
        else:
            assert isinstance(msg, Opening) and sender == C_ID
            assert (to, msg.phase, msg.step) in masked_by  # only back to who masked it


def test_refusals_are_counted_by_reason(run) -> None:  # type: ignore[no-untyped-def]
    _, _, log, _, _ = run
    _, nodes = build()
    a, b, c = nodes[A_ID], nodes[B_ID], nodes[C_ID]
    plan_block = next(m for s, _, m in log if isinstance(m, LedgerBlock))
    for node in (a, b, c):  # each with the plan on chain (C sealed it), nothing else
        node.handle(Start(0.0))
    for node in (a, b):
        node.handle(MessageReceived(0.0, C_ID, plan_block))
    masked = next(m for s, _, m in log if isinstance(m, MaskedCipher) and s == A_ID)
    assert c.handle(MessageReceived(0.0, A_ID, masked))  # first time: opened
    assert c.handle(MessageReceived(0.0, A_ID, masked)) == []
    assert c.handle(MessageReceived(0.0, C_ID, masked)) == []
    bad = replace(masked, step=masked.step + 1, cipher=masked.cipher[:-1])
    assert c.handle(MessageReceived(0.0, B_ID, bad)) == []
    assert c.gate.counts == {"repeated_decryption": 1, "not_a_party": 1, "bad_cipher": 1}
    residual = next(m for s, _, m in log if isinstance(m, EncResidual))
    assert a.handle(MessageReceived(0.0, C_ID, residual)) == []
    assert a.handle(MessageReceived(0.0, B_ID, residual)) == []  # before any alignment
    assert a.gate.counts == {"not_the_peer": 1, "wrong_step": 1}
    assert b.handle(MessageReceived(0.0, A_ID, PsiBlinded(()))) == []
    assert b.handle(MessageReceived(0.0, A_ID, PsiBlinded((b"\x00" * 32,)))) == []
    scores = next(m for s, _, m in log if isinstance(m, EncScores))
    assert b.handle(MessageReceived(0.0, A_ID, replace(scores, step=5))) == []
    assert b.gate.counts == {"bad_psi": 2, "wrong_step": 1}


COMMITTEE = PARAMS.model_copy(update={"decryptor": "committee", "committee": 3, "threshold": 2})


def test_a_committee_with_a_lying_holder_decrypts_the_same(run) -> None:  # type: ignore[no-untyped-def]
    _, honest, *_ = run
    proto, nodes = build(COMMITTEE, faults={"holder-1": ("wrong_partial",)})
    log, metrics, halted = drive(nodes)
    assert halted == {A_ID, B_ID, "holder-1", "holder-2", "holder-3"}
    for party in (A_ID, B_ID):
        np.testing.assert_allclose(nodes[party].party.w, honest[party].party.w, atol=1e-9)
        assert nodes[party].gate.counts["bad_partial"] >= 1  # every partial of holder-1
    acc = [m.value for who, m in metrics if m.name == "accuracy"]
    assert len(acc) == 1
    # holders get masked ciphertexts only; a single partial opens nothing
    public = proto.shared(SEED).committee[0]
    work = [m for _, to, m in log if to.startswith("holder-") and not isinstance(m, LedgerBlock)]
    assert work and all(isinstance(m, MaskedCipher) for m in work)
    partial = next(m for s, _, m in log if isinstance(m, PartialOpening) and s == "holder-2")
    masked = next(m for s, to, m in log if isinstance(m, MaskedCipher) and to == "holder-2")
    cts = [int(c) for c in cipher_from(masked.cipher, public.n).values.flat]
    with pytest.raises(HeError, match="threshold t=2"):
        combine(public, cts, [PartialDecryption.from_bytes(partial.partial, public.n)])


def test_the_plan_has_exactly_three_nodes() -> None:
    with pytest.raises(ConfigError, match="exactly 3 nodes"):
        NagarVertical(PARAMS).plan(4, 0)
    with pytest.raises(ValueError, match="overlap"):
        NagarVerticalParams(overlap=0.0)
    with pytest.raises(ConfigError, match="2 \\+ 3 nodes"):
        NagarVertical(COMMITTEE).plan(3, 0)
    with pytest.raises(ValueError, match="t <= m"):
        NagarVerticalParams(decryptor="committee", committee=2, threshold=3)
