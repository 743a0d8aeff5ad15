"""Fixed-point packing and packed Paillier vectors: sums within the bound, headroom, phe."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phe import EncryptedNumber, PaillierPrivateKey, PaillierPublicKey

from fedledger.privacy.he.encoding import (
    Layout,
    decode_sum,
    encode_decode,
    layout_for,
    pack,
    unpack,
)
from fedledger.privacy.he.errors import HeadroomError, HeError
from fedledger.privacy.he.paillier import (
    CipherVector,
    Encryptor,
    decrypt_plaintexts,
    decrypt_vector,
    djn_base,
    encrypt_vector,
    generate_keypair,
    sum_vectors,
)
from fedledger.privacy.he.rand import OsRandom, SeededRandom
from fedledger.storage.blobs import BlobStore
from fedledger.storage.cid import cid_of

SMALL_BITS = 512


@pytest.fixture(scope="module")
def small_keys() -> tuple[PaillierPublicKey, PaillierPrivateKey]:
    return generate_keypair(SMALL_BITS, SeededRandom("small-key"))


@pytest.fixture(scope="module")
def small_enc(small_keys: tuple[PaillierPublicKey, PaillierPrivateKey]) -> Encryptor:
    return Encryptor(small_keys[0])


@pytest.fixture(scope="module")
def real_keys() -> tuple[PaillierPublicKey, PaillierPrivateKey]:
    return generate_keypair(1024, SeededRandom("real-key"))


# -- layout and headroom ------------------------------------------------------------------


def test_layout_for_fills_the_modulus_and_picks_the_narrowest_slot() -> None:
    lay = layout_for(2048, frac_bits=24, clamp=8.0, max_weight=1000, slot_bits=64)
    assert (lay.slots, lay.slot_bits) == (31, 64)
    assert lay.plaintext_bits <= 2047
    auto = layout_for(2048, frac_bits=16, clamp=1.0, max_weight=100)
    # peak = 100 * 2 * 2**16 < 2**24
    assert auto.slot_bits == 24 and auto.slots == 2047 // 24
    off = layout_for(2048, frac_bits=16, clamp=1.0, max_weight=100, packing=False)
    assert off.slots == 1


def test_headroom_error_names_the_numbers() -> None:
    with pytest.raises(HeadroomError) as err:
        Layout(frac_bits=24, clamp=8.0, slot_bits=32, slots=4, max_weight=100)
    text = str(err.value)
    parts = ("max_weight=100", "clamp=8.0", "frac_bits=24", "slot_bits=32", "(35 bits)")
    for part in (*parts, "raise slot_bits to 35"):
        assert part in text
    # exactly at the limit: W * 2V = 2**b - 2 fits, one more unit of weight does not
    ok = Layout(frac_bits=0, clamp=1.0, slot_bits=8, slots=1, max_weight=127)
    assert ok.max_weight * 2 * ok.value_bound == 254
    with pytest.raises(HeadroomError, match="max_weight=128"):
        Layout(frac_bits=0, clamp=1.0, slot_bits=8, slots=1, max_weight=128)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"slot_bits": 65}, "slot_bits=65; allowed: 1..64"),
        ({"slots": 0}, "slots=0"),
        ({"max_weight": 0}, "max_weight=0"),
        ({"clamp": float("nan")}, "clamp=nan"),
        ({"clamp": -1.0}, "clamp=-1.0"),
        ({"frac_bits": 61}, "frac_bits=61"),
        ({"frac_bits": 60, "clamp": 8.0}, "64 bits"),
    ],
)
def test_layout_rejects_bad_values(kwargs: dict, match: str) -> None:
    base = {"frac_bits": 16, "clamp": 1.0, "slot_bits": 64, "slots": 4, "max_weight": 10}
    with pytest.raises(HeError, match=match):
        Layout(**(base | kwargs))


def test_layout_for_refuses_a_slot_wider_than_the_key() -> None:
    with pytest.raises(HeError, match="slot_bits=64 do not fit"):
        layout_for(64, frac_bits=8, clamp=1.0, max_weight=2, slot_bits=64)


def test_quantize_refuses_nan_and_clamps() -> None:
    lay = Layout(8, 2.0, 16, 4, 4)
    with pytest.raises(HeError, match="1 of 3 coordinates are NaN"):
        pack(np.array([1.0, np.nan, 0.0]), lay)
    got = encode_decode(np.array([-5.0, 5.0, 0.30078125], dtype=np.float32), lay)
    assert got.tolist() == [-2.0, 2.0, 0.30078125]


# -- packing without encryption: the slots never carry ------------------------------------

LAYOUTS = st.builds(
    layout_for,
    st.sampled_from([256, 512, 1024, 2048]),
    frac_bits=st.integers(0, 30),
    clamp=st.sampled_from([0.5, 1.0, 3.0, 100.0]),
    max_weight=st.integers(1, 300),
)


def _plain_sum(packs: list[list[int]], weights: list[int]) -> list[int]:
    pairs = list(zip(packs, weights, strict=True))
    return [sum(w * p[i] for p, w in pairs) for i in range(len(packs[0]))]


@settings(max_examples=60, deadline=None)
@given(lay=LAYOUTS, length=st.integers(1, 70), data=st.data())
def test_packed_plaintext_sums_decode_within_the_bound(lay: Layout, length: int, data) -> None:
    k = data.draw(st.integers(1, min(lay.max_weight, 6)))
    budget = lay.max_weight
    weights = []
    for _ in range(k):
        w = data.draw(st.integers(0, max(0, budget - (k - len(weights) - 1))))
        weights.append(w)
        budget -= w
    vals = st.floats(-2 * lay.clamp, 2 * lay.clamp, allow_nan=False, width=32)
    xs = [
        np.array(data.draw(st.lists(vals, min_size=length, max_size=length)), dtype=np.float32)
        for _ in range(k)
    ]
    total = _plain_sum([pack(x, lay) for x in xs], weights)
    got = decode_sum(total, lay, length, sum(weights))
    pairs = zip(xs, weights, strict=True)
    want = sum(w * np.clip(x.astype(np.float64), -lay.clamp, lay.clamp) for x, w in pairs)
    assert np.all(np.abs(got - want) <= lay.error_bound(sum(weights)) + 1e-9 * np.abs(want))


@pytest.mark.parametrize("value_sign", [1.0, -1.0])
@pytest.mark.parametrize("lay", [
    Layout(frac_bits=0, clamp=1.0, slot_bits=8, slots=31, max_weight=127),
    Layout(frac_bits=24, clamp=8.0, slot_bits=40, slots=51, max_weight=2047),
    Layout(frac_bits=30, clamp=1.0, slot_bits=64, slots=31, max_weight=2**32 - 1),
])  # fmt: skip
def test_packing_at_its_maxima_never_carries(value_sign: float, lay: Layout) -> None:
    """Every coordinate at the clamp, summed with the largest weight the layout allows."""
    x = np.full(2 * lay.slots + 3, value_sign * lay.clamp * 4)  # clamped to +-clamp
    packed = pack(x, lay)
    total = [p * lay.max_weight for p in packed]
    slots = unpack(total, lay, x.size)
    expect = lay.max_weight * (lay.value_bound * 2 if value_sign > 0 else 0)
    assert np.all(slots == np.uint64(expect))
    got = decode_sum(total, lay, x.size, lay.max_weight)
    assert np.all(got == value_sign * lay.clamp * lay.max_weight)


def test_unpack_detects_overflowed_plaintexts() -> None:
    lay = Layout(0, 1.0, 8, 4, 10)
    with pytest.raises(HeadroomError, match="plaintext 0 has 33 bits"):
        unpack([1 << 32], lay, 4)
    with pytest.raises(HeError, match="2 plaintexts for 4 coordinates"):
        unpack([0, 0], lay, 4)
    with pytest.raises(HeadroomError, match="total weight 11 exceeds max_weight=10"):
        decode_sum([0], lay, 4, 11)


# -- encryption ---------------------------------------------------------------------------


def test_djn_base_is_an_nth_residue_of_the_key(small_keys) -> None:
    pk, sk = small_keys
    hs = djn_base(pk.n)
    assert sk.raw_decrypt(int(hs)) == 0  # an encryption of zero
    assert djn_base(pk.n) == hs  # derived from n alone


@pytest.mark.parametrize("mode", ["djn", "standard"])
def test_encrypt_int_decrypts_with_phe(small_keys, mode: str) -> None:
    pk, sk = small_keys
    enc = Encryptor(pk, mode)  # type: ignore[arg-type]
    rng = SeededRandom(1)
    for m in (0, 1, 2**100, pk.n - 1):
        assert sk.raw_decrypt(int(enc.encrypt_int(m, rng))) == m
    with pytest.raises(HeError, match="allowed: 0 <= m < n"):
        enc.encrypt_int(pk.n, rng)
    with pytest.raises(HeError, match="allowed: djn, standard"):
        Encryptor(pk, "fast")  # type: ignore[arg-type]


def test_standard_mode_matches_phe_raw_encrypt(small_keys) -> None:
    pk, _ = small_keys
    enc = Encryptor(pk, "standard")
    a, b = SeededRandom(3), SeededRandom(3)
    r = b.randbelow(pk.n - 1) + 1
    assert enc.encrypt_int(12345, a) == pk.raw_encrypt(12345, r_value=r)


@settings(max_examples=15, deadline=None)
@given(
    length=st.integers(1, 40),
    weights=st.lists(st.integers(0, 9), min_size=1, max_size=4),
    seed=st.integers(0, 2**32),
)
def test_encrypted_weighted_sums_are_correct_within_the_bound(
    small_keys, small_enc, length: int, weights: list[int], seed: int
) -> None:
    _, sk = small_keys
    lay = layout_for(SMALL_BITS, frac_bits=20, clamp=2.0, max_weight=40)
    gen = np.random.default_rng(seed)
    xs = [gen.uniform(-3, 3, size=length).astype(np.float32) for _ in weights]
    rng = SeededRandom(seed)
    vecs = [encrypt_vector(small_enc, x, lay, rng) for x in xs]
    total = sum_vectors(vecs, weights)
    assert total.weight == sum(weights)
    got = decrypt_vector(sk, total)
    want = sum(w * np.clip(x.astype(np.float64), -2, 2) for x, w in zip(xs, weights, strict=True))
    assert np.all(np.abs(got - want) <= lay.error_bound(sum(weights)) + 1e-12)


def test_encrypted_sum_at_the_maximum_weight(small_keys, small_enc) -> None:
    _, sk = small_keys
    lay = layout_for(SMALL_BITS, frac_bits=10, clamp=1.0, max_weight=255, slot_bits=24)
    x = np.array([1.0, -1.0, 0.5, 7.0] * 9, dtype=np.float32)
    v = encrypt_vector(small_enc, x, lay, SeededRandom(0))
    total = v.scale(200) + v.scale(55)
    got = decrypt_vector(sk, total)
    assert np.all(got == 255 * np.clip(x, -1, 1))
    with pytest.raises(HeadroomError, match="total weight 256 exceeds max_weight=255"):
        total + v
    with pytest.raises(HeadroomError, match="total weight 256"):
        v.scale(256)


@settings(max_examples=10, deadline=None)
@given(
    max_weight=st.integers(1, 8),
    frac_bits=st.integers(0, 24),
    signs=st.lists(st.sampled_from([-3.0, -1.0, 1.0, 3.0]), min_size=8, max_size=8),
    seed=st.integers(0, 2**16),
)
def test_encrypted_sum_of_the_most_addends_at_the_clamp_in_the_narrowest_slots(
    small_keys, small_enc, max_weight: int, frac_bits: int, signs: list[float], seed: int
) -> None:
    """max_weight distinct addends, every value at (or beyond) the clamp, tightest slots."""
    _, sk = small_keys
    lay = layout_for(SMALL_BITS, frac_bits=frac_bits, clamp=1.0, max_weight=max_weight)
    assert max_weight * 2 * lay.value_bound >= 1 << (lay.slot_bits - 1)  # no spare bit
    gen = np.random.default_rng(seed)
    xs = [gen.permutation(np.array(signs * 5, dtype=np.float32)) for _ in range(max_weight)]
    rng = SeededRandom(seed)
    got = decrypt_vector(sk, sum_vectors([encrypt_vector(small_enc, x, lay, rng) for x in xs]))
    np.testing.assert_array_equal(got, sum(np.clip(x.astype(np.float64), -1, 1) for x in xs))


def test_cipher_vectors_are_stored_as_blobs_by_content_id(small_enc, tmp_path) -> None:
    lay = layout_for(SMALL_BITS, frac_bits=12, clamp=1.0, max_weight=4)
    v = encrypt_vector(small_enc, np.linspace(-1, 1, 50), lay, SeededRandom(1))
    store = BlobStore(tmp_path / "blobs")
    cid = store.put(v.to_bytes())
    assert cid == v.content_id()
    assert CipherVector.from_bytes(store.get(cid)) == v


def test_scale_refuses_negative_and_fractional(small_enc) -> None:
    lay = layout_for(SMALL_BITS, frac_bits=10, clamp=1.0, max_weight=10)
    v = encrypt_vector(small_enc, np.zeros(3), lay, SeededRandom(0))
    for bad in (-1, 0.5, True):
        with pytest.raises(HeError, match="allowed: a non-negative integer"):
            v.scale(bad)  # type: ignore[arg-type]
    assert v.scale(0).weight == 0


def test_mismatched_operands_are_refused(small_enc, real_keys) -> None:
    lay = layout_for(SMALL_BITS, frac_bits=10, clamp=1.0, max_weight=10)
    v = encrypt_vector(small_enc, np.zeros(3), lay, SeededRandom(0))
    w = encrypt_vector(small_enc, np.zeros(4), lay, SeededRandom(0))
    with pytest.raises(HeError, match="length 3 / 4"):
        v + w
    other = encrypt_vector(Encryptor(real_keys[0]), np.zeros(3), lay, SeededRandom(0))
    with pytest.raises(HeError, match="different public keys"):
        v + other
    with pytest.raises(HeError, match="does not match"):
        decrypt_vector(real_keys[1], v)
    big = layout_for(1024, frac_bits=10, clamp=1.0, max_weight=10)
    with pytest.raises(HeError, match="512-bit key allows at most 511"):
        encrypt_vector(small_enc, np.zeros(3), big, SeededRandom(0))


def test_seeded_encryption_is_reproducible_and_os_randomness_is_not(small_enc) -> None:
    lay = layout_for(SMALL_BITS, frac_bits=10, clamp=1.0, max_weight=10)
    x = np.arange(10, dtype=np.float32) / 10
    a = encrypt_vector(small_enc, x, lay, SeededRandom(42))
    b = encrypt_vector(small_enc, x, lay, SeededRandom(42))
    c = encrypt_vector(small_enc, x, lay, SeededRandom(43))
    assert a.to_bytes() == b.to_bytes()
    assert a.ciphertexts != c.ciphertexts
    assert encrypt_vector(small_enc, x, lay, OsRandom()) != encrypt_vector(small_enc, x, lay)


def test_bytes_are_canonical_and_round_trip(small_enc) -> None:
    lay = layout_for(SMALL_BITS, frac_bits=12, clamp=1.5, max_weight=10)
    v = encrypt_vector(small_enc, np.linspace(-1, 1, 17), lay, SeededRandom(0)).scale(3)
    data = v.to_bytes()
    assert len(data) == 5 + 2 + 64 + 41 + lay.count(17) * 128
    back = CipherVector.from_bytes(data)
    assert back == v and back.weight == 3 and back.to_bytes() == data
    assert v.content_id() == cid_of(data)
    with pytest.raises(HeError, match="magic"):
        CipherVector.from_bytes(b"XXXX" + data[4:])
    with pytest.raises(HeError, match="header says"):
        CipherVector.from_bytes(data[:-1])
    n2 = v.n**2
    bad = data[: -128] + n2.to_bytes(128, "big")
    with pytest.raises(HeError, match="outside"):
        CipherVector.from_bytes(bad)
    heavy = bytearray(data)
    heavy[100:108] = (11).to_bytes(8, "big")  # weight field
    with pytest.raises(HeadroomError, match="total weight 11"):
        CipherVector.from_bytes(bytes(heavy))


# -- against phe on a real-size (1024-bit) key --------------------------------------------


def test_against_phe_on_a_1024_bit_key(real_keys) -> None:
    pk, sk = real_keys
    enc = Encryptor(pk)
    lay = layout_for(1024, frac_bits=24, clamp=4.0, max_weight=64)
    gen = np.random.default_rng(5)
    xs = [gen.normal(size=200).astype(np.float32) for _ in range(3)]
    rng = SeededRandom("phe")
    vecs = [encrypt_vector(enc, x, lay, rng) for x in xs]
    # phe's own homomorphic operations on our ciphertexts give the same plaintexts
    phe_sum = [a + b * 5 + c for a, b, c in zip(*(v.to_phe(pk) for v in vecs), strict=True)]
    ours = vecs[0] + vecs[1].scale(5) + vecs[2]
    assert [sk.raw_decrypt(e.ciphertext(be_secure=False)) for e in phe_sum] == (
        decrypt_plaintexts(sk, ours)
    )
    # phe's encryption of our packed plaintexts decrypts through our pipeline
    packed = pack(xs[0], lay)
    phe_cts = tuple(EncryptedNumber(pk, pk.raw_encrypt(p), 0).ciphertext() for p in packed)
    from_phe = CipherVector(pk.n, lay, 200, 1, phe_cts)
    np.testing.assert_array_equal(decrypt_vector(sk, from_phe), encode_decode(xs[0], lay))
    got = decrypt_vector(sk, ours)
    want = sum(w * np.clip(x.astype(np.float64), -4, 4) for x, w in zip(xs, (1, 5, 1), strict=True))
    assert np.abs(got - want).max() <= lay.error_bound(7)
