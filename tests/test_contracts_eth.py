"""secp256k1 keys, keccak256 and ABI digests against published vectors and properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.contracts import eth


def test_keccak256_published_vectors() -> None:
    # the empty string and "abc" (Keccak-256 as used by Ethereum, not NIST SHA3-256)
    assert eth.keccak256(b"").hex() == (
        "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    )
    assert eth.keccak256(b"abc").hex() == (
        "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"
    )


def test_address_of_secret_one_is_the_known_vector() -> None:
    key = eth.EthKey.from_secret((1).to_bytes(32, "big"))
    assert key.address == "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"


def test_bad_secrets_and_digests_are_refused() -> None:
    with pytest.raises(eth.EthKeyError, match=r"\[1, n-1\]"):
        eth.EthKey.from_secret(b"\x00" * 32)
    with pytest.raises(eth.EthKeyError, match=r"\[1, n-1\]"):
        eth.EthKey.from_secret(eth.SECP256K1_N.to_bytes(32, "big"))
    with pytest.raises(eth.EthKeyError, match="32 bytes"):
        eth.EthKey.from_seed(1, "a").sign_digest(b"short")


def test_seeded_keys_are_deterministic_and_distinct() -> None:
    assert eth.EthKey.from_seed(7, "a") == eth.EthKey.from_seed(7, "a")
    assert eth.EthKey.from_seed(7, "a").address != eth.EthKey.from_seed(7, "b").address
    assert eth.EthKey.from_seed(7, "a").address != eth.EthKey.from_seed(8, "a").address


@settings(max_examples=25, deadline=None)
@given(label=st.text(max_size=8), digest=st.binary(min_size=32, max_size=32))
def test_sign_then_recover_gives_the_signer(label: str, digest: bytes) -> None:
    key = eth.EthKey.from_seed(3, label)
    sig = key.sign_digest(digest)
    assert sig.v in (27, 28)
    assert eth.recover(digest, sig) == key.address
    other = bytes([digest[0] ^ 1]) + digest[1:]
    assert eth.recover(other, sig) != key.address


def test_recover_of_a_malformed_signature_is_none() -> None:
    sig = eth.EcdsaSig(v=29, r=b"\x01" * 32, s=b"\x01" * 32)
    assert eth.recover(b"\x00" * 32, sig) is None


def test_proof_digest_binds_every_field() -> None:
    c = "0x" + "11" * 20
    base = eth.proof_digest(1, c, 1, 0, b"\x22" * 32)
    assert base != eth.proof_digest(2, c, 1, 0, b"\x22" * 32)
    assert base != eth.proof_digest(1, "0x" + "12" * 20, 1, 0, b"\x22" * 32)
    assert base != eth.proof_digest(1, c, 2, 0, b"\x22" * 32)
    assert base != eth.proof_digest(1, c, 1, 1, b"\x22" * 32)
    assert base != eth.proof_digest(1, c, 1, 0, b"\x23" * 32)


def test_make_proof_orders_signatures_by_signer_address() -> None:
    keys = [eth.EthKey.from_seed(5, str(i)) for i in range(5)]
    digest = eth.proof_digest(1, "0x" + "11" * 20, 1, 0, b"\x01" * 32)
    sigs = eth.make_proof(keys, 1, "0x" + "11" * 20, 1, 0, b"\x01" * 32)
    signers = [eth.recover(digest, s) for s in sigs]
    assert signers == sorted((k.address for k in keys), key=lambda a: int(a, 16))
