"""A node's keys beside its identity key: the VRF and secp256k1 keys its protocol declares.

A protocol names them in ``NodeResources.key_schemes`` after the identity scheme, e.g.
``("ed25519", "vrf")`` for a node that draws committees by VRF sortition (RFC 9381
ECVRF-EDWARDS25519-SHA512-TAI) or ``("ed25519", "secp256k1")`` for one that signs for
a contract (ecrecover). They come from the same two places as identity keys:

- the simulator and ``localnet`` derive them from (seed, node id) with domain separation
  (:meth:`ExtraKeys.derive`; the VRF key is :func:`fedledger.crypto.vrf.derive_vrf_key`);
- a real network: ``fedledger keygen --config`` writes each declared key beside the
  identity key, ``<node>.<scheme>.key`` (PKCS#8 PEM, mode 0600: the VRF secret is an
  RFC 8032 32-byte seed, stored as an Ed25519 key; secp256k1 as an EC key), and their
  public parts into the member file; ``fedledger genesis`` records them per member in the
  signed genesis file, and a node loads its own from the files beside ``--key``.

Public parts are text: a VRF public key as 64 hex digits, a secp256k1 key as its
checksummed Ethereum address (what a contract's ecrecover yields).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from fedledger.contracts.eth import EthKey, EthKeyError, checksum
from fedledger.crypto.keys import CryptoError, KeyFileError, write_private_file
from fedledger.crypto.vrf import VrfError, VrfKey, VrfPublicKey, derive_vrf_key
from fedledger.protocols.resources import EXTRA_KEY_SCHEMES, NodeExtraKeys

VRF, SECP256K1 = "vrf", "secp256k1"

#: node id -> scheme -> public text (what a genesis records)
PublicExtras = Mapping[str, Mapping[str, str]]


def _check(schemes: Iterable[str]) -> tuple[str, ...]:
    wanted = tuple(dict.fromkeys(schemes))
    bad = [s for s in wanted if s not in EXTRA_KEY_SCHEMES]
    if bad:
        raise ValueError(f"extra key schemes {bad}: allowed are {', '.join(EXTRA_KEY_SCHEMES)}")
    return wanted


@dataclass(frozen=True)
class ExtraKeys:
    """One node's private extra keys (None: not declared)."""

    vrf: VrfKey | None = None
    eth: EthKey | None = None

    @classmethod
    def generate(cls, schemes: Iterable[str]) -> ExtraKeys:
        """Fresh random keys of ``schemes`` (``fedledger keygen``)."""
        wanted = _check(schemes)
        vrf = VrfKey.generate() if VRF in wanted else None
        eth = None
        if SECP256K1 in wanted:
            secret = ec.generate_private_key(ec.SECP256K1()).private_numbers().private_value
            eth = EthKey.from_secret(secret.to_bytes(32, "big"))
        return cls(vrf, eth)

    @classmethod
    def derive(cls, seed: int, node_id: str, schemes: Iterable[str]) -> ExtraKeys:
        """Keys derived from (seed, node id): the simulator's and localnet's."""
        wanted = _check(schemes)
        vrf = derive_vrf_key(seed, node_id) if VRF in wanted else None
        eth = EthKey.from_seed(seed, f"node-key/{node_id}") if SECP256K1 in wanted else None
        return cls(vrf, eth)

    @property
    def schemes(self) -> tuple[str, ...]:
        return tuple(s for s, k in ((VRF, self.vrf), (SECP256K1, self.eth)) if k is not None)

    def publics(self) -> dict[str, str]:
        """scheme -> public text (VRF: hex public key; secp256k1: checksummed address)."""
        out: dict[str, str] = {}
        if self.vrf is not None:
            out[VRF] = self.vrf.public.to_bytes().hex()
        if self.eth is not None:
            out[SECP256K1] = self.eth.address
        return out


def parse_public(where: str, scheme: str, text: object) -> str:
    """A public part as stored (canonical text); MembershipError-like ValueError naming
    ``where`` when it is not a valid key of ``scheme``."""
    if scheme not in EXTRA_KEY_SCHEMES:
        raise ValueError(f"{where}: key scheme {scheme!r}; allowed are {EXTRA_KEY_SCHEMES}")
    if not isinstance(text, str):
        raise ValueError(f"{where}: {scheme} public key must be text, got {text!r:.40}")
    try:
        if scheme == VRF:
            return VrfPublicKey.from_bytes(bytes.fromhex(text)).to_bytes().hex()
        return checksum(text)
    except (ValueError, VrfError, EthKeyError) as err:
        raise ValueError(f"{where}: not a valid {scheme} public key {text!r:.70} ({err})") from None


def key_file(identity_key: Path, scheme: str) -> Path:
    """Where the ``scheme`` key of the node whose identity key is ``identity_key`` lives:
    ``c003.key`` -> ``c003.vrf.key``."""
    return identity_key.with_name(f"{identity_key.stem}.{scheme}.key")


_PKCS8 = {
    "encoding": serialization.Encoding.PEM,
    "format": serialization.PrivateFormat.PKCS8,
    "encryption_algorithm": serialization.NoEncryption(),
}


def save_extra_keys(keys: ExtraKeys, identity_key: Path) -> list[Path]:
    """Write each key beside ``identity_key`` (0600); the paths written."""
    written = []
    if keys.vrf is not None:
        pem = ed25519.Ed25519PrivateKey.from_private_bytes(keys.vrf.seed).private_bytes(**_PKCS8)
        write_private_file(key_file(identity_key, VRF), pem)
        written.append(key_file(identity_key, VRF))
    if keys.eth is not None:
        secret = int.from_bytes(keys.eth.secret, "big")
        pem = ec.derive_private_key(secret, ec.SECP256K1()).private_bytes(**_PKCS8)
        write_private_file(key_file(identity_key, SECP256K1), pem)
        written.append(key_file(identity_key, SECP256K1))
    return written


def load_extra_keys(identity_key: Path, schemes: Iterable[str]) -> ExtraKeys:
    """The node's ``schemes`` keys from the files beside ``identity_key``
    (:class:`KeyFileError` naming a missing or wrong file)."""
    found: dict[str, object] = {}
    for scheme in _check(schemes):
        path = key_file(identity_key, scheme)
        want = "an Ed25519-format VRF seed" if scheme == VRF else "a secp256k1 EC key"
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except OSError as err:
            raise KeyFileError(
                path,
                f"cannot read it ({err.strerror}); the network's genesis lists a {scheme} key "
                f"for this node, which `fedledger keygen --config` writes beside {identity_key}",
            ) from None
        except (ValueError, TypeError):
            raise KeyFileError(
                path, f"not a readable unencrypted PKCS#8 PEM; expected {want}"
            ) from None
        if scheme == VRF and isinstance(key, ed25519.Ed25519PrivateKey):
            found[VRF] = VrfKey(key.private_bytes_raw())
        elif (
            scheme == SECP256K1
            and isinstance(key, ec.EllipticCurvePrivateKey)
            and isinstance(key.curve, ec.SECP256K1)
        ):
            found[SECP256K1] = EthKey.from_secret(
                key.private_numbers().private_value.to_bytes(32, "big")
            )
        else:
            raise KeyFileError(path, f"holds a {type(key).__name__}; expected {want}")
    vrf, eth = found.get(VRF), found.get(SECP256K1)
    assert vrf is None or isinstance(vrf, VrfKey)
    assert eth is None or isinstance(eth, EthKey)
    return ExtraKeys(vrf, eth)


@dataclass(frozen=True)
class MemberExtras:
    """Every member's public extra keys and the private ones this process holds."""

    public: PublicExtras = field(default_factory=dict)
    private: Mapping[str, ExtraKeys] = field(default_factory=dict)

    @classmethod
    def derived(cls, seed: int, schemes_of: Mapping[str, tuple[str, ...]]) -> MemberExtras:
        """Derived keys of every node that declares extra schemes (``schemes_of``)."""
        private = {n: ExtraKeys.derive(seed, n, s) for n, s in schemes_of.items() if s}
        return cls({n: k.publics() for n, k in private.items()}, private)

    def vrf_keys(self) -> dict[str, VrfPublicKey]:
        """Members' registered VRF public keys by node id."""
        return {
            n: VrfPublicKey.from_bytes(bytes.fromhex(k[VRF]))
            for n, k in sorted(self.public.items())
            if VRF in k
        }

    def eth_addresses(self) -> dict[str, str]:
        """Members' registered secp256k1 (Ethereum) addresses by node id."""
        return {n: k[SECP256K1] for n, k in sorted(self.public.items()) if SECP256K1 in k}

    def own(self, node_id: str) -> ExtraKeys:
        return self.private.get(node_id, ExtraKeys())

    def for_node(self, node_id: str, schemes: Iterable[str]) -> NodeExtraKeys:
        """What a node's services hold: its own keys of ``schemes`` (each must be here)
        and every member's registered public keys."""
        own = self.own(node_id)
        missing = [s for s in _check(schemes) if s not in own.schemes]
        if missing:
            raise CryptoError(
                f"node {node_id!r}: its protocol declares {missing} key(s) and none was "
                "given: create them with `fedledger keygen --config CONFIG` and register "
                "them in the genesis (`fedledger genesis`)"
            )
        return NodeExtraKeys(own.vrf, own.eth, self.vrf_keys(), self.eth_addresses())
