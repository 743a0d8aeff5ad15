"""Key pairs, public keys, addresses, PEM key files and the key directory."""

from __future__ import annotations

import hashlib
import os
import pickle
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from fedledger.crypto import (
    CryptoError,
    KeyDirectory,
    KeyFileError,
    KeyPair,
    PublicKey,
    address_of,
    derive_seed,
    load_keypair,
    save_keypair,
    verify_rate,
)

SEED = bytes(range(32))
MSG = b"a record id, 32 bytes long......"


@pytest.fixture(scope="module")
def rsa_kp() -> KeyPair:
    return KeyPair.generate("rsa")


@pytest.fixture(params=["ed25519", "rsa"])
def kp(request: pytest.FixtureRequest, rsa_kp: KeyPair) -> KeyPair:
    return rsa_kp if request.param == "rsa" else KeyPair.generate("ed25519", SEED)


def test_ed25519_is_deterministic_from_seed() -> None:
    a = KeyPair.generate("ed25519", SEED)
    b = KeyPair.generate("ed25519", SEED)
    c = KeyPair.generate("ed25519", bytes(32))
    assert a.public == b.public and a.sign(MSG) == b.sign(MSG)
    assert a.public != c.public
    assert KeyPair.generate().public != KeyPair.generate().public  # unseeded: random


def test_ed25519_matches_rfc8032_test_vector_1() -> None:
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    kp = KeyPair.generate("ed25519", seed)
    assert kp.public.to_bytes().hex() == (
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    )
    assert kp.sign(b"").hex().startswith("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e0")


def test_sign_and_verify(kp: KeyPair) -> None:
    sig = kp.sign(MSG)
    assert kp.public.verify(MSG, sig)
    assert not kp.public.verify(MSG + b"!", sig)
    other = KeyPair.generate("ed25519", bytes(32))
    assert not other.public.verify(MSG, sig)


@pytest.mark.parametrize(
    "bad_sig", [b"", b"\x00", b"\x00" * 64, b"\xff" * 256, b"\x00" * 1000, "text", None, 5]
)
def test_verify_never_raises_on_bad_signature(kp: KeyPair, bad_sig: object) -> None:
    assert kp.public.verify(MSG, bad_sig) is False  # type: ignore[arg-type]


def test_flipped_signature_bit_fails(kp: KeyPair) -> None:
    sig = bytearray(kp.sign(MSG))
    sig[len(sig) // 2] ^= 0x10
    assert not kp.public.verify(MSG, bytes(sig))


def test_rsa_signatures_are_pkcs1v15_deterministic(rsa_kp: KeyPair) -> None:
    assert rsa_kp.sign(MSG) == rsa_kp.sign(MSG)
    assert len(rsa_kp.sign(MSG)) == 256


def test_rsa_refuses_a_seed() -> None:
    with pytest.raises(CryptoError, match="RSA keys cannot be generated from a seed"):
        KeyPair.generate("rsa", SEED)


@pytest.mark.parametrize(
    ("scheme", "seed", "needle"),
    [
        ("dsa", None, "unknown signature scheme 'dsa'; allowed: ed25519, rsa"),
        ("ed25519", b"short", "an Ed25519 seed is 32 bytes, got 5"),
        ("ed25519", "x" * 32, "got str"),
    ],
)
def test_generate_errors(scheme: str, seed: object, needle: str) -> None:
    with pytest.raises(CryptoError) as info:
        KeyPair.generate(scheme, seed)  # type: ignore[arg-type]
    assert needle in str(info.value)


def test_public_key_bytes_round_trip_and_address(kp: KeyPair) -> None:
    data = kp.public.to_bytes()
    again = PublicKey.from_bytes(kp.scheme, data)
    assert again == kp.public and hash(again) == hash(kp.public)
    assert again.verify(MSG, kp.sign(MSG))
    assert kp.public.address == hashlib.sha256(data).digest() == address_of(data)
    assert len(kp.address) == 32


def test_public_key_formats() -> None:
    kp = KeyPair.generate("ed25519", SEED)
    assert len(kp.public.to_bytes()) == 32


@pytest.mark.parametrize(
    ("scheme", "data", "needle"),
    [
        ("ed25519", b"\x01" * 31, "an Ed25519 public key is 32 bytes, got 31"),
        ("rsa", b"\x30\x03junk", "bad RSA public key"),
        ("rsa", "text", "public key must be bytes"),
        ("x", b"", "unknown signature scheme"),
    ],
)
def test_public_key_from_bad_bytes(scheme: str, data: object, needle: str) -> None:
    with pytest.raises(CryptoError) as info:
        PublicKey.from_bytes(scheme, data)  # type: ignore[arg-type]
    assert needle in str(info.value)


def test_small_rsa_public_key_refused() -> None:
    small = rsa.generate_private_key(65537, 1024).public_key()
    der = small.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(CryptoError, match="at least 2048 bits"):
        PublicKey.from_bytes("rsa", der)


# ---------------------------------------------------------------- key files


def test_save_and_load(kp: KeyPair, tmp_path: Path) -> None:
    path = tmp_path / "keys" / "node0.pem"
    save_keypair(kp, path)
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    loaded = load_keypair(path)
    assert loaded.scheme == kp.scheme and loaded.public == kp.public
    assert loaded.sign(MSG) == kp.sign(MSG)  # both schemes sign deterministically
    assert load_keypair(path, scheme=kp.scheme).public == kp.public
    assert [p.name for p in path.parent.iterdir()] == ["node0.pem"]  # no temp files left


def test_load_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.pem"
    with pytest.raises(KeyFileError) as info:
        load_keypair(path)
    assert str(path) in str(info.value) and "cannot read it" in str(info.value)
    assert info.value.path == str(path)


def test_load_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.pem"
    good = tmp_path / "good.pem"
    save_keypair(KeyPair.generate("ed25519", SEED), good)
    body = bytearray(good.read_bytes())
    body[40] = ord("!")
    path.write_bytes(bytes(body))
    with pytest.raises(KeyFileError) as info:
        load_keypair(path)
    msg = str(info.value)
    assert str(path) in msg and "not a readable PEM private key" in msg
    assert "expected a PKCS#8 PEM Ed25519 or RSA-2048 private key" in msg


def test_load_wrong_scheme(tmp_path: Path) -> None:
    path = tmp_path / "ed.pem"
    save_keypair(KeyPair.generate("ed25519", SEED), path)
    with pytest.raises(KeyFileError, match="holds a ed25519 key; expected a PKCS#8 PEM rsa"):
        load_keypair(path, scheme="rsa")


def test_load_unsupported_key_type(tmp_path: Path) -> None:
    path = tmp_path / "ec.pem"
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(KeyFileError, match=r"holds a key of type EC \(256 bits\); expected"):
        load_keypair(path)


def test_load_public_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pub.pem"
    kp = KeyPair.generate("ed25519", SEED)
    pub = ed25519.Ed25519PublicKey.from_public_bytes(kp.public.to_bytes())
    path.write_bytes(
        pub.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(KeyFileError, match="not a readable PEM private key"):
        load_keypair(path)


# ---------------------------------------------------------------- directory


def test_key_directory(kp: KeyPair) -> None:
    other = KeyPair.generate("ed25519", bytes(32))
    directory = KeyDirectory([kp.public])
    assert kp.address in directory and other.address not in directory
    assert directory.add(other.public) == other.address
    assert directory[other.address] == other.public and len(directory) == 2
    directory.add(other.public)
    assert len(directory) == 2 and set(directory) == {kp.address, other.address}
    assert "nope" not in directory and directory.get(b"\x00" * 32) is None
    with pytest.raises(CryptoError, match="holds PublicKey objects"):
        directory.add(kp)  # type: ignore[arg-type]


# ---------------------------------------------------------------- speed


@pytest.mark.parametrize("scheme", ["ed25519", "ed25519-pynacl", "ed25519-cryptography", "rsa"])
def test_verify_rate_measures(scheme: str) -> None:
    assert verify_rate(scheme, 0.02) > 100


def test_verify_rate_errors() -> None:
    with pytest.raises(CryptoError, match="unknown scheme 'x'; allowed: ed25519"):
        verify_rate("x", 0.1)
    with pytest.raises(CryptoError, match="seconds must be > 0"):
        verify_rate("ed25519", 0)


def test_load_small_rsa_key_file(tmp_path: Path) -> None:
    path = tmp_path / "rsa1024.pem"
    key = rsa.generate_private_key(65537, 1024)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(KeyFileError, match=r"holds a key of type RSA \(1024 bits\)"):
        load_keypair(path)


def test_keys_pickle(kp: KeyPair) -> None:
    again = pickle.loads(pickle.dumps(kp))
    assert again.public == kp.public and again.sign(MSG) == kp.sign(MSG)
    public = pickle.loads(pickle.dumps(kp.public))
    assert public == kp.public and public.verify(MSG, kp.sign(MSG))


def test_derive_seed() -> None:
    a = derive_seed(7, "node-1")
    assert len(a) == 32 and a == derive_seed(7, "node-1")
    assert a != derive_seed(7, "node-2") and a != derive_seed(8, "node-1")
    assert derive_seed("ab", "c") != derive_seed("a", "bc")
    assert derive_seed(1) != derive_seed("1") != derive_seed(b"1")
    assert KeyPair.generate("ed25519", a).public == KeyPair.generate("ed25519", a).public
    with pytest.raises(CryptoError, match="seed parts are int, str or bytes, got float"):
        derive_seed(1.5)  # type: ignore[arg-type]
