"""Schoenmakers publicly verifiable secret sharing (PVSS) on edwards25519.

Schoenmakers, "A Simple Publicly Verifiable Secret Sharing Scheme and its Application to
Electronic Voting" (CRYPTO '99), in additive notation over the prime-order subgroup of
edwards25519, on libsodium's point calls (:mod:`fedledger.crypto.edpoints`).

Two generators:

- ``B``, the Ed25519 base point: member keys ``y_j = x_j * B`` and the shared secret
  ``S = s * B`` live on it, and so do the decrypted shares ``p(j) * B``.
- ``G2``, an independent generator derived by hash-to-curve (RFC 9381 try-and-increment,
  then multiplied by the cofactor) of the domain string :data:`G2_DOMAIN`. Its discrete
  log to ``B`` is unknown to everyone. The dealer's commitments ``C_k = a_k * G2`` are on
  it: were they on ``B``, ``X_j = p(j) * B`` would *be* the decrypted share and anyone could
  recover the secret from the public transcript.

Phases (``t`` is the threshold, ``n`` the number of members, indices ``1..n``):

- :func:`deal`: polynomial ``p`` of degree ``t - 1`` with ``p(0) = s``; commitments
  ``C_k = a_k * G2``; encrypted shares ``Y_j = p(j) * y_j``; per share a DLEQ proof that
  ``log_G2 X_j = log_{y_j} Y_j`` with ``X_j = sum_k j^k C_k``.
- :func:`verify_dealing`: anyone, from the transcript and the public keys alone.
- :func:`reveal`: member ``j`` posts ``S_j = x_j^-1 * Y_j`` and a DLEQ proof that
  ``log_B y_j = log_{S_j} Y_j``; :func:`verify_share` checks it.
- :func:`recover`: Lagrange interpolation in the exponent over any ``t`` valid shares
  gives ``s * B``.

DLEQ proofs are Chaum-Pedersen with Fiat-Shamir: ``c = SHA-512(domain, context, statement,
commitments) mod L``, ``r = w - c * alpha mod L``; the 64-byte proof is ``c || r``. Nonces
``w`` are derived deterministically from the witness and the statement (as RFC 8032 does),
so a dealing is a pure function of the dealer's secret seed. ``context`` binds every proof
to its session (e.g. dynasty number and dealer) so a proof cannot be replayed elsewhere.

Every point read from a transcript must be a canonical encoding of a point of the
prime-order subgroup other than the identity (libsodium ``crypto_core_ed25519_is_valid_point``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from nacl import bindings as _nb

from fedledger.crypto import edpoints as ed
from fedledger.crypto.keys import CryptoError, derive_seed
from fedledger.crypto.vrf import encode_to_curve

G2_DOMAIN = b"fedledger/pvss/G2/v1"
PROOF_SIZE = 64
_PROOF_DOMAIN = b"fedledger/pvss/dleq/v1"
_NONCE_DOMAIN = b"fedledger/pvss/nonce/v1"
_COEFF_DOMAIN = b"fedledger/pvss/coeff/v1"
_KEY_DOMAIN = "fedledger/pvss-key/v1"
BASE = ed.base_mul(1)


class PvssError(CryptoError):
    """A PVSS key, dealing, share or proof is not valid: says which and why."""


def second_generator() -> bytes:
    """G2: hash-to-curve of :data:`G2_DOMAIN`, in the prime-order subgroup."""
    return encode_to_curve(b"", G2_DOMAIN)


G2 = second_generator()


def _hash_scalar(*parts: bytes) -> int:
    h = hashlib.sha512()
    for part in parts:
        h.update(len(part).to_bytes(8, "little") + part)
    return int.from_bytes(h.digest(), "little") % ed.L


def _valid_point(data: object) -> bool:
    return (
        isinstance(data, bytes)
        and len(data) == ed.POINT_SIZE
        and ed.is_canonical(data)
        and bool(_nb.crypto_core_ed25519_is_valid_point(data))
    )


def _check_point(data: object, what: str) -> bytes:
    if not _valid_point(data):
        shown = data.hex() if isinstance(data, bytes) else type(data).__name__
        raise PvssError(
            f"{what} {shown} is not a canonical point of the prime-order subgroup "
            "(32 bytes, not the identity or of small order)"
        )
    assert isinstance(data, bytes)
    return data


def _sum(points: Sequence[bytes]) -> bytes:
    out = ed.IDENTITY
    for p in points:
        out = ed.add(out, p)
    return out


# ---------------------------------------------------------------- keys


@dataclass(frozen=True)
class PvssKey:
    """A member's PVSS key: secret scalar ``x`` in [1, L), public ``y = x * B``."""

    x: int = field(repr=False)
    public: bytes = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.x, int) or not 0 < self.x < ed.L:
            raise PvssError(f"a PVSS secret scalar must be an int in [1, L), got {self.x!r}")
        object.__setattr__(self, "public", ed.base_mul(self.x))

    @classmethod
    def derive(cls, *parts: int | str | bytes) -> PvssKey:
        """A key derived from seed parts (simulations: not secret if the parts are public)."""
        x = _hash_scalar(derive_seed(_KEY_DOMAIN, *parts))
        return cls(x or 1)


# ---------------------------------------------------------------- DLEQ


def _dleq_prove(
    alpha: int, g1: bytes, h1: bytes, g2: bytes, h2: bytes, context: bytes
) -> bytes:
    """Proof that h1 = alpha * g1 and h2 = alpha * g2."""
    w = _hash_scalar(_NONCE_DOMAIN, ed.scalar_bytes(alpha), context, g1, h1, g2, h2) or 1
    a1, a2 = ed.mul(w, g1), ed.mul(w, g2)
    c = _hash_scalar(_PROOF_DOMAIN, context, g1, h1, g2, h2, a1, a2)
    r = (w - c * alpha) % ed.L
    return ed.scalar_bytes(c) + ed.scalar_bytes(r)


def _dleq_verify(
    proof: object, g1: bytes, h1: bytes, g2: bytes, h2: bytes, context: bytes
) -> str | None:
    """None if the proof is valid, else the reason."""
    if not isinstance(proof, bytes) or len(proof) != PROOF_SIZE:
        return f"a DLEQ proof is {PROOF_SIZE} bytes"
    c = int.from_bytes(proof[:32], "little")
    r = int.from_bytes(proof[32:], "little")
    if c >= ed.L or r >= ed.L:
        return "a DLEQ proof's scalars must be below L"
    a1 = ed.add(ed.mul(r, g1), ed.mul(c, h1))
    a2 = ed.add(ed.mul(r, g2), ed.mul(c, h2))
    if _hash_scalar(_PROOF_DOMAIN, context, g1, h1, g2, h2, a1, a2) != c:
        return "the DLEQ proof does not verify"
    return None


# ---------------------------------------------------------------- deal / verify


@dataclass(frozen=True)
class Dealing:
    """A dealer's public transcript for ``n = len(encrypted)`` members (indices 1..n)."""

    commitments: tuple[bytes, ...]  # C_k = a_k * G2, k = 0..t-1
    encrypted: tuple[bytes, ...]  # Y_j = p(j) * y_j
    proofs: tuple[bytes, ...]  # DLEQ(G2, X_j, y_j, Y_j)

    @property
    def threshold(self) -> int:
        return len(self.commitments)


@dataclass(frozen=True)
class DecryptedShare:
    """Member ``index``'s decrypted share ``S = p(index) * B`` with its DLEQ proof."""

    index: int
    share: bytes
    proof: bytes


def _coefficients(secret_seed: bytes, t: int) -> list[int]:
    return [_hash_scalar(_COEFF_DOMAIN, secret_seed, k.to_bytes(4, "little")) for k in range(t)]


def _check_threshold(t: int, n: int) -> None:
    if isinstance(t, bool) or not isinstance(t, int) or not 1 <= t <= n:
        raise PvssError(f"threshold t must be an int in [1, n = {n}], got {t!r}")


def _context(context: object) -> bytes:
    if not isinstance(context, bytes):
        raise PvssError(f"context must be bytes, got {type(context).__name__}")
    return context


def deal(
    secret_seed: bytes, public_keys: Sequence[bytes], t: int, context: bytes
) -> tuple[Dealing, bytes]:
    """(dealing, secret point s * B) for members ``public_keys`` (member j has index j+1)."""
    context = _context(context)
    keys = [_check_point(y, f"public key of member {j + 1}") for j, y in enumerate(public_keys)]
    _check_threshold(t, len(keys))
    coeffs = _coefficients(secret_seed, t)
    commitments = tuple(ed.mul(a, G2) for a in coeffs)
    encrypted: list[bytes] = []
    proofs: list[bytes] = []
    for j, y in enumerate(keys, start=1):
        pj = _poly(coeffs, j)
        xj, yj = ed.mul(pj, G2), ed.mul(pj, y)
        encrypted.append(yj)
        proofs.append(_dleq_prove(pj, G2, xj, y, yj, context + _index(j)))
    return Dealing(commitments, tuple(encrypted), tuple(proofs)), ed.base_mul(coeffs[0])


def _poly(coeffs: Sequence[int], x: int) -> int:
    out = 0
    for a in reversed(coeffs):
        out = (out * x + a) % ed.L
    return out


def _index(j: int) -> bytes:
    return j.to_bytes(4, "little")


def _commitment_at(commitments: Sequence[bytes], j: int) -> bytes:
    """X_j = sum_k j^k * C_k, by Horner's rule."""
    out = commitments[-1]
    for c in reversed(commitments[:-1]):
        out = ed.add(ed.mul(j, out), c)
    return out


def verify_dealing(
    dealing: Dealing, public_keys: Sequence[bytes], t: int, context: bytes
) -> None:
    """Raises :class:`PvssError` naming the first bad part; returns None if all are valid."""
    context = _context(context)
    if not isinstance(dealing, Dealing):
        raise PvssError(f"a dealing must be a Dealing, got {type(dealing).__name__}")
    n = len(public_keys)
    _check_threshold(t, n)
    if len(dealing.commitments) != t:
        raise PvssError(f"dealing has {len(dealing.commitments)} commitments, threshold t = {t}")
    if len(dealing.encrypted) != n or len(dealing.proofs) != n:
        raise PvssError(
            f"dealing has {len(dealing.encrypted)} encrypted shares and "
            f"{len(dealing.proofs)} proofs for n = {n} members"
        )
    for k, c in enumerate(dealing.commitments):
        _check_point(c, f"commitment {k}")
    for j in range(1, n + 1):
        y = _check_point(public_keys[j - 1], f"public key of member {j}")
        yj = _check_point(dealing.encrypted[j - 1], f"encrypted share {j}")
        xj = _commitment_at(dealing.commitments, j)
        why = _dleq_verify(dealing.proofs[j - 1], G2, xj, y, yj, context + _index(j))
        if why is not None:
            raise PvssError(f"encrypted share {j}: {why}")


# ---------------------------------------------------------------- reveal / recover


def reveal(key: PvssKey, index: int, encrypted: bytes, context: bytes) -> DecryptedShare:
    """Member ``index`` decrypts its share ``Y`` of a verified dealing."""
    context = _context(context)
    yj = _check_point(encrypted, f"encrypted share {index}")
    share = ed.mul(pow(key.x, -1, ed.L), yj)
    proof = _dleq_prove(key.x, BASE, key.public, share, yj, context + _index(index))
    return DecryptedShare(index, share, proof)


def verify_share(
    share: DecryptedShare, public_key: bytes, encrypted: bytes, context: bytes
) -> None:
    """Raises :class:`PvssError` if ``share`` is not the decryption of ``encrypted``."""
    context = _context(context)
    if not isinstance(share, DecryptedShare):
        raise PvssError(f"a share must be a DecryptedShare, got {type(share).__name__}")
    y = _check_point(public_key, f"public key of member {share.index}")
    yj = _check_point(encrypted, f"encrypted share {share.index}")
    s = _check_point(share.share, f"decrypted share {share.index}")
    why = _dleq_verify(share.proof, BASE, y, s, yj, context + _index(share.index))
    if why is not None:
        raise PvssError(f"decrypted share {share.index}: {why}")


def lagrange_at_zero(indices: Sequence[int]) -> dict[int, int]:
    """Lagrange coefficients lambda_j at x = 0 for distinct indices in [1, L)."""
    if len(set(indices)) != len(indices) or any(not 0 < j < ed.L for j in indices):
        raise PvssError(f"share indices must be distinct and in [1, L), got {list(indices)}")
    out: dict[int, int] = {}
    for j in indices:
        num, den = 1, 1
        for m in indices:
            if m != j:
                num = num * m % ed.L
                den = den * (m - j) % ed.L
        out[j] = num * pow(den, -1, ed.L) % ed.L
    return out


def recover(shares: Mapping[int, bytes], t: int) -> bytes:
    """s * B from ``t`` verified decrypted shares (index -> point); extra shares are ignored
    (the ``t`` smallest indices are used)."""
    if isinstance(t, bool) or not isinstance(t, int) or t < 1:
        raise PvssError(f"threshold t must be a positive int, got {t!r}")
    if len(shares) < t:
        raise PvssError(f"recovery needs t = {t} shares, got {len(shares)}")
    chosen = sorted(shares)[:t]
    lam = lagrange_at_zero(chosen)
    return _sum([ed.mul(lam[j], _check_point(shares[j], f"share {j}")) for j in chosen])
