"""Edwards25519 point helpers for the VRF, on libsodium's ``crypto_core_ed25519_*`` calls.

Points are 32-byte encodings (RFC 8032 section 5.1.2). libsodium's point calls differ from
the strict RFC 8032 decoding in two ways that matter to RFC 9381, and this module closes
both gaps:

- ``crypto_core_ed25519_add``/``sub`` decode any point on the curve, but also accept a
  non-canonical y (y >= p) and an x = 0 encoding with the sign bit set. RFC 8032 section
  5.1.3 rejects both; :func:`is_canonical` checks them first.
- ``crypto_scalarmult_ed25519_noclamp`` accepts only points of the prime-order subgroup
  (it runs a subgroup check on each call) and refuses a zero scalar or an identity result.
  RFC 9381 multiplies points that may carry a small-order component (a proof's Gamma, a
  public key that passed ``validate_key``), so :func:`mul` falls back to splitting the
  point into its prime-order and small-order parts when libsodium refuses it.

Scalars are Python ints; the group order is ``L``.
"""

from __future__ import annotations

from nacl import bindings as _nb
from nacl.exceptions import CryptoError as _SodiumError

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
COFACTOR = 8
POINT_SIZE = 32
SCALAR_SIZE = 32
IDENTITY = b"\x01" + bytes(31)

_Y_MASK = (1 << 255) - 1
_INV8 = pow(COFACTOR, -1, L)

add = _nb.crypto_core_ed25519_add
sub = _nb.crypto_core_ed25519_sub
_noclamp = _nb.crypto_scalarmult_ed25519_noclamp
_base_noclamp = _nb.crypto_scalarmult_ed25519_base_noclamp


def is_canonical(data: bytes) -> bool:
    """False for the encodings RFC 8032 5.1.3 rejects before the square root.

    Those are a y coordinate >= p, and x = 0 (which happens only for y = 1 or y = p - 1)
    with the sign bit set. Whether the point is on the curve is checked by :func:`decode`.
    """
    y = int.from_bytes(data, "little") & _Y_MASK
    if y >= P:
        return False
    return not (data[31] & 0x80 and (y == 1 or y == P - 1))


def double(point: bytes) -> bytes:
    """2 * point for any point on the curve; raises libsodium's error if it is not one."""
    return add(point, point)


def decode_double(data: bytes) -> bytes | None:
    """2 * point if ``data`` is a valid RFC 8032 encoding of a curve point, else None.

    Decoding and the first doubling are one libsodium call: ``add`` fails exactly when a
    (canonical) encoding is not on the curve.
    """
    if len(data) != POINT_SIZE or not is_canonical(data):
        return None
    try:
        return add(data, data)
    except _SodiumError:
        return None


def decode(data: bytes) -> bool:
    """True if ``data`` is a valid RFC 8032 encoding of a point on the curve."""
    return decode_double(data) is not None


def times8_from_double(point2: bytes) -> bytes:
    """8 * P given 2 * P (two more doublings); always in the prime-order subgroup."""
    point4 = add(point2, point2)
    return add(point4, point4)


def scalar_bytes(n: int) -> bytes:
    """The 32-byte little-endian encoding of 0 <= n < 2**256."""
    return n.to_bytes(SCALAR_SIZE, "little")


def base_mul(n: int) -> bytes:
    """(n mod L) * B, the identity for n = 0 mod L."""
    r = n % L
    if r == 0:
        return IDENTITY
    return _base_noclamp(scalar_bytes(r))


def small_mul(m: int, point: bytes) -> bytes:
    """m * point by repeated addition, for 0 <= m < 8 (small-order points)."""
    out = IDENTITY
    for _ in range(m):
        out = add(out, point)
    return out


def split(point: bytes) -> tuple[bytes, bytes]:
    """(prime-order part, small-order part) of a curve point; they add up to it.

    8 * point kills the small-order part; multiplying by 8^-1 mod L recovers the
    prime-order part, and the difference is the small-order part.
    """
    point8 = times8_from_double(double(point))
    main = IDENTITY if point8 == IDENTITY else _noclamp(scalar_bytes(_INV8), point8)
    return main, sub(point, main)


def mul(n: int, point: bytes) -> bytes:
    """n * point for an integer n >= 0 and any valid point, as RFC 9381 multiplies.

    Fast path: one libsodium call when the point is in the prime-order subgroup.
    Otherwise n * (A + T) = (n mod L) * A + (n mod 8) * T.
    """
    r = n % L
    if r:
        try:
            return _noclamp(scalar_bytes(r), point)
        except _SodiumError:
            pass
    elif n == 0:
        return IDENTITY
    main, torsion = split(point)
    main_part = IDENTITY if r == 0 or main == IDENTITY else _noclamp(scalar_bytes(r), main)
    return add(main_part, small_mul(n % COFACTOR, torsion))
