"""RFC 9381 ECVRF-EDWARDS25519-SHA512-TAI: the appendix B.3 vectors, rejections, properties."""

from __future__ import annotations

import hashlib
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.crypto import edpoints as ed
from fedledger.crypto.keys import CryptoError, KeyPair, derive_seed
from fedledger.crypto.vrf import (
    BETA_SIZE,
    PROOF_SIZE,
    VrfError,
    VrfKey,
    VrfPublicKey,
    challenge,
    derive_vrf_key,
    encode_to_curve,
    nonce,
    proof_to_hash,
    prove,
    verify,
)
from fedledger.errors import FedledgerError

# RFC 9381 appendix B.3, examples 16, 17 and 18: SK, PK, alpha, the intermediate values
# H and k_string (the 64-byte nonce hash before reduction), U, V, then pi and beta.
VECTORS = [
    dict(
        sk="9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        pk="d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        alpha="",
        h="91bbed02a99461df1ad4c6564a5f5d829d0b90cfc7903e7a5797bd658abf3318",
        k="7100f3d9eadb6dc4743b029736ff283f5be494128df128df2817106f345b8594"
        "b6d6da2d6fb0b4c0257eb337675d96eab49cf39e66cc2c9547c2bf8b2a6afae4",
        u="aef27c725be964c6a9bf4c45ca8e35df258c1878b838f37d9975523f09034071",
        v="5016572f71466c646c119443455d6cb9b952f07d060ec8286d678615d55f954f",
        pi="8657106690b5526245a92b003bb079ccd1a92130477671f6fc01ad16f26f723f"
        "26f8a57ccaed74ee1b190bed1f479d9727d2d0f9b005a6e456a35d4fb0daab12"
        "68a1b0db10836d9826a528ca76567805",
        beta="90cf1df3b703cce59e2a35b925d411164068269d7b2d29f3301c03dd757876ff"
        "66b71dda49d2de59d03450451af026798e8f81cd2e333de5cdf4f3e140fdd8ae",
    ),
    dict(
        sk="4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        pk="3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        alpha="72",
        h="5b659fc3d4e9263fd9a4ed1d022d75eaacc20df5e09f9ea937502396598dc551",
        k="42589bbf0c485c3c91c1621bb4bfe04aed7be76ee48f9b00793b2342acb9c167"
        "cab856f9f9d4febc311330c20b0a8afd3743d05433e8be8d32522ecdc16cc5ce",
        u="1dcb0a4821a2c48bf53548228b7f170962988f6d12f5439f31987ef41f034ab3",
        v="fd03c0bf498c752161bae4719105a074630a2aa5f200ff7b3995f7bfb1513423",
        pi="f3141cd382dc42909d19ec5110469e4feae18300e94f304590abdced48aed593"
        "3bf0864a62558b3ed7f2fea45c92a465301b3bbf5e3e54ddf2d935be3b67926d"
        "a3ef39226bbc355bdc9850112c8f4b02",
        beta="eb4440665d3891d668e7e0fcaf587f1b4bd7fbfe99d0eb2211ccec90496310eb"
        "5e33821bc613efb94db5e5b54c70a848a0bef4553a41befc57663b56373a5031",
    ),
    dict(
        sk="c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        pk="fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        alpha="af82",
        h="bf4339376f5542811de615e3313d2b36f6f53c0acfebb482159711201192576a",
        k="38b868c335ccda94a088428cbf3ec8bc7955bfaffe1f3bd2aa2c59fc31a0febc"
        "59d0e1af3715773ce11b3bbdd7aba8e3505d4b9de6f7e4a96e67e0d6bb6d6c3a",
        u="2bae73e15a64042fcebf062abe7e432b2eca6744f3e8265bc38e009cd577ecd5",
        v="88cba1cb0d4f9b649d9a86026b69de076724a93a65c349c988954f0961c5d506",
        pi="9bc0f79119cc5604bf02d23b4caede71393cedfbb191434dd016d30177ccbf80"
        "96bb474e53895c362d8628ee9f9ea3c0e52c7a5c691b6c18c9979866568add7a"
        "2d41b00b05081ed0f58ee5e31b3a970e",
        beta="645427e5d00c62a23fb703732fa5d892940935942101e456ecca7bb217c61c45"
        "2118fec1219202a0edcf038bb6373241578be7217ba85a2687f7a0310b2df19f",
    ),
]

# The eight points of small order (as in libsodium's blocklist): the identity, the
# order-2 point, two order-4 points and four order-8 points.
SMALL_ORDER = [
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
]
ORDER_2 = bytes.fromhex(SMALL_ORDER[1])
ORDER_8 = bytes.fromhex(SMALL_ORDER[4])

EX16 = VECTORS[0]
PK16 = bytes.fromhex(EX16["pk"])
PI16 = bytes.fromhex(EX16["pi"])
BETA16 = bytes.fromhex(EX16["beta"])


def _reference_decode(data: bytes) -> tuple[int, int] | None:
    """RFC 8032 5.1.3 decoding, written out with Python ints (independent of libsodium)."""
    p = ed.P
    d = -121665 * pow(121666, -1, p) % p
    y = int.from_bytes(data, "little") & ((1 << 255) - 1)
    sign = data[31] >> 7
    if y >= p:
        return None
    u, v = (y * y - 1) % p, (d * y * y + 1) % p
    x = u * pow(v, 3, p) * pow(u * pow(v, 7, p), (p - 5) // 8, p) % p
    if v * x * x % p == (-u) % p:
        x = x * pow(2, (p - 1) // 4, p) % p
    elif v * x * x % p != u:
        return None
    if x == 0 and sign:
        return None
    if x % 2 != sign:
        x = p - x
    return x, y


def _flip(data: bytes, index: int, mask: int = 1) -> bytes:
    return data[:index] + bytes((data[index] ^ mask,)) + data[index + 1 :]


# ---------------------------------------------------------------- the RFC's vectors


@pytest.mark.parametrize("vec", VECTORS, ids=["ex16", "ex17", "ex18"])
def test_rfc9381_b3_vectors(vec: dict[str, str]) -> None:
    sk = VrfKey(bytes.fromhex(vec["sk"]))
    alpha = bytes.fromhex(vec["alpha"])
    pk = bytes.fromhex(vec["pk"])
    pi = bytes.fromhex(vec["pi"])
    beta = bytes.fromhex(vec["beta"])
    assert sk.public.to_bytes() == pk
    assert prove(sk, alpha) == pi
    assert sk.prove(alpha) == pi
    assert proof_to_hash(pi) == beta
    assert verify(VrfPublicKey(pk), pi, alpha) == beta
    assert verify(pk, pi, alpha) == beta
    assert sk.public.verify(pi, alpha) == beta


@pytest.mark.parametrize("vec", VECTORS, ids=["ex16", "ex17", "ex18"])
def test_rfc9381_b3_intermediate_values(vec: dict[str, str]) -> None:
    sk = VrfKey(bytes.fromhex(vec["sk"]))
    alpha = bytes.fromhex(vec["alpha"])
    pk = bytes.fromhex(vec["pk"])
    h = encode_to_curve(pk, alpha)
    assert h.hex() == vec["h"]
    k = nonce(hashlib.sha512(sk.seed).digest()[32:], h)
    assert k == int.from_bytes(bytes.fromhex(vec["k"]), "little") % ed.L
    assert ed.base_mul(k).hex() == vec["u"]
    assert ed.mul(k, h).hex() == vec["v"]
    pi = bytes.fromhex(vec["pi"])
    gamma = pi[:32]
    c = challenge(pk, h, gamma, bytes.fromhex(vec["u"]), bytes.fromhex(vec["v"]))
    assert c == int.from_bytes(pi[32:48], "little")


def test_public_key_matches_ed25519_key_expansion() -> None:
    seed = bytes(range(32))
    assert VrfKey(seed).public.to_bytes() == KeyPair.generate("ed25519", seed).public.to_bytes()


# ---------------------------------------------------------------- rejected proofs


def test_every_single_bit_flip_of_a_proof_is_rejected() -> None:
    for index in range(PROOF_SIZE):
        for mask in (0x01, 0x80):
            with pytest.raises(VrfError):
                verify(PK16, _flip(PI16, index, mask), b"")


def test_wrong_alpha_and_wrong_key_are_rejected() -> None:
    with pytest.raises(VrfError, match="does not verify"):
        verify(PK16, PI16, b"\x00")
    with pytest.raises(VrfError, match="does not verify"):
        verify(bytes.fromhex(VECTORS[1]["pk"]), PI16, b"")
    other = VrfKey(bytes(32))
    with pytest.raises(VrfError, match="does not verify"):
        other.public.verify(PI16, b"")


@pytest.mark.parametrize("size", [0, 32, 79, 81, 160])
def test_wrong_proof_length_is_rejected(size: int) -> None:
    proof = (PI16 * 2)[:size]
    with pytest.raises(VrfError, match=f"80 bytes, got {size}"):
        verify(PK16, proof, b"")
    with pytest.raises(VrfError, match=f"80 bytes, got {size}"):
        proof_to_hash(proof)


@pytest.mark.parametrize(
    "s", [ed.L, ed.L + 1, ed.L + int.from_bytes(PI16[48:], "little"), 2**256 - 1]
)
def test_s_not_below_group_order_is_rejected(s: int) -> None:
    proof = PI16[:48] + s.to_bytes(32, "little")
    with pytest.raises(VrfError, match="not below the group order"):
        verify(PK16, proof, b"")
    with pytest.raises(VrfError, match="not below the group order"):
        proof_to_hash(proof)


def test_s_just_below_group_order_passes_the_range_check() -> None:
    proof = PI16[:48] + (ed.L - 1).to_bytes(32, "little")
    with pytest.raises(VrfError, match="does not verify"):
        verify(PK16, proof, b"")


NON_CANONICAL = [
    # x = 0 with the sign bit set: y = 1 and y = p - 1
    "0100000000000000000000000000000000000000000000000000000000000080",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    # y >= p: p + 1 (the identity again), p + 0 (an order-4 point) with and without sign
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    # y = 2**255 - 1, the largest 255-bit value
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
]


@pytest.mark.parametrize("enc", NON_CANONICAL)
def test_non_canonical_encodings_are_rejected(enc: str) -> None:
    data = bytes.fromhex(enc)
    assert _reference_decode(data) is None
    assert not ed.is_canonical(data)
    with pytest.raises(VrfError, match="canonical"):
        VrfPublicKey(data)
    with pytest.raises(VrfError, match="Gamma"):
        verify(PK16, data + PI16[32:], b"")
    with pytest.raises(VrfError, match="Gamma"):
        proof_to_hash(data + PI16[32:])


def _not_on_curve() -> bytes:
    for y in range(2, 100):
        data = y.to_bytes(32, "little")
        if _reference_decode(data) is None:
            return data
    raise AssertionError("no off-curve y below 100")


def test_points_off_the_curve_are_rejected() -> None:
    data = _not_on_curve()
    assert not ed.decode(data)
    with pytest.raises(VrfError, match="not a point"):
        VrfPublicKey(data)
    with pytest.raises(VrfError, match="Gamma"):
        verify(PK16, data + PI16[32:], b"")


@pytest.mark.parametrize("enc", SMALL_ORDER)
def test_small_order_public_keys_are_rejected(enc: str) -> None:
    data = bytes.fromhex(enc)
    assert ed.decode(data)
    assert ed.times8_from_double(ed.double(data)) == ed.IDENTITY
    with pytest.raises(VrfError, match="small order"):
        VrfPublicKey(data)
    with pytest.raises(VrfError, match="small order"):
        verify(data, PI16, b"")


def test_bad_key_and_input_types() -> None:
    with pytest.raises(VrfError, match="32 bytes, got 31"):
        VrfPublicKey(PK16[:31])
    with pytest.raises(VrfError, match="32 bytes, got 33"):
        VrfKey(bytes(33))
    with pytest.raises(VrfError, match="alpha must be bytes, got str"):
        verify(PK16, PI16, "")  # type: ignore[arg-type]
    with pytest.raises(VrfError, match="needs a VrfKey"):
        prove(bytes(32), b"")  # type: ignore[arg-type]
    assert verify(bytearray(PK16), memoryview(PI16), bytearray()) == BETA16


def test_vrf_error_is_a_fedledger_crypto_error() -> None:
    assert issubclass(VrfError, CryptoError)
    assert issubclass(VrfError, FedledgerError)


def test_encode_to_curve_gives_up_after_256_tries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ed, "decode_double", lambda data: None)
    with pytest.raises(VrfError, match="256 tries"):
        encode_to_curve(PK16, b"x")


# ---------------------------------------------------------------- points with torsion


def _double_and_add(n: int, point: bytes) -> bytes:
    """n * point with libsodium's add only: an independent check of ``ed.mul``."""
    out = ed.IDENTITY
    for bit in bin(n)[2:]:
        out = ed.add(out, out)
        if bit == "1":
            out = ed.add(out, point)
    return out


@settings(max_examples=25, deadline=None)
@given(
    n=st.one_of(st.integers(0, 2**256 - 1), st.sampled_from([0, 1, 7, 8, ed.L, 8 * ed.L])),
    a=st.integers(0, ed.L - 1),
    torsion=st.sampled_from(SMALL_ORDER),
)
def test_mul_of_points_with_a_small_order_part(n: int, a: int, torsion: str) -> None:
    point = ed.add(ed.base_mul(a), bytes.fromhex(torsion))
    assert ed.mul(n, point) == _double_and_add(n, point)


def _proof_with_torsion_gamma(sk: VrfKey, alpha: bytes, torsion: bytes, want_c_even: bool) -> bytes:
    """A proof whose Gamma is x*H plus a small-order point, with c of the chosen parity.

    The RFC verifier computes V = s*H - c*Gamma, so with an order-2 torsion point it
    accepts such a proof exactly when c is even.
    """
    y = sk.public.to_bytes()
    x = sk._x
    h = encode_to_curve(y, alpha)
    gamma = ed.add(ed.mul(x, h), torsion)
    for k in range(1, 200):
        c = challenge(y, h, gamma, ed.base_mul(k), ed.mul(k, h))
        if (c % 2 == 0) == want_c_even:
            s = (k + c * x) % ed.L
            return gamma + c.to_bytes(16, "little") + s.to_bytes(32, "little")
    raise AssertionError("no nonce gave the wanted parity")


def test_gamma_with_small_order_part_verifies_as_the_rfc_says() -> None:
    sk = VrfKey(bytes(range(32)))
    alpha = b"torsion"
    honest_beta = verify(sk.public, prove(sk, alpha), alpha)
    accepted = _proof_with_torsion_gamma(sk, alpha, ORDER_2, want_c_even=True)
    assert verify(sk.public, accepted, alpha) == honest_beta  # beta stays unique
    rejected = _proof_with_torsion_gamma(sk, alpha, ORDER_2, want_c_even=False)
    with pytest.raises(VrfError, match="does not verify"):
        verify(sk.public, rejected, alpha)


def test_public_key_with_small_order_part_is_accepted_by_validate_key() -> None:
    mixed = ed.add(PK16, ORDER_8)
    key = VrfPublicKey(mixed)  # not of small order, so validate_key lets it through
    with pytest.raises(VrfError, match="does not verify"):
        verify(key, PI16, b"")


# ---------------------------------------------------------------- properties

seeds = st.binary(min_size=32, max_size=32)
alphas = st.binary(max_size=64)


@settings(max_examples=30, deadline=None)
@given(seed=seeds, alpha=alphas)
def test_prove_verify_round_trip(seed: bytes, alpha: bytes) -> None:
    sk = VrfKey(seed)
    proof = prove(sk, alpha)
    assert len(proof) == PROOF_SIZE
    beta = verify(sk.public, proof, alpha)
    assert len(beta) == BETA_SIZE
    assert beta == proof_to_hash(proof)
    assert prove(sk, alpha) == proof  # deterministic: one proof, one beta per input
    assert verify(VrfPublicKey(sk.public.to_bytes()), proof, alpha) == beta


@settings(max_examples=20, deadline=None)
@given(seed=seeds, a=alphas, b=alphas)
def test_different_alphas_give_different_betas(seed: bytes, a: bytes, b: bytes) -> None:
    sk = VrfKey(seed)
    pa, pb = prove(sk, a), prove(sk, b)
    if a == b:
        assert proof_to_hash(pa) == proof_to_hash(pb)
    else:
        assert proof_to_hash(pa) != proof_to_hash(pb)
        with pytest.raises(VrfError):
            verify(sk.public, pa, b)


@settings(max_examples=20, deadline=None)
@given(s1=seeds, s2=seeds, alpha=alphas)
def test_proof_does_not_verify_under_another_key(s1: bytes, s2: bytes, alpha: bytes) -> None:
    k1, k2 = VrfKey(s1), VrfKey(s2)
    if k1.public == k2.public:
        return
    with pytest.raises(VrfError):
        verify(k2.public, prove(k1, alpha), alpha)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=32, max_size=32))
def test_strict_decoding_matches_rfc8032(data: bytes) -> None:
    assert ed.decode(data) == (_reference_decode(data) is not None)


@settings(max_examples=50, deadline=None)
@given(y=st.integers(0, 40), sign=st.booleans())
def test_strict_decoding_matches_rfc8032_near_the_edges(y: int, sign: bool) -> None:
    for value in (y, ed.P - 20 + y):
        data = bytearray(value.to_bytes(32, "little"))
        data[31] |= 0x80 if sign else 0
        assert ed.decode(bytes(data)) == (_reference_decode(bytes(data)) is not None)


# ---------------------------------------------------------------- node keys


def test_derive_vrf_key_is_deterministic_and_separate_from_the_signing_key() -> None:
    a = derive_vrf_key(7, "node-1")
    assert a == derive_vrf_key(7, "node-1")
    assert a.public != derive_vrf_key(7, "node-2").public
    assert a.public != derive_vrf_key(8, "node-1").public
    assert a.public != derive_vrf_key(b"\x07", "node-1").public
    signing_seed = derive_seed(7, "node-1")
    assert a.seed != signing_seed
    signing = KeyPair.generate("ed25519", signing_seed)
    assert a.public.to_bytes() != signing.public.to_bytes()
    assert derive_vrf_key(3, 5).public != derive_vrf_key(3, "5").public


def test_derive_vrf_key_rejects_bad_types() -> None:
    with pytest.raises(VrfError, match="node_seed must be bytes or int, got str"):
        derive_vrf_key("7", "n")  # type: ignore[arg-type]
    with pytest.raises(VrfError, match="node_seed must be bytes or int, got bool"):
        derive_vrf_key(True, "n")
    with pytest.raises(VrfError, match="node_id must be str or int, got float"):
        derive_vrf_key(7, 1.5)  # type: ignore[arg-type]


def test_keys_pickle_and_hide_the_seed() -> None:
    sk = derive_vrf_key(1, "n")
    back = pickle.loads(pickle.dumps(sk))
    assert back == sk and back.prove(b"a") == sk.prove(b"a")
    pk = pickle.loads(pickle.dumps(sk.public))
    assert pk == sk.public
    assert sk.seed.hex() not in repr(sk)
