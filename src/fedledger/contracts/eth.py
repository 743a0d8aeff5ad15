"""secp256k1 keys, keccak256 and ABI encoding: everything a contract checks with ecrecover.

A node's Ethereum key sits beside its Ed25519 identity: PBFT traffic stays Ed25519, while
whatever goes on chain (committee replies that make a proof, participants' requests) is
signed here, over a raw 32-byte digest (no EIP-191 prefix), with v in {27, 28} as the
EVM's ``ecrecover`` expects. Keys come from eth-keys (coincurve backend); hashes from
eth-hash; encodings from eth-abi, so they match Vyper's ``abi_encode`` byte for byte.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from eth_abi import encode as abi_encode
from eth_hash.auto import keccak
from eth_keys import keys as eth_keys
from eth_keys.exceptions import BadSignature, ValidationError
from eth_utils import to_checksum_address

from fedledger.errors import FedledgerError

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

SIG_TYPE = "(uint8,bytes32,bytes32)"
REQUEST_TYPE = "(address,uint256,uint8,bytes32,bytes32)"
SCORE_TYPE = "(address,uint256)"


class EthKeyError(FedledgerError, ValueError):
    """A secp256k1 key, signature or address is malformed."""


def keccak256(data: bytes) -> bytes:
    """Keccak-256 (the EVM's SHA3, not NIST SHA3-256) of ``data``."""
    return bytes(keccak(data))


def checksum(address: str | bytes) -> str:
    """An address in EIP-55 checksum form."""
    if isinstance(address, bytes):
        if len(address) != 20:
            raise EthKeyError(f"address must be 20 bytes, got {len(address)}")
        return to_checksum_address(address)
    return to_checksum_address(address)


@dataclass(frozen=True)
class EcdsaSig:
    """One recoverable secp256k1 signature in the EVM's (v, r, s) form, v in {27, 28}."""

    v: int
    r: bytes
    s: bytes

    def as_tuple(self) -> tuple[int, bytes, bytes]:
        return (self.v, self.r, self.s)


@dataclass(frozen=True)
class EthKey:
    """A node's secp256k1 key pair; ``address`` is the Ethereum address (checksummed)."""

    secret: bytes
    address: str

    @classmethod
    def from_secret(cls, secret: bytes) -> EthKey:
        value = int.from_bytes(secret, "big")
        if len(secret) != 32 or not 0 < value < SECP256K1_N:
            raise EthKeyError("secp256k1 secret must be 32 bytes in [1, n-1]")
        pk = eth_keys.PrivateKey(secret)
        return cls(secret=secret, address=pk.public_key.to_checksum_address())

    @classmethod
    def from_seed(cls, seed: int, label: str) -> EthKey:
        """A deterministic key for (seed, label): sha256 of both, reduced into [1, n-1]."""
        digest = hashlib.sha256(f"fedledger-eth/{seed}/{label}".encode()).digest()
        value = int.from_bytes(digest, "big") % (SECP256K1_N - 1) + 1
        return cls.from_secret(value.to_bytes(32, "big"))

    def sign_digest(self, digest: bytes) -> EcdsaSig:
        """Signs a raw 32-byte digest (low-s, as eth-keys produces)."""
        if len(digest) != 32:
            raise EthKeyError(f"digest must be 32 bytes, got {len(digest)}")
        sig = eth_keys.PrivateKey(self.secret).sign_msg_hash(digest)
        return EcdsaSig(v=sig.v + 27, r=sig.r.to_bytes(32, "big"), s=sig.s.to_bytes(32, "big"))


def recover(digest: bytes, sig: EcdsaSig) -> str | None:
    """The address that signed ``digest``, or None when the signature is malformed."""
    if sig.v not in (27, 28) or len(digest) != 32:
        return None
    try:
        parsed = eth_keys.Signature(
            vrs=(sig.v - 27, int.from_bytes(sig.r, "big"), int.from_bytes(sig.s, "big"))
        )
        return parsed.recover_public_key_from_msg_hash(digest).to_checksum_address()
    except (BadSignature, ValidationError, ValueError):
        return None


# ------------------------------------------------------------------ what the contract hashes


def proof_digest(chain_id: int, contract: str, it: int, stage: int, result_hash: bytes) -> bytes:
    """keccak256(abi_encode(chain_id, contract, it, stage, result_hash)): what F+1 sign."""
    return keccak256(
        abi_encode(
            ["uint256", "address", "uint256", "uint256", "bytes32"],
            [chain_id, checksum(contract), it, stage, result_hash],
        )
    )


def request_digest(
    chain_id: int, contract: str, it: int, stage: int, value: int, node: str
) -> bytes:
    """A participant's request: keccak256(abi_encode(chain, contract, it, stage, value, node))."""
    return keccak256(
        abi_encode(
            ["uint256", "address", "uint256", "uint256", "uint256", "address"],
            [chain_id, checksum(contract), it, stage, value, checksum(node)],
        )
    )


@dataclass(frozen=True)
class SignedRequest:
    """A candidacy, pledge (value = wei) or submission (value = model hash as an integer)."""

    node: str
    value: int
    sig: EcdsaSig

    def as_tuple(self) -> tuple[str, int, int, bytes, bytes]:
        return (checksum(self.node), self.value, self.sig.v, self.sig.r, self.sig.s)


@dataclass(frozen=True)
class ScoreEntry:
    """A sub-model's accuracy on the pre-agreed test set, in permille."""

    node: str
    score: int

    def as_tuple(self) -> tuple[str, int]:
        return (checksum(self.node), self.score)


def sign_request(
    key: EthKey, chain_id: int, contract: str, it: int, stage: int, value: int
) -> SignedRequest:
    digest = request_digest(chain_id, contract, it, stage, value, key.address)
    return SignedRequest(node=key.address, value=value, sig=key.sign_digest(digest))


def elect_result_hash(members: list[str], cands: list[SignedRequest]) -> bytes:
    return keccak256(
        abi_encode(
            ["address[]", f"{REQUEST_TYPE}[]"],
            [[checksum(m) for m in members], [c.as_tuple() for c in cands]],
        )
    )


def requests_result_hash(reqs: list[SignedRequest]) -> bytes:
    """The result hash of a Pledge or Commit stage: the ordered list of requests."""
    return keccak256(abi_encode([f"{REQUEST_TYPE}[]"], [[r.as_tuple() for r in reqs]]))


def work_result_hash(
    scores: list[ScoreEntry], global_hash: bytes, global_acc: int, alive: list[str]
) -> bytes:
    return keccak256(
        abi_encode(
            [f"{SCORE_TYPE}[]", "bytes32", "uint256", "address[]"],
            [[s.as_tuple() for s in scores], global_hash, global_acc, [checksum(a) for a in alive]],
        )
    )


def make_proof(
    keys: list[EthKey], chain_id: int, contract: str, it: int, stage: int, result_hash: bytes
) -> list[EcdsaSig]:
    """Signatures of ``keys`` over the proof digest, sorted by signer address as the
    contract requires (ascending, so distinctness is one comparison per signature)."""
    digest = proof_digest(chain_id, contract, it, stage, result_hash)
    ordered = sorted(keys, key=lambda k: int(k.address, 16))
    return [k.sign_digest(digest) for k in ordered]
