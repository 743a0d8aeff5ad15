"""Secure aggregation (Bonawitz et al. 2017): exact sums, masking, dropouts, tampering."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from fedledger.privacy.he.rand import SeededRandom
from fedledger.privacy.secagg import (
    DropoutError,
    RingCodec,
    SecAggClient,
    SecAggError,
    SecAggServer,
    TamperedShareError,
)
from fedledger.privacy.secagg.client import Reveal
from fedledger.privacy.secagg.prg import expand
from fedledger.privacy.secagg.shares import Bundle, open_sealed, seal


def clients_for(ids, t, seed=0, round_=1):
    return {c: SecAggClient(c, round_, t, SeededRandom(seed, f"sa/{c}")) for c in ids}


def run_round(inputs, t, seed=0, drop_before_shares=(), drop_before_input=(),
              drop_before_unmask=(), tamper=None):  # fmt: skip
    """One round; returns (server, total or exception)."""
    ids = sorted(inputs)
    length = len(next(iter(inputs.values())))
    clients = clients_for(ids, t, seed)
    server = SecAggServer(1, t, length, ids)
    roster = server.make_roster({c: clients[c].advertise() for c in ids})
    shared = {c: clients[c].share_keys(roster) for c in ids if c not in drop_before_shares}
    routes = server.route(shared)
    for v, sealed in routes.items():
        clients[v].receive(sealed)
    for c in server.u2:
        if c not in drop_before_input:
            assert server.accept_input(c, clients[c].masked_input(inputs[c]))
    u3 = server.close_inputs()
    reveals = {v: clients[v].unmask(u3) for v in u3 if v not in drop_before_unmask}
    if tamper:
        reveals = tamper(reveals)
    return server, server.finish(reveals)


def ring_inputs(n, length, seed):
    rng = np.random.default_rng(seed)
    return {f"c{i:02d}": rng.integers(0, 2**64, size=length, dtype=np.uint64) for i in range(n)}


def test_sum_is_exact_mod_2_64():
    inputs = ring_inputs(5, 40, 1)
    _, total = run_round(inputs, t=3)
    expect = np.zeros(40, np.uint64)
    for x in inputs.values():
        expect += x
    np.testing.assert_array_equal(total, expect)


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(2, 6),
    seed=st.integers(0, 10**6),
    frac_bits=st.integers(0, 30),
    data=st.data(),
)
def test_weighted_mean_within_fixed_point_bound(n, seed, frac_bits, data):
    codec = RingCodec(frac_bits=frac_bits, clamp=8.0)
    rng = np.random.default_rng(seed)
    xs = [rng.uniform(-10, 10, size=7) for _ in range(n)]
    counts = [data.draw(st.integers(1, 500)) for _ in range(n)]
    inputs = {f"c{i}": codec.encode(x, k) for i, (x, k) in enumerate(zip(xs, counts, strict=True))}
    _, total = run_round(inputs, t=max(1, n // 2), seed=seed)
    mean, count = codec.decode_mean(total)
    clamped = [np.clip(x, -8, 8) for x in xs]
    expect = sum(k * x for k, x in zip(counts, clamped, strict=True)) / sum(counts)
    assert count == sum(counts)
    assert np.max(np.abs(mean - expect)) <= codec.error_bound() * (1 + 1e-9) + 1e-12


def test_server_view_of_one_client_is_uniform():
    """Over many seeds, client c00's masked input for a fixed x is uniform mod 2**64 (the
    low byte and the top byte both pass a chi-square test), and does not depend on x."""
    views = {0: [], 1: []}
    for seed in range(400):
        for which in (0, 1):
            x = np.full(4, 0 if which == 0 else 2**40 + 7, dtype=np.uint64)
            ids = ["c00", "c01", "c02"]
            clients = clients_for(ids, 2, seed)
            server = SecAggServer(1, 2, 4, ids)
            roster = server.make_roster({c: clients[c].advertise() for c in ids})
            routes = server.route({c: clients[c].share_keys(roster) for c in ids})
            for v, sealed in routes.items():
                clients[v].receive(sealed)
            views[which].extend(clients["c00"].masked_input(x).tolist())
    for which in (0, 1):
        vals = np.array(views[which], dtype=np.uint64)
        for shift in (0, 56):
            byte = ((vals >> np.uint64(shift)) & np.uint64(0xFF)).astype(int)
            counts = np.bincount(byte, minlength=256)
            assert stats.chisquare(counts).pvalue > 1e-3
    low = [np.array(views[w], dtype=np.uint64) & np.uint64(0xFFFF) for w in (0, 1)]
    assert stats.ks_2samp(low[0].astype(float), low[1].astype(float)).pvalue > 1e-3


def test_a_single_masked_input_is_not_the_input():
    inputs = ring_inputs(3, 16, 5)
    ids = sorted(inputs)
    clients = clients_for(ids, 2)
    server = SecAggServer(1, 2, 16, ids)
    roster = server.make_roster({c: clients[c].advertise() for c in ids})
    for v, sealed in server.route({c: clients[c].share_keys(roster) for c in ids}).items():
        clients[v].receive(sealed)
    y = clients["c00"].masked_input(inputs["c00"])
    assert not np.any(y == inputs["c00"])


@pytest.mark.parametrize("stage", ["input", "unmask", "shares"])
def test_dropouts_below_the_threshold_recover_the_survivors_sum(stage):
    inputs = ring_inputs(6, 10, 2)
    drop = ("c01", "c04")
    kw = {f"drop_before_{'shares' if stage == 'shares' else stage}": drop}
    server, total = run_round(inputs, t=3, **kw)
    kept = server.u3
    expect = np.zeros(10, np.uint64)
    for c in kept:
        expect += inputs[c]
    np.testing.assert_array_equal(total, expect)
    if stage != "unmask":
        assert set(drop).isdisjoint(kept)


def test_more_dropouts_than_allowed_fail_cleanly_naming_counts():
    inputs = ring_inputs(5, 4, 3)
    with pytest.raises(DropoutError, match=r"2 of 5 clients left at 'masked input'.*needs 3"):
        run_round(inputs, t=3, drop_before_input=("c00", "c01", "c02"))
    with pytest.raises(DropoutError, match="unmasking"):
        run_round(inputs, t=4, drop_before_unmask=("c00", "c01"))
    with pytest.raises(DropoutError, match="share keys"):
        run_round(inputs, t=5, drop_before_shares=("c03",))


def test_tampered_reveal_is_detected_and_named():
    inputs = ring_inputs(5, 6, 4)

    def corrupt(reveals):
        r = reveals["c02"]
        seeds = {u: (s + 1) for u, s in r.seed_shares.items()}
        return {**reveals, "c02": Reveal(r.key_shares, seeds)}

    server, total = run_round(inputs, t=3, drop_before_input=("c04",), tamper=corrupt)
    expect = np.zeros(6, np.uint64)
    for c in server.u3:
        expect += inputs[c]
    np.testing.assert_array_equal(total, expect)
    assert server.culprits == {"c02"}


def test_too_many_tampered_shares_raise():
    inputs = ring_inputs(3, 3, 6)

    def corrupt(reveals):
        out = {}
        for v, r in reveals.items():
            out[v] = Reveal(r.key_shares, {u: s ^ 1 for u, s in r.seed_shares.items()})
        return out

    with pytest.raises(TamperedShareError, match="self-mask seed"):
        run_round(inputs, t=2, tamper=corrupt)


def test_tampered_or_misrouted_bundle_is_refused():
    clients = clients_for(["a", "b", "c"], 2)
    roster = tuple(clients[c].advertise() for c in "abc")
    _, sealed = clients["a"].share_keys(roster)
    clients["b"].share_keys(roster)
    flipped = bytearray(sealed["b"])
    flipped[5] ^= 1
    with pytest.raises(TamperedShareError, match=r"\['a'\].*authentication"):
        clients["b"].receive({"a": bytes(flipped)})
    with pytest.raises(TamperedShareError):  # a's bundle for c, replayed to b
        clients["b"].receive({"a": sealed["c"]})


def test_bundle_names_are_checked():
    clients = clients_for(["a", "b"], 1)
    ka, kb = clients["a"].advertise(), clients["b"].advertise()
    bundle = Bundle(1, "a", "x", 1, 2)
    data = seal(bundle, clients["a"]._channel_sk, kb.channel_pk)
    with pytest.raises(TamperedShareError):
        open_sealed(data, clients["b"]._channel_sk, ka.channel_pk, (1, "a", "b"))


def test_client_refuses_to_reveal_twice_or_for_outsiders():
    inputs = ring_inputs(3, 2, 7)
    ids = sorted(inputs)
    clients = clients_for(ids, 2)
    server = SecAggServer(1, 2, 2, ids)
    roster = server.make_roster({c: clients[c].advertise() for c in ids})
    for v, sealed in server.route({c: clients[c].share_keys(roster) for c in ids}).items():
        clients[v].receive(sealed)
    with pytest.raises(SecAggError, match="must include"):
        clients["c00"].unmask(["c01", "c02"])
    reveal = clients["c00"].unmask(["c00", "c01"])
    assert set(reveal.seed_shares) == {"c00", "c01"} and set(reveal.key_shares) == {"c02"}
    with pytest.raises(SecAggError, match="already"):
        clients["c00"].unmask(["c00", "c01", "c02"])


def test_server_refuses_wrong_shapes_and_outsiders():
    server = SecAggServer(1, 1, 3, ["a"])
    assert not server.accept_input("a", np.zeros(3, np.uint64))  # not in U2 yet
    with pytest.raises(SecAggError, match="threshold=4"):
        SecAggServer(1, 4, 3, ["a", "b"])


def test_prg_is_deterministic_and_length_checked():
    a = expand(b"k" * 32, 5)
    assert a.dtype == np.uint64 and np.array_equal(a, expand(b"k" * 32, 5))
    assert not np.array_equal(a, expand(b"j" * 32, 5))
    with pytest.raises(SecAggError):
        expand(b"short", 3)


def test_ring_codec_refuses_overflowing_totals():
    codec = RingCodec(frac_bits=40, clamp=1000.0)
    with pytest.raises(SecAggError, match="would wrap"):
        codec.encode(np.zeros(2), codec.max_total + 1)
    with pytest.raises(SecAggError, match="clamp"):
        RingCodec(frac_bits=52, clamp=4096.0)
