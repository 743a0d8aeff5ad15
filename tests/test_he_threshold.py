"""Threshold Paillier: every t-subset decrypts, t-1 cannot, wrong partials are named."""

from __future__ import annotations

import itertools
from dataclasses import replace

import gmpy2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phe import PaillierPrivateKey

from fedledger.crypto.shamir import scaled_lagrange_at_zero
from fedledger.privacy.he.encoding import layout_for
from fedledger.privacy.he.errors import HeError, InvalidPartialError
from fedledger.privacy.he.paillier import Encryptor, encrypt_vector
from fedledger.privacy.he.primes import is_safe_prime, safe_prime
from fedledger.privacy.he.rand import SeededRandom
from fedledger.privacy.he.threshold import (
    KeyShare,
    PartialDecryption,
    ThresholdPublicKey,
    combine,
    combine_vector,
    deal,
    deal_from_primes,
    partial_decrypt,
    partial_decrypt_vector,
    verify_partial,
)


def _primes(bits: int, label: str) -> tuple[int, int]:
    rng = SeededRandom(label)
    p = safe_prime(bits, rng)
    q = safe_prime(bits, rng)
    assert p != q
    return p, q


@pytest.fixture(scope="module")
def primes128() -> tuple[int, int]:
    return _primes(128, "threshold-128")


def _setup(p: int, q: int, t: int, m: int, seed: str):
    pub, shares = deal_from_primes(p, q, t, m, SeededRandom(seed))
    sk = PaillierPrivateKey(pub.phe(), p, q)
    return pub, shares, sk


def test_safe_primes_from_a_seed_are_safe_and_reproducible() -> None:
    p, q = _primes(96, "x")
    assert is_safe_prime(p) and is_safe_prime(q)
    assert p.bit_length() == q.bit_length() == 96
    assert _primes(96, "x") == (p, q)


@pytest.mark.parametrize(("t", "m"), [(1, 1), (1, 3), (2, 3), (3, 3), (2, 4), (3, 5), (5, 5)])
def test_every_t_subset_decrypts_to_the_same_value(primes128, t: int, m: int) -> None:
    p, q = primes128
    pub, shares, sk = _setup(p, q, t, m, f"deal-{t}-{m}")
    enc = Encryptor(pub.phe())
    rng = SeededRandom("enc")
    msgs = [0, 1, 424242, pub.n - 1, sk.raw_decrypt(12345)]
    cts = [int(enc.encrypt_int(x, rng)) for x in msgs[:4]] + [12345]
    partials = [partial_decrypt(pub, s, cts, SeededRandom(s.index)) for s in shares]
    assert all(verify_partial(pub, cts, part) for part in partials)
    for k in range(t, m + 1):
        for subset in itertools.combinations(partials, k):
            assert combine(pub, cts, list(subset)) == msgs


@pytest.mark.parametrize(("t", "m"), [(2, 3), (3, 5)])
def test_t_minus_one_partials_cannot_decrypt(primes128, t: int, m: int) -> None:
    p, q = primes128
    pub, shares, _ = _setup(p, q, t, m, "t-1")
    enc = Encryptor(pub.phe())
    msg = 987654321
    cts = [int(enc.encrypt_int(msg, SeededRandom(0)))]
    partials = [partial_decrypt(pub, s, cts, SeededRandom(0)) for s in shares]
    for subset in itertools.combinations(partials, t - 1):
        with pytest.raises(HeError, match=f"threshold t={t} needs at least {t}"):
            combine(pub, cts, list(subset))
        # combining them as if the threshold were t-1 does not give the plaintext
        if t - 1 >= 1:
            fake = replace(pub, t=t - 1)
            assert combine(fake, cts, list(subset), verify=False) != [msg]
    # and a guessed t-th share (not on the polynomial) gives a wrong plaintext
    guess = KeyShare(partials[-1].index, shares[-1].secret + 1)
    forged = partial_decrypt(pub, guess, cts, SeededRandom(0))
    assert combine(pub, cts, [*partials[: t - 1], forged], verify=False) != [msg]


def _tampered(part: PartialDecryption, **changes) -> PartialDecryption:
    return replace(part, **changes)


def test_wrong_partials_are_detected_and_named(primes128) -> None:
    p, q = primes128
    pub, shares, _ = _setup(p, q, 2, 4, "wrong")
    enc = Encryptor(pub.phe())
    cts = [int(enc.encrypt_int(x, SeededRandom(x))) for x in (5, 6, 7)]
    good = [partial_decrypt(pub, s, cts, SeededRandom(s.index)) for s in shares]
    n2 = pub.n2
    bad_value = _tampered(good[1], values=(good[1].values[0] * 4 % n2, *good[1].values[1:]))
    bad_proof = _tampered(good[2], proof=replace(good[2].proof, z=good[2].proof.z + 1))
    swapped = _tampered(good[0], index=4)  # holder 1's values claimed by holder 4
    for bad, index in ((bad_value, 2), (bad_proof, 3), (swapped, 4)):
        assert not verify_partial(pub, cts, bad)
        with pytest.raises(InvalidPartialError) as err:
            combine(pub, cts, [good[0], bad] if index != 4 else [good[1], bad])
        assert err.value.indices == [index]
        assert f"[{index}]" in str(err.value)
    # two bad ones are both named; after dropping them the rest decrypt
    with pytest.raises(InvalidPartialError) as err:
        combine(pub, cts, [good[0], bad_value, bad_proof])
    assert err.value.indices == [2, 3]
    assert combine(pub, cts, [good[0], good[3]]) == [5, 6, 7]
    # a partial for other ciphertexts, or a truncated one, fails too
    assert not verify_partial(pub, cts[::-1], good[0])
    assert not verify_partial(pub, cts, _tampered(good[0], values=good[0].values[:2]))
    # a correct proof of a wrong share is impossible: the share is bound by v_i
    wrong_share = KeyShare(1, shares[0].secret + 1)
    assert not verify_partial(pub, cts, partial_decrypt(pub, wrong_share, cts, SeededRandom(9)))


def test_partial_bytes_round_trip_and_are_canonical(primes128) -> None:
    p, q = primes128
    pub, shares, _ = _setup(p, q, 2, 3, "bytes")
    cts = [int(Encryptor(pub.phe()).encrypt_int(x, SeededRandom(x))) for x in (1, 2)]
    part = partial_decrypt(pub, shares[1], cts, SeededRandom(0))
    data = part.to_bytes(pub.n)
    back = PartialDecryption.from_bytes(data, pub.n)
    assert back == part and verify_partial(pub, cts, back)
    for bad in (data[:-1], data + b"\x00", b"XXXX" + data[4:]):
        with pytest.raises(HeError):
            PartialDecryption.from_bytes(bad, pub.n)
    with pytest.raises(HeError, match="do not fit this key"):
        PartialDecryption.from_bytes(data, pub.n * 2**64)


def test_combine_argument_errors(primes128) -> None:
    p, q = primes128
    pub, shares, _ = _setup(p, q, 2, 3, "args")
    cts = [int(Encryptor(pub.phe()).encrypt_int(3, SeededRandom(0)))]
    part = partial_decrypt(pub, shares[0], cts, SeededRandom(0))
    with pytest.raises(HeError, match="duplicate key holder"):
        combine(pub, cts, [part, part])
    with pytest.raises(InvalidPartialError, match=r"\[7\]"):
        combine(pub, cts, [part, replace(part, index=7)])
    with pytest.raises(HeError, match=r"allowed: 1\.\.3"):
        partial_decrypt(pub, KeyShare(4, 1), cts)
    with pytest.raises(HeError, match="not a unit"):
        partial_decrypt(pub, shares[0], [pub.n])
    with pytest.raises(HeError, match="no ciphertexts"):
        combine(pub, [], [part])


def test_dealer_errors() -> None:
    with pytest.raises(HeError, match="distinct safe primes"):
        deal_from_primes(23, 23, 2, 3)
    with pytest.raises(HeError, match="distinct safe primes"):
        deal_from_primes(23, 29, 2, 3)  # 29 = 2*14 + 1 is not safe
    with pytest.raises(HeError, match="m=11 key holders need m < min"):
        deal_from_primes(23, 59, 2, 11)
    with pytest.raises(HeError, match="key_bits=31"):
        deal(31, 2, 3)


def test_keys_and_verification_keys_are_consistent(primes128) -> None:
    p, q = primes128
    pub, shares, _ = _setup(p, q, 3, 5, "vk")
    assert isinstance(pub, ThresholdPublicKey) and pub.delta == 120
    n2 = pub.n2
    for s in shares:
        assert pub.verification_key(s.index) == gmpy2.powmod(pub.v, pub.delta * s.secret, n2)
    # Delta * d = sum mu_i s_i (mod n m'): d = 0 mod m', d = 1 mod n
    mus = scaled_lagrange_at_zero([1, 2, 3], pub.delta)
    modulus = pub.n * ((p - 1) // 2) * ((q - 1) // 2)
    d_delta = sum(mu * s.secret for mu, s in zip(mus, shares[:3], strict=True)) % modulus
    assert d_delta % ((p - 1) // 2 * ((q - 1) // 2)) == 0
    assert d_delta % pub.n == pub.delta % pub.n
    assert "secret=<hidden>" in repr(shares[0])
    again, _ = deal_from_primes(p, q, 3, 5, SeededRandom("vk"))
    assert again == pub  # seeded dealer: reproducible


@settings(max_examples=8, deadline=None)
@given(
    weights=st.lists(st.integers(0, 12), min_size=1, max_size=4),
    length=st.integers(1, 12),
    seed=st.integers(0, 2**32),
)
def test_threshold_decryption_of_packed_weighted_sums(
    primes128, weights: list[int], length: int, seed: int
) -> None:
    p, q = primes128
    pub, shares, _ = _setup(p, q, 2, 3, "packed")
    lay = layout_for(pub.n.bit_length(), frac_bits=16, clamp=2.0, max_weight=48, slot_bits=32)
    enc = Encryptor(pub.phe())
    gen = np.random.default_rng(seed)
    rng = SeededRandom(seed)
    xs = [gen.uniform(-2.5, 2.5, size=length).astype(np.float32) for _ in weights]
    total = None
    for x, w in zip(xs, weights, strict=True):
        term = encrypt_vector(enc, x, lay, rng).scale(w)
        total = term if total is None else total + term
    assert total is not None
    parts = [partial_decrypt_vector(pub, s, total, rng) for s in shares[1:]]
    got = combine_vector(pub, total, parts)
    want = sum(w * np.clip(x.astype(np.float64), -2, 2) for x, w in zip(xs, weights, strict=True))
    assert np.all(np.abs(got - want) <= lay.error_bound(sum(weights)) + 1e-12)


def test_real_size_key_against_phe() -> None:
    """1024-bit modulus from a seeded dealer; phe encrypts, the committee decrypts."""
    pub, shares = deal(1024, 2, 3, SeededRandom("real"))
    assert pub.n.bit_length() == 1024
    pk = pub.phe()
    msgs = [0, 31337, pk.n // 3, pk.n - 1]
    cts = [pk.raw_encrypt(x) for x in msgs]  # phe's own encryption (OS randomness)
    partials = [partial_decrypt(pub, s, cts, SeededRandom(s.index)) for s in shares]
    for subset in itertools.combinations(partials, 2):
        assert combine(pub, cts, list(subset)) == msgs
    enc = Encryptor(pk)
    lay = layout_for(1024, frac_bits=24, clamp=1.0, max_weight=10)
    x = np.linspace(-1.5, 1.5, 100, dtype=np.float32)
    vec = encrypt_vector(enc, x, lay, SeededRandom(0)).scale(3)
    parts = [partial_decrypt_vector(pub, s, vec, SeededRandom(1)) for s in shares[:2]]
    got = combine_vector(pub, vec, parts)
    assert np.abs(got - 3 * np.clip(x.astype(np.float64), -1, 1)).max() <= lay.error_bound(3)
