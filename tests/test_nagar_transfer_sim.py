"""``nagar-vertical`` transfer mode as nodes: equals ftl.py's library, shows only ciphers,
counts what it refuses."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from fedledger.errors import ConfigError
from fedledger.learning.jobs import TrainSettings
from fedledger.privacy.he.rand import SeededRandom
from fedledger.protocols.base import EmitMetric, Halt, MessageReceived, Send, Start
from fedledger.protocols.nagar_vertical import NagarTransfer, NagarVertical, NagarVerticalParams
from fedledger.protocols.nagar_vertical.ftl import FtlParams, ftl_accuracy, train_transfer
from fedledger.protocols.nagar_vertical.ftl_node import A_ID, B_ID, C_ID
from fedledger.protocols.nagar_vertical.hemat import KeyHolder, PaillierContext
from fedledger.protocols.nagar_vertical.ledger import NO_ACCURACY, weights_digest
from fedledger.protocols.nagar_vertical.messages import (
    LedgerBlock,
    MaskedCipher,
    Opening,
    PsiBlinded,
    ResultTx,
)
from fedledger.protocols.nagar_vertical.mode_messages import FtlCentroid, FtlTerms
from fedledger.protocols.nagar_vertical.wire import cipher_bytes, cipher_from
from setupkit import make_setup

PARAMS = NagarVerticalParams(mode="transfer", overlap=0.1, key_bits=256, lr=0.05)
SEED, EPOCHS = 4, 3


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


def drive(nodes, shuffle: int | None = None):  # type: ignore[no-untyped-def]
    """Deliver every Send until none is left: FIFO, or (``shuffle``: a seed) FIFO per link
    with the next link drawn at random, so peers run up to a step apart."""
    links: dict[tuple[str, str], deque] = {}  # type: ignore[type-arg]
    rng = np.random.default_rng(shuffle)
    log, metrics, halted = [], [], set()
    order: deque = deque()  # type: ignore[type-arg]

    def take(node_id, effects):  # type: ignore[no-untyped-def]
        for effect in effects:
            if isinstance(effect, EmitMetric):
                metrics.append((node_id, effect))
            elif isinstance(effect, Halt):
                halted.add(node_id)
            elif isinstance(effect, Send):
                links.setdefault((node_id, effect.to), deque()).append(effect.message)
                order.append((node_id, effect.to))

    for node_id, node in nodes.items():
        take(node_id, node.handle(Start(0.0)))
    while order:
        if shuffle is None:
            link = order.popleft()
        else:
            busy = sorted(k for k, q in links.items() if q)
            link = busy[int(rng.integers(len(busy)))]
            order.remove(link)
        sender, to = link
        message = links[link].popleft()
        log.append((sender, to, message))
        take(to, nodes[to].handle(MessageReceived(0.0, sender, message)))
    return log, metrics, halted


@pytest.fixture(scope="module")
def run():  # type: ignore[no-untyped-def]
    proto, nodes = build()
    log, metrics, halted = drive(nodes)
    return proto, nodes, log, metrics, halted


def library(proto: NagarVertical, common: tuple[str, ...]):  # type: ignore[no-untyped-def]
    shared = proto._modes.ftl_shared(SEED)
    n = shared.n
    ctx = tuple(PaillierContext(n, 16, SeededRandom(i, "lib")) for i in range(4))
    key = KeyHolder(shared.private_key)
    p = FtlParams(PARAMS.dim, PARAMS.gamma, PARAMS.l2, PARAMS.lr, EPOCHS, SEED)
    return train_transfer(shared.split, common, p, ctx, (key, key), record=False)  # type: ignore[arg-type]


def test_the_run_finishes_and_equals_the_library(run) -> None:  # type: ignore[no-untyped-def]
    proto, nodes, _, metrics, halted = run
    assert halted == {A_ID, B_ID, C_ID}
    split = proto._modes.ftl_shared(SEED).split
    a, b = nodes[A_ID], nodes[B_ID]
    assert a.common == b.common == tuple(sorted(split.common))
    lib = library(proto, a.common)
    assert np.max(np.abs(a.model.w - lib.w_a)) < 1e-9  # the same fixed-point arithmetic
    assert np.max(np.abs(b.model.w - lib.w_b)) < 1e-9
    acc = {m.step: m.value for who, m in metrics if m.name == "accuracy" and who == B_ID}
    base = {m.step: m.value for who, m in metrics if m.name == "baseline_accuracy"}
    assert sorted(acc) == sorted(base) == list(range(EPOCHS + 1))  # per epoch, and at 0
    assert acc[EPOCHS] == pytest.approx(ftl_accuracy(a.model, b.model.w, split, b.rest))
    assert base[EPOCHS] == pytest.approx(lib.baseline)
    assert all(not n.gate.counts for n in nodes.values())


def test_the_plan_and_every_epoch_are_on_every_chain(run) -> None:  # type: ignore[no-untyped-def]
    _, nodes, _, metrics, _ = run
    acc = {m.step: m.value for who, m in metrics if m.name == "accuracy" and who == B_ID}
    heads = {n: node.ledger.store.head().hash for n, node in nodes.items()}
    assert len(set(heads.values())) == 1  # one chain
    ledger = nodes[C_ID].ledger
    assert ledger.plan is not None and ledger.plan.mode == "transfer" and ledger.round == EPOCHS
    for r in range(1, EPOCHS + 1):
        source, target = ledger.result(r, "source"), ledger.result(r, "target")
        assert source.steps == target.steps == r
        assert source.accuracy == NO_ACCURACY and target.accuracy == acc[r]
    final_a = nodes[A_ID].model.w
    assert ledger.result(EPOCHS, "source").weights == weights_digest(final_a)


def test_a_restarted_party_resumes_only_with_weights_matching_its_signed_digest(run) -> None:  # type: ignore[no-untyped-def]
    _, nodes, _, _, _ = run
    for node_id in (A_ID, B_ID):
        _, fresh = build()
        again = fresh[node_id]
        again.ledger.store = nodes[node_id].ledger.store  # rebuilt from its chain store
        assert again.handle(Start(1.0))[-1] == Halt("every round is on chain")
        w = again.resumed_weights()
        final = nodes[node_id].model.w if node_id == A_ID else nodes[node_id]._w_at_step
        assert w is not None and np.array_equal(w, np.asarray(final).ravel())
        again.ledger.keep(f"weights/{EPOCHS}", (w + 1e-9).tobytes())  # not what it signed
        assert again.resumed_weights() is None
        again.ledger.keep(f"weights/{EPOCHS}", w.tobytes())  # the fixture's store as it was


def test_no_work_before_the_plan() -> None:
    _, nodes = build()
    a, c = nodes[A_ID], nodes[C_ID]
    a_start = a.handle(Start(0.0))  # A waits for the plan block: no PSI yet
    assert not any(isinstance(e, Send) and isinstance(e.message, PsiBlinded) for e in a_start)
    _, fresh = build()
    fresh[B_ID].handle(Start(0.0))
    blinded = fresh[B_ID].psi.blinded().points
    a.handle(MessageReceived(0.0, B_ID, PsiBlinded(blinded)))
    assert a.gate.counts["unknown_plan"] == 1
    c.handle(Start(0.0))  # C seals the plan; a cipher before A's plan check is refused at A
    assert c.ledger.plan is not None


def test_the_same_weights_whatever_the_delivery_order() -> None:
    _, first = build()
    drive(first)
    _, second = build()
    _, _, halted = drive(second, shuffle=3)  # random links: peers a step apart
    assert halted == {A_ID, B_ID, C_ID}
    assert np.array_equal(first[A_ID].model.w, second[A_ID].model.w)
    assert np.array_equal(first[B_ID].model.w, second[B_ID].model.w)


def test_parties_exchange_only_ciphertexts_and_c_sees_only_masked_values(run) -> None:  # type: ignore[no-untyped-def]
    proto, _, log, _, _ = run
    n = proto._modes.ftl_shared(SEED).n
    masked_by = set()
    for sender, to, msg in log:
        if isinstance(msg, FtlTerms | FtlCentroid):
            assert {sender, to} == {A_ID, B_ID}
            ciphers = (msg.first, msg.second) if isinstance(msg, FtlTerms) else (msg.cipher,)
            for data in ciphers:
                arr = cipher_from(data, n)
                assert all(int(c) % n != 1 for c in arr.values.flat)  # no trivial encryption
        elif isinstance(msg, MaskedCipher):
            assert to == C_ID and sender in (A_ID, B_ID)
            masked_by.add((sender, msg.phase, msg.step))
        elif isinstance(msg, Opening):
            assert sender == C_ID and (to, msg.phase, msg.step) in masked_by
        elif isinstance(msg, ResultTx):  # a signed digest of the party's weights, no weights
            assert to == C_ID and len(msg.tx.payload.weights) == 32
        elif isinstance(msg, LedgerBlock):
            assert sender == C_ID and to in (A_ID, B_ID)
        else:
            assert {sender, to} == {A_ID, B_ID}  # PSI only
    to_c = {type(m) for _, to, m in log if to == C_ID}
    assert to_c == {MaskedCipher, ResultTx}
    assert ("party-a", "eval", 0) not in masked_by  # only B scores (its own samples)


def test_refusals_are_counted_by_reason(run) -> None:  # type: ignore[no-untyped-def]
    proto, _, log, _, _ = run
    _, nodes = build()
    a, b, c = nodes[A_ID], nodes[B_ID], nodes[C_ID]
    starts = {n: node.handle(Start(0.0)) for n, node in nodes.items()}
    for effect in starts[C_ID]:  # the plan block: A and B accept it, then work
        if isinstance(effect, Send):
            nodes[effect.to].handle(MessageReceived(0.0, C_ID, effect.message))
    assert a.ledger.plan is not None and b.ledger.plan is not None
    terms = next(m for s, _, m in log if isinstance(m, FtlTerms) and s == B_ID)
    masked = next(m for s, _, m in log if isinstance(m, MaskedCipher) and s == A_ID)

    def feed(node, sender, msg):  # type: ignore[no-untyped-def]
        return node.handle(MessageReceived(0.0, sender, msg))

    feed(a, C_ID, terms)  # terms from the coordinator
    feed(a, B_ID, FtlTerms(9, terms.first, terms.second))  # far ahead
    feed(b, A_ID, FtlCentroid(0, b"\x00\x01"))  # refused on arrival, before the PSI
    feed(a, B_ID, PsiBlinded(()))
    assert feed(c, A_ID, masked)  # opened once
    feed(c, A_ID, masked)
    feed(c, "ghost", masked)
    feed(c, A_ID, MaskedCipher("eval", 0, masked.cipher))  # only B scores
    feed(c, B_ID, MaskedCipher("train", 0, b"garbage"))
    assert dict(a.gate.counts) == {"not_the_peer": 1, "wrong_step": 1, "bad_psi": 1}
    assert dict(c.gate.counts) == {
        "repeated_decryption": 1, "not_a_party": 1, "wrong_step": 1, "bad_cipher": 1
    }  # fmt: skip
    assert dict(b.gate.counts) == {"bad_cipher": 1}
    # before its PSI, B cannot know the overlap size: terms for 5 ids wait, then fail
    ctx = PaillierContext(proto._modes.ftl_shared(SEED).n, 16, SeededRandom(9, "t"))
    r = PARAMS.dim
    short = FtlTerms(0, cipher_bytes(ctx.encrypt(np.zeros((5, r)))),
                     cipher_bytes(ctx.encrypt(np.zeros((r, r)))))  # fmt: skip
    feed(b, A_ID, short)
    assert dict(b.gate.counts) == {"bad_cipher": 1}
    for sender, to, msg in log:
        if to == B_ID and type(msg).__name__.startswith("Psi"):
            feed(b, sender, msg)
    assert b.common
    feed(b, A_ID, FtlCentroid(0, cipher_bytes(ctx.encrypt(np.zeros(r)))))
    assert dict(b.gate.counts) == {"bad_cipher": 1, "bad_shape": 1}  # the short terms
    feed(b, A_ID, FtlCentroid(1, cipher_bytes(ctx.encrypt(np.zeros(r + 1)))))
    assert dict(b.gate.counts) == {"bad_cipher": 1, "bad_shape": 2}


def test_a_committee_decrypts_as_the_coordinator_does_and_a_lying_holder_is_counted(run) -> None:  # type: ignore[no-untyped-def]
    _, nodes, _, _, _ = run
    committee = NagarVerticalParams(mode="transfer", overlap=0.1, key_bits=256, lr=0.05,
                                    decryptor="committee", committee=3, threshold=2)  # fmt: skip
    _, held = build(committee, faults={"holder-1": ("wrong_partial",)})
    log, _, halted = drive(held)
    assert halted == set(held)  # t = 2 honest holders of 3 suffice
    assert np.array_equal(held[A_ID].model.w, nodes[A_ID].model.w)  # another key, same values
    assert np.array_equal(held[B_ID].model.w, nodes[B_ID].model.w)
    assert held[A_ID].gate.counts["bad_partial"] > 0 and held[B_ID].gate.counts["bad_partial"] > 0
    assert not any(isinstance(m, MaskedCipher) and to == C_ID for _, to, m in log)
    ledger = held[B_ID].ledger  # B is the sequencer with a committee
    assert ledger.is_sequencer and ledger.round == EPOCHS
    assert ledger.plan.term("decryptor") == "committee"


def test_mode_keys_and_node_count_are_checked() -> None:
    with pytest.raises(ValueError, match="transport is set but mode is 'transfer'"):
        NagarVerticalParams(mode="transfer", transport="sealed")
    with pytest.raises(ValueError, match="dim is set but mode is 'vertical'"):
        NagarVerticalParams(dim=3)
    with pytest.raises(ConfigError, match="exactly 3 nodes"):
        NagarVertical(PARAMS).plan(4, 0)
    with pytest.raises(ConfigError, match="a committee of 3 holders need 5"):
        NagarVertical(NagarVerticalParams(mode="transfer", decryptor="committee")).plan(3, 0)
    with pytest.raises(ConfigError, match="runs mode 'transfer' only"):
        NagarTransfer(NagarVerticalParams())
