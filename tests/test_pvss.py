"""Schoenmakers PVSS on edwards25519 (fedledger.crypto.pvss)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.crypto import edpoints as ed
from fedledger.crypto import pvss
from fedledger.crypto.vrf import encode_to_curve

CTX = b"test/dynasty-0/dealer-1"


def _setup(n: int, seed: int = 0) -> tuple[list[pvss.PvssKey], list[bytes]]:
    keys = [pvss.PvssKey.derive(seed, i) for i in range(n)]
    return keys, [k.public for k in keys]


def _shares(keys, dealing, ctx=CTX) -> dict[int, pvss.DecryptedShare]:
    return {
        j: pvss.reveal(keys[j - 1], j, dealing.encrypted[j - 1], ctx)
        for j in range(1, len(keys) + 1)
    }


def test_second_generator_is_independent_prime_order_point() -> None:
    g2 = pvss.G2
    assert g2 == encode_to_curve(b"", pvss.G2_DOMAIN)
    assert g2 != pvss.BASE and g2 != ed.IDENTITY
    # in the prime-order subgroup: L * G2 is the identity
    assert ed.add(ed.mul(ed.L - 1, g2), g2) == ed.IDENTITY
    # not one of the small multiples of B a careless derivation would give
    assert all(g2 != ed.base_mul(k) for k in range(1, 1000))


def test_deal_verify_reveal_recover_roundtrip() -> None:
    keys, pubs = _setup(7)
    dealing, secret = pvss.deal(b"dealer secret", pubs, 3, CTX)
    pvss.verify_dealing(dealing, pubs, 3, CTX)
    shares = _shares(keys, dealing)
    for j, s in shares.items():
        pvss.verify_share(s, pubs[j - 1], dealing.encrypted[j - 1], CTX)
    assert pvss.recover({j: s.share for j, s in shares.items()}, 3) == secret
    # the secret is s * B with s = p(0): the commitments alone (on G2) do not give it
    assert dealing.commitments[0] != secret


def test_deal_is_deterministic_and_seed_dependent() -> None:
    _, pubs = _setup(4)
    assert pvss.deal(b"a", pubs, 2, CTX) == pvss.deal(b"a", pubs, 2, CTX)
    assert pvss.deal(b"a", pubs, 2, CTX)[1] != pvss.deal(b"b", pubs, 2, CTX)[1]


@settings(max_examples=12, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=7),
    data=st.data(),
    seed=st.binary(min_size=1, max_size=16),
)
def test_any_t_shares_recover_and_t_minus_1_do_not(
    n: int, data: st.DataObject, seed: bytes
) -> None:
    t = data.draw(st.integers(min_value=1, max_value=n), label="t")
    keys, pubs = _setup(n, seed=1)
    dealing, secret = pvss.deal(seed, pubs, t, CTX)
    shares = _shares(keys, dealing)
    subset = data.draw(st.lists(st.sampled_from(sorted(shares)), min_size=t, max_size=t,
                                unique=True), label="subset")
    assert pvss.recover({j: shares[j].share for j in subset}, t) == secret
    if t > 1:
        fewer = subset[: t - 1]
        # interpolating t - 1 shares as if the threshold were t - 1 misses the secret
        assert pvss.recover({j: shares[j].share for j in fewer}, t - 1) != secret
        with pytest.raises(pvss.PvssError, match="needs t"):
            pvss.recover({j: shares[j].share for j in fewer}, t)


def test_tampered_encrypted_share_is_named() -> None:
    _, pubs = _setup(5)
    dealing, _ = pvss.deal(b"x", pubs, 2, CTX)
    other, _ = pvss.deal(b"y", pubs, 2, CTX)
    bad = dataclasses.replace(
        dealing, encrypted=(*dealing.encrypted[:3], other.encrypted[3], *dealing.encrypted[4:])
    )
    with pytest.raises(pvss.PvssError, match="encrypted share 4: the DLEQ proof does not verify"):
        pvss.verify_dealing(bad, pubs, 2, CTX)


def test_tampered_proof_commitment_and_context_are_refused() -> None:
    _, pubs = _setup(4)
    dealing, _ = pvss.deal(b"x", pubs, 2, CTX)
    p = bytearray(dealing.proofs[1])
    p[5] ^= 1
    bad = dataclasses.replace(dealing, proofs=(dealing.proofs[0], bytes(p), *dealing.proofs[2:]))
    with pytest.raises(pvss.PvssError, match="encrypted share 2"):
        pvss.verify_dealing(bad, pubs, 2, CTX)
    bad_c = dataclasses.replace(dealing, commitments=(dealing.commitments[0], pvss.G2))
    with pytest.raises(pvss.PvssError, match="encrypted share 1"):
        pvss.verify_dealing(bad_c, pubs, 2, CTX)
    with pytest.raises(pvss.PvssError, match="DLEQ"):
        pvss.verify_dealing(dealing, pubs, 2, b"another session")
    with pytest.raises(pvss.PvssError, match="3 commitments, threshold t = 2"):
        pvss.verify_dealing(
            dataclasses.replace(dealing, commitments=(*dealing.commitments, pvss.G2)), pubs, 2, CTX
        )
    short = dataclasses.replace(dealing, proofs=dealing.proofs[:3])
    with pytest.raises(pvss.PvssError, match="for n = 4 members"):
        pvss.verify_dealing(short, pubs, 2, CTX)


def test_invalid_points_are_refused_by_name() -> None:
    _, pubs = _setup(3)
    dealing, _ = pvss.deal(b"x", pubs, 2, CTX)
    for bad_point in (ed.IDENTITY, b"\xff" * 32, b"\x00" * 31):
        bad = dataclasses.replace(dealing, commitments=(bad_point, dealing.commitments[1]))
        with pytest.raises(pvss.PvssError, match=r"commitment 0 .* prime-order subgroup"):
            pvss.verify_dealing(bad, pubs, 2, CTX)
    with pytest.raises(pvss.PvssError, match="public key of member 2"):
        pvss.deal(b"x", [pubs[0], ed.IDENTITY, pubs[2]], 2, CTX)


def test_tampered_decrypted_share_is_refused() -> None:
    keys, pubs = _setup(4)
    dealing, _ = pvss.deal(b"x", pubs, 2, CTX)
    good = pvss.reveal(keys[0], 1, dealing.encrypted[0], CTX)
    wrong_point = dataclasses.replace(good, share=pvss.G2)
    with pytest.raises(pvss.PvssError, match="decrypted share 1: the DLEQ proof"):
        pvss.verify_share(wrong_point, pubs[0], dealing.encrypted[0], CTX)
    # a member decrypting with the wrong key cannot prove it
    forged = pvss.reveal(keys[1], 1, dealing.encrypted[0], CTX)
    with pytest.raises(pvss.PvssError, match="decrypted share 1"):
        pvss.verify_share(forged, pubs[0], dealing.encrypted[0], CTX)
    with pytest.raises(pvss.PvssError, match="64 bytes"):
        pvss.verify_share(
            dataclasses.replace(good, proof=good.proof[:10]), pubs[0], dealing.encrypted[0], CTX
        )


def test_bad_arguments_name_the_value() -> None:
    _, pubs = _setup(3)
    with pytest.raises(pvss.PvssError, match=r"threshold t must be an int in \[1, n = 3\], got 4"):
        pvss.deal(b"x", pubs, 4, CTX)
    with pytest.raises(pvss.PvssError, match="secret scalar"):
        pvss.PvssKey(0)
    with pytest.raises(pvss.PvssError, match="distinct"):
        pvss.lagrange_at_zero([1, 1])
    with pytest.raises(pvss.PvssError, match="context must be bytes"):
        pvss.deal(b"x", pubs, 2, "ctx")  # type: ignore[arg-type]
