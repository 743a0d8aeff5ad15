"""RFC 9381 ECVRF-EDWARDS25519-SHA512-TAI (suite_string 0x03), on libsodium via PyNaCl.

A verifiable random function: the holder of a :class:`VrfKey` turns an input ``alpha``
into an 80-byte proof ``pi``; anyone with the public key checks the proof and gets the
64-byte output ``beta``, which is unique for (public key, alpha) and looks random to
whoever lacks the secret key. Committee sortition uses beta as a node's lottery ticket.

Following the RFC (section 5 and the suite of section 5.5):

- Keys as Ed25519 (RFC 8032 5.1.5): SHA-512 of the 32-byte seed; the clamped first half
  is the secret scalar x, the second half the nonce prefix, and Y = x * B.
- ``encode_to_curve`` by try-and-increment (5.4.1.1) with the public key as salt, the
  hash's first 32 bytes decoded strictly per RFC 8032 5.1.3, then multiplied by 8.
- Nonce per RFC 8032 5.1.6 (RFC 9381 5.4.2.2): k = SHA-512(prefix || H) mod L.
- Challenge (5.4.3): the first 16 bytes of SHA-512(0x03 || 0x02 || Y || H || Gamma || U
  || V || 0x00).
- Verification (5.3) with ``validate_key``: the public key must be a canonical encoding
  of a curve point that is not of small order; the proof's Gamma must be a canonical
  curve point and s < L.

Speed: a public key is decoded and validated once, in :class:`VrfPublicKey`; pass that
object to :func:`verify` rather than raw bytes when checking many proofs from one node.
Each operation is the fewest libsodium calls the bindings allow: prove is one base-point
and two variable-base multiplications and three point additions (the first doubling of
encode-to-curve doubles as the on-curve check); verify is one base-point and three
variable-base multiplications and eight additions or subtractions. libsodium's
variable-base multiplication re-checks prime-order-subgroup membership on every call
(about half its cost) and the bindings have no multi-scalar multiplication, so that is
the floor. A fixed-base comb for c * Y in pure Python was tried and is slower than the
libsodium call. Measured on the dev machine (2 shared cores, load about 3.7, one
process): prove ~3,800/s (261 us), verify ~2,200/s (458 us), when a variable-base
multiplication took ~99 us, a base-point one ~18 us and an addition ~16 us.
``benchmarks/vrf_speed.py`` prints the rates beside those call costs.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

from fedledger.crypto import edpoints as ed
from fedledger.crypto.keys import CryptoError, derive_seed

SUITE = b"\x03"
SEED_SIZE = 32
PUBLIC_KEY_SIZE = 32
PROOF_SIZE = 80
BETA_SIZE = 64
C_SIZE = 16
VRF_KEY_DOMAIN = "fedledger/vrf-key/v1"

_ENCODE_FRONT = SUITE + b"\x01"
_CHALLENGE_FRONT = SUITE + b"\x02"
_HASH_FRONT = SUITE + b"\x03"
_BACK = b"\x00"
_CLAMP_AND = (1 << 254) - 8
_CLAMP_OR = 1 << 254


class VrfError(CryptoError):
    """A VRF key, proof or input is not valid: says which and why."""


def _as_bytes(value: object, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise VrfError(f"{what} must be bytes, got {type(value).__name__}")


# ---------------------------------------------------------------- keys


@dataclass(frozen=True)
class VrfPublicKey:
    """A validated VRF public key: 32 bytes, canonical, on the curve, not of small order.

    Validation (RFC 9381 5.3 step 2, ``validate_key``) runs once, when the object is made.
    """

    data: bytes

    def __post_init__(self) -> None:
        data = _as_bytes(self.data, "a VRF public key")
        object.__setattr__(self, "data", data)
        if len(data) != PUBLIC_KEY_SIZE:
            raise VrfError(f"a VRF public key is {PUBLIC_KEY_SIZE} bytes, got {len(data)}")
        if not ed.is_canonical(data):
            raise VrfError(f"VRF public key {data.hex()} is not a canonical point encoding")
        double = ed.decode_double(data)
        if double is None:
            raise VrfError(f"VRF public key {data.hex()} is not a point on edwards25519")
        if ed.times8_from_double(double) == ed.IDENTITY:
            raise VrfError(f"VRF public key {data.hex()} is a point of small order")

    @classmethod
    def from_bytes(cls, data: bytes) -> VrfPublicKey:
        return cls(data)

    def to_bytes(self) -> bytes:
        return self.data

    def verify(self, proof: bytes, alpha: bytes) -> bytes:
        """beta for a valid ``proof`` of ``alpha`` under this key; raises :class:`VrfError`."""
        return verify(self, proof, alpha)


@dataclass(frozen=True)
class VrfKey:
    """A VRF secret key from a 32-byte seed (RFC 8032 5.1.5 key expansion) and its public key."""

    seed: bytes = field(repr=False)
    public: VrfPublicKey = field(init=False)
    _x: int = field(init=False, repr=False, compare=False)
    _prefix: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        seed = _as_bytes(self.seed, "a VRF seed")
        if len(seed) != SEED_SIZE:
            raise VrfError(f"a VRF seed is {SEED_SIZE} bytes, got {len(seed)}")
        digest = hashlib.sha512(seed).digest()
        x = (int.from_bytes(digest[:32], "little") & _CLAMP_AND) | _CLAMP_OR
        object.__setattr__(self, "seed", seed)
        object.__setattr__(self, "_x", x)
        object.__setattr__(self, "_prefix", digest[32:])
        object.__setattr__(self, "public", VrfPublicKey(ed.base_mul(x)))

    @classmethod
    def generate(cls, seed: bytes | None = None) -> VrfKey:
        """A key from ``seed``, or from 32 fresh random bytes."""
        return cls(os.urandom(SEED_SIZE) if seed is None else seed)

    def prove(self, alpha: bytes) -> bytes:
        """The 80-byte proof pi for ``alpha``."""
        return prove(self, alpha)


def derive_vrf_key(node_seed: bytes | int, node_id: str | int) -> VrfKey:
    """A node's VRF key from its seed and id, independent of its Ed25519 signing key.

    The seed is ``derive_seed(VRF_KEY_DOMAIN, node_seed, node_id)``: the domain string
    comes first, so it differs from the signing seed ``derive_seed(node_seed, node_id)``.
    """
    if isinstance(node_seed, bool) or not isinstance(node_seed, bytes | int):
        raise VrfError(f"node_seed must be bytes or int, got {type(node_seed).__name__}")
    if isinstance(node_id, bool) or not isinstance(node_id, str | int):
        raise VrfError(f"node_id must be str or int, got {type(node_id).__name__}")
    return VrfKey(derive_seed(VRF_KEY_DOMAIN, node_seed, node_id))


# ---------------------------------------------------------------- the RFC's pieces


def encode_to_curve(salt: bytes, alpha: bytes) -> bytes:
    """ECVRF_encode_to_curve_try_and_increment (RFC 9381 5.4.1.1); salt is the public key."""
    front = _ENCODE_FRONT + salt + alpha
    sha512 = hashlib.sha512
    for ctr in range(256):
        candidate = sha512(front + bytes((ctr,)) + _BACK).digest()[:32]
        double = ed.decode_double(candidate)
        if double is not None:
            return ed.times8_from_double(double)
    # probability about 2**-256: the RFC's int_to_string(ctr, 1) cannot go on
    raise VrfError(f"encode_to_curve found no point for alpha {alpha.hex()} in 256 tries")


def nonce(prefix: bytes, h_point: bytes) -> int:
    """ECVRF_nonce_generation_RFC8032 (RFC 9381 5.4.2.2)."""
    return int.from_bytes(hashlib.sha512(prefix + h_point).digest(), "little") % ed.L


def challenge(*points: bytes) -> int:
    """ECVRF_challenge_generation (RFC 9381 5.4.3) over (Y, H, Gamma, U, V)."""
    digest = hashlib.sha512(_CHALLENGE_FRONT + b"".join(points) + _BACK).digest()
    return int.from_bytes(digest[:C_SIZE], "little")


def _decode_proof(proof: bytes) -> tuple[bytes, bytes, int, int]:
    """(Gamma, 2 * Gamma, c, s) of a proof, or :class:`VrfError` (RFC 9381 5.4.4)."""
    proof = _as_bytes(proof, "a VRF proof")
    if len(proof) != PROOF_SIZE:
        raise VrfError(f"a VRF proof is {PROOF_SIZE} bytes, got {len(proof)}")
    gamma = proof[:32]
    gamma2 = ed.decode_double(gamma)
    if gamma2 is None:
        raise VrfError(f"proof's Gamma {gamma.hex()} is not a canonical curve point")
    s = int.from_bytes(proof[48:], "little")
    if s >= ed.L:
        raise VrfError(f"proof's s = {s} is not below the group order L = {ed.L}")
    return gamma, gamma2, int.from_bytes(proof[32:48], "little"), s


def _beta(gamma2: bytes) -> bytes:
    return hashlib.sha512(_HASH_FRONT + ed.times8_from_double(gamma2) + _BACK).digest()


# ---------------------------------------------------------------- the API


def prove(sk: VrfKey, alpha: bytes) -> bytes:
    """ECVRF_prove (RFC 9381 5.1): the 80-byte proof pi = Gamma || c || s."""
    if not isinstance(sk, VrfKey):
        raise VrfError(f"prove needs a VrfKey, got {type(sk).__name__}")
    alpha = _as_bytes(alpha, "alpha")
    y = sk.public.data
    x = sk._x
    h = encode_to_curve(y, alpha)
    k = nonce(sk._prefix, h)
    gamma = ed.mul(x, h)
    c = challenge(y, h, gamma, ed.base_mul(k), ed.mul(k, h))
    s = (k + c * x) % ed.L
    return gamma + c.to_bytes(C_SIZE, "little") + s.to_bytes(32, "little")


def proof_to_hash(proof: bytes) -> bytes:
    """ECVRF_proof_to_hash (RFC 9381 5.2): beta of a well-formed proof, not verified."""
    return _beta(_decode_proof(proof)[1])


def verify(pk: VrfPublicKey | bytes, proof: bytes, alpha: bytes) -> bytes:
    """ECVRF_verify (RFC 9381 5.3, with validate_key): beta, or :class:`VrfError`."""
    if not isinstance(pk, VrfPublicKey):
        pk = VrfPublicKey(pk)
    alpha = _as_bytes(alpha, "alpha")
    gamma, gamma2, c, s = _decode_proof(proof)
    y = pk.data
    h = encode_to_curve(y, alpha)
    u = ed.sub(ed.base_mul(s), ed.mul(c, y))
    v = ed.sub(ed.mul(s, h), ed.mul(c, gamma))
    if challenge(y, h, gamma, u, v) != c:
        raise VrfError("VRF proof does not verify for this public key and alpha")
    return _beta(gamma2)
