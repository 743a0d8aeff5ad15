"""Federated transfer learning (Liu et al. 2020): exact gradients, encrypted exchange, views."""

from __future__ import annotations

import numpy as np
import pytest

from fedledger.crypto.psi import run_psi
from fedledger.privacy.he.paillier import generate_keypair
from fedledger.privacy.he.rand import SeededRandom
from fedledger.protocols.nagar_vertical.data import feature_split
from fedledger.protocols.nagar_vertical.ftl import (
    FtlParams,
    Source,
    Target,
    ftl_loss,
    train_transfer,
)
from fedledger.protocols.nagar_vertical.hemat import (
    EncArray,
    KeyHolder,
    Opened,
    PaillierContext,
    PlainContext,
    PlainOpener,
)


@pytest.fixture(scope="module")
def setting():  # type: ignore[no-untyped-def]
    split = feature_split(0.1, seed=4, labels_at="a")
    ra, rb, _ = run_psi(split.a.ids, split.b.ids, b"ftl-test")
    assert ra.intersection == rb.intersection
    return split, tuple(i.decode() for i in ra.intersection)


def plain_contexts():  # type: ignore[no-untyped-def]
    return tuple(PlainContext(16, np.random.default_rng(i)) for i in range(4))


def test_psi_finds_the_overlap(setting) -> None:  # type: ignore[no-untyped-def]
    split, common = setting
    assert set(common) == split.common


def test_exchanged_gradients_equal_the_loss_gradient(setting) -> None:  # type: ignore[no-untyped-def]
    split, common = setting
    p = FtlParams(seed=4)
    ctx = plain_contexts()
    a = Source(split, common, p, ctx[0], ctx[1], PlainOpener())
    b = Target(split, common, p, ctx[2], ctx[3], PlainOpener())
    (t1, t2), (s1, s2) = a.terms(), b.terms()
    ga, gb = a.masked_gradient(s1, s2), b.masked_gradient(t1, t2)
    grad_a = ctx[1].unmask(PlainOpener().open(ga), a._mask) / len(common) + p.l2 * a.w
    grad_b = ctx[3].unmask(PlainOpener().open(gb), b._mask) / len(common) + p.l2 * b.w
    eps = 1e-6
    for w, grad, which in ((a.w, grad_a, "a"), (b.w, grad_b, "b")):
        for idx in [(0, 0), (3, 1), (w.shape[0] - 1, p.dim - 1)]:
            hi, lo = w.copy(), w.copy()
            hi[idx] += eps
            lo[idx] -= eps
            pair = (hi, b.w) if which == "a" else (a.w, hi)
            pair_lo = (lo, b.w) if which == "a" else (a.w, lo)
            fd = (ftl_loss(*pair, split, common, p) - ftl_loss(*pair_lo, split, common, p)) / (
                2 * eps
            )
            assert grad[idx] == pytest.approx(fd, abs=1e-6)


def test_encrypted_exchange_equals_the_twin_and_shows_no_plaintext(setting) -> None:  # type: ignore[no-untyped-def]
    split, common = setting
    p = FtlParams(seed=4, iterations=2)
    ka = generate_keypair(512, SeededRandom(1, "ftl-a"))
    kb = generate_keypair(512, SeededRandom(1, "ftl-b"))
    na, nb = ka[0].n, kb[0].n
    ctx = (
        PaillierContext(na, 16, SeededRandom(1, "a-own")),
        PaillierContext(nb, 16, SeededRandom(1, "a-peer")),
        PaillierContext(nb, 16, SeededRandom(1, "b-own")),
        PaillierContext(na, 16, SeededRandom(1, "b-peer")),
    )
    he = train_transfer(split, common, p, ctx, (KeyHolder(ka[1]), KeyHolder(kb[1])))
    plain = train_transfer(split, common, p, plain_contexts(), (PlainOpener(), PlainOpener()))
    assert np.max(np.abs(he.w_a - plain.w_a)) < 1e-4
    assert np.max(np.abs(he.w_b - plain.w_b)) < 1e-4
    key_of = {("A", "enc_terms"): na, ("B", "enc_terms"): nb,
              ("A", "masked_gradient"): nb, ("B", "masked_gradient"): na}  # fmt: skip
    for m in he.transcript.messages:
        if m.kind == "opened":
            assert isinstance(m.payload, Opened)
            n = nb if m.sender == "B" else na
            # the key owner opened the other party's masked gradient: uniform in Z_n
            assert all(min(int(v), n - int(v)) > n >> 64 for v in m.payload.values.flat)
            continue
        assert isinstance(m.payload, EncArray)
        assert m.payload.n == key_of[(m.sender, m.kind)]  # under a key the receiver lacks
        assert all(int(c) % m.payload.n != 1 for c in m.payload.values.flat)


def test_training_lowers_the_loss_and_classifies_the_target_party(setting) -> None:  # type: ignore[no-untyped-def]
    split, common = setting
    p = FtlParams(seed=4, iterations=150)
    ctx = plain_contexts()
    start = ftl_loss(
        Source(split, common, p, ctx[0], ctx[1], PlainOpener()).w,
        Target(split, common, p, ctx[2], ctx[3], PlainOpener()).w, split, common, p,
    )  # fmt: skip
    run = train_transfer(split, common, p, ctx, (PlainOpener(), PlainOpener()), record=False)
    assert ftl_loss(run.w_a, run.w_b, split, common, p) < start - 0.1
    assert run.accuracy > 0.85  # on B's samples outside the overlap
    assert 0.5 < run.baseline <= 1.0
